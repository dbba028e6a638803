#!/usr/bin/env bash
# The chaos run of issue 15 (not part of scripts/test.sh): a producer at about
# 200 events/s, at least 20 SIGKILLs of `driftline serve` at random moments,
# one broker restart on durable (SQLite) Tansu storage, a second instance
# joining and leaving; then every event must be in `predictions` or the DLQ.
# Prints one "chaos summary:" line (lost, duplicates, DLQ, skipped offsets).
#
#   scripts/chaos.sh            # seed 0xC4A05 (CHAOS_SEED is decimal)
#   CHAOS_SEED=7 scripts/chaos.sh
#   CHAOS_STORAGE=memory scripts/chaos.sh   # memory storage: no broker restart,
#                                           # 3 s sessions, a few minutes
#
# With durable storage it takes 15-20 minutes (30 s sessions: a restore from
# Tansu's SQLite storage takes 10-20 s), plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."
DRIFTLINE_TANSU=${DRIFTLINE_TANSU:-$(scripts/install-tansu.sh)}
export DRIFTLINE_TANSU
cargo test --test kafka chaos:: -- --ignored --nocapture --test-threads=1 2>&1 |
    tee "${CHAOS_LOG:-/tmp/driftline-chaos.log}" |
    grep -E "^(kill|second instance|broker restarted|chaos summary|LOST|test )"
