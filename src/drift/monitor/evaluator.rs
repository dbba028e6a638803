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
use super::judge::{judge_column, ColumnStatus, Context, Judged};
use super::plan::Plan;
use super::recorder::RecorderStats;
use super::view::WindowVerdict;
use super::window::{SeasonSlice, Window, WindowRef};
use crate::drift::cusum::{reference_margin, Cusum, CusumParams, DEFAULT_ALLOWANCE};
use crate::drift::exact::ColumnValues;
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
    /// The family budget: `drift.false_alarm_rate` spent over `tests`
    /// significance tests, each firing at `per_test`.
    pub budget: Option<BudgetStatus>,
    pub performance: Vec<PerformanceReading>,
    pub sequential: Option<serde_json::Value>,
    /// The verdicts of the latest evaluations, oldest first (at most
    /// [`DEFAULT_HISTORY`] in the service; every window in a report).
    pub history: Vec<WindowVerdict>,
}

/// Evaluations the service keeps in [`DriftStatus::history`]: ten minutes
/// of 5-second windows, a few KB.
pub const DEFAULT_HISTORY: usize = 120;

/// The false-alarm budget of an evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub false_alarm_rate: f64,
    pub tests: u32,
    pub per_test: f64,
}

/// One CUSUM across sub-windows on a numeric column's mean.
struct ColumnCusum {
    cusum: Cusum,
    /// An alarm since the last judged evaluation (the CUSUM restarts at an
    /// alarm, so it is kept until an evaluation reports it).
    alarm: Option<f64>,
}

/// One event-time bucket of a seasonal column.
struct SeasonPart {
    sketch: ColumnSketch,
    values: Option<ColumnValues>,
}

/// The last whole season of event time of one seasonal column: whole
/// buckets (hours of a day: the season over
/// [`SEASON_BUCKETS`](super::recorder::SEASON_BUCKETS)), merged from the
/// sub-windows' slices. At most one bucket more than a season's are held,
/// whatever the event rate.
struct SeasonWindow {
    length_ms: i64,
    parts: BTreeMap<i64, SeasonPart>,
    /// The first bucket seen: partly before the stream started.
    started: Option<i64>,
}

impl SeasonWindow {
    fn new(length_ms: i64) -> Self {
        SeasonWindow {
            length_ms,
            parts: BTreeMap::new(),
            started: None,
        }
    }

    fn push(&mut self, slice: &SeasonSlice) {
        self.started = Some(
            self.started
                .map_or(slice.bucket_ms, |s| s.min(slice.bucket_ms)),
        );
        match self.parts.get_mut(&slice.bucket_ms) {
            // Same plan, same shapes: a failed merge loses the slice.
            Some(part) => {
                let _ = merge_part(part, &slice.sketch, slice.values.as_ref());
            }
            None => {
                self.parts.insert(
                    slice.bucket_ms,
                    SeasonPart {
                        sketch: slice.sketch.clone(),
                        values: slice.values.clone(),
                    },
                );
            }
        }
        if let Some(&newest) = self.parts.keys().next_back() {
            let keep_from = newest.saturating_sub(self.length_ms);
            self.parts = self.parts.split_off(&keep_from);
        }
    }

    /// The season's whole buckets before the newest (still filling) one,
    /// merged; `None` until a whole season after the first bucket is in.
    fn merged(&self) -> Option<SeasonPart> {
        let newest = *self.parts.keys().next_back()?;
        let from = newest.saturating_sub(self.length_ms);
        if self.started.is_none_or(|s| s >= from) {
            return None;
        }
        let mut it = self.parts.range(from..newest).map(|(_, p)| p);
        let first = it.next()?;
        let mut merged = SeasonPart {
            sketch: first.sketch.clone(),
            values: first.values.clone(),
        };
        for p in it {
            merge_part(&mut merged, &p.sketch, p.values.as_ref()).ok()?;
        }
        if let ColumnSketch::Numeric(s) = &mut merged.sketch {
            s.flush();
        }
        Some(merged)
    }
}

