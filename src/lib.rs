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
//! - [`source`]: getting events in; [`source::decode`] turns JSON bytes into an [`event::Event`].
//! - [`features`]: the online feature store ([`features::store`]), its snapshot
//!   loaders ([`features::snapshot`]) and per-entity streaming aggregates
//!   ([`features::aggregates`]).
//! - [`enrich`]: builds a model's input row from the event, the store, the
//!   aggregates and declared defaults; every failure is a typed reason code.
//! - [`score`]: model directories, manifests and tract execution on batches.
//! - [`pipeline`]: decode → enrich → score over a batch, the in-process hot path.
//! - [`app`]: assembly of model, store and aggregator from a config (and `validate`).
//! - [`config`]: the service configuration, its environment overrides and validation.
//! - [`demo`]: the synthetic fraud-event generator and the `driftline demo` runner.
//! - [`shutdown`]: SIGINT/SIGTERM handling shared by every long-running command.
//! - [`serve`]: the Kafka loop of `driftline serve`: consumer group, micro-batches,
//!   rebalances, aggregate changelog, feature-updates follower, shutdown.
//! - [`sink`]: Kafka out (predictions, DLQ, changelog) and the offset tracker
//!   that decides what may be committed.
//! - [`drift`]: drift statistics, exact and from mergeable per-column window sketches.
//! - [`lifecycle`]: model versions and their validation, routing between a
//!   primary and a shadow or canary candidate, rollout plans with gates,
//!   automatic rollback, and the shared lifecycle state.
//! - [`admin`]: the admin HTTP port (metrics, health, readiness, lookups).
//! - [`telemetry`]: logging set-up and the Prometheus metric names.
//!
//! The binary (`src/main.rs`) only parses the command line, loads configuration,
//! sets up tracing and calls into these modules.

pub mod admin;
pub mod app;
pub mod config;
pub mod demo;
pub mod drift;
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
pub mod telemetry;
