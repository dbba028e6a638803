//! Every Prometheus metric driftline exports, named in one place.
//!
//! Guarantees: names carry the `driftline_` prefix and their unit
//! (`_seconds`, `_bytes`, `_total` for counters); label sets are small and
//! fixed (reason codes, topic, partition, model); latency histograms have
//! explicit buckets so Prometheus gets real histograms, not summaries.
//! The hot loop records through handles resolved once ([`LoopMetrics`]), so a
//! batch costs a few atomic adds, not a registry lookup per event. Values
//! whose types belong to a stage (drift statuses, label counters) are
//! published by that stage's wiring with these names.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS_CONSUMED: &str = "driftline_events_consumed_total";
pub const PREDICTIONS: &str = "driftline_predictions_total";
pub const DLQ_EVENTS: &str = "driftline_dlq_events_total";
pub const END_TO_END_LATENCY: &str = "driftline_end_to_end_latency_seconds";
pub const INFERENCE_LATENCY: &str = "driftline_inference_latency_seconds";
pub const BATCH_EVENTS: &str = "driftline_batch_events";
pub const STORE_ENTITIES: &str = "driftline_feature_store_entities";
pub const STORE_LOOKUPS: &str = "driftline_feature_store_lookups_total";
pub const FEATURE_UPDATES: &str = "driftline_feature_updates_total";
pub const ASSIGNED_PARTITIONS: &str = "driftline_assigned_partitions";
pub const CONSUMER_LAG: &str = "driftline_consumer_lag_messages";
pub const COMMITS: &str = "driftline_offset_commits_total";
pub const REBALANCES: &str = "driftline_rebalances_total";
pub const CHANGELOG_RECORDS: &str = "driftline_changelog_records_total";
pub const RESTORED_ENTITIES: &str = "driftline_aggregate_restored_entities_total";
pub const REPLAYED_EVENTS: &str = "driftline_replayed_events_total";
pub const SKIPPED_OFFSETS: &str = "driftline_input_offsets_skipped_total";
pub const MODEL_INFO: &str = "driftline_model_info";
pub const PRODUCE_FAILURES: &str = "driftline_produce_failures_total";
pub const AGGREGATE_ENTITIES: &str = "driftline_aggregate_entities";
pub const AGGREGATE_LATE: &str = "driftline_aggregate_late_events_total";
pub const STATE_BYTES: &str = "driftline_state_bytes";
pub const STATE_LIMIT_BYTES: &str = "driftline_state_limit_bytes";
pub const EVICTIONS: &str = "driftline_evictions_total";
pub const PRODUCE_RETRIES: &str = "driftline_produce_retries_total";
pub const CONSUMPTION_PAUSED: &str = "driftline_consumption_paused";
pub const DRIFT_STATISTIC: &str = "driftline_drift_statistic";
pub const DRIFT_ALERT_FIRING: &str = "driftline_drift_alert_firing";
pub const DRIFT_ALERTS_FIRING: &str = "driftline_drift_alerts_firing";
pub const DRIFT_ALERTS: &str = "driftline_drift_alerts_total";
pub const DRIFT_WINDOWS: &str = "driftline_drift_windows_total";
pub const DRIFT_WINDOWS_DROPPED: &str = "driftline_drift_windows_dropped_total";
pub const DRIFT_WINDOW_EVENTS: &str = "driftline_drift_window_events";
pub const DRIFT_EVALUATION: &str = "driftline_drift_evaluation_seconds";
pub const RETRAIN_REQUESTS: &str = "driftline_retrain_requests_total";
pub const LABELS: &str = "driftline_labels_total";
pub const LABEL_JOIN_PENDING: &str = "driftline_label_join_pending";
pub const MODEL_PERFORMANCE: &str = "driftline_model_performance";
pub const VARIANT_PREDICTIONS: &str = "driftline_variant_predictions_total";
pub const VARIANT_REJECTIONS: &str = "driftline_variant_rejections_total";
pub const VARIANT_SCORING: &str = "driftline_variant_scoring_seconds";
pub const LIFECYCLE_EVENTS: &str = "driftline_lifecycle_events_total";
pub const LIFECYCLE_REFUSALS: &str = "driftline_lifecycle_refusals_total";
pub const ROLLOUT_SHARE: &str = "driftline_rollout_candidate_share_ratio";
pub const ROLLOUT_STEP: &str = "driftline_rollout_step";

