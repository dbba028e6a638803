//! The evaluator thread: merges the last sub-windows, judges every column
//! and the score, steps each alert's hysteresis, asks for retraining, and
//! hands the new status to a sink.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::Serialize;

use super::alert::{
    lead, AlertKey, AlertKind, AlertMessage, AlertState, AlertStatus, Hysteresis, Output,
    RetrainRequest, Rules,
};
use super::judge::{judge_column, ColumnStatus, Judged};
use super::plan::Plan;
use super::recorder::RecorderStats;
use super::window::{Window, WindowRef};
use crate::drift::profile::ColumnSketch;
use crate::drift::sequential;

/// A performance reading of one model version (from the label join).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerformanceReading {
    pub model_version: String,
    /// Labelled predictions in the rolling window.
    pub labels: u64,
    /// `(metric, value, threshold, higher_is_better)`; a metric without a
    /// threshold is reported but not judged.
    pub metrics: Vec<(&'static str, f64, Option<f64>, bool)>,
    /// Whether the window holds enough labels to be judged.
    pub judged: bool,
}

/// Everything `GET /v1/drift` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftStatus {
    pub model: String,
    pub model_version: String,
    pub reference: String,
    pub window: Option<WindowRef>,
    pub sub_windows: usize,
    pub evaluations: u64,
    pub windows_dropped: u64,
    pub columns: Vec<ColumnStatus>,
    pub score: Option<ColumnStatus>,
    pub alerts: Vec<AlertStatus>,
    pub performance: Vec<PerformanceReading>,
    pub sequential: Option<serde_json::Value>,
}

/// Supplies performance readings at each evaluation (the label join).
pub type PerformanceSource = Box<dyn FnMut() -> Vec<PerformanceReading> + Send>;

/// A sequential detector fed every score in arrival order; returns a
/// judgement per evaluation: `Some(judged)` (bad when it alarmed since the
/// last evaluation) and its state for the status page.
pub trait ScoreDetector: Send {
    fn observe(&mut self, scores: &[f32]) -> Option<Judged>;
    fn state(&self) -> serde_json::Value;
}

/// [`sequential::PageHinkley`] as the evaluator's score detector:
/// bad when it alarmed on the scores of the latest sub-window.
pub struct PageHinkleyDetector(pub sequential::PageHinkley);

impl PageHinkleyDetector {
    /// Standardised by the reference score's mean and deviation (from the
    /// profile's quantile sketch); `None` when the plan has no usable ones.
    pub fn for_plan(plan: &Plan) -> Option<Result<Self, sequential::SequentialError>> {
        if !plan.config.sequential {
            return None;
        }
        let (mean, std) = plan.score_reference.moments()?;
        Some(sequential::PageHinkley::new(plan.config.page_hinkley, mean, std).map(Self))
    }
}

impl ScoreDetector for PageHinkleyDetector {
    fn observe(&mut self, scores: &[f32]) -> Option<Judged> {
        let mut alarm = None;
        self.0.update_all(scores, |a| alarm = Some(a));
        let state = self.0.state();
        let (value, threshold) = match alarm {
            Some(a) => (a.statistic, a.threshold),
            None => (state.up.max(state.down), state.lambda),
        };
        Some(Judged {
            statistic: "page_hinkley",
            value,
            threshold: Some(threshold),
            p_value: None,
            bound: None,
            effect: None,
            bad: alarm.is_some(),
        })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.0.state()).unwrap_or_default()
    }
}

/// Judges windows against the reference; see the module docs.
pub struct Evaluator {
    plan: Arc<Plan>,
    recent: VecDeque<Window>,
    states: BTreeMap<AlertKey, Hysteresis>,
    /// A retrain request went out in the current drift episode.
    retrain_sent: bool,
    evaluations: u64,
    performance: Option<PerformanceSource>,
    detector: Option<Box<dyn ScoreDetector>>,
    status: Arc<RwLock<DriftStatus>>,
    stats: Arc<RecorderStats>,
    sink: EvaluationSink,
}

/// Receives each evaluation: the new status, the state changes it caused,
/// and how long it took.
pub type EvaluationSink = Box<dyn FnMut(&DriftStatus, &[Output], Duration) + Send>;

impl Evaluator {
    /// `sink` is called after each evaluation with the new status, the
    /// state changes it caused, and the time the evaluation took
    /// (telemetry, Kafka, the demo's console).
    pub fn new(
        plan: Arc<Plan>,
        stats: Arc<RecorderStats>,
        status: Arc<RwLock<DriftStatus>>,
        sink: EvaluationSink,
    ) -> Self {
        {
            let mut s = status.write();
            s.model = plan.model.clone();
            s.model_version = plan.version.clone();
            s.reference = plan.profile.id.clone();
        }
        Evaluator {
            plan,
            recent: VecDeque::new(),
            states: BTreeMap::new(),
            retrain_sent: false,
            evaluations: 0,
            performance: None,
            detector: None,
            status,
            stats,
            sink,
        }
    }

