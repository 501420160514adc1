#!/usr/bin/env bash
# Installs experimaestro and runs the seed experiment on the local launcher (no cluster needed):
# `bash scripts/demo.sh [--workdir DIR] [--epochs N] [--layers N]`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
setup_venv ""
echo "== running examples/seed.py"
if [[ " $* " != *" --workdir "* ]]; then
    set -- --workdir "${XPM_DEMO_WORKDIR:-${TMPDIR:-/tmp}/experimaestro-demo}" "$@"
fi
exec .venv/bin/python examples/seed.py "$@"
