#!/usr/bin/env bash
# Creates .venv (with the package installed, editable) on a fresh Debian/Ubuntu machine.
# Sourced by scripts/test.sh and scripts/demo.sh. Usage: setup_venv "EXTRAS" (e.g. "test").
# The install is skipped when it is up to date: .venv/.xpm-install records a hash of pyproject.toml,
# the repository's path and the extras installed. The install is editable, so source edits need no
# reinstall; a change of pyproject.toml (dependencies, entry points) does.
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
    local stamp=.venv/.xpm-install
    local state
    state="$(cat pyproject.toml; pwd)"
    state="$(printf '%s' "$state" | sha256sum | cut -d' ' -f1)"
    # Up to date: same pyproject.toml and place, and the extras asked for were installed (an
    # install with extras also holds the base install).
    if [ -f "$stamp" ]; then
        local done_state done_extras
        read -r done_state done_extras < "$stamp" || true
        if [ "$done_state" = "$state" ] && { [ -z "$extras" ] || [ "$extras" = "${done_extras:-}" ]; }; then
            echo "== .venv is up to date (pyproject.toml unchanged; the install is editable)"
            return 0
        fi
    fi
    echo "== installing experimaestro${extras:+[$extras]} into .venv"
    rm -f "$stamp"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
    echo "$state $extras" > "$stamp"
}