    pub fn with_performance(mut self, source: PerformanceSource) -> Self {
        self.performance = Some(source);
        self
    }

    pub fn with_detector(mut self, detector: Box<dyn ScoreDetector>) -> Self {
        self.detector = Some(detector);
        self
    }

    /// Runs until the recorder is dropped (its channel closes).
    pub fn run(mut self, rx: Receiver<Window>) {
        while let Ok(window) = rx.recv() {
            self.push(window);
        }
    }

    /// Takes one closed sub-window and evaluates; returns the outputs.
    pub fn push(&mut self, window: Window) -> Vec<Output> {
        let started = Instant::now();
        let sequential_judged = self
            .detector
            .as_mut()
            .and_then(|d| d.observe(&window.scores));
        self.recent.push_back(window);
        while self.recent.len() > self.plan.config.sub_windows.max(1) as usize {
            self.recent.pop_front();
        }
        let Some(mut merged) = self.merged() else {
            return Vec::new();
        };
        merged.flush();
        let now = crate::event::now_ms();
        let window = WindowRef {
            start: merged.first_ts_ms.unwrap_or(merged.opened_ms),
            end: merged.last_ts_ms.unwrap_or(merged.closed_ms.unwrap_or(now)),
            count: merged.count,
        };
        let mut outputs = Vec::new();
        let mut status = DriftStatus {
            model: self.plan.model.clone(),
            model_version: self.plan.version.clone(),
            reference: self.plan.profile.id.clone(),
            window: Some(window),
            sub_windows: self.recent.len(),
            evaluations: self.evaluations,
            windows_dropped: self
                .stats
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            ..Default::default()
        };
        // A sliding window is judged once all its sub-windows are in: a
        // partial one covers less time than the thresholds were set for.
        let full = self.recent.len() >= self.plan.config.sub_windows.max(1) as usize;
        let enough = full && merged.count >= self.plan.config.min_samples;
        if enough {
            self.evaluations += 1;
            status.evaluations = self.evaluations;
        }
        let plan = self.plan.clone();
        for ((column, sketch), reference) in plan
            .columns
            .iter()
            .zip(&merged.columns)
            .zip(&plan.profile.columns)
        {
            let col = judge_column(
                column,
                &reference.sketch,
                sketch,
                enough,
                plan.config.min_samples,
            );
            if enough {
                self.apply(AlertKind::DataDrift, &col, window, now, &mut outputs);
            }
            status.columns.push(col);
        }
        let mut score = judge_column(
            &plan.score,
            &plan.profile.score.sketch,
            &ColumnSketch::Numeric(merged.score),
            enough,
            plan.config.min_samples,
        );
        // The sequential detector judges every sub-window; its alarm is one
        // more statistic of the score's episode.
        let sequential = sequential_judged.is_some();
        if let Some(judged) = sequential_judged {
            score.statistics.push(judged);
        }
        if enough || sequential {
            self.apply(
                AlertKind::PredictionDrift,
                &score,
                window,
                now,
                &mut outputs,
            );
        }
        status.score = Some(score);
        if let Some(d) = &self.detector {
            status.sequential = Some(d.state());
        }
        if let Some(source) = self.performance.as_mut() {
            status.performance = source();
            let readings = status.performance.clone();
            for r in readings.iter().filter(|r| r.judged) {
                let judged = r
                    .metrics
                    .iter()
                    .map(|&(metric, value, threshold, higher_is_better)| Judged {
                        statistic: metric,
                        value,
                        threshold,
                        p_value: None,
                        bound: None,
                        effect: None,
                        bad: threshold.is_some_and(|t| {
                            if higher_is_better {
                                value < t
                            } else {
                                value > t
                            }
                        }),
                    })
                    .collect();
                let key = AlertKey {
                    kind: AlertKind::Performance,
                    feature: format!("model_version={}", r.model_version),
                };
                self.step(key, judged, window, now, &mut outputs);
            }
        }
        self.retrain(window, now, &mut outputs);
        status.alerts = self
            .states
            .iter()
            .filter(|(_, h)| h.firing || !h.alert_id.is_empty())
            .map(|(k, h)| AlertStatus {
                kind: k.kind,
                feature: k.feature.clone(),
                statistic: h.statistic.clone(),
                state: if h.firing {
                    AlertState::Firing
                } else {
                    AlertState::Resolved
                },
                since: h.since,
                alert_id: h.alert_id.clone(),
                value: h.value,
                threshold: h.threshold,
                bad_streak: h.bad_streak,
                good_streak: h.good_streak,
                firing_evaluations: h.firing_evaluations,
            })
            .collect();
        (self.sink)(&status, &outputs, started.elapsed());
        *self.status.write() = status;
        outputs
    }

    fn merged(&self) -> Option<Window> {
        let mut it = self.recent.iter();
        let mut merged = it.next()?.clone();
        for w in it {
            if merged.merge(w).is_err() {
                // Same plan, same shapes: cannot happen; judge what merged.
                break;
            }
        }
        Some(merged)
    }

