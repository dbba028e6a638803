//! The scoring side of the Kafka loop: micro-batches in, predictions and DLQ
//! records out, aggregate state checkpointed, offsets committed.
//!
//! Guarantees:
//! - every input record yields its outputs (one per event; an Arrow batch
//!   message one per row) before its offset can be committed, through the
//!   [`Tracker`];
//! - inputs are handled in the order they were polled, so per-partition (and
//!   so per-entity) order is kept;
//! - aggregate state follows partitions: on revoke the state of the
//!   partition's entities is checkpointed to the changelog, its outputs
//!   flushed and offsets committed synchronously, then the state is dropped;
//!   on assign it is restored from the changelog before the partition's
//!   first record is scored;
//! - an event at or before the offset a restored entity's state already
//!   holds (a replay after a crash) is scored against that state without
//!   being counted again;
//! - per-entity offset marks follow the aggregates: an entity evicted from
//!   them gets a changelog tombstone at the next checkpoint, which drops its
//!   mark; the marks' estimated bytes stay within
//!   `aggregates.max_mark_bytes`: past it, the marks of entities already
//!   gone are tombstoned at once, and if the live ones alone are too many,
//!   the entities with the oldest marks leave the aggregates with them
//!   (tombstoned too), down to 7/8 of the bound, so a sweep is paid for by
//!   an eighth of the bound's growth; the restore is bounded by progress,
//!   not in total.
//! - with a model lifecycle, a batch is routed by one routing table, taken
//!   once per batch: a canary entity's events are scored by the candidate
//!   alone, a shadowed entity's by the primary (published) and the
//!   candidate (to `predictions-shadow`), so every event counts once in
//!   the aggregates and yields one published prediction; predictions of a
//!   batch are sent in input order whichever version scored them;
//! - the candidate's shadow sees the aggregate inputs the primary saw for
//!   the same event: the primary scores first and captures, per shadowed
//!   event, the aggregates as of that event into an [`AggregateTap`]; the
//!   candidate encodes those values and never touches the aggregator
//!   (so it cannot fold an event in a second time). A candidate on another
//!   aggregator reads its own, as of the end of the primary's batch,
//!   without folding in; every pipeline here shares the loop's one;
//! - a rollout's candidate drift monitor, when the hub asks for one, is fed
//!   every event the candidate scored (shadowed or served, replays
//!   excepted) from a recorder this loop owns: no lock, no allocation per
//!   event, nothing added to the primary's path; it is started when a
//!   table first routes to the candidate and dropped (its evaluator thread
//!   ends) when a table no longer does.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::consumer::batch::Batch;
use crate::consumer::context::{Reader, Rebalancing};
use crate::consumer::follower::{read_to_end, FollowError};
use crate::drift::labels::LabelJoin;
use crate::drift::monitor::Recorder;
use crate::event::{now_ms, RejectReason, Rejection};
use crate::features::aggregates::Aggregator;
use crate::features::store::FeatureStore;
use crate::lifecycle::routing::{Route, RoutingTable, Variant};
use crate::pipeline::{AggregateTap, BatchOutput, Decoded, Pipeline, Tap};
use crate::serve::changelog::Record;
use crate::serve::drift::CandidateDrift;
use crate::serve::lifecycle::{BatchReadings, Hub, VariantBatch};
use crate::sink::offsets::{Token, Tracker};
use crate::sink::{prediction_headers, Prediction, Sink, SinkError, Source};
use crate::source::arrow::decode_arrow_batch_with;
use crate::source::decode::decode_json_with;
use crate::status::Shared;
use crate::telemetry::metrics::{self, LoopMetrics, VariantMetrics};

/// Topic names the worker writes to.
#[derive(Debug, Clone)]
pub struct Topics {
    pub features: String,
    pub predictions: String,
    pub dlq: String,
    pub changelog: String,
    /// Shadow predictions (`""`: not published).
    pub predictions_shadow: String,
}

/// Limits and timings of the worker (input limits are the pipeline's,
/// [`Pipeline::input_limits`]).
#[derive(Debug, Clone)]
pub struct Limits {
    pub batch_size: usize,
    /// The changelog restore fails after this long without progress.
    pub restore_stall: Duration,
    pub flush_timeout: Duration,
    /// `aggregates.max_mark_bytes`.
    pub max_mark_bytes: usize,
}

/// What one offset mark counts against `aggregates.max_mark_bytes`: its
/// map entry at the table's 7/8 load, its id past the inline 24 bytes (in
/// the map and once more in the dirty list) and its dirty-list slot.
fn mark_bytes(id_len: usize) -> usize {
    let heap_id = if id_len > 24 { id_len } else { 0 };
    (std::mem::size_of::<(CompactString, Mark)>() + 1) * 8 / 7
        + std::mem::size_of::<CompactString>()
        + 2 * heap_id
}

/// Aggregate bookkeeping of one entity.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Input offset of the newest event folded into the entity's state.
    offset: i64,
    dirty: bool,
}

#[derive(Debug, Default)]
struct PartitionState {
    marks: HashMap<CompactString, Mark, foldhash::fast::RandomState>,
    /// Sum of [`mark_bytes`] of `marks`.
    mark_bytes: usize,
    dirty: Vec<CompactString>,
    /// Last offset sent in a commit.
    committed: i64,
    /// Offset of the newest record polled, to notice gaps.
    polled: Option<i64>,
    /// The group's committed offset when the partition was assigned: where
    /// its first record should be.
    resume_at: Option<i64>,
    /// Newest event time read from the partition: idle expiry never runs
    /// ahead of the slowest partition (one read far ahead must not expire
    /// the entities of one that lags behind).
    event_time: Option<i64>,
}

/// An output waiting to be sent: where its input was, and what it is.
enum Pending {
    Dlq {
        item: usize,
        row: Option<usize>,
        rejection: Rejection,
        /// The row rendered as JSON, for rows of batch messages.
        value: Option<Vec<u8>>,
    },
}

