#!/usr/bin/env bash
# Installs the Tansu test broker (a Kafka-protocol broker) once
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
# dynostore gives the memory:// engine most tests use; libsql and postgres are
# the durable engines that keep data across a broker restart (broker-restart
# and transaction tests). One build with all three, cached under a name that
# says which features it has.
features=dynostore,libsql,postgres
cache="${DRIFTLINE_TANSU_CACHE:-$HOME/.cache/driftline/tansu-$version-${features//,/-}}"
bin="$cache/bin/tansu"

if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

echo "installing tansu $version into $cache (once; about 15-18 minutes on 2 cores)" >&2
cargo install --locked tansu --version "$version" --features "$features" --root "$cache" >&2
echo "$bin"
