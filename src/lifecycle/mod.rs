//! Model lifecycle: versions, routing between them, rollouts with gates,
//! and the shared state that makes every instance agree.
//!
//! # Layout
//!
//! - [`registry`]: a model's versions on disk (`models/<name>/<version>/`),
//!   every check a version passes before it may take traffic (manifest,
//!   signature, input contract, reference profile, graph and dry run) with
//!   typed refusals, and a polling watcher that reports new versions.
//! - [`routing`]: the immutable routing table (primary, candidate in shadow
//!   or canary, salt) and its atomic swap between batches.
//! - [`plan`]: the `[lifecycle]` configuration and compiled rollout plans.
//! - [`gates`]: gate readings and verdicts, and the streaming shadow-pair
//!   and score-distribution accumulators.
//! - [`rollout`]: the pure state machine (start, check, manual commands).
//! - [`state`]: the durable record in the compacted state topic, how writers
//!   are ordered, and the `model-events` message format.
//! - [`command`]: `driftline model keygen | sign | verify`.
//!
//! Signing itself is [`crate::score::signature`]; the Kafka wiring, the
//! admin endpoints and the demo use these pieces from the serving loop.

pub mod command;
pub mod gates;
pub mod plan;
pub mod registry;
pub mod rollout;
pub mod routing;
pub mod state;
