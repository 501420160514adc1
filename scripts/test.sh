#!/usr/bin/env bash
# Installs what the test suite needs and runs it: `bash scripts/test.sh [pytest arguments]`.
# Exits non-zero when a test fails, and also when no test ran (pytest's exit code 5).
# The order of the tests is random (pytest-randomly prints the seed; --randomly-seed=N repeats it).
set -euo pipefail
cd "$(dirname "$0")/.."
# The SSH tests' separate host (ssh-test/) needs sshd, ip, nsenter: installed when missing (as root).
if [ "$(id -u)" = 0 ]; then ssh-test/install || [ "${CI:-}" != true ] || exit 1; fi
# The monitor's page tests need Debian's chromium and chromium-driver (as root; fast when installed).
if [ "$(id -u)" = 0 ]; then bash scripts/install-browser.sh || [ "${CI:-}" != true ] || exit 1; fi
source scripts/setup-venv.sh
setup_venv test
# The Slurm tests run a real single-node Slurm (slurm-test/): install its Debian packages if missing.
if [ "$(id -u)" = 0 ] && ! bash slurm-test/install; then
    [ "${CI:-}" != true ] || exit 1
    echo "== slurm-test/install failed: the Slurm tests will be skipped"
fi
echo "== linting (ruff)"
.venv/bin/python -m ruff check experimaestro tests bench examples slurm-test/cluster.py
echo "== running the tests"
exec .venv/bin/python -m pytest "$@"
