#!/usr/bin/env bash
# Installs Debian's headless browser for the monitor's page tests (tests/test_monitor_browser.py):
# `chromium` and `chromium-driver` (selenium drives /usr/bin/chromedriver; nothing is downloaded at
# run time). Returns at once when both are there. Needs root (apt-get); exits 1 when it cannot install.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: chromium and chromium-driver are missing; as root: apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
echo "== installing chromium and chromium-driver (apt-get), for the monitor's page tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
