//! Drift monitoring wired into the Kafka loop: the recorder goes into the
//! scoring pipeline, the evaluator runs on its own thread and publishes what
//! it finds to Prometheus (the metric names are in [`crate::telemetry::metrics`],
//! the values are published here, where they are produced), `GET /v1/drift`
//! (through [`Shared`]), the `drift-alerts` and `retrain-requests` topics,
//! and the log.
//!
//! Guarantees: publishing never blocks scoring (the evaluator has its own
//! thread and the recorder never waits for it); every alert state change
//! and retrain request is sent once with the producer's at-least-once
//! delivery (a failed delivery is logged, not retried forever: alerts are
//! also in Prometheus and the admin API). At shutdown the evaluator finishes
//! the closed windows it has before the final producer flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::config::Config;
use crate::consumer::context::reader;
use crate::consumer::follower::topic_partitions;
use crate::drift::labels::{JoinCounters, LabelConfig, LabelJoin};
use crate::drift::monitor::{
    AlertState, DriftStatus, Evaluator, Output, PageHinkleyDetector, PerformanceReading,
    PerformanceSource, Plan, Recorder, RecorderStats,
};
use crate::event::RejectReason;
use crate::pipeline::Pipeline;
use crate::sink::offsets::Token;
use crate::sink::Sink;
use crate::status::Shared;
use crate::telemetry::metrics::{
    DRIFT_ALERTS, DRIFT_ALERTS_FIRING, DRIFT_ALERT_FIRING, DRIFT_EVALUATION, DRIFT_STATISTIC,
    DRIFT_WINDOWS, DRIFT_WINDOWS_DROPPED, DRIFT_WINDOW_EVENTS, LABELS, LABEL_JOIN_PENDING,
    MODEL_PERFORMANCE, RETRAIN_REQUESTS,
};

/// Where the evaluator publishes.
pub struct DriftTopics {
    /// `drift-alerts`; empty = not published.
    pub alerts: String,
    /// `retrain-requests`; empty = not published.
    pub retrain: String,
}

/// Attaches a recorder to `pipeline` and starts the evaluator thread. The
/// thread ends when the pipeline (and so the recorder) is dropped.
pub fn start(
    plan: Arc<Plan>,
    pipeline: &mut Pipeline,
    sink: Arc<Sink>,
    topics: DriftTopics,
    shared: &Shared,
    performance: Option<PerformanceSource>,
) -> std::io::Result<JoinHandle<()>> {
    let stats = Arc::new(RecorderStats::default());
    let (recorder, rx) = Recorder::new(plan.clone(), stats.clone());
    pipeline.set_recorder(recorder);
    let dropped = stats.clone();
    let publish = move |status: &DriftStatus, outputs: &[Output], elapsed: Duration| {
        publish_evaluation(status, outputs, elapsed);
        counter!(DRIFT_WINDOWS_DROPPED).absolute(dropped.dropped.load(Ordering::Relaxed));
        for output in outputs {
            let (topic, key, value) = match output {
                Output::Alert(a) => {
                    tracing::warn!(
                        kind = a.kind.as_str(),
                        feature = %a.feature,
                        statistic = %a.statistic,
                        value = a.value,
                        threshold = a.threshold,
                        state = ?a.state,
                        window_events = a.window.count,
                        "drift alert"
                    );
                    (
                        &topics.alerts,
                        format!("{}/{}", a.model, a.feature),
                        serde_json::to_vec(a),
                    )
                }
                Output::Retrain(r) => {
                    tracing::warn!(trigger = %r.trigger, alerts = r.alerts.len(), "retrain requested");
                    (&topics.retrain, r.model.clone(), serde_json::to_vec(r))
                }
            };
            if topic.is_empty() {
                continue;
            }
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "drift output could not be encoded");
                    continue;
                }
            };
            if let Err(e) = sink.send(
                topic,
                None,
                Some(key.as_bytes()),
                Some(&value),
                None,
                Token::Detached,
            ) {
                tracing::warn!(error = %e, topic = %topic, "drift output not sent");
            }
        }
    };
    let detector = PageHinkleyDetector::for_plan(&plan);
    let mut evaluator = Evaluator::new(plan, stats, shared.drift.clone(), Box::new(publish));
    match detector {
        Some(Ok(d)) => evaluator = evaluator.with_detector(Box::new(d)),
        Some(Err(e)) => tracing::warn!(error = %e, "no Page-Hinkley detector on the score"),
        None => {}
    }
    if let Some(source) = performance {
        evaluator = evaluator.with_performance(source);
    }
    crate::drift::monitor::spawn(evaluator, rx)
}

