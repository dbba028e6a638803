//! # driftline load tests
//!
//! Sustained events/s and tail latency "event produced → prediction
//! readable" of driftline on a real Kafka-protocol broker (Tansu), measured
//! in the same command against a pass-through baseline (a bare consume →
//! produce loop with driftline's client settings), so every figure comes
//! with its ratio to what the broker allows on this machine.
//!
//! What each part guarantees:
//!
//! - [`schedule`]: the open-loop send schedule; an event's scheduled send
//!   time depends only on its sequence number (no coordinated omission).
//! - [`eventid`]: event ids `lt-<seq>` and a byte scan that finds them in
//!   predictions and in raw events.
//! - [`seqset`]: one bit per event; every event is counted once as
//!   received, later copies as duplicates; what never came out is lost.
//! - [`saturation`]: when a rate step counts as kept up; the saturation
//!   throughput is the highest step before the first that fell behind.
//! - [`acks`]: the pass-through's at-least-once rule (commit an offset only
//!   once everything up to it is acknowledged).
//! - [`scenario`]: `scenario.toml`, validated, turned into one plan used
//!   for both systems.
//! - [`measure`]: generator, reader and monitor threads of one run.
//! - [`procs`], [`broker`]: child processes killed on every error path.
//! - [`snapshot`]: store snapshots of the generator's own cards.
//! - [`report`]: ratios, `report.md`, `report.json`, `.hgrm`, `latency.svg`.
//! - [`run`]: the `loadtest run` command.
//! - [`stacks`]: `perf script` samples summed per thread and per scoring
//!   stage (`loadtest stacks`, used by `loadtests/profile.sh`).

pub mod acks;
pub mod broker;
pub mod eventid;
pub mod measure;
pub mod procs;
pub mod report;
pub mod run;
pub mod saturation;
pub mod scenario;
pub mod schedule;
pub mod seqset;
pub mod snapshot;
pub mod stacks;
