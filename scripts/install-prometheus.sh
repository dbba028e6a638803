#!/usr/bin/env bash
# Installs Debian's prometheus package (the server and promtool) when missing,
# for tests/cli/prometheus.rs. Prints the directory holding both binaries.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    dirname "$(command -v prometheus)"
    exit 0
fi

echo "installing Debian's prometheus package (server + promtool)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends prometheus >&2
# The package starts a system service; the tests run their own server.
$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
dirname "$(command -v prometheus)"
