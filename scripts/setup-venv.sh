#!/usr/bin/env bash
# Creates .venv (with the package installed, editable) on a fresh Debian/Ubuntu machine.
# Sourced by scripts/test.sh and scripts/demo.sh. Usage: setup_venv "EXTRAS" (e.g. "test").
set -euo pipefail

setup_venv() {
    local extras="${1:-}"
    if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "== installing python3-venv (apt-get)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            echo "python3 cannot create virtual environments: install python3-venv" >&2
            exit 1
        fi
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        python3 -m venv .venv
    fi
    echo "== installing experimaestro${extras:+[$extras]} into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
}
