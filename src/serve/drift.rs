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
//!
//! A rollout's candidate gets a monitor of its own ([`CandidateDrift`]):
//! its own reference profile, the same `[drift]` settings, fed with the
//! events the candidate scored. Its alerts are counted for the
//! `max_drift_alerts` gate, shown in `GET /v1/models` and logged; they are
//! not published to `drift-alerts` (whose consumers act on the served
//! model's drift: paging, retraining) nor to Prometheus's alert gauges,
//! and ask for no retraining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::config::Config;
use crate::consumer::context::reader;
use crate::consumer::follower::topic_partitions;
use crate::drift::labels::{JoinCounters, LabelConfig, LabelJoin};
use crate::drift::monitor::{
    AlertMessage, AlertState, DriftStatus, EvaluationSink, Evaluator, Output, PageHinkleyDetector,
    PerformanceReading, PerformanceSource, Plan, Recorder, RecorderStats,
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
                    log_alert(a, false);
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
    let mut evaluator = evaluator(plan, stats, shared.drift.clone(), Box::new(publish));
    if let Some(source) = performance {
        evaluator = evaluator.with_performance(source);
    }
    crate::drift::monitor::spawn(evaluator, rx)
}

/// Logs one alert state change; `candidate`: a rollout candidate's, counted
/// for its `max_drift_alerts` gate and not published.
fn log_alert(a: &AlertMessage, candidate: bool) {
    tracing::warn!(
        version = %a.model_version,
        candidate,
        kind = a.kind.as_str(),
        feature = %a.feature,
        statistic = %a.statistic,
        value = a.value,
        threshold = a.threshold,
        state = ?a.state,
        window_events = a.window.count,
        "drift alert"
    );
}

/// An evaluator of `plan` with the score detector the plan asks for.
fn evaluator(
    plan: Arc<Plan>,
    stats: Arc<RecorderStats>,
    status: Arc<RwLock<DriftStatus>>,
    sink: EvaluationSink,
) -> Evaluator {
    let detector = PageHinkleyDetector::for_plan(&plan);
    let evaluator = Evaluator::new(plan, stats, status, sink);
    match detector {
        Some(Ok(d)) => evaluator.with_detector(Box::new(d)),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "no Page-Hinkley detector on the score");
            evaluator
        }
        None => evaluator,
    }
}

/// What a candidate's monitor has counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriftCounts {
    /// Alert episodes that started firing.
    pub fired: u64,
    /// Alerts firing after the last evaluation.
    pub firing: u32,
    /// Windows judged (enough samples).
    pub evaluations: u64,
}

impl DriftCounts {
    /// Takes one evaluation's outputs and status.
    fn update(&mut self, status: &DriftStatus, outputs: &[Output]) {
        self.fired += outputs
            .iter()
            .filter(|o| matches!(o, Output::Alert(a) if a.state == AlertState::Firing))
            .count() as u64;
        self.firing = status
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count() as u32;
        self.evaluations = status.evaluations;
    }

    /// Alert episodes firing at any time since `base` was taken: those
    /// firing then and those that fired since.
    pub fn alerts_since(&self, base: &DriftCounts) -> u32 {
        let fired = self.fired.saturating_sub(base.fired);
        base.firing
            .saturating_add(u32::try_from(fired).unwrap_or(u32::MAX))
    }
}

/// A rollout candidate's drift monitor (see the module docs): the
/// evaluator thread writes it, the lifecycle hub reads it. The scoring
/// loop holds the [`Recorder`] that feeds it; the evaluator thread ends
/// when that recorder is dropped (the rollout ended), and what it found
/// stays readable.
pub struct CandidateDrift {
    version: String,
    /// The rollout's routing salt: one monitor per rollout.
    salt: u64,
    plan: Arc<Plan>,
    stats: Arc<RecorderStats>,
    status: Arc<RwLock<DriftStatus>>,
    counts: Mutex<DriftCounts>,
    /// The evaluator thread runs.
    running: AtomicBool,
}

impl std::fmt::Debug for CandidateDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandidateDrift")
            .field("version", &self.version)
            .field("salt", &self.salt)
            .field("counts", &*self.counts.lock())
            .finish()
    }
}

impl CandidateDrift {
    /// Starts the evaluator thread of `version`'s monitor, for the rollout
    /// routed with `salt`; returns the recorder to feed.
    pub fn start(
        version: &str,
        salt: u64,
        plan: Arc<Plan>,
    ) -> std::io::Result<(Recorder, Arc<CandidateDrift>)> {
        let stats = Arc::new(RecorderStats::default());
        let (recorder, rx) = Recorder::new(plan.clone(), stats.clone());
        let monitor = Arc::new(CandidateDrift {
            version: version.to_owned(),
            salt,
            plan: plan.clone(),
            stats: stats.clone(),
            status: Arc::new(RwLock::new(DriftStatus::default())),
            counts: Mutex::new(DriftCounts::default()),
            running: AtomicBool::new(true),
        });
        let shared = monitor.clone();
        let sink = move |status: &DriftStatus, outputs: &[Output], _: Duration| {
            shared.counts.lock().update(status, outputs);
            for output in outputs {
                if let Output::Alert(a) = output {
                    log_alert(a, true);
                }
            }
        };
        let evaluator = evaluator(plan, stats, monitor.status.clone(), Box::new(sink));
        let ended = monitor.clone();
        let spawned = std::thread::Builder::new()
            .name("candidate-drift".into())
            .spawn(move || {
                evaluator.run(rx);
                ended.running.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            monitor.running.store(false, Ordering::Release);
            return Err(e);
        }
        Ok((recorder, monitor))
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn salt(&self) -> u64 {
        self.salt
    }

    pub fn counts(&self) -> DriftCounts {
        *self.counts.lock()
    }

    /// Whether its evaluator still runs (the rollout's recorder lives).
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Its windows' bytes (open, queued, held), their bound (none once it
    /// stopped), and the scores thinned to keep it.
    pub fn usage(&self) -> (usize, usize, u64) {
        let thinned = self.stats.thinned.load(Ordering::Relaxed);
        if !self.running() {
            return (0, 0, thinned);
        }
        let config = self.plan.config();
        let windows = 1 + config.queue.max(1) + config.sub_windows.max(1) as usize;
        (
            self.stats.bytes(),
            windows * config.max_window_bytes,
            thinned,
        )
    }

    /// What `/v1/models` shows of it.
    pub fn describe(&self, alerts_in_step: Option<u32>) -> serde_json::Value {
        let status = self.status.read();
        serde_json::json!({
            "version": self.version,
            "running": self.running(),
            "reference": status.reference,
            "evaluations": status.evaluations,
            "windows_dropped": self.stats.dropped.load(Ordering::Relaxed),
            "window": status.window,
            "alerts_in_step": alerts_in_step,
            "alerts": status.alerts,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_of_a_step_are_those_firing_when_it_started_and_those_fired_since() {
        let start = DriftCounts {
            fired: 5,
            firing: 2,
            evaluations: 10,
        };
        let now = DriftCounts {
            fired: 8,
            firing: 1,
            evaluations: 14,
        };
        assert_eq!(now.alerts_since(&start), 5);
        assert_eq!(start.alerts_since(&start), 2);
        assert_eq!(now.alerts_since(&DriftCounts::default()), 8);
    }
}