/// The scoring loop's state. Lives in the consumer context behind a mutex,
/// so that rebalance callbacks (which run inside `poll`) can drain it.
pub struct Worker {
    pipeline: Pipeline,
    out: BatchOutput,
    batch: Batch,
    sink: Arc<Sink>,
    tracker: Arc<Tracker>,
    topics: Topics,
    limits: Limits,
    model: String,
    version: String,
    aggregator: Option<Arc<Aggregator>>,
    store: Option<Arc<FeatureStore>>,
    partitions: HashMap<i32, PartitionState>,
    /// Reads changelog partitions on assignment; never subscribed.
    restorer: Reader,
    metrics: LoopMetrics,
    shared: Arc<Shared>,
    labels: Option<Arc<LabelJoin>>,
    lifecycle: Option<Arc<Hub>>,
    /// Pipelines of versions other than the one the service started with.
    others: HashMap<Arc<str>, Pipeline>,
    variant_metrics: HashMap<(Arc<str>, Variant), VariantMetrics>,
    /// The batch's versions: primary, and the candidate when it scored.
    primary_version: Arc<str>,
    candidate_version: Option<Arc<str>>,
    /// The version whose pipeline holds the drift recorder: the primary.
    drift_at: Arc<str>,
    /// `version`, shared.
    configured: Arc<str>,
    /// The rollout (candidate version, routing salt) the candidate drift
    /// monitor was decided for, and its recorder when the hub wanted one.
    candidate_drift_for: Option<(Arc<str>, u64)>,
    candidate_recorder: Option<Recorder>,
    /// `out.scored[..canary_from]` came from the primary, the rest from the canary.
    canary_from: usize,
    shadow_out: BatchOutput,
    /// The aggregates the primary read for the batch's shadowed events,
    /// for the candidate's shadow to encode (reused across batches).
    tap: AggregateTap,
    pairs: Vec<(f32, f32)>,
    // Per-batch scratch, reused.
    slots: Vec<(usize, Option<usize>)>,
    outputs: Vec<u32>,
    pending: Vec<Pending>,
    value: Vec<u8>,
    latencies_us: Vec<u64>,
    /// Offset marks removed: their entity had left the aggregates; to stay
    /// within `aggregates.max_mark_bytes`.
    marks_dropped_evicted: u64,
    marks_dropped_bytes: u64,
}

/// Which version's role a [`Worker::score_variant`] call scores for.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The primary: published.
    Served,
    /// The candidate beside the primary: to `predictions-shadow`.
    Shadow,
    /// The candidate alone: published.
    Canary,
}

/// What a [`Worker::score_variant`] call does with the worker's
/// [`AggregateTap`] (see [`Tap`]). Capture and read happen in the same
/// batch, capture first: the tap holds one batch's values only.
#[derive(Debug, Clone, Copy)]
enum TapUse {
    None,
    Capture,
    Read,
}

/// Errors that stop the loop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("restoring aggregate state: {0}")]
    Restore(#[from] FollowError),
    #[error("a delivery failed for good ({0}); stopping without committing past it")]
    Delivery(String),
}

/// What the worker is built from.
pub struct WorkerParts {
    pub pipeline: Pipeline,
    pub sink: Arc<Sink>,
    pub topics: Topics,
    pub limits: Limits,
    pub aggregator: Option<Arc<Aggregator>>,
    pub store: Option<Arc<FeatureStore>>,
    pub restorer: Reader,
    pub shared: Arc<Shared>,
    /// Scored predictions wait here for their labels.
    pub labels: Option<Arc<LabelJoin>>,
    /// The model lifecycle: routing between versions, gate readings.
    pub lifecycle: Option<Arc<Hub>>,
}

impl Worker {
    pub fn new(p: WorkerParts) -> Self {
        let model = p.pipeline.model().name().to_string();
        let version = p.pipeline.model().version().to_string();
        let served: Arc<str> = version.as_str().into();
        let reasons = RejectReason::ALL.map(RejectReason::code);
        let metrics = LoopMetrics::new(&p.topics.features, &model, &version, &reasons);
        Worker {
            tracker: p.sink.tracker().clone(),
            pipeline: p.pipeline,
            out: BatchOutput::default(),
            batch: Batch::default(),
            sink: p.sink,
            topics: p.topics,
            limits: p.limits,
            model,
            version,
            aggregator: p.aggregator,
            store: p.store,
            partitions: HashMap::new(),
            restorer: p.restorer,
            metrics,
            shared: p.shared,
            labels: p.labels,
            lifecycle: p.lifecycle,
            others: HashMap::new(),
            variant_metrics: HashMap::new(),
            primary_version: served.clone(),
            candidate_version: None,
            drift_at: served.clone(),
            configured: served,
            candidate_drift_for: None,
            candidate_recorder: None,
            canary_from: 0,
            shadow_out: BatchOutput::default(),
            tap: AggregateTap::default(),
            pairs: Vec::new(),
            slots: Vec::new(),
            outputs: Vec::new(),
            pending: Vec::new(),
            value: Vec::new(),
            latencies_us: Vec::new(),
            marks_dropped_evicted: 0,
            marks_dropped_bytes: 0,
        }
    }

