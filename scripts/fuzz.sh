#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 60), one after
# the other, and prints executions and crashes per target.
#
#   scripts/fuzz.sh [seconds] [target...]
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz --locked`). The committed seeds in
# fuzz/seeds/<target> are read, never written: what a run discovers goes to
# fuzz/corpus/<target> (ignored by git) and is reused by the next run. A
# crash, an out-of-memory (libFuzzer's 2 GiB RSS limit: the decoders' size
# bounds must hold) or a 10 s hang stops its target and leaves the input in
# fuzz/artifacts/<target>; reproduce it with
# `cargo +nightly fuzz run <target> <artifact>`.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
    cargo +nightly fuzz build --release >&2 || exit 2
else
    for t in "${targets[@]}"; do
        cargo +nightly fuzz build --release "$t" >&2 || exit 2
    done
fi

rows=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    echo "== $t: ${seconds}s ==" >&2
    cargo +nightly fuzz run --release "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    rate=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
    corpus=$(find "corpus/$t" -type f | wc -l)
    crashes=0
    artifact=""
    if [ $status -ne 0 ]; then
        crashes=1
        failed=1
        artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -1 | sed 's/Test unit written to //')
        tail -40 "$log" >&2
    fi
    rm -f "$log"
    rows+=("| $t | $seconds | ${execs:-?} | ${rate:-?} | $corpus | $crashes | ${artifact:-} |")
done

echo "| target | seconds | executions | exec/s | corpus | crashes | artifact |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $failed
