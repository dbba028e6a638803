#!/usr/bin/env bash
# Installs the Tansu test broker (a Kafka-protocol broker; memory storage) once
# and caches it outside the work tree, so a rebuild (15-18 min on 2 cores)
# happens only on a fresh machine. Prints the binary's path on stdout.
#
#   TANSU=$(scripts/install-tansu.sh)
#   "$TANSU" broker --listener-url tcp://127.0.0.1:PORT \
#       --advertised-listener-url tcp://127.0.0.1:PORT --storage-engine memory://tansu/
#
# DRIFTLINE_TANSU_CACHE overrides the cache directory.
set -euo pipefail

version=0.6.0
cache="${DRIFTLINE_TANSU_CACHE:-$HOME/.cache/driftline/tansu-$version}"
bin="$cache/bin/tansu"

if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

echo "installing tansu $version into $cache (once; about 15-18 minutes on 2 cores)" >&2
cargo install --locked tansu --version "$version" --features dynostore --root "$cache" >&2
echo "$bin"
