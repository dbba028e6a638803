#!/usr/bin/env bash
# The chaos run of issue 15 (not part of scripts/test.sh): a producer at about
# 100 events/s (about 9 on durable storage, so that it runs through all kills),
# at least 20 SIGKILLs of `driftline serve` at random moments,
# one broker restart on durable (SQLite) Tansu storage, a second instance
# joining and leaving; then every event must be in `predictions` or the DLQ.
# Prints one "chaos summary:" line (lost, duplicates, DLQ, skipped offsets).
#
#   scripts/chaos.sh            # seed 0xC4A05 (CHAOS_SEED is decimal)
#   CHAOS_SEED=7 scripts/chaos.sh
#   CHAOS_STORAGE=memory scripts/chaos.sh   # memory storage: no broker restart,
#                                           # 3 s sessions, a few minutes
#   CHAOS_STORAGE=postgres scripts/chaos.sh # Tansu on PostgreSQL (Debian's; installed
#                                           # and started when missing, a fresh
#                                           # database with Tansu's schema each run)
#
# With durable storage it takes 15-20 minutes (30 s sessions: a restore from
# Tansu's SQLite storage takes 10-20 s), plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."
DRIFTLINE_TANSU=${DRIFTLINE_TANSU:-$(scripts/install-tansu.sh)}
export DRIFTLINE_TANSU
if [ "${CHAOS_STORAGE:-}" = postgres ]; then
    if ! command -v pg_ctlcluster >/dev/null; then
        apt-get install -y -q postgresql >&2
    fi
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
    as_postgres() { su postgres -c "$1" >/dev/null; }
    su postgres -c "psql -q" >/dev/null <<'SQL'
do $$ begin
    if not exists (select from pg_roles where rolname = 'tansu') then
        create role tansu login password 'tansu';
    end if;
end $$;
SQL
    as_postgres "dropdb --if-exists tansu_chaos"
    as_postgres "createdb -O tansu tansu_chaos"
    PGPASSWORD=tansu psql -q -h 127.0.0.1 -U tansu -d tansu_chaos -f scripts/tansu-postgres-schema.sql >/dev/null
    CHAOS_STORAGE="postgres://tansu:tansu@127.0.0.1/tansu_chaos?sslmode=disable"
    export CHAOS_STORAGE
fi
cargo test --test kafka chaos:: -- --ignored --nocapture --test-threads=1 2>&1 |
    tee "${CHAOS_LOG:-/tmp/driftline-chaos.log}" |
    grep -E "^(kill|second instance|broker restarted|chaos summary|LOST|test )"