    /// Adds a polled record; scores the batch when it is full.
    pub fn push(&mut self, m: &BorrowedMessage<'_>) -> Result<(), WorkerError> {
        if let Some(part) = self.partitions.get_mut(&m.partition()) {
            // The offset this record should have: one past the previous
            // record, or, for the first record after an assignment, the
            // group's committed position. Compaction, transaction markers
            // and retention leave gaps legitimately; anything else means
            // the broker never delivered those records, which at least
            // once cannot hide, so it is logged and counted.
            let (expected, after) = match part.polled {
                Some(last) => (Some(last + 1), "the previous record"),
                None => (part.resume_at, "the committed position"),
            };
            if let Some(expected) = expected.filter(|&e| m.offset() > e) {
                let skipped = m.offset() - expected;
                self.metrics.skipped.increment(skipped as u64);
                tracing::warn!(
                    partition = m.partition(),
                    expected,
                    offset = m.offset(),
                    skipped,
                    "input offsets skipped: the record after {after} is further on"
                );
            }
            part.polled = Some(m.offset());
        }
        self.batch.push(m);
        // An Arrow message closes its batch: its rows are bounded one
        // message at a time, so two in one batch would double the bound.
        if self.batch.events >= self.limits.batch_size
            || self.batch.items.last().is_some_and(|i| i.arrow)
        {
            self.process()?;
        }
        Ok(())
    }

    /// When the open batch's latency budget runs out, if there is one.
    pub fn batch_started(&self) -> Option<Instant> {
        self.batch.first_at
    }

