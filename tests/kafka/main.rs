//! Real-broker tests: `driftline serve` against Tansu brokers started per
//! test (`DRIFTLINE_TANSU` names the binary, `scripts/install-tansu.sh`
//! builds it). One binary, so tract, arrow and librdkafka are linked once
//! for all of them; [`common`] is the harness they share.

mod common;

mod crash;
mod dlq;
mod drift;
mod feature_updates;
mod lifecycle;
mod predictions;
mod rebalance;
mod selftest;
