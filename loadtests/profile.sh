#!/usr/bin/env bash
# Where driftline's CPU goes under load: runs a steady scenario (default
# `profile`, 50,000 events/s) through `loadtest run` and, while driftline
# scores, records a perf profile of its process (cpu-clock sampling with
# DWARF call stacks, so it works on VMs without hardware counters).
#
#   loadtests/profile.sh                  # scenario `profile`
#   loadtests/profile.sh steady-half      # any steady scenario
#
# Writes loadtests/results/profile-<UTC time>/: profile.md (per thread and
# per scoring stage, CPU µs per event; top functions), stacks.folded (for
# flamegraph.pl or inferno-flamegraph), perf.data, and the load test's own
# report (report.md: both systems, per-thread CPU). PROFILE_SECS (10),
# PROFILE_HZ (499) and PROFILE_DELAY (8 s after driftline starts) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-profile}
secs=${PROFILE_SECS:-10}
hz=${PROFILE_HZ:-499}
delay=${PROFILE_DELAY:-8}

if ! command -v perf >/dev/null 2>&1; then
    echo "installing Debian's linux-perf" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends linux-perf >&2
fi

cargo build --release --locked --bin driftline -p driftline
cargo build --release --locked -p driftline-loadtest

out="loadtests/results/profile-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
target/release/loadtest run --out "$out" --scenario "$scenario" &
loadtest=$!
trap 'kill $loadtest 2>/dev/null || true' EXIT

# The pass-through runs first; wait for driftline's process.
pid=""
while kill -0 $loadtest 2>/dev/null; do
    pid=$(pgrep -n -f "target/release/driftline serve" || true)
    [ -n "$pid" ] && break
    sleep 0.5
done
[ -n "$pid" ] || { echo "driftline never started; see $out" >&2; exit 1; }
sleep "$delay"

admin=$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^DRIFTLINE_ADMIN__LISTEN=//p')
consumed() {
    curl -s "http://$admin/metrics" | awk '/^driftline_events_consumed_total/ { n += $2 } END { print n + 0 }'
}
before=$(consumed)
perf record -F "$hz" -e cpu-clock -g --call-graph dwarf,8192 -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2>"$out/perf-record.log"
after=$(consumed)
wait $loadtest
trap - EXIT

rate=$(( (after - before) / secs ))
perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null > "$out/perf.script"
{
    echo "# driftline profile"
    echo
    echo "Scenario \`$scenario\`, perf cpu-clock at $hz Hz for $secs s while driftline scored $rate events/s ($(nproc) cores). Command: \`loadtests/profile.sh $*\`."
    echo
    target/release/loadtest stacks --script "$out/perf.script" --hz "$hz" --secs "$secs" \
        --events-per-s "$rate" --folded "$out/stacks.folded"
    echo
    echo "Top functions by own time (all threads):"
    echo
    echo '```'
    perf report -i "$out/perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null \
        | grep -v "^#" | grep -v "^$" | head -40 || true
    echo '```'
} > "$out/profile.md"
rm -f "$out/perf.script"
echo "profile: $out/profile.md (also stacks.folded, perf.data, report.md)"