/// Performance readings of the label join for the evaluator, judged with
/// the `[labels]` thresholds; also publishes the join's counters.
pub fn performance_source(join: Arc<LabelJoin>, config: LabelConfig) -> PerformanceSource {
    Box::new(move || {
        publish_label_join(&join.counters(), &join.rejected(), join.max_bytes());
        join.snapshot()
            .into_iter()
            .map(|v| {
                let m = v.metrics;
                let mut metrics = Vec::new();
                let mut push =
                    |name: &'static str, value: Option<f64>, limit: Option<f64>, higher: bool| {
                        if let Some(value) = value {
                            metrics.push((name, value, limit, higher));
                        }
                    };
                push("accuracy", m.accuracy, config.min_accuracy, true);
                push("auc", m.roc_auc, config.min_auc, true);
                push("logloss", m.log_loss, config.max_log_loss, false);
                push("brier", m.brier, config.max_brier, false);
                PerformanceReading {
                    model_version: v.model_version,
                    labels: m.count as u64,
                    metrics,
                    judged: m.count >= config.min_labels,
                }
            })
            .collect()
    })
}

/// `topic` if it exists, else "" with a warning: publishing to a missing
/// topic would only fail after librdkafka's metadata wait and hold up every
/// flush (shutdown, hand-over) meanwhile. Empty stays empty (turned off).
pub fn existing_topic(
    config: &Config,
    topic: &str,
    timeout: Duration,
) -> Result<String, rdkafka::error::KafkaError> {
    let topic = topic.trim();
    if topic.is_empty() {
        return Ok(String::new());
    }
    let probe = reader(config)?;
    if topic_partitions(&probe, topic, timeout)?.is_some() {
        Ok(topic.to_string())
    } else {
        tracing::warn!(
            topic,
            "output topic does not exist; drift outputs for it are not published (create it, or set its name to \"\" to silence this)"
        );
        Ok(String::new())
    }
}

/// Publishes one drift evaluation: every statistic, every alert state, and
/// counts of the state changes and retrain requests it caused.
fn publish_evaluation(status: &DriftStatus, outputs: &[Output], elapsed: Duration) {
    let (model, version) = (status.model.clone(), status.model_version.clone());
    for column in status.columns.iter().chain(status.score.as_ref()) {
        for j in &column.statistics {
            gauge!(DRIFT_STATISTIC, "model" => model.clone(), "version" => version.clone(),
                "feature" => column.name.clone(), "statistic" => j.statistic)
            .set(j.value);
            if let Some(p) = j.p_value {
                let name = match j.statistic {
                    "ks" => "ks_p_value",
                    "chi_square" => "chi_square_p_value",
                    "anderson" => "anderson_p_value",
                    "mean" => "mean_p_value",
                    "scale" => "scale_p_value",
                    "variance" => "variance_p_value",
                    _ => continue,
                };
                gauge!(DRIFT_STATISTIC, "model" => model.clone(), "version" => version.clone(),
                    "feature" => column.name.clone(), "statistic" => name)
                .set(p);
            }
        }
    }
    let mut firing = 0.0;
    for a in &status.alerts {
        let on = a.state == AlertState::Firing;
        firing += f64::from(u8::from(on));
        gauge!(DRIFT_ALERT_FIRING, "model" => model.clone(), "kind" => a.kind.as_str(),
            "feature" => a.feature.clone())
        .set(f64::from(u8::from(on)));
    }
    gauge!(DRIFT_ALERTS_FIRING).set(firing);
    for o in outputs {
        match o {
            Output::Alert(a) => {
                let state = match a.state {
                    AlertState::Firing => "firing",
                    AlertState::Resolved => "resolved",
                };
                counter!(DRIFT_ALERTS, "kind" => a.kind.as_str(), "state" => state).increment(1);
            }
            Output::Retrain(_) => counter!(RETRAIN_REQUESTS).increment(1),
        }
    }
    if let Some(w) = &status.window {
        gauge!(DRIFT_WINDOW_EVENTS).set(w.count as f64);
    }
    for r in &status.performance {
        for &(metric, value, _, _) in &r.metrics {
            gauge!(MODEL_PERFORMANCE, "model" => model.clone(), "version" => r.model_version.clone(), "metric" => metric)
                .set(value);
        }
        gauge!(MODEL_PERFORMANCE, "model" => model.clone(), "version" => r.model_version.clone(), "metric" => "labels")
            .set(r.labels as f64);
    }
    counter!(DRIFT_WINDOWS).increment(1);
    histogram!(DRIFT_EVALUATION).record(elapsed.as_secs_f64());
}

/// Publishes the label join's counters.
fn publish_label_join(c: &JoinCounters, rejected: &[(RejectReason, u64)], max_bytes: usize) {
    crate::telemetry::metrics::state_bytes("label_join", c.bytes, max_bytes);
    for (reason, n) in [
        ("capacity", c.evicted),
        ("bytes", c.evicted_bytes),
        ("expired", c.expired),
        ("versions", c.versions_dropped),
    ] {
        crate::telemetry::metrics::evictions("label_join", reason, n);
    }
    for (outcome, n) in [
        ("matched", c.matched),
        ("unmatched", c.unmatched),
        ("duplicate", c.duplicates),
        ("invalid", rejected.iter().map(|(_, n)| n).sum()),
    ] {
        counter!(LABELS, "outcome" => outcome).absolute(n);
    }
    gauge!(LABEL_JOIN_PENDING).set(c.pending as f64);
}