fn merge_part(
    into: &mut SeasonPart,
    sketch: &ColumnSketch,
    values: Option<&ColumnValues>,
) -> Result<(), crate::drift::DriftError> {
    match (&mut into.sketch, sketch) {
        (ColumnSketch::Numeric(a), ColumnSketch::Numeric(b)) => a.merge(b)?,
        (ColumnSketch::Categorical(a), ColumnSketch::Categorical(b)) => a.merge(b)?,
        _ => {}
    }
    if let (Some(a), Some(b)) = (&mut into.values, values) {
        a.merge(b)?;
    }
    Ok(())
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
    /// Per column, its CUSUM (numeric event columns, `drift.cusum`).
    cusums: Vec<Option<ColumnCusum>>,
    /// Per column, its season window (seasonal columns).
    seasons: Vec<Option<SeasonWindow>>,
    /// Event time of the first event seen (aggregates' warm-up).
    first_ms: Option<i64>,
    states: BTreeMap<AlertKey, Hysteresis>,
    /// A retrain request went out in the current drift episode.
    retrain_sent: bool,
    evaluations: u64,
    performance: Option<PerformanceSource>,
    detector: Option<Box<dyn ScoreDetector>>,
    status: Arc<RwLock<DriftStatus>>,
    stats: Arc<RecorderStats>,
    sink: EvaluationSink,
    /// The latest verdicts and how many to keep.
    history: VecDeque<WindowVerdict>,
    history_len: usize,
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
        let params = CusumParams::calibrated(plan.budget.per_test(), DEFAULT_ALLOWANCE);
        let cusums = plan
            .columns
            .iter()
            .map(|c| {
                (c.cusum && c.enabled).then(|| ColumnCusum {
                    cusum: Cusum::new(params),
                    alarm: None,
                })
            })
            .collect();
        let seasons = plan
            .columns
            .iter()
            .map(|c| c.season_ms.map(SeasonWindow::new))
            .collect();
        Evaluator {
            plan,
            recent: VecDeque::new(),
            cusums,
            seasons,
            first_ms: None,
            states: BTreeMap::new(),
            retrain_sent: false,
            evaluations: 0,
            performance: None,
            detector: None,
            status,
            stats,
            sink,
            history: VecDeque::new(),
            history_len: DEFAULT_HISTORY,
        }
    }

    /// Keeps the verdicts of the last `len` evaluations in the status
    /// (a report keeps every window's).
    pub fn with_history(mut self, len: usize) -> Self {
        self.history_len = len;
        self
    }

    /// Treats streaming aggregates as warm from the first event: for rows
    /// that carry the aggregates' values already computed (a data file),
    /// where no cold start exists.
    pub fn with_warm_aggregates(mut self) -> Self {
        self.first_ms = Some(i64::MIN);
        self
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
        let mut window = window;
        // Saturating: windows pushed directly (tests, merged views) were
        // never counted as queued.
        let bytes = window.bytes();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .stats
            .queued_bytes
            .fetch_update(relaxed, relaxed, |q| Some(q.saturating_sub(bytes)));
        let sequential_judged = self
            .detector
            .as_mut()
            .and_then(|d| d.observe(&window.scores));
        // The detector has seen them; the windows kept for merging do not
        // need them.
        window.scores = Vec::new();
        self.step_cusums(&window);
        self.step_seasons(&window);
        if let Some(first) = window.first_ts_ms {
            self.first_ms = Some(self.first_ms.map_or(first, |f| f.min(first)));
        }
        self.recent.push_back(window);
        while self.recent.len() > self.plan.config.sub_windows.max(1) as usize {
            self.recent.pop_front();
        }
        self.stats.held_bytes.store(
            self.recent.iter().map(Window::bytes).sum(),
            std::sync::atomic::Ordering::Relaxed,
        );
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
        let ctx = Context {
            enough,
            min_samples: plan.config.min_samples,
            level: plan.budget.per_test(),
            resolve: plan.config.resolve_p_value,
            entities: merged.entities.as_ref().map(|e| {
                let stats = e.stats();
                (stats.events, stats.kish())
            }),
        };
        status.budget = Some(BudgetStatus {
            false_alarm_rate: plan.budget.alpha,
            tests: plan.budget.tests,
            per_test: plan.budget.per_test(),
        });
        for (i, ((column, sketch), reference)) in plan
            .columns
            .iter()
            .zip(&merged.columns)
            .zip(&plan.profile.columns)
            .enumerate()
        {
            let values = merged.values.get(i).and_then(Option::as_ref);
            // A streaming aggregate is cold until the stream has covered
            // its window in event time: not judged before.
            let warming = column.history_ms > 0
                && match (self.first_ms, merged.first_ts_ms) {
                    (Some(first), Some(start)) => start < first.saturating_add(column.history_ms),
                    _ => true,
                };
            let season = self.seasons.get(i).and_then(Option::as_ref);
            let season_part = season.and_then(SeasonWindow::merged);
            let mut col = match (season, &season_part) {
                (None, _) => {
                    let ctx = Context {
                        enough: ctx.enough && !warming,
                        ..ctx
                    };
                    judge_column(column, &reference.sketch, sketch, values, &ctx)
                }
                // Judged on its season window: the last whole season of
                // event time (its events' entities are not counted: the
                // column's own count is its size).
                (Some(_), Some(part)) => {
                    let ctx = Context {
                        enough: ctx.enough && !warming,
                        entities: None,
                        ..ctx
                    };
                    judge_column(
                        column,
                        &reference.sketch,
                        &part.sketch,
                        part.values.as_ref(),
                        &ctx,
                    )
                }
                (Some(_), None) => {
                    let ctx = Context {
                        enough: false,
                        ..ctx
                    };
                    let mut col = judge_column(column, &reference.sketch, sketch, values, &ctx);
                    col.skipped = Some("season window filling");
                    col
                }
            };
            if warming && col.skipped.is_some() && column.enabled {
                col.skipped = Some("aggregate warming up (the stream covers less than its window)");
            }
            if enough && col.skipped.is_none() {
                if let Some(Some(c)) = self.cusums.get_mut(i) {
                    let h = c.cusum.params().threshold;
                    let alarm = c.alarm.take();
                    col.statistics.push(Judged {
                        statistic: "cusum",
                        value: alarm.unwrap_or_else(|| c.cusum.statistic()),
                        threshold: Some(h),
                        p_value: None,
                        bound: None,
                        effect: None,
                        bad: alarm.is_some(),
                    });
                }
            }
            if enough {
                self.apply(AlertKind::DataDrift, &col, window, now, &mut outputs);
            }
            status.columns.push(col);
        }
        let mut score = judge_column(
            &plan.score,
            &plan.profile.score.sketch,
            &ColumnSketch::Numeric(merged.score),
            Some(&merged.score_values),
            &ctx,
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
                self.step(key, judged, false, window, now, &mut outputs);
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
        self.history
            .push_back(WindowVerdict::of(&status, window, enough));
        while self.history.len() > self.history_len {
            self.history.pop_front();
        }
        status.history = self.history.iter().cloned().collect();
        (self.sink)(&status, &outputs, started.elapsed());
        *self.status.write() = status;
        outputs
    }

    /// Adds the sub-window's slices to each seasonal column's season
    /// window.
    fn step_seasons(&mut self, window: &Window) {
        for (season, slices) in self.seasons.iter_mut().zip(&window.seasons) {
            if let Some(season) = season {
                slices.iter().for_each(|s| season.push(s));
            }
        }
    }

    /// Feeds each CUSUM the sub-window's standardised mean,
    /// `z = (x̄ - μ_r) / (σ_r / √n)`, with the reference margin.
    fn step_cusums(&mut self, window: &Window) {
        for (i, slot) in self.cusums.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            let (Some(column), Some(Some(values))) =
                (self.plan.columns.get(i), window.values.get(i))
            else {
                continue;
            };
            let Some(prepared) = &column.exact else {
                continue;
            };
            let n = values.count() as f64;
            let (Some(r), Some(w)) = (
                prepared.moments().summary(column.e_ref),
                values.moments().summary(n),
            ) else {
                continue;
            };
            if !(r.variance > 0.0 && n > 0.0) {
                continue;
            }
            let z = (w.mean - r.mean) / (r.variance / n).sqrt();
            if let Some(alarm) = c.cusum.update(z, reference_margin(n, column.e_ref)) {
                c.alarm = Some(alarm.statistic);
            }
        }
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
        let episodes = [
            (AlertKind::MissingValues, missing, false),
            (data_kind, data, col.holding),
        ];
        for (kind, statistics, holding) in episodes {
            let key = AlertKey {
                kind,
                feature: col.name.clone(),
            };
            self.step(key, statistics, holding, window, now, outputs);
        }
    }

    /// One evaluation of an episode through its hysteresis: bad when any
    /// judged statistic is bad, holding (neither bad nor counted as good)
    /// when `holding` says a distribution statistic is still significant at
    /// `drift.resolve_p_value`. Nothing happens when no statistic has a
    /// threshold (nothing was judged).
    fn step(
        &mut self,
        key: AlertKey,
        statistics: Vec<Judged>,
        holding: bool,
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
        let holding = holding || statistics.iter().any(|j| j.bad);
        let changed = h.judge_holding(&judged, holding, rules, now);
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
