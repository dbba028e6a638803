#!/usr/bin/env bash
# The load tests: driftline against a pass-through baseline on one Tansu
# broker, scenario by scenario; writes loadtests/results/<UTC time>/report.md
# (and report.json, *.hgrm, latency.svg, timelines/, logs/).
#
#   loadtests/run.sh                           # saturation, steady-half, burst, million-entities
#   loadtests/run.sh saturation steady-half    # some of them, in this order
#
# Put `saturation` first: steady-half, burst and million-entities take their
# rate from driftline's saturation throughput measured in the same run
# (without it, from the fixed rate in their scenario.toml). See loadtests/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    set -- saturation steady-half burst million-entities
fi

cargo build --release --locked --bin driftline -p driftline
cargo build --release --locked -p driftline-loadtest

out="loadtests/results/$(date -u +%Y%m%dT%H%M%SZ)"
target/release/loadtest run --out "$out" --scenario "$@"
echo "report: $out/report.md (also report.json, latency.svg, *.hgrm)"