    /// Scores the open batch and enqueues its outputs.
    pub fn process(&mut self) -> Result<(), WorkerError> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        if let Some(failure) = self.tracker.failure() {
            return Err(WorkerError::Delivery(failure));
        }
        let now = now_ms();
        let n = self.batch.items.len();
        self.slots.clear();
        self.pending.clear();
        self.outputs.clear();
        self.outputs.resize(n, 0);
        let mut decoded = Vec::with_capacity(self.batch.events);
        let mut replayed = 0u64;
        let json_limits = self.pipeline.input_limits().decode();
        let batch_limits = self.pipeline.input_limits().batch();
        for (i, item) in self.batch.items.iter().enumerate() {
            let payload = self.batch.slice(item.payload).unwrap_or_default();
            let mut accept = |event: crate::event::Event, row: Option<usize>| {
                // One lookup both notes the entity's newest offset for the
                // next checkpoint and tells a replay (an offset its
                // restored state already holds) from a new event.
                let observe = match (&self.aggregator, self.partitions.get_mut(&item.partition)) {
                    (Some(_), Some(part)) => {
                        if let Some(ts) = event.ts_ms.or(item.timestamp_ms) {
                            part.event_time = Some(part.event_time.map_or(ts, |t| t.max(ts)));
                        }
                        mark(part, &event.entity_id, item.offset)
                    }
                    _ => true,
                };
                replayed += u64::from(!observe);
                let index = self.slots.len();
                self.slots.push((i, row));
                decoded.push(Decoded {
                    index,
                    event,
                    broker_ts: item.timestamp_ms,
                    observe,
                    monitor: observe,
                    shadowed: false,
                });
            };
            if item.arrow {
                match decode_arrow_batch_with(payload, &batch_limits) {
                    Ok(rows) => {
                        self.outputs[i] = rows.len() as u32;
                        for (r, row) in rows.into_iter().enumerate() {
                            match row {
                                Ok(event) => accept(event, Some(r)),
                                Err((rejection, value)) => self.pending.push(Pending::Dlq {
                                    item: i,
                                    row: Some(r),
                                    rejection,
                                    value: Some(value),
                                }),
                            }
                        }
                    }
                    Err(rejection) => {
                        self.outputs[i] = 1;
                        self.pending.push(Pending::Dlq {
                            item: i,
                            row: None,
                            rejection,
                            value: None,
                        });
                    }
                }
            } else {
                self.outputs[i] = 1;
                match decode_json_with(payload, json_limits) {
                    Ok(event) => accept(event, None),
                    Err(rejection) => self.pending.push(Pending::Dlq {
                        item: i,
                        row: None,
                        rejection,
                        value: None,
                    }),
                }
            }
        }
        // Registered before anything is sent, so no report can precede it.
        self.tracker.register(
            self.batch
                .items
                .iter()
                .zip(&self.outputs)
                .map(|(it, &n)| (it.partition, it.offset, n)),
        );
        tracing::trace!(
            items = n,
            first = ?self.batch.items.first().map(|i| (i.partition, i.offset)),
            last = ?self.batch.items.last().map(|i| (i.partition, i.offset)),
            "scoring a batch"
        );
        let events = decoded.len();
        let started = Instant::now();
        self.out.clear();
        self.shadow_out.clear();
        let table = self.lifecycle.as_ref().map(|h| h.router.current());
        match table.filter(|t| t.candidate().is_some() || t.primary() != self.version) {
            Some(table) => self.score_routed(&table, decoded, now),
            None => {
                self.follow_candidate_drift(None);
                let configured = self.configured.clone();
                self.move_drift(&configured);
                self.pipeline.score_events(decoded, now, &mut self.out);
                self.primary_version = configured;
                self.candidate_version = None;
                self.canary_from = self.out.scored.len();
                let batch = VariantBatch {
                    events: events as u64,
                    rejected: self.out.rejected.len() as u64,
                    elapsed: started.elapsed(),
                };
                let version = self.primary_version.clone();
                self.record_variant(&version, Variant::Primary, &batch);
            }
        }
        self.metrics
            .inference
            .record(started.elapsed().as_secs_f64());
        self.metrics.batch_events.record(events as f64);
        self.send_outputs(now)?;
        self.send_shadow()?;
        self.bound_marks()?;
        if let Some(join) = self.labels.as_ref().filter(|j| j.following()) {
            let (primary, canary) = self.out.scored.split_at(self.canary_from);
            let versions = [Some(&self.primary_version), self.candidate_version.as_ref()];
            for (scored, version) in [primary, canary].into_iter().zip(versions) {
                if let (false, Some(version)) = (scored.is_empty(), version) {
                    join.record(
                        scored
                            .iter()
                            .map(|s| (s.event.event_id.as_str(), s.score, s.ts_ms)),
                        version,
                    );
                }
            }
        }
        let consumed: u64 = self.outputs.iter().map(|&n| u64::from(n.max(1))).sum();
        self.metrics.consumed.increment(consumed);
        self.metrics.replayed.increment(replayed);
        self.batch.clear();
        Ok(())
    }

    /// Scores a batch routed by `table` (see the module's guarantees).
    fn score_routed(&mut self, table: &RoutingTable, decoded: Vec<Decoded>, now: i64) {
        let primary_ok = self.ensure_pipeline(table.primary());
        // A version this instance could not load takes no traffic here:
        // the configured primary serves, and /readyz says why.
        let primary: Arc<str> = match primary_ok {
            true => table.primary().into(),
            false => self.configured.clone(),
        };
        self.move_drift(&primary);
        // Versions leave a table for good once replaced (a rollback or a
        // new rollout loads them again): keep the pipelines it routes to.
        self.others
            .retain(|v, _| **v == *primary || table.candidate().is_some_and(|c| c.version == *v));
        let candidate = table
            .candidate()
            .filter(|c| self.ensure_pipeline(&c.version))
            .map(|c| c.version.clone());
        self.follow_candidate_drift(candidate.clone().map(|c| (c, table.salt())));
        let mut primary_events = Vec::with_capacity(decoded.len());
        let mut canary_events = Vec::new();
        let mut shadow_events = Vec::new();
        for d in decoded {
            let route = match candidate {
                Some(_) => table.route(&d.event.entity_id),
                None => Route::Primary,
            };
            match route {
                Route::Primary => primary_events.push(d),
                Route::Canary => canary_events.push(d),
                Route::Shadowed => {
                    let d = Decoded {
                        shadowed: true,
                        ..d
                    };
                    // `observe = false` only matters when the candidate
                    // reads live (another aggregator): the primary folds
                    // the event in.
                    shadow_events.push(Decoded {
                        observe: false,
                        ..d.clone()
                    });
                    primary_events.push(d);
                }
            }
        }
        // The primary goes first and captures the aggregates as of each
        // shadowed event; the shadow then encodes exactly those (as of its
        // own event, not of the batch's start or end).
        let (capture, read) = match shadow_events.is_empty() {
            true => (TapUse::None, TapUse::None),
            false => (TapUse::Capture, TapUse::Read),
        };
        let served =
            self.score_variant(Some(&primary), primary_events, now, Target::Served, capture);
        let shadow = self.score_variant(
            candidate.as_deref(),
            shadow_events,
            now,
            Target::Shadow,
            read,
        );
        self.canary_from = self.out.scored.len();
        let canary = self.score_variant(
            candidate.as_deref(),
            canary_events,
            now,
            Target::Canary,
            TapUse::None,
        );
        self.record_variant(&primary, Variant::Primary, &served);
        if let Some(c) = &candidate {
            self.record_variant(c, Variant::Shadow, &shadow);
            self.record_variant(c, Variant::Canary, &canary);
        }
        self.pairs.clear();
        let mut primary_scored = self.out.scored[..self.canary_from].iter().peekable();
        for s in &self.shadow_out.scored {
            while primary_scored.next_if(|p| p.index < s.index).is_some() {}
            if let Some(p) = primary_scored.next_if(|p| p.index == s.index) {
                self.pairs.push((p.score, s.score));
            }
        }
        if let (Some(hub), Some(_)) = (&self.lifecycle, &candidate) {
            let primary_scores: Vec<f32> = match canary.events {
                0 => Vec::new(),
                _ => self.out.scored[..self.canary_from]
                    .iter()
                    .map(|s| s.score)
                    .collect(),
            };
            let canary_scores: Vec<f32> = self.out.scored[self.canary_from..]
                .iter()
                .map(|s| s.score)
                .collect();
            hub.record_batch(&BatchReadings {
                primary: served,
                candidate: VariantBatch {
                    events: shadow.events + canary.events,
                    rejected: shadow.rejected + canary.rejected,
                    elapsed: shadow.elapsed + canary.elapsed,
                },
                pairs: &self.pairs,
                primary_scores: &primary_scores,
                canary_scores: &canary_scores,
            });
        }
        self.primary_version = primary;
        self.candidate_version = candidate;
    }

    /// Scores `events` with `version` into `out` (`shadow_out` for the
    /// shadow), using the aggregate tap as `tap` says; the candidate's
    /// scored events go to its drift monitor, if it has one.
    fn score_variant(
        &mut self,
        version: Option<&str>,
        events: Vec<Decoded>,
        now: i64,
        target: Target,
        tap: TapUse,
    ) -> VariantBatch {
        let (Some(version), false) = (version, events.is_empty()) else {
            return VariantBatch::default();
        };
        let out = match target {
            Target::Shadow => &mut self.shadow_out,
            Target::Served | Target::Canary => &mut self.out,
        };
        let pipeline = if version == self.version {
            &mut self.pipeline
        } else {
            match self.others.get_mut(version) {
                Some(p) => p,
                None => &mut self.pipeline,
            }
        };
        let candidate = matches!(target, Target::Shadow | Target::Canary);
        let recorder = self.candidate_recorder.as_mut().filter(|_| candidate);
        let tap = match tap {
            TapUse::None => Tap::None,
            TapUse::Capture => Tap::Capture(&mut self.tap),
            TapUse::Read => Tap::Read(&self.tap),
        };
        let n = events.len() as u64;
        let rejected = out.rejected.len();
        let started = Instant::now();
        pipeline.score_events_with(events, now, out, recorder, tap);
        VariantBatch {
            events: n,
            rejected: (out.rejected.len() - rejected) as u64,
            elapsed: started.elapsed(),
        }
    }

    /// The pipeline of `version` (the configured one when it has none).
    fn pipeline_of(&mut self, version: &str) -> &mut Pipeline {
        if version == self.version {
            return &mut self.pipeline;
        }
        match self.others.get_mut(version) {
            Some(p) => p,
            None => &mut self.pipeline,
        }
    }

    /// Moves the drift recorder to the pipeline of the serving primary, so
    /// that drift keeps watching the inputs and scores that are served
    /// (against the reference of the version the service started with).
    fn move_drift(&mut self, primary: &Arc<str>) {
        if self.drift_at == *primary {
            return;
        }
        let from = self.drift_at.clone();
        if let Some(recorder) = self.pipeline_of(&from).take_recorder() {
            self.pipeline_of(primary).set_recorder(recorder);
        }
        self.drift_at = primary.clone();
    }

    /// Starts, keeps or drops the candidate's drift monitor so that it
    /// follows `rollout` (the candidate version taking traffic and the
    /// table's salt, one per rollout): a comparison when nothing changed,
    /// which is every batch but the first of a rollout and the first
    /// after it.
    fn follow_candidate_drift(&mut self, rollout: Option<(Arc<str>, u64)>) {
        if self.candidate_drift_for == rollout {
            return;
        }
        let Some(hub) = self.lifecycle.clone() else {
            return;
        };
        // Dropping the recorder ends its evaluator; the hub keeps what it
        // found for `/v1/models` until the next rollout's monitor starts.
        if let Some((version, _)) = self.candidate_drift_for.take() {
            if self.candidate_recorder.take().is_some() {
                tracing::info!(model = %self.model, %version, "candidate drift monitor stopped");
            }
        }
        self.candidate_drift_for = rollout.clone();
        let Some((version, salt)) = rollout else {
            return;
        };
        let Some(plan) = hub.candidate_drift_plan(&version, salt) else {
            return;
        };
        match CandidateDrift::start(&version, salt, plan) {
            Ok((recorder, monitor)) => {
                self.candidate_recorder = Some(recorder);
                hub.set_candidate_drift(Some(monitor));
                tracing::info!(model = %self.model, %version, "candidate drift monitor started");
            }
            Err(e) => tracing::error!(
                model = %self.model, %version, error = %e,
                "candidate drift monitor not started; its max_drift_alerts gate stays pending"
            ),
        }
    }

    /// Makes sure a pipeline for `version` exists; false when the version
    /// is not loaded (or its pipeline cannot be built).
    fn ensure_pipeline(&mut self, version: &str) -> bool {
        if version == self.version || self.others.contains_key(version) {
            return true;
        }
        let Some(loaded) = self.lifecycle.as_ref().and_then(|h| h.loaded(version)) else {
            return false;
        };
        let limits = *self.pipeline.input_limits();
        match Pipeline::new(
            &loaded.model,
            self.store.clone(),
            self.aggregator.clone(),
            limits.max_message_bytes,
        ) {
            Ok(mut p) => {
                // A candidate judges the same inputs as the primary: the
                // same decoding, size and time rules.
                p.set_input_limits(limits);
                self.others.insert(version.into(), p);
                true
            }
            Err(e) => {
                tracing::error!(version, error = %e, "no pipeline for a loaded version; its traffic stays on the primary");
                false
            }
        }
    }

    fn record_variant(&mut self, version: &Arc<str>, variant: Variant, b: &VariantBatch) {
        if b.events == 0 {
            return;
        }
        let m = self
            .variant_metrics
            .entry((version.clone(), variant))
            .or_insert_with(|| VariantMetrics::new(&self.model, version, variant.as_str()));
        m.predictions.increment(b.events - b.rejected);
        m.rejections.increment(b.rejected);
        m.scoring.record(b.elapsed.as_secs_f64() / b.events as f64);
    }

    /// Shadow predictions to `predictions-shadow`: outside the offset
    /// tracking (a lost one costs a gate sample, never an input).
    fn send_shadow(&mut self) -> Result<(), WorkerError> {
        let Some(version) = self.candidate_version.clone() else {
            return Ok(());
        };
        if self.shadow_out.scored.is_empty() || self.topics.predictions_shadow.is_empty() {
            return Ok(());
        }
        let headers = prediction_headers(&self.model, &version);
        let sending = Instant::now();
        for s in &self.shadow_out.scored {
            let item = &self.batch.items[self.slots[s.index].0];
            Prediction {
                event_id: &s.event.event_id,
                entity_id: &s.event.entity_id,
                ts_ms: s.ts_ms,
                model: &self.model,
                version: &version,
                variant: Variant::Shadow.as_str(),
                score: s.score,
                latency_us: sending.saturating_duration_since(item.received).as_micros() as u64,
            }
            .write_json(&mut self.value);
            self.sink.send(
                &self.topics.predictions_shadow,
                None,
                Some(s.event.entity_id.as_bytes()),
                Some(&self.value),
                Some(headers.clone()),
                Token::Detached,
            )?;
        }
        Ok(())
    }

    fn send_outputs(&mut self, now: i64) -> Result<(), WorkerError> {
        let primary_headers = prediction_headers(&self.model, &self.primary_version);
        let canary_version = self.candidate_version.clone().unwrap_or_default();
        let canary_headers = prediction_headers(&self.model, &canary_version);
        self.latencies_us.clear();
        // One clock read per batch: its outputs are handed over together.
        let sending = Instant::now();
        // Primary and canary outputs merged back into input order.
        let (primary, canary) = self.out.scored.split_at(self.canary_from);
        let (mut p, mut c) = (primary.iter().peekable(), canary.iter().peekable());
        while let Some((s, canary)) = match (p.peek(), c.peek()) {
            (Some(a), Some(b)) if b.index < a.index => c.next().map(|s| (s, true)),
            (Some(_), _) => p.next().map(|s| (s, false)),
            (None, _) => c.next().map(|s| (s, true)),
        } {
            let (version, variant, headers) = match canary {
                false => (&*self.primary_version, Variant::Primary, &primary_headers),
                true => (&*canary_version, Variant::Canary, &canary_headers),
            };
            let item = &self.batch.items[self.slots[s.index].0];
            let latency_us = sending.saturating_duration_since(item.received).as_micros() as u64;
            Prediction {
                event_id: &s.event.event_id,
                entity_id: &s.event.entity_id,
                ts_ms: s.ts_ms,
                model: &self.model,
                version,
                variant: variant.as_str(),
                score: s.score,
                latency_us,
            }
            .write_json(&mut self.value);
            self.sink.send(
                &self.topics.predictions,
                None,
                Some(s.event.entity_id.as_bytes()),
                Some(&self.value),
                Some(headers.clone()),
                Token::Input {
                    partition: item.partition,
                    offset: item.offset,
                },
            )?;
            if let Some(ts) = item.timestamp_ms {
                self.metrics
                    .end_to_end
                    .record((now - ts).max(0) as f64 / 1000.0);
            }
            self.latencies_us.push(latency_us);
        }
        for r in self.out.rejected.drain(..) {
            let (item, row) = self.slots[r.index];
            let value = match (row, &r.event) {
                (Some(_), Some(event)) => Some(event.to_json()),
                _ => None,
            };
            self.pending.push(Pending::Dlq {
                item,
                row,
                rejection: r.rejection,
                value,
            });
        }
        for p in self.pending.drain(..) {
            let Pending::Dlq {
                item,
                row,
                rejection,
                value,
            } = p;
            let it = &self.batch.items[item];
            let key = self.batch.slice(it.key);
            let value = value.as_deref().or(self.batch.slice(it.payload));
            self.sink.send_dlq(
                &self.topics.dlq,
                key,
                value,
                &rejection,
                Source {
                    topic: &self.topics.features,
                    partition: it.partition,
                    offset: it.offset,
                    row,
                },
                Token::Input {
                    partition: it.partition,
                    offset: it.offset,
                },
            )?;
            self.metrics.dlq(rejection.reason.code());
            self.shared.stats.record_dlq(rejection.reason);
            tracing::debug!(
                reason = rejection.reason.code(),
                detail = %rejection.detail,
                partition = it.partition,
                offset = it.offset,
                "input sent to the DLQ"
            );
        }
        let scored = self.out.scored.len() as u64;
        self.metrics.predictions.increment(scored);
        self.metrics.store_hits.increment(self.out.store_hits);
        self.metrics.store_misses.increment(self.out.store_misses);
        self.metrics.store_expired.increment(self.out.store_expired);
        self.shared.stats.record(scored, &self.latencies_us);
        Ok(())
    }

    /// Writes the state of every entity changed since the last checkpoint
    /// on `only` (or every owned partition) to the changelog.
    pub fn checkpoint(&mut self, only: Option<&[i32]>) -> Result<(), WorkerError> {
        let Some(aggregator) = self.aggregator.clone() else {
            return Ok(());
        };
        for (&p, part) in self.partitions.iter_mut() {
            if only.is_some_and(|o| !o.contains(&p)) {
                continue;
            }
            let dirty = std::mem::take(&mut part.dirty);
            let Some(id) = self.tracker.begin_checkpoint(p, dirty.len() as u32) else {
                continue;
            };
            for entity in dirty {
                let state = aggregator.export_entity(&entity);
                let payload = match (&state, part.marks.get_mut(&entity)) {
                    (Some(state), Some(m)) => {
                        m.dirty = false;
                        Some(
                            Record {
                                offset: m.offset,
                                state: state.clone(),
                            }
                            .encode(),
                        )
                    }
                    // Evicted since: say so, so a restore does not revive it.
                    _ => {
                        if part.marks.remove(&entity).is_some() {
                            part.mark_bytes =
                                part.mark_bytes.saturating_sub(mark_bytes(entity.len()));
                            self.marks_dropped_evicted += 1;
                        }
                        None
                    }
                };
                self.sink.send(
                    &self.topics.changelog,
                    Some(p),
                    Some(entity.as_bytes()),
                    payload.as_deref(),
                    None,
                    Token::Checkpoint { partition: p, id },
                )?;
                self.metrics.changelog_records.increment(1);
            }
        }
        Ok(())
    }

    /// Estimated bytes of the offset marks of every owned partition.
    fn mark_bytes(&self) -> usize {
        self.partitions.values().map(|p| p.mark_bytes).sum()
    }

    /// Keeps the offset marks within `aggregates.max_mark_bytes` (see the
    /// module's guarantees): a no-op under the bound; past it, marks of
    /// entities the aggregates no longer hold are tombstoned, then, if
    /// needed, the entities with the oldest marks of each partition (by
    /// its share of the bytes) leave the aggregates and are tombstoned,
    /// down to 7/8 of the bound.
    fn bound_marks(&mut self) -> Result<(), WorkerError> {
        let max = self.limits.max_mark_bytes;
        if self.mark_bytes() <= max {
            return Ok(());
        }
        let Some(aggregator) = self.aggregator.clone() else {
            return Ok(());
        };
        let target = max / 8 * 7;
        for part in self.partitions.values_mut() {
            let PartitionState { marks, dirty, .. } = part;
            for (id, m) in marks.iter_mut() {
                if !m.dirty && !aggregator.contains(id) {
                    m.dirty = true;
                    dirty.push(id.clone());
                }
            }
        }
        // Tombstones the marks of entities gone (and writes the others
        // that were dirty anyway).
        self.checkpoint(None)?;
        let total = self.mark_bytes();
        if total <= target {
            return Ok(());
        }
        let excess = total - target;
        let mut evicted = Vec::new();
        for part in self.partitions.values_mut() {
            // This partition's share of what must go, rounded up.
            let share = (excess as u128 * part.mark_bytes as u128).div_ceil(total as u128) as usize;
            let mut oldest: Vec<(i64, &CompactString)> =
                part.marks.iter().map(|(id, m)| (m.offset, id)).collect();
            oldest.sort_unstable();
            let mut freed = 0;
            let mut going = Vec::new();
            for (_, id) in oldest {
                if freed >= share {
                    break;
                }
                freed += mark_bytes(id.len());
                going.push(id.clone());
            }
            for id in going {
                if let Some(m) = part.marks.get_mut(&id) {
                    if !m.dirty {
                        m.dirty = true;
                        part.dirty.push(id.clone());
                    }
                }
                evicted.push(id);
            }
        }
        let before: usize = self.partitions.values().map(|p| p.marks.len()).sum();
        aggregator.remove_entities(&evicted);
        let dropped_before = self.marks_dropped_evicted;
        self.checkpoint(None)?;
        // Counted as the bound's doing, not as following an eviction.
        let dropped = self.marks_dropped_evicted - dropped_before;
        self.marks_dropped_evicted = dropped_before;
        self.marks_dropped_bytes += dropped;
        let after: usize = self.partitions.values().map(|p| p.marks.len()).sum();
        tracing::warn!(
            marks = before,
            dropped = before - after,
            bytes = self.mark_bytes(),
            max,
            "offset marks past aggregates.max_mark_bytes: the entities with the oldest marks left the aggregates (tombstoned)"
        );
        Ok(())
    }

    /// Commits every committable offset on `only` (or every owned partition).
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
        only: Option<&[i32]>,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut advanced = Vec::new();
        for (&p, part) in &self.partitions {
            if only.is_some_and(|o| !o.contains(&p)) {
                continue;
            }
            if let Some(offset) = self.tracker.committable(p) {
                if offset > part.committed
                    && tpl
                        .add_partition_offset(&self.topics.features, p, Offset::Offset(offset))
                        .is_ok()
                {
                    advanced.push((p, offset));
                }
            }
        }
        if advanced.is_empty() {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                metrics::commit(true);
                for (p, offset) in advanced {
                    if let Some(part) = self.partitions.get_mut(&p) {
                        part.committed = offset;
                    }
                }
            }
            Err(e) => {
                metrics::commit(false);
                tracing::warn!(error = %e, "offset commit failed; retried at the next interval");
            }
        }
    }

    /// Called every loop turn: closes a due time window of drift
    /// monitoring, and drops the candidate's monitor once the rollout it
    /// belongs to no longer routes (a quiet stream scores no batch that
    /// would).
    pub fn tick(&mut self) {
        let at = self.drift_at.clone();
        self.pipeline_of(&at).tick();
        if let Some(r) = self.candidate_recorder.as_mut() {
            r.tick();
        }
        if let (Some((version, salt)), Some(hub)) = (&self.candidate_drift_for, &self.lifecycle) {
            let table = hub.router.current();
            let routed = table
                .candidate()
                .is_some_and(|c| c.version == *version && table.salt() == *salt);
            if !routed {
                self.follow_candidate_drift(None);
            }
        }
    }

    /// Periodic upkeep: store size gauge; one aggregate shard's idle
    /// entities expired at the owned partitions' event-time low watermark
    /// (bounded work: every shard is visited once per `aggregates.shards`
    /// calls); the offset marks of every evicted entity
    /// (idle or over capacity) queued for a changelog tombstone at the next
    /// checkpoint, which drops the mark.
    pub fn upkeep(&mut self) {
        self.publish_state();
        let Some(aggregator) = &self.aggregator else {
            return;
        };
        // The event-time low watermark of the owned partitions that have
        // been read (capped by the wall clock, and by each shard's newest
        // event time inside `expire_step`).
        let watermark = self
            .partitions
            .values()
            .filter_map(|p| p.event_time)
            .min()
            .map_or(i64::MIN, |t| t.min(now_ms()));
        if watermark > i64::MIN {
            aggregator.expire_step(watermark);
        }
        for id in aggregator.take_evicted() {
            for part in self.partitions.values_mut() {
                if let Some(m) = part.marks.get_mut(&id) {
                    if !m.dirty {
                        m.dirty = true;
                        part.dirty.push(id.clone());
                    }
                }
            }
        }
        let st = aggregator.stats();
        metrics::aggregate_stats(st.entities, st.late_events);
        metrics::state_bytes("aggregates", st.bytes, aggregator.max_bytes());
        metrics::evictions("aggregates", "capacity", st.evicted_capacity);
        metrics::evictions("aggregates", "bytes", st.evicted_bytes);
        metrics::evictions("aggregates", "idle", st.evicted_idle);
        metrics::state_bytes(
            "offset_marks",
            self.mark_bytes(),
            self.limits.max_mark_bytes,
        );
        metrics::evictions("offset_marks", "entity_evicted", self.marks_dropped_evicted);
        metrics::evictions("offset_marks", "bytes", self.marks_dropped_bytes);
    }

    /// The byte gauges and eviction counts of the store, drift windows and
    /// loaded model versions (running counts: no walk).
    fn publish_state(&mut self) {
        if let Some(store) = &self.store {
            self.metrics.store_entities.set(store.len() as f64);
            let u = store.usage();
            metrics::state_bytes("feature_store", u.row_bytes, store.max_bytes());
            metrics::evictions("feature_store", "capacity", u.evicted_capacity);
            metrics::evictions("feature_store", "bytes", u.evicted_bytes);
            metrics::evictions("feature_store", "ttl", u.evicted_ttl);
            metrics::state_bytes(
                "feature_store_dictionaries",
                u.dictionary_bytes,
                store.dictionary_limit_bytes(),
            );
        }
        let at = self.drift_at.clone();
        if let Some((bytes, max, thinned)) = self.pipeline_of(&at).drift_usage() {
            metrics::state_bytes("drift_windows", bytes, max);
            metrics::evictions("drift_windows", "bytes", thinned);
        }
        if let Some(hub) = &self.lifecycle {
            let (bytes, max, thinned) = hub.candidate_drift_usage();
            metrics::state_bytes("candidate_drift_windows", bytes, max);
            metrics::evictions("candidate_drift_windows", "bytes", thinned);
            let (bytes, max, released) = hub.model_bytes();
            metrics::state_bytes("lifecycle_models", bytes, max);
            metrics::evictions("lifecycle_models", "bytes", released);
        }
    }

    /// The first permanent delivery failure, if any.
    pub fn failure(&self) -> Option<WorkerError> {
        self.tracker.failure().map(WorkerError::Delivery)
    }

    pub fn flush(&self) {
        if let Err(e) = self.sink.flush(self.limits.flush_timeout) {
            tracing::warn!(error = %e, in_flight = self.sink.queued(), "final flush timed out; unacknowledged inputs stay uncommitted");
        }
    }
}

