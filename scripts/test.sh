#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, build, every test.
#
# Needs the Rust toolchain (rustup's cargo, rustfmt, clippy) and python3 with
# venv, for the Kubernetes manifest check only (scripts/check-kubernetes.sh
# installs its pinned packages from PyPI once); the models and their
# onnxruntime fixtures are committed. The Kafka tests' broker (Tansu) is built
# from crates.io on first use and cached (scripts/install-tansu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (the whole workspace: driftline and loadtests/, all targets, warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "Tansu test broker for the Kafka tests (built once, then cached)"
# The real-broker tests (tests/kafka/) start their own Tansu brokers;
# DRIFTLINE_TANSU points them at the binary.
DRIFTLINE_TANSU=$(scripts/install-tansu.sh)
export DRIFTLINE_TANSU
echo "DRIFTLINE_TANSU=$DRIFTLINE_TANSU"

step "Prometheus and promtool for the observability tests (Debian package, when missing)"
# tests/cli/prometheus.rs runs a real Prometheus against driftline and promtool on its output.
DRIFTLINE_PROMETHEUS_DIR=$(scripts/install-prometheus.sh)
export DRIFTLINE_PROMETHEUS_DIR
echo "DRIFTLINE_PROMETHEUS_DIR=$DRIFTLINE_PROMETHEUS_DIR"

step "chromium for the browser test of the report and live pages (Debian package, when missing)"
# tests/cli/report_browser.rs opens both pages in headless chromium.
DRIFTLINE_CHROMIUM=$(scripts/install-chromium.sh)
export DRIFTLINE_CHROMIUM
echo "DRIFTLINE_CHROMIUM=$DRIFTLINE_CHROMIUM"

step "Kubernetes manifests against the Kubernetes and CRD schemas (kubernetes-validate from PyPI, venv cached)"
# docker/kubernetes/: strict schema validation, then broken copies that must
# be rejected. tests/cli/kubernetes_assets.rs cross-checks them against the binary.
scripts/check-kubernetes.sh

step "cargo test (workspace: unit, integration, real-broker, golden parity, load-test unit tests; benches run once as smoke tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --workspace --all-targets 2>&1 | tee "$log"

# One closing line over every test binary, so a run that executed nothing is visible.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log"
