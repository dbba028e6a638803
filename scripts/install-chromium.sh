#!/usr/bin/env bash
# Installs Debian's chromium package when missing, for the browser test of
# the report and the live page (tests/cli/report_browser.rs). Prints the
# path of the chromium binary.
set -euo pipefail

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        exit 0
    fi
done

echo "installing Debian's chromium package (headless browser for the report's browser test)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
