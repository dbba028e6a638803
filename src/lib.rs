//! # driftline
//!
//! Streaming inference and drift monitoring: feature events in, scores out,
//! with the online feature store and streaming aggregates in process.
//!
//! # Layout
//!
//! The folders follow the data path of one event:
//!
//! - [`event`]: the records that flow between stages (decoded events, feature values).
//! - [`consumer`]: Kafka in: client settings ([`consumer::config`]), the
//!   consumer group's context that hands rebalances to the loop
//!   ([`consumer::context`]), micro-batch buffering ([`consumer::batch`]),
//!   and the follower of whole topics ([`consumer::follower`]).
//! - [`source`]: decoding: JSON events ([`source::decode`]), Arrow IPC
//!   batch messages ([`source::arrow`]) and labels ([`source::labels`]).
//! - [`features`]: the online feature store ([`features::store`]), its snapshot
//!   loader ([`features::snapshot`]) and per-entity streaming aggregates
//!   ([`features::aggregates`]).
//! - [`enrich`]: builds a model's input row from the event, the store, the
//!   aggregates and declared defaults; every failure is a typed reason code.
//! - [`score`]: model directories, manifests and tract execution on batches.
//! - [`pipeline`]: decode → enrich → score over a batch, the in-process hot path.
//! - [`serve`]: the loop of `driftline serve` and `driftline demo`
//!   ([`serve::start`]): the worker (batches, checkpoints, commits,
//!   rebalances), the aggregate changelog, the `feature-updates` and
//!   `labels` followers, the drift wiring, shutdown.
//! - [`sink`]: Kafka out (predictions, DLQ, changelog) and the offset tracker
//!   that decides what may be committed.
//! - [`drift`]: drift statistics, exact and from mergeable per-column window
//!   sketches; reference profiles; the windowed monitor ([`drift::monitor`])
//!   and the label join ([`drift::labels`]). Drift sees numbers, not models:
//!   it watches the columns it is given ([`drift::columns`]).
//! - [`status`]: the state the loop shares with the admin API and the demo.
//! - [`lifecycle`]: model versions and their validation, routing between a
//!   primary and a shadow or canary candidate, rollout plans with gates,
//!   automatic rollback, and the shared lifecycle state.
//! - [`admin`]: the admin HTTP port (metrics, health, readiness, lookups,
//!   the live page) and the drift view's HTML ([`admin::ui`]), shared with
//!   `driftline report`.
//! - [`app`]: assembly of model, store and aggregator from a config (and
//!   `validate`), and the offline commands: [`app::score_lines`]
//!   (`driftline score`), [`app::profile`] (`driftline profile`) and
//!   [`app::report`] (`driftline report`).
//! - [`config`]: the service configuration, its environment overrides and validation.
//! - [`demo`]: the synthetic fraud-event generator and the `driftline demo` runner.
//! - [`tabular`]: one reader for Parquet, Arrow IPC and CSV files.
//! - [`duration`]: durations as written in config and manifests (`5ms`, `1h`).
//! - [`shutdown`]: SIGINT/SIGTERM handling shared by every long-running command.
//! - [`telemetry`]: logging set-up and the Prometheus metric names (a leaf:
//!   it imports nothing from the crate).
//!
//! The binary (`src/main.rs`) only parses the command line, loads configuration,
//! sets up tracing and calls into these modules.
//!
//! Which module may import which is checked by a test (`tests/cli/layout.rs`):
//! drift, score, features, enrich and source import no Kafka, HTTP or
//! telemetry types; drift imports nothing from score, enrich or the
//! feature store, snapshots and aggregates; telemetry imports nothing from
//! the crate.

pub mod admin;
pub mod app;
pub mod config;
pub mod consumer;
pub mod demo;
pub mod drift;
pub mod duration;
pub mod enrich;
pub mod event;
pub mod features;
pub mod lifecycle;
pub mod pipeline;
pub mod score;
pub mod serve;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod status;
pub mod tabular;
pub mod telemetry;
