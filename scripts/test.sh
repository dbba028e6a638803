#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, build, every test.
#
# Needs only the Rust toolchain (rustup's cargo, rustfmt, clippy). Python is
# not needed: the models and their onnxruntime fixtures are committed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit, integration, golden parity; benches run once as smoke tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --all-targets 2>&1 | tee "$log"

# One closing line over every test binary, so a run that executed nothing is visible.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log"
