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
cargo test --locked --all-targets

step "doc tests"
cargo test --locked --doc