impl Rebalancing for Worker {
    type Error = WorkerError;

    /// Hands partitions away: score what is buffered, checkpoint, flush,
    /// commit synchronously, drop their aggregate state.
    fn revoke<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partitions: &[i32]) {
        metrics::rebalance("revoke");
        if let Err(e) = self
            .process()
            .and_then(|_| self.checkpoint(Some(partitions)))
        {
            tracing::error!(error = %e, "draining before a hand-over failed; the new owner re-reads from the last commit");
        }
        if let Err(e) = self.sink.flush(self.limits.flush_timeout) {
            tracing::warn!(error = %e, in_flight = self.sink.queued(), "flush before a hand-over timed out");
        }
        self.commit(consumer, CommitMode::Sync, Some(partitions));
        // Where the next owner resumes: (partition, offset committed).
        let mut committed = Vec::with_capacity(partitions.len());
        for p in partitions {
            if let Some(part) = self.partitions.remove(p) {
                committed.push((*p, part.committed));
                if let Some(agg) = &self.aggregator {
                    agg.remove_entities(part.marks.keys());
                }
            }
            self.tracker.close(*p);
        }
        self.metrics.assigned.set(self.partitions.len() as f64);
        self.shared
            .assigned
            .store(self.partitions.len(), Ordering::Relaxed);
        if let Some(hub) = &self.lifecycle {
            hub.set_deciding(self.partitions.contains_key(&0));
        }
        tracing::info!(?partitions, ?committed, "partitions revoked");
    }

    /// Takes partitions over: their aggregate state is restored (all
    /// partitions read at once) before anything of theirs is scored.
    /// `committed` holds the group's committed offset of each partition
    /// that has one, so that records skipped at the start are noticed.
    fn assign(
        &mut self,
        partitions: &[i32],
        committed: &HashMap<i32, i64>,
    ) -> Result<(), WorkerError> {
        metrics::rebalance("assign");
        let started = Instant::now();
        let mut states: HashMap<i32, PartitionState> = partitions
            .iter()
            .map(|&p| {
                let state = PartitionState {
                    committed: -1,
                    resume_at: committed.get(&p).copied(),
                    ..Default::default()
                };
                (p, state)
            })
            .collect();
        if let Some(agg) = self.aggregator.clone() {
            let mut skipped = 0usize;
            read_to_end(
                &self.restorer,
                &self.topics.changelog,
                partitions,
                self.limits.restore_stall,
                |m| {
                    let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
                    let (Some(key), Some(part)) = (key, states.get_mut(&m.partition())) else {
                        skipped += 1;
                        return;
                    };
                    match m.payload().map(Record::decode) {
                        None => {
                            agg.remove_entities([key]);
                            if part.marks.remove(key).is_some() {
                                part.mark_bytes -= mark_bytes(key.len());
                            }
                        }
                        Some(Ok(record)) => {
                            agg.import_entity(key, record.state);
                            let mark = Mark {
                                offset: record.offset,
                                dirty: false,
                            };
                            if part.marks.insert(key.into(), mark).is_none() {
                                part.mark_bytes += mark_bytes(key.len());
                            }
                        }
                        Some(Err(_)) => skipped += 1,
                    }
                },
            )?;
            if skipped > 0 {
                tracing::warn!(skipped, "unreadable changelog records skipped");
            }
        }
        let mut restored = 0;
        for (p, part) in states {
            restored += part.marks.len();
            self.tracker.open(p, self.aggregator.is_some());
            self.partitions.insert(p, part);
        }
        // A changelog written under a larger bound restores more marks.
        self.bound_marks()?;
        self.metrics.restored.increment(restored as u64);
        self.metrics.assigned.set(self.partitions.len() as f64);
        self.shared
            .assigned
            .store(self.partitions.len(), Ordering::Relaxed);
        if let Some(hub) = &self.lifecycle {
            hub.set_deciding(self.partitions.contains_key(&0));
        }
        if let Some(store) = &self.store {
            self.metrics.store_entities.set(store.len() as f64);
        }
        tracing::info!(
            ?partitions,
            restored,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partitions assigned"
        );
        Ok(())
    }
}

/// Notes that `entity` has an event at `offset` (dirty for the next
/// checkpoint); true when the offset is past what its state already holds.
fn mark(part: &mut PartitionState, entity: &CompactString, offset: i64) -> bool {
    match part.marks.get_mut(entity) {
        Some(m) => {
            let new = offset > m.offset;
            m.offset = m.offset.max(offset);
            if !m.dirty {
                m.dirty = true;
                part.dirty.push(entity.clone());
            }
            new
        }
        None => {
            part.marks.insert(
                entity.clone(),
                Mark {
                    offset,
                    dirty: true,
                },
            );
            part.mark_bytes += mark_bytes(entity.len());
            part.dirty.push(entity.clone());
            true
        }
    }
}