/// The long-lived structures bounded in bytes (`structure` label of
/// [`STATE_BYTES`], [`STATE_LIMIT_BYTES`] and [`EVICTIONS`]) and the
/// reasons each evicts for.
pub const STRUCTURES: [(&str, &[&str]); 7] = [
    ("feature_store", &["capacity", "bytes", "ttl"]),
    // Full dictionaries refuse new categories; nothing is evicted.
    ("feature_store_dictionaries", &[]),
    ("aggregates", &["capacity", "bytes", "idle"]),
    ("offset_marks", &["entity_evicted", "bytes"]),
    ("drift_windows", &["bytes"]),
    ("label_join", &["capacity", "bytes", "expired", "versions"]),
    ("lifecycle_models", &["bytes"]),
];

/// Seconds; from 100 µs (one in-process batch) to 10 s (a stalled broker).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Errors installing the recorder.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("installing the Prometheus recorder: {0}")]
    Install(#[from] BuildError),
}

/// Installs the global recorder and describes every metric; later calls
/// (embedded runs, tests) get the same handle.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), BATCH_BUCKETS)?
        .install_recorder()?;
    describe();
    let handle = HANDLE.get_or_init(|| handle).clone();
    // `install_recorder` leaves upkeep to the caller: without it, histogram
    // samples pile up between scrapes (and forever when nobody scrapes).
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histogram buffers drain only on scrape");
    }
    Ok(handle)
}

/// How often histogram buffers are drained into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Counters with a fixed label set start at zero, so that rates and alert
/// expressions over them have series before the first event of each kind.
fn register_at_zero() {
    for op in ["upsert", "delete", "stale", "rejected"] {
        counter!(FEATURE_UPDATES, "op" => op).increment(0);
    }
    for result in ["ok", "error"] {
        counter!(COMMITS, "result" => result).increment(0);
    }
    for kind in ["assign", "revoke"] {
        counter!(REBALANCES, "kind" => kind).increment(0);
    }
    for kind in [
        "data_drift",
        "prediction_drift",
        "missing_values",
        "performance",
    ] {
        for state in ["firing", "resolved"] {
            counter!(DRIFT_ALERTS, "kind" => kind, "state" => state).increment(0);
        }
    }
    counter!(RETRAIN_REQUESTS).increment(0);
    for outcome in ["matched", "unmatched", "duplicate", "invalid"] {
        counter!(LABELS, "outcome" => outcome).increment(0);
    }
    counter!(DRIFT_WINDOWS_DROPPED).increment(0);
    gauge!(DRIFT_ALERTS_FIRING).set(0.0);
    counter!(PRODUCE_RETRIES).increment(0);
    // The alert rule reads it: a series per reason and action from the start.
    for reason in [
        "message_too_large",
        "unknown_topic",
        "not_authorized",
        "invalid_record",
    ] {
        for action in ["halt", "skip"] {
            counter!(PRODUCE_FAILURES, "reason" => reason, "action" => action).increment(0);
        }
    }
    gauge!(CONSUMPTION_PAUSED).set(0.0);
    for (structure, reasons) in STRUCTURES {
        for &reason in reasons {
            counter!(EVICTIONS, "structure" => structure, "reason" => reason).increment(0);
        }
    }
}

/// Lifecycle event kinds (`model-events` `kind`), registered at zero per
/// model so that alert rules over them have a series before the first one.
pub const LIFECYCLE_KINDS: [&str; 12] = [
    "loaded",
    "refused",
    "rollout_started",
    "shadow_started",
    "canary_started",
    "step_passed",
    "gate_failed",
    "rolled_back",
    "promoted",
    "paused",
    "resumed",
    "previous_released",
];