    /// Steps the column's episodes: `missing_rate` feeds its own kind
    /// (an upstream field going missing is another incident than a
    /// distribution change), every other statistic `data_kind`'s.
    fn apply(
        &mut self,
        data_kind: AlertKind,
        col: &ColumnStatus,
        window: WindowRef,
        now: i64,
        outputs: &mut Vec<Output>,
    ) {
        let (missing, data): (Vec<Judged>, Vec<Judged>) = col
            .statistics
            .iter()
            .cloned()
            .partition(|j| j.statistic == "missing_rate");
        for (kind, statistics) in [(AlertKind::MissingValues, missing), (data_kind, data)] {
            let key = AlertKey {
                kind,
                feature: col.name.clone(),
            };
            self.step(key, statistics, window, now, outputs);
        }
    }

    /// One evaluation of an episode through its hysteresis: bad when any
    /// judged statistic is bad. Nothing happens when no statistic has a
    /// threshold (nothing was judged).
    fn step(
        &mut self,
        key: AlertKey,
        statistics: Vec<Judged>,
        window: WindowRef,
        now: i64,
        outputs: &mut Vec<Output>,
    ) {
        let rules = Rules {
            fire_after: self.plan.config.fire_after,
            resolve_after: self.plan.config.resolve_after,
        };
        let h = self.states.entry(key.clone()).or_default();
        let fired_by = h.firing.then(|| h.fired_by.clone());
        let Some(judged) = lead(&statistics, fired_by.as_deref()).cloned() else {
            return;
        };
        let changed = h.judge(&judged, rules, now);
        h.statistics = statistics;
        if changed == Some(AlertState::Firing) {
            h.alert_id = key.alert_id(&self.plan.model, &self.plan.version, now);
        }
        if let Some(state) = changed {
            outputs.push(Output::Alert(self.message(&key, state, window, now)));
        }
    }

    fn message(
        &self,
        key: &AlertKey,
        state: AlertState,
        window: WindowRef,
        now: i64,
    ) -> AlertMessage {
        let h = self.states.get(key);
        let model_version = match key.kind {
            AlertKind::Performance => key
                .feature
                .strip_prefix("model_version=")
                .unwrap_or(&self.plan.version)
                .to_string(),
            _ => self.plan.version.clone(),
        };
        AlertMessage {
            alert_id: h.map(|h| h.alert_id.clone()).unwrap_or_default(),
            kind: key.kind,
            model: self.plan.model.clone(),
            model_version,
            feature: key.feature.clone(),
            statistic: h.map(|h| h.statistic.clone()).unwrap_or_default(),
            value: h.map_or(f64::NAN, |h| h.value),
            threshold: h.map_or(f64::NAN, |h| h.threshold),
            p_value: h.and_then(|h| h.p_value),
            state,
            window,
            reference: self.plan.profile.id.clone(),
            ts: now,
            statistics: h.map(|h| h.statistics.clone()).unwrap_or_default(),
        }
    }

    /// One retrain request per drift episode (from the first alert firing
    /// until none is firing): sent when an alert has been firing for
    /// `retrain_after` evaluations, carrying every alert firing then.
    fn retrain(&mut self, window: WindowRef, now: i64, outputs: &mut Vec<Output>) {
        let after = self.plan.config.retrain_after;
        if !self.states.values().any(|h| h.firing) {
            self.retrain_sent = false;
        }
        if after == 0 || self.retrain_sent {
            return;
        }
        let due: Vec<AlertKey> = self
            .states
            .iter()
            .filter(|(k, h)| {
                h.firing && h.firing_evaluations >= after && k.kind != AlertKind::MissingValues
            })
            .map(|(k, _)| k.clone())
            .collect();
        let Some(trigger) = due.first() else {
            return;
        };
        let alerts: Vec<AlertMessage> = self
            .states
            .iter()
            .filter(|(_, h)| h.firing)
            .map(|(k, _)| self.message(k, AlertState::Firing, window, now))
            .collect();
        let firing_evaluations = self.states.get(trigger).map_or(0, |h| h.firing_evaluations);
        let request = RetrainRequest {
            request_id: format!("{}/{}:retrain:{now}", self.plan.model, self.plan.version),
            model: self.plan.model.clone(),
            model_version: self.plan.version.clone(),
            trigger: format!(
                "{} {} {}",
                trigger.kind.as_str(),
                trigger.feature,
                self.states.get(trigger).map_or("", |h| h.fired_by.as_str())
            ),
            alerts,
            window,
            reference: self.plan.profile.id.clone(),
            firing_evaluations,
            ts: now,
        };
        self.retrain_sent = true;
        outputs.push(Output::Retrain(request));
    }
}

/// Starts the evaluator thread.
pub fn spawn(
    evaluator: Evaluator,
    rx: Receiver<Window>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("drift-evaluator".into())
        .spawn(move || evaluator.run(rx))
}