/// Registers the lifecycle counters of `model` at zero: every event kind,
/// and every refusal code in `refusals`.
pub fn lifecycle_model(model: &str, refusals: &[&'static str]) {
    for kind in LIFECYCLE_KINDS {
        counter!(LIFECYCLE_EVENTS, "model" => model.to_string(), "kind" => kind).increment(0);
    }
    for &reason in refusals {
        counter!(LIFECYCLE_REFUSALS, "model" => model.to_string(), "reason" => reason).increment(0);
    }
}

/// Counts one lifecycle event of `model`.
pub fn lifecycle_event(model: &str, kind: &'static str) {
    counter!(LIFECYCLE_EVENTS, "model" => model.to_string(), "kind" => kind).increment(1);
}

/// Counts one refused version of `model`, by refusal code.
pub fn lifecycle_refusal(model: &str, reason: &'static str) {
    counter!(LIFECYCLE_REFUSALS, "model" => model.to_string(), "reason" => reason).increment(1);
}

/// The rollout gauges of `model`: the candidate's share of entities (0
/// without one) by role, and the current step (-1 without a rollout).
pub fn rollout(model: &str, candidate: Option<(&'static str, f64)>, step: Option<usize>) {
    let (role, share) = candidate.unwrap_or(("none", 0.0));
    for r in ["shadow", "canary"] {
        let value = if r == role { share } else { 0.0 };
        gauge!(ROLLOUT_SHARE, "model" => model.to_string(), "role" => r).set(value);
    }
    gauge!(ROLLOUT_STEP, "model" => model.to_string()).set(step.map_or(-1.0, |s| s as f64));
}

/// Per-variant handles of one (model, version, variant).
#[derive(Clone)]
pub struct VariantMetrics {
    pub predictions: Counter,
    pub rejections: Counter,
    /// Scoring time per event (enrichment and model), one sample per batch.
    pub scoring: Histogram,
}

impl VariantMetrics {
    pub fn new(model: &str, version: &str, variant: &'static str) -> Self {
        let labels = [
            ("model", model.to_string()),
            ("version", version.to_string()),
            ("variant", variant.to_string()),
        ];
        VariantMetrics {
            predictions: counter!(VARIANT_PREDICTIONS, &labels),
            rejections: counter!(VARIANT_REJECTIONS, &labels),
            scoring: histogram!(VARIANT_SCORING, &labels),
        }
    }
}

fn describe() {
    register_at_zero();
    describe_counter!(
        EVENTS_CONSUMED,
        "Input records read from Kafka (an Arrow batch counts its rows)."
    );
    describe_counter!(PREDICTIONS, "Predictions produced.");
    describe_counter!(
        PRODUCE_FAILURES,
        "Output records the broker refused for good, by reason (message_too_large, unknown_topic, not_authorized, invalid_record) and action (halt, skip)."
    );
    describe_gauge!(
        AGGREGATE_ENTITIES,
        "Entities with streaming-aggregate state on this instance."
    );
    describe_counter!(
        AGGREGATE_LATE,
        "Events too old for at least one of their entity's aggregate windows (not folded into it)."
    );
    describe_gauge!(
        STATE_BYTES,
        Unit::Bytes,
        "Estimated bytes of a long-lived structure (feature_store, feature_store_dictionaries, aggregates, offset_marks, drift_windows, label_join, lifecycle_models), kept as a running count."
    );
    describe_gauge!(
        STATE_LIMIT_BYTES,
        Unit::Bytes,
        "The configured byte bound of a structure (see driftline_state_bytes)."
    );
    describe_counter!(
        EVICTIONS,
        "Entries dropped from a long-lived structure, by structure and reason (capacity: its entry cap; bytes: its byte bound; idle, ttl, expired: age; entity_evicted: an offset mark following its entity out of the aggregates; versions: a label window of a replaced model version)."
    );
    describe_counter!(
        PRODUCE_RETRIES,
        "Output records sent again after a transient delivery failure (message.timeout.ms passed while the broker was unreachable)."
    );
    describe_gauge!(
        CONSUMPTION_PAUSED,
        "1 while input consumption is paused until re-sent outputs are delivered, else 0."
    );
    describe_counter!(
        DLQ_EVENTS,
        "Inputs sent to the dead-letter topic, by reason code."
    );
    describe_histogram!(
        END_TO_END_LATENCY,
        Unit::Seconds,
        "From the input record's broker timestamp to its prediction being handed to the producer."
    );
    describe_histogram!(
        INFERENCE_LATENCY,
        Unit::Seconds,
        "Model execution time per batch."
    );
    describe_histogram!(BATCH_EVENTS, "Events per scored micro-batch.");
    describe_gauge!(STORE_ENTITIES, "Entities in the online feature store.");
    describe_counter!(
        STORE_LOOKUPS,
        "Feature-store lookups of scored events, by result (hit, miss, expired)."
    );
    describe_counter!(
        FEATURE_UPDATES,
        "Records applied from the feature-updates topic, by operation (upsert, delete, stale, rejected)."
    );
    describe_gauge!(ASSIGNED_PARTITIONS, "Input partitions this instance owns.");
    describe_gauge!(
        CONSUMER_LAG,
        "Messages between the committed-or-consumed position and the end of each owned input partition."
    );
    describe_counter!(COMMITS, "Offset commits, by result (ok, error).");
    describe_counter!(
        REBALANCES,
        "Consumer-group rebalances, by kind (assign, revoke)."
    );
    describe_counter!(
        CHANGELOG_RECORDS,
        "Aggregate-state records written to the changelog topic."
    );
    describe_counter!(
        RESTORED_ENTITIES,
        "Entities whose aggregate state was restored from the changelog."
    );
    describe_counter!(
        REPLAYED_EVENTS,
        "Events seen again after a restart that the restored aggregates already held (scored, not counted twice)."
    );
    describe_counter!(
        SKIPPED_OFFSETS,
        "Input offsets never delivered to the loop: gaps between consecutive records, or between the committed position and the first record after an assignment (compaction, transactions and retention cause them; anything else is a broker fault)."
    );
    describe_gauge!(
        MODEL_INFO,
        "The served model; always 1, labelled with name, version and sha256."
    );
    describe_gauge!(
        DRIFT_STATISTIC,
        "Latest drift statistic of a column (feature or score) against the reference profile, by statistic (psi, js, wasserstein, ks, anderson, mean, scale, variance, cusum, chi_square, missing_rate, and <test>_p_value of each test)."
    );
    describe_gauge!(
        DRIFT_ALERT_FIRING,
        "1 while the drift episode of (kind, feature) fires, 0 once resolved (its statistics are in the drift-alerts message and GET /v1/drift)."
    );
    describe_gauge!(
        DRIFT_ALERTS_FIRING,
        "Drift and performance alerts firing now."
    );
    describe_counter!(DRIFT_ALERTS, "Alert state changes, by kind and state.");
    describe_counter!(DRIFT_WINDOWS, "Drift sub-windows closed and evaluated.");
    describe_counter!(
        DRIFT_WINDOWS_DROPPED,
        "Drift sub-windows dropped because the evaluator was behind (scoring never waits for it)."
    );
    describe_gauge!(
        DRIFT_WINDOW_EVENTS,
        "Events in the latest evaluated drift window."
    );
    describe_histogram!(
        DRIFT_EVALUATION,
        "Time to merge a window and compute every statistic at a window close."
    );
    describe_counter!(RETRAIN_REQUESTS, "Retrain requests sent.");
    describe_counter!(
        LABELS,
        "Label messages, by outcome (matched, unmatched, duplicate, invalid)."
    );
    describe_gauge!(LABEL_JOIN_PENDING, "Predictions waiting for their label.");
    describe_counter!(
        VARIANT_PREDICTIONS,
        "Predictions by model, version and variant (primary, canary, shadow); shadow ones go to predictions-shadow."
    );
    describe_counter!(
        VARIANT_REJECTIONS,
        "Events a variant's enrichment or model rejected, by model, version and variant."
    );
    describe_histogram!(
        VARIANT_SCORING,
        Unit::Seconds,
        "Enrichment and model time per event of a variant, one sample per batch."
    );
    describe_counter!(
        LIFECYCLE_EVENTS,
        "Model lifecycle events (the model-events kinds), by model and kind."
    );
    describe_counter!(
        LIFECYCLE_REFUSALS,
        "Model versions refused at validation, by model and reason code."
    );
    describe_gauge!(
        ROLLOUT_SHARE,
        "Share of entities (0..1) the rollout candidate takes, by model and role (shadow, canary)."
    );
    describe_gauge!(
        ROLLOUT_STEP,
        "Index of the running rollout's step, -1 without a running rollout."
    );
    describe_gauge!(
        MODEL_PERFORMANCE,
        "Rolling performance of a model version on joined labels, by metric (accuracy, auc, logloss, brier, labels)."
    );
}

/// Handles the scoring loop records through.
#[derive(Clone)]
pub struct LoopMetrics {
    pub consumed: Counter,
    pub predictions: Counter,
    /// One counter per DLQ reason code.
    dlq: Vec<(&'static str, Counter)>,
    pub end_to_end: Histogram,
    pub inference: Histogram,
    pub batch_events: Histogram,
    pub store_hits: Counter,
    pub store_misses: Counter,
    pub store_expired: Counter,
    pub store_entities: Gauge,
    pub assigned: Gauge,
    pub changelog_records: Counter,
    pub restored: Counter,
    pub replayed: Counter,
    pub skipped: Counter,
}

impl LoopMetrics {
    /// Resolves every handle; each DLQ reason code in `reasons` is
    /// registered at zero so that a rate over it exists before the first
    /// bad event.
    pub fn new(topic: &str, model: &str, version: &str, reasons: &[&'static str]) -> Self {
        let dlq = reasons
            .iter()
            .map(|&code| (code, counter!(DLQ_EVENTS, "reason" => code)))
            .collect();
        LoopMetrics {
            consumed: counter!(EVENTS_CONSUMED, "topic" => topic.to_string()),
            predictions: counter!(PREDICTIONS, "model" => model.to_string(), "version" => version.to_string()),
            dlq,
            end_to_end: histogram!(END_TO_END_LATENCY),
            inference: histogram!(INFERENCE_LATENCY),
            batch_events: histogram!(BATCH_EVENTS),
            store_hits: counter!(STORE_LOOKUPS, "result" => "hit"),
            store_misses: counter!(STORE_LOOKUPS, "result" => "miss"),
            store_expired: counter!(STORE_LOOKUPS, "result" => "expired"),
            store_entities: gauge!(STORE_ENTITIES),
            assigned: gauge!(ASSIGNED_PARTITIONS),
            changelog_records: counter!(CHANGELOG_RECORDS),
            restored: counter!(RESTORED_ENTITIES),
            replayed: counter!(REPLAYED_EVENTS),
            skipped: counter!(SKIPPED_OFFSETS, "topic" => topic.to_string()),
        }
    }

    /// Counts one input sent to the DLQ for reason `code`; a code not
    /// registered in [`new`](Self::new) gets its series on first use.
    pub fn dlq(&self, code: &'static str) {
        match self.dlq.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter.increment(1),
            None => counter!(DLQ_EVENTS, "reason" => code).increment(1),
        }
    }
}

/// Sets the model-info gauge.
pub fn model_info(name: &str, version: &str, sha256: &str) {
    gauge!(MODEL_INFO, "name" => name.to_string(), "version" => version.to_string(), "sha256" => sha256.to_string())
        .set(1.0);
}

/// Counts one feature-update record by operation.
pub fn feature_update(op: &'static str) {
    counter!(FEATURE_UPDATES, "op" => op).increment(1);
}

/// Counts one output record refused for good, by reason and action.
pub fn produce_failure(reason: &'static str, action: &'static str) {
    counter!(PRODUCE_FAILURES, "reason" => reason, "action" => action).increment(1);
}

/// Aggregate entities now and late events since start (the aggregator
/// counts under its shard locks; these mirror its totals).
pub fn aggregate_stats(entities: usize, late: u64) {
    gauge!(AGGREGATE_ENTITIES).set(entities as f64);
    counter!(AGGREGATE_LATE).absolute(late);
}

/// A structure's estimated bytes and its bound.
pub fn state_bytes(structure: &'static str, bytes: usize, limit: usize) {
    gauge!(STATE_BYTES, "structure" => structure).set(bytes as f64);
    gauge!(STATE_LIMIT_BYTES, "structure" => structure).set(limit as f64);
}

/// A structure's evictions for `reason` since start (structures count
/// under their own locks; this mirrors the total).
pub fn evictions(structure: &'static str, reason: &'static str, total: u64) {
    counter!(EVICTIONS, "structure" => structure, "reason" => reason).absolute(total);
}

/// Counts output records sent again.
pub fn produce_retries(n: u64) {
    counter!(PRODUCE_RETRIES).increment(n);
}

/// Whether input consumption is paused for re-sent outputs.
pub fn consumption_paused(paused: bool) {
    gauge!(CONSUMPTION_PAUSED).set(if paused { 1.0 } else { 0.0 });
}

/// Counts one rebalance event.
pub fn rebalance(kind: &'static str) {
    counter!(REBALANCES, "kind" => kind).increment(1);
}

/// Counts one commit by result.
pub fn commit(ok: bool) {
    counter!(COMMITS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Sets one partition's lag.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}
