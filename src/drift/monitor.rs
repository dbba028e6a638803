//! Drift monitoring inside the scoring loop: windowed sketches of every
//! model input and of the score, compared with the reference profile at
//! each window close, with thresholds, hysteresis and alerts.
//!
//! # Split between the hot path and the evaluator
//!
//! - [`Recorder`] lives on the scoring thread. Per scored event it updates
//!   one sketch per column (≈ 20 ns a column, `benches/drift.rs`) and, when
//!   the sub-window is full (by event count) or old enough (by wall-clock
//!   time), hands it to the evaluator over a bounded channel and starts a
//!   new one. It never waits: when the evaluator is behind, the closed
//!   sub-window is dropped and counted (`driftline_drift_windows_dropped_total`),
//!   scoring goes on.
//! - [`Evaluator`] runs on its own thread. A *window* is the last
//!   `sub_windows` sub-windows merged (tumbling when `sub_windows = 1`,
//!   sliding otherwise); it is evaluated at every sub-window close once all
//!   its sub-windows are in and it holds `min_samples` events. Each statistic with a threshold is judged
//!   good or bad; hysteresis turns judgements into alert state changes
//!   (fire after `fire_after` bad evaluations in a row, resolve after
//!   `resolve_after` good ones), each reported once as an [`Output::Alert`].
//!   An alert that stays firing for `retrain_after` evaluations yields one
//!   [`Output::Retrain`] per drift episode (until no alert is firing).
//!
//! # What fires
//!
//! | statistic | columns | fires when | default |
//! |---|---|---|---|
//! | `psi` | numbers, categoricals, score | PSI ≥ threshold | 0.2 |
//! | `js` | numbers, score | JS distance ≥ threshold | off (redundant with PSI on the same bins) |
//! | `wasserstein` | numbers, score | W1 ≥ threshold (column's unit) | off (unit-dependent) |
//! | `ks` | numbers, score | p-value of `D_low = max(D̂ - bound, 0)` ≤ α and `D_low` ≥ min effect | α = 1e-6, effect 0.05 |
//! | `chi_square` | categoricals | p-value ≤ α (buckets with expected < 5 pooled) and their PSI ≥ min effect | α = 1e-6, effect 0.05 |
//! | `missing_rate` | every column | abs. change ≥ threshold and z-test p ≤ 1e-3 | 0.1 |
//!
//! The KS test is run on the lower confidence bound of D (the sketch's
//! 99% rank-error bound subtracted), so sketch error alone cannot fire it.
//! Both tests also need a minimum effect size: events are not independent
//! draws (many share an entity, whose store features repeat), so with
//! thousands of events a significance test alone flags differences too
//! small to matter, such as a window's card population differing slightly
//! from the training one.
//! Alerts carry `value` and `threshold` on the same scale: for `ks` the
//! statistic D and the D that would fire; for `chi_square` the statistic
//! and its critical value; both also carry the p-value.
//!
//! # Mergeable windows
//!
//! A [`Window`] serialises (serde) and [`Window::merge`]s exactly (counts)
//! or within the KLL bound (quantiles), so windows of several instances of
//! one consumer group combine into the view of one instance that saw all
//! events (`tests/drift_monitor.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::profile::{ColumnSketch, Profile, SCORE_COLUMN};
use super::sketch::{
    compare_categorical, compare_numeric_prepared, NumericSketch, PreparedReference,
};
use super::special::chi2_sf;
use super::stats::{chi_square_from_counts, ks_p_value, psi_from_counts};
use super::DriftError;
use crate::score::manifest::{Encoding, InputKind, Manifest};

/// p-value the missing-rate z test must reach on top of the rate change, so
/// a small window's noise does not fire `missing_rate`.
const MISSING_RATE_P: f64 = 1e-3;

/// Chi-square buckets with fewer expected counts are pooled (the usual
/// validity rule of the asymptotic test).
const MIN_EXPECTED: f64 = 5.0;

// ---------------------------------------------------------------------------
// Configuration

/// How sub-windows are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Every `window_events / sub_windows` scored events.
    #[default]
    Count,
    /// Every `window_duration / sub_windows` of wall-clock time.
    Time,
}

/// Thresholds of the statistics; an absent one does not fire. Keys left
/// out of `[drift.thresholds]` keep their defaults (turn one off with
/// `drift.disable`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub psi: Option<f64>,
    pub js: Option<f64>,
    pub wasserstein: Option<f64>,
    /// Significance level α of the KS test.
    pub ks_p_value: Option<f64>,
    /// Smallest KS distance (lower confidence bound of D) worth an alert,
    /// on top of significance.
    pub ks_min_effect: Option<f64>,
    /// Significance level α of the chi-square test.
    pub chi_square_p_value: Option<f64>,
    /// Smallest PSI over the chi-square's buckets worth an alert, on top
    /// of significance.
    pub chi_square_min_effect: Option<f64>,
    /// Absolute change of the missing rate.
    pub missing_rate: Option<f64>,
}

impl Thresholds {
    /// The defaults of the module docs' table.
    pub fn defaults() -> Self {
        Thresholds {
            psi: Some(0.2),
            js: None,
            wasserstein: None,
            ks_p_value: Some(1e-6),
            ks_min_effect: Some(0.05),
            chi_square_p_value: Some(1e-6),
            chi_square_min_effect: Some(0.05),
            missing_rate: Some(0.1),
        }
    }

    /// `self` with every threshold `over` sets replaced.
    fn overlay(self, over: &Thresholds) -> Self {
        Thresholds {
            psi: over.psi.or(self.psi),
            js: over.js.or(self.js),
            wasserstein: over.wasserstein.or(self.wasserstein),
            ks_p_value: over.ks_p_value.or(self.ks_p_value),
            ks_min_effect: over.ks_min_effect.or(self.ks_min_effect),
            chi_square_p_value: over.chi_square_p_value.or(self.chi_square_p_value),
            chi_square_min_effect: over.chi_square_min_effect.or(self.chi_square_min_effect),
            missing_rate: over.missing_rate.or(self.missing_rate),
        }
    }

    fn without(mut self, disabled: &[String]) -> Self {
        for d in disabled {
            match d.as_str() {
                "psi" => self.psi = None,
                "js" => self.js = None,
                "wasserstein" => self.wasserstein = None,
                "ks" => self.ks_p_value = None,
                "chi_square" => self.chi_square_p_value = None,
                "missing_rate" => self.missing_rate = None,
                _ => {}
            }
        }
        self
    }

    fn problems(&self, key: &str, p: &mut Vec<String>) {
        let check = |name: &str, v: Option<f64>, lo: f64, hi: f64, p: &mut Vec<String>| {
            if let Some(v) = v {
                if !(v.is_finite() && v > lo && v <= hi) {
                    p.push(format!("{key}.{name}: {v} is outside ({lo}, {hi}]"));
                }
            }
        };
        check("psi", self.psi, 0.0, f64::MAX, p);
        check("js", self.js, 0.0, 1.0, p);
        check("wasserstein", self.wasserstein, 0.0, f64::MAX, p);
        check("ks_p_value", self.ks_p_value, 0.0, 0.5, p);
        check("chi_square_p_value", self.chi_square_p_value, 0.0, 0.5, p);
        check("ks_min_effect", self.ks_min_effect, -1e-300, 1.0, p);
        check(
            "chi_square_min_effect",
            self.chi_square_min_effect,
            -1e-300,
            f64::MAX,
            p,
        );
        check("missing_rate", self.missing_rate, 0.0, 1.0, p);
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::defaults()
    }
}

/// Per-column settings (`[drift.features.<name>]`, `[drift.prediction]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnSettings {
    /// `false` skips the column (no statistics, no alerts).
    pub enabled: Option<bool>,
    /// Statistics not judged for this column (`psi`, `js`, `wasserstein`,
    /// `ks`, `chi_square`, `missing_rate`).
    pub disable: Vec<String>,
    pub psi: Option<f64>,
    pub js: Option<f64>,
    pub wasserstein: Option<f64>,
    pub ks_p_value: Option<f64>,
    pub ks_min_effect: Option<f64>,
    pub chi_square_p_value: Option<f64>,
    pub chi_square_min_effect: Option<f64>,
    pub missing_rate: Option<f64>,
}

impl ColumnSettings {
    /// The thresholds this column sets (absent ones inherit).
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            psi: self.psi,
            js: self.js,
            wasserstein: self.wasserstein,
            ks_p_value: self.ks_p_value,
            ks_min_effect: self.ks_min_effect,
            chi_square_p_value: self.chi_square_p_value,
            chi_square_min_effect: self.chi_square_min_effect,
            missing_rate: self.missing_rate,
        }
    }
}

/// `[drift]`: windows, thresholds, hysteresis.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Drift monitoring runs when the model has a reference profile and
    /// this is true.
    pub enabled: bool,
    /// Reference profile; overrides the model manifest's `reference`.
    pub reference: Option<PathBuf>,
    /// `count` or `time` windows.
    pub window: WindowKind,
    /// Events in a (count) window.
    pub window_events: u64,
    /// Length of a (time) window, e.g. `5m`.
    pub window_duration: String,
    /// Sub-windows per window: 1 = tumbling windows; N > 1 = a sliding
    /// window over the last N sub-windows, evaluated at each sub-window close.
    pub sub_windows: u32,
    /// A window (and a column's present values) must hold this many events
    /// to be judged.
    pub min_samples: u64,
    /// Bad evaluations in a row before an alert fires.
    pub fire_after: u32,
    /// Good evaluations in a row before a firing alert resolves.
    pub resolve_after: u32,
    /// Evaluations an alert stays firing before one retrain request is
    /// sent; 0 = never.
    pub retrain_after: u32,
    /// Closed sub-windows waiting for the evaluator before new ones are
    /// dropped (counted).
    pub queue: usize,
    /// Scored events ignored after start before the first window opens:
    /// for streams whose features need history to be representative
    /// (streaming aggregates starting cold without a changelog).
    pub warmup_events: u64,
    /// Thresholds of every column unless overridden.
    pub thresholds: Thresholds,
    /// Statistics not judged on any column.
    pub disable: Vec<String>,
    /// Per-feature overrides, by input name.
    pub features: BTreeMap<String, ColumnSettings>,
    /// Overrides for the score (prediction drift).
    pub prediction: ColumnSettings,
    /// Page-Hinkley change detector on the score stream, standardised by
    /// the reference score's mean and deviation; alarms are judged as the
    /// `page_hinkley` statistic of the score (kind `prediction_drift`).
    /// Off by default: its false-alarm rate (`drift::sequential`) assumes
    /// independent scores, and fraud scores come in bursts (several
    /// high scores of one card within minutes), which it reads as a shift
    /// (the demo's stationary stream alarms within 6,000 events).
    pub sequential: bool,
    pub page_hinkley: super::sequential::Params,
    /// Most scores of one sub-window kept for the sequential detector
    /// (4 bytes each; a time window otherwise keeps every score). Past it
    /// the kept scores are thinned to every 2nd, 4th, ... score, so the
    /// detector still sees the whole sub-window in order, at a lower rate.
    /// Nothing is kept when `sequential` is off.
    pub max_window_scores: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            enabled: true,
            reference: None,
            window: WindowKind::Count,
            window_events: 5000,
            window_duration: "5m".into(),
            sub_windows: 5,
            min_samples: 1000,
            fire_after: 1,
            resolve_after: 5,
            retrain_after: 20,
            queue: 64,
            warmup_events: 0,
            thresholds: Thresholds::defaults(),
            disable: Vec::new(),
            features: BTreeMap::new(),
            prediction: ColumnSettings::default(),
            sequential: false,
            page_hinkley: super::sequential::Params::default(),
            max_window_scores: 100_000,
        }
    }
}

const STATISTICS: [&str; 6] = [
    "psi",
    "js",
    "wasserstein",
    "ks",
    "chi_square",
    "missing_rate",
];

impl DriftConfig {
    /// Every problem, each naming its key.
    pub fn problems(&self, p: &mut Vec<String>) {
        if self.sequential && self.max_window_scores < 2 {
            p.push("drift.max_window_scores: must be at least 2".into());
        }
        if self.window_events == 0 {
            p.push("drift.window_events: must be at least 1".into());
        }
        if self.sub_windows == 0 || self.sub_windows > 1000 {
            p.push(format!(
                "drift.sub_windows: {} is outside 1..=1000",
                self.sub_windows
            ));
        }
        if self.window == WindowKind::Count
            && self.sub_windows > 0
            && self.window_events < u64::from(self.sub_windows)
        {
            p.push(format!(
                "drift.window_events: {} is fewer than drift.sub_windows ({})",
                self.window_events, self.sub_windows
            ));
        }
        if let Err(e) = crate::features::aggregates::parse_window(&self.window_duration) {
            p.push(format!("drift.window_duration: {e}"));
        }
        if self.fire_after == 0 {
            p.push("drift.fire_after: must be at least 1".into());
        }
        if self.resolve_after == 0 {
            p.push("drift.resolve_after: must be at least 1".into());
        }
        if self.queue == 0 {
            p.push("drift.queue: must be at least 1".into());
        }
        self.thresholds.problems("drift.thresholds", p);
        if let Err(e) = self.page_hinkley.validate() {
            p.push(format!("drift.page_hinkley: {e}"));
        }
        let statistics = |key: &str, list: &[String], p: &mut Vec<String>| {
            for s in list {
                if !STATISTICS.contains(&s.as_str()) {
                    p.push(format!(
                        "{key}: unknown statistic `{s}` (one of {})",
                        STATISTICS.join(", ")
                    ));
                }
            }
        };
        statistics("drift.disable", &self.disable, p);
        statistics("drift.prediction.disable", &self.prediction.disable, p);
        self.prediction.thresholds().problems("drift.prediction", p);
        for (name, c) in &self.features {
            statistics(&format!("drift.features.{name}.disable"), &c.disable, p);
            c.thresholds()
                .problems(&format!("drift.features.{name}"), p);
        }
    }

    /// Checks that per-feature settings name inputs of the model.
    pub fn check_features(&self, manifest: &Manifest, p: &mut Vec<String>) {
        for name in self.features.keys() {
            if !manifest.inputs.iter().any(|i| &i.name == name) {
                p.push(format!(
                    "drift.features.{name}: model {}/{} has no input `{name}`",
                    manifest.name, manifest.version
                ));
            }
        }
    }

    fn sub_window_events(&self) -> u64 {
        (self.window_events / u64::from(self.sub_windows.max(1))).max(1)
    }

    fn sub_window_duration(&self) -> Duration {
        let ms =
            crate::features::aggregates::parse_window(&self.window_duration).unwrap_or(300_000);
        Duration::from_millis((ms.max(1) as u64 / u64::from(self.sub_windows.max(1))).max(1))
    }
}

// ---------------------------------------------------------------------------
// The plan: how to read each column out of an encoded row

#[derive(Debug, Clone)]
enum Probe {
    Numeric {
        offset: usize,
    },
    /// One-hot block of `buckets.len()` slots; `buckets[i]` is the sketch
    /// bucket of vocabulary entry `i`. No hot slot = a value outside the
    /// vocabulary (zeros encoding) = "other".
    OneHot {
        offset: usize,
        buckets: Vec<usize>,
        other: usize,
    },
    /// Ordinal code; `-1` (unknown) and anything else = "other".
    Ordinal {
        offset: usize,
        buckets: Vec<usize>,
        other: usize,
    },
}

#[derive(Debug, Clone)]
struct PlannedColumn {
    name: String,
    probe: Probe,
    enabled: bool,
    thresholds: Thresholds,
    /// The reference's ECDF, for numeric columns with values.
    prepared: Option<PreparedReference>,
}

fn prepare(name: &str, sketch: &ColumnSketch) -> Result<Option<PreparedReference>, MonitorError> {
    match sketch {
        ColumnSketch::Numeric(s) => {
            PreparedReference::new(s).map_err(|source| MonitorError::Column {
                column: name.into(),
                source,
            })
        }
        ColumnSketch::Categorical(_) => Ok(None),
    }
}

/// Errors wiring the monitor to a model and its profile (start-up only).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Profile(#[from] super::profile::ProfileError),
    #[error("reference profile column `{column}`: {source}")]
    Column { column: String, source: DriftError },
}

/// How rows map to columns, the reference, and the judging rules; shared
/// by the recorder and the evaluator.
#[derive(Debug)]
pub struct Plan {
    model: String,
    version: String,
    profile: Profile,
    score_reference: NumericSketch,
    columns: Vec<PlannedColumn>,
    score: PlannedColumn,
    config: DriftConfig,
}

impl Plan {
    /// Checks the profile against the manifest and resolves every column.
    pub fn new(
        manifest: &Manifest,
        profile: Profile,
        profile_path: &std::path::Path,
        config: DriftConfig,
    ) -> Result<Self, MonitorError> {
        profile.check_against(manifest, profile_path)?;
        let mut offset = 0;
        let mut columns = Vec::with_capacity(manifest.inputs.len());
        for (input, column) in manifest.inputs.iter().zip(&profile.columns) {
            let settings = config.features.get(&input.name);
            let probe = match (&column.sketch, input.kind) {
                (ColumnSketch::Categorical(s), InputKind::Boolean) => Probe::Ordinal {
                    offset,
                    buckets: vec![s.bucket_of("false"), s.bucket_of("true")],
                    other: s.categories().len(),
                },
                (ColumnSketch::Categorical(s), _) => {
                    let buckets = input.vocabulary.iter().map(|v| s.bucket_of(v)).collect();
                    let other = s.categories().len();
                    match input.encoding {
                        Some(Encoding::Ordinal) => Probe::Ordinal {
                            offset,
                            buckets,
                            other,
                        },
                        _ => Probe::OneHot {
                            offset,
                            buckets,
                            other,
                        },
                    }
                }
                (ColumnSketch::Numeric(_), _) => Probe::Numeric { offset },
            };
            columns.push(PlannedColumn {
                name: input.name.clone(),
                probe,
                enabled: settings.and_then(|s| s.enabled).unwrap_or(true),
                thresholds: resolve(&config, settings),
                prepared: prepare(&input.name, &column.sketch)?,
            });
            offset += input.width();
        }
        let score = PlannedColumn {
            name: SCORE_COLUMN.into(),
            probe: Probe::Numeric { offset: 0 },
            enabled: config.prediction.enabled.unwrap_or(true),
            thresholds: resolve(&config, Some(&config.prediction)),
            prepared: prepare(SCORE_COLUMN, &profile.score.sketch)?,
        };
        // check_against has made sure the score is numeric.
        let ColumnSketch::Numeric(score_reference) = profile.score.sketch.clone() else {
            return Err(MonitorError::Column {
                column: SCORE_COLUMN.into(),
                source: DriftError::IncompatibleSketches {
                    reason: "the score must be profiled as numeric",
                },
            });
        };
        Ok(Plan {
            score_reference,
            model: manifest.name.clone(),
            version: manifest.version.clone(),
            profile,
            columns,
            score,
            config,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    pub fn model(&self) -> (&str, &str) {
        (&self.model, &self.version)
    }

    /// An empty window on the reference's edges and categories.
    pub fn empty_window(&self, seq: u64) -> Window {
        Window {
            seq,
            columns: self
                .profile
                .columns
                .iter()
                .map(|c| c.sketch.empty_like())
                .collect(),
            score: self.score_reference.empty_like(),
            count: 0,
            first_ts_ms: None,
            last_ts_ms: None,
            opened_ms: crate::event::now_ms(),
            closed_ms: None,
            scores: Vec::new(),
            score_stride: 1,
        }
    }

    /// The reference sketch of the score.
    pub fn score_reference(&self) -> &NumericSketch {
        &self.score_reference
    }
}

fn resolve(config: &DriftConfig, settings: Option<&ColumnSettings>) -> Thresholds {
    let mut t = config.thresholds.without(&config.disable);
    if let Some(s) = settings {
        t = t.overlay(&s.thresholds()).without(&s.disable);
    }
    t
}

// ---------------------------------------------------------------------------
// Windows

/// The sketches of one (sub-)window: one per model input, in manifest
/// order, and one of the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Sequence number of the sub-window within this process.
    pub seq: u64,
    pub columns: Vec<ColumnSketch>,
    pub score: NumericSketch,
    /// Events observed.
    pub count: u64,
    /// Event-time range of the observed events.
    pub first_ts_ms: Option<i64>,
    pub last_ts_ms: Option<i64>,
    /// Wall-clock open and close times.
    pub opened_ms: i64,
    pub closed_ms: Option<i64>,
    /// The scores in arrival order, for the sequential detector (only when
    /// it is on), thinned to every `score_stride`-th score past
    /// `drift.max_window_scores`; not serialised (a merged view has no
    /// single order).
    #[serde(skip)]
    pub scores: Vec<f32>,
    /// Keep one score in this many (1 until the cap is first reached).
    #[serde(skip)]
    pub score_stride: u64,
}

impl Window {
    /// Adds `other` into `self` (same reference); afterwards `self`
    /// describes both. On error `self` may be partly merged: merge into a
    /// copy when that matters.
    pub fn merge(&mut self, other: &Window) -> Result<(), DriftError> {
        if self.columns.len() != other.columns.len() {
            return Err(DriftError::IncompatibleSketches {
                reason: "windows of different models",
            });
        }
        for (a, b) in self.columns.iter_mut().zip(&other.columns) {
            match (a, b) {
                (ColumnSketch::Numeric(a), ColumnSketch::Numeric(b)) => a.merge(b)?,
                (ColumnSketch::Categorical(a), ColumnSketch::Categorical(b)) => a.merge(b)?,
                _ => {
                    return Err(DriftError::IncompatibleSketches {
                        reason: "column kinds differ",
                    })
                }
            }
        }
        self.score.merge(&other.score)?;
        self.count += other.count;
        self.first_ts_ms = min_opt(self.first_ts_ms, other.first_ts_ms);
        self.last_ts_ms = max_opt(self.last_ts_ms, other.last_ts_ms);
        self.opened_ms = self.opened_ms.min(other.opened_ms);
        self.closed_ms = max_opt(self.closed_ms, other.closed_ms);
        self.scores.extend_from_slice(&other.scores);
        Ok(())
    }

    fn flush(&mut self) {
        for c in &mut self.columns {
            if let ColumnSketch::Numeric(s) = c {
                s.flush();
            }
        }
        self.score.flush();
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

// ---------------------------------------------------------------------------
// The hot path

/// Counts of the recorder, read by telemetry.
#[derive(Debug, Default)]
pub struct RecorderStats {
    pub windows: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
}

/// Updates the open sub-window per scored event; see the module docs.
pub struct Recorder {
    plan: Arc<Plan>,
    window: Window,
    opened: Instant,
    sub_events: u64,
    sub_duration: Option<Duration>,
    tx: SyncSender<Window>,
    stats: Arc<RecorderStats>,
    /// Warm-up events still to ignore.
    skip: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("seq", &self.window.seq)
            .field("count", &self.window.count)
            .finish()
    }
}

impl Recorder {
    /// A recorder and the receiving end for the [`Evaluator`] thread.
    pub fn new(plan: Arc<Plan>, stats: Arc<RecorderStats>) -> (Recorder, Receiver<Window>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(plan.config.queue.max(1));
        let (sub_events, sub_duration) = match plan.config.window {
            WindowKind::Count => (plan.config.sub_window_events(), None),
            WindowKind::Time => (u64::MAX, Some(plan.config.sub_window_duration())),
        };
        let recorder = Recorder {
            skip: plan.config.warmup_events,
            window: plan.empty_window(0),
            plan,
            opened: Instant::now(),
            sub_events,
            sub_duration,
            tx,
            stats,
        };
        (recorder, rx)
    }

    /// Observes one scored event: `row` is the encoded model input,
    /// `missing[i]` says input `i` fell back to its default (or had no value).
    #[inline]
    pub fn observe(&mut self, row: &[f32], missing: &[bool], score: f32, ts_ms: i64) {
        if self.skip > 0 {
            self.skip -= 1;
            if self.skip == 0 {
                self.opened = Instant::now();
                self.window.opened_ms = crate::event::now_ms();
            }
            return;
        }
        let w = &mut self.window;
        for (i, (column, sketch)) in self.plan.columns.iter().zip(&mut w.columns).enumerate() {
            if missing.get(i).copied().unwrap_or(false) {
                match sketch {
                    ColumnSketch::Numeric(s) => s.update_missing(),
                    ColumnSketch::Categorical(s) => s.update_missing(),
                }
                continue;
            }
            match (&column.probe, sketch) {
                (Probe::Numeric { offset }, ColumnSketch::Numeric(s)) => {
                    s.update(f64::from(row.get(*offset).copied().unwrap_or(f32::NAN)));
                }
                (
                    Probe::OneHot {
                        offset,
                        buckets,
                        other,
                    },
                    ColumnSketch::Categorical(s),
                ) => {
                    let block = row.get(*offset..*offset + buckets.len()).unwrap_or(&[]);
                    let hot = block.iter().position(|&v| v == 1.0);
                    s.update_bucket(hot.and_then(|p| buckets.get(p).copied()).unwrap_or(*other));
                }
                (
                    Probe::Ordinal {
                        offset,
                        buckets,
                        other,
                    },
                    ColumnSketch::Categorical(s),
                ) => {
                    let code = row.get(*offset).copied().unwrap_or(-1.0);
                    let bucket = if code >= 0.0 && code.fract() == 0.0 {
                        buckets.get(code as usize).copied()
                    } else {
                        None
                    };
                    s.update_bucket(bucket.unwrap_or(*other));
                }
                // Plan::new builds probes from the same profile columns.
                _ => {}
            }
        }
        w.score.update(f64::from(score));
        if self.plan.config.sequential {
            keep_score(w, score, self.plan.config.max_window_scores.max(2));
        }
        w.count += 1;
        w.first_ts_ms = min_opt(w.first_ts_ms, Some(ts_ms));
        w.last_ts_ms = max_opt(w.last_ts_ms, Some(ts_ms));
        if w.count >= self.sub_events {
            self.close();
        }
    }

    /// Closes a time sub-window that has run its length (called by the loop
    /// between batches, so a quiet stream still closes its windows).
    pub fn tick(&mut self) {
        if let Some(d) = self.sub_duration {
            if self.opened.elapsed() >= d {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        let next = self.plan.empty_window(self.window.seq + 1);
        let mut closed = std::mem::replace(&mut self.window, next);
        self.opened = Instant::now();
        closed.closed_ms = Some(crate::event::now_ms());
        self.stats
            .windows
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.tx.try_send(closed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Appends `score` to the window's scores for the sequential detector,
/// at most `cap` of them: when full, every second kept score is dropped and
/// the stride doubles, so what is kept stays evenly spaced and in order.
fn keep_score(w: &mut Window, score: f32, cap: usize) {
    let stride = w.score_stride.max(1);
    if !w.count.is_multiple_of(stride) {
        return;
    }
    if w.scores.len() >= cap {
        let mut i = 0u64;
        w.scores.retain(|_| {
            i += 1;
            !i.is_multiple_of(2)
        });
        w.score_stride = stride.saturating_mul(2);
        // This score's position may not be on the new stride.
        if !w.count.is_multiple_of(w.score_stride) {
            return;
        }
    }
    w.scores.push(score);
}

// ---------------------------------------------------------------------------
// Evaluation

/// Kinds of alerts (spec: `drift-alerts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    DataDrift,
    PredictionDrift,
    MissingValues,
    Performance,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DataDrift => "data_drift",
            AlertKind::PredictionDrift => "prediction_drift",
            AlertKind::MissingValues => "missing_values",
            AlertKind::Performance => "performance",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// The window an alert or statistic is about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowRef {
    /// Event-time range (epoch ms), falling back to wall-clock times when
    /// events carried none.
    pub start: i64,
    pub end: i64,
    pub count: u64,
}

/// One `drift-alerts` message (spec format, plus `p_value`, `ts` and
/// `model_version` of a performance alert's version).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMessage {
    /// Stable for one firing episode: the resolved message repeats the
    /// firing message's id.
    pub alert_id: String,
    pub kind: AlertKind,
    pub model: String,
    pub model_version: String,
    pub feature: String,
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    pub state: AlertState,
    pub window: WindowRef,
    pub reference: String,
    /// When the state changed (wall clock, epoch ms).
    pub ts: i64,
}

/// One `retrain-requests` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrainRequest {
    pub request_id: String,
    pub model: String,
    pub model_version: String,
    /// Why: the alert that stayed firing, and every alert firing with it.
    pub trigger: String,
    pub alerts: Vec<AlertMessage>,
    pub window: WindowRef,
    pub reference: String,
    /// Evaluations the triggering alert had been firing.
    pub firing_evaluations: u32,
    pub ts: i64,
}

/// What the evaluator emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Alert(AlertMessage),
    Retrain(RetrainRequest),
}

/// A judged statistic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub statistic: &'static str,
    pub value: f64,
    /// The value at which it fires (`None`: no threshold, reported only).
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Error bound of a sketch-mode value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// The effect size a significance test must also reach (`ks`: the
    /// lower bound of D; `chi_square`: PSI over its buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    pub bad: bool,
}

/// The statistics of one column at the latest evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnStatus {
    pub name: String,
    pub kind: &'static str,
    pub count: u64,
    pub missing: u64,
    /// `None` when the column was not judged (disabled, too few values).
    pub skipped: Option<&'static str>,
    pub statistics: Vec<Judged>,
}

/// One alert's current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertStatus {
    pub kind: AlertKind,
    pub feature: String,
    pub statistic: String,
    pub state: AlertState,
    pub since: i64,
    pub alert_id: String,
    pub value: f64,
    pub threshold: f64,
    /// Consecutive bad / good evaluations.
    pub bad_streak: u32,
    pub good_streak: u32,
    pub firing_evaluations: u32,
}

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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AlertKey {
    kind: AlertKind,
    feature: String,
    statistic: String,
}

#[derive(Debug, Default)]
struct Hysteresis {
    firing: bool,
    bad_streak: u32,
    good_streak: u32,
    firing_evaluations: u32,
    alert_id: String,
    since: i64,
    value: f64,
    threshold: f64,
    p_value: Option<f64>,
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

/// [`super::sequential::PageHinkley`] as the evaluator's score detector:
/// bad when it alarmed on the scores of the latest sub-window.
pub struct PageHinkleyDetector(pub super::sequential::PageHinkley);

impl PageHinkleyDetector {
    /// Standardised by the reference score's mean and deviation (from the
    /// profile's quantile sketch); `None` when the plan has no usable ones.
    pub fn for_plan(plan: &Plan) -> Option<Result<Self, super::sequential::SequentialError>> {
        if !plan.config.sequential {
            return None;
        }
        let (mean, std) = plan.score_reference.moments()?;
        Some(super::sequential::PageHinkley::new(plan.config.page_hinkley, mean, std).map(Self))
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
        let mut window = window;
        let sequential = self
            .detector
            .as_mut()
            .and_then(|d| d.observe(&window.scores));
        // The detector has seen them; the windows kept for merging do not
        // need them.
        window.scores = Vec::new();
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
        let score = judge_column(
            &plan.score,
            &plan.profile.score.sketch,
            &ColumnSketch::Numeric(merged.score),
            enough,
            plan.config.min_samples,
        );
        if enough {
            self.apply(
                AlertKind::PredictionDrift,
                &score,
                window,
                now,
                &mut outputs,
            );
        }
        status.score = Some(score);
        if let Some(judged) = sequential {
            let key = AlertKey {
                kind: AlertKind::PredictionDrift,
                feature: SCORE_COLUMN.into(),
                statistic: judged.statistic.into(),
            };
            self.step(key, &judged, window, now, &mut outputs);
        }
        if let Some(d) = &self.detector {
            status.sequential = Some(d.state());
        }
        if let Some(source) = self.performance.as_mut() {
            status.performance = source();
            let readings = status.performance.clone();
            for r in readings.iter().filter(|r| r.judged) {
                for &(metric, value, threshold, higher_is_better) in &r.metrics {
                    let Some(threshold) = threshold else { continue };
                    let judged = Judged {
                        statistic: metric,
                        value,
                        threshold: Some(threshold),
                        p_value: None,
                        bound: None,
                        effect: None,
                        bad: if higher_is_better {
                            value < threshold
                        } else {
                            value > threshold
                        },
                    };
                    let key = AlertKey {
                        kind: AlertKind::Performance,
                        feature: format!("model_version={}", r.model_version),
                        statistic: metric.into(),
                    };
                    self.step(key, &judged, window, now, &mut outputs);
                }
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
                statistic: k.statistic.clone(),
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

    fn apply(
        &mut self,
        data_kind: AlertKind,
        col: &ColumnStatus,
        window: WindowRef,
        now: i64,
        outputs: &mut Vec<Output>,
    ) {
        if col.skipped.is_some() {
            return;
        }
        for judged in col.statistics.iter().filter(|j| j.threshold.is_some()) {
            let kind = if judged.statistic == "missing_rate" {
                AlertKind::MissingValues
            } else {
                data_kind
            };
            let key = AlertKey {
                kind,
                feature: col.name.clone(),
                statistic: judged.statistic.into(),
            };
            self.step(key, judged, window, now, outputs);
        }
    }

    /// One judgement through the hysteresis of its alert.
    fn step(
        &mut self,
        key: AlertKey,
        judged: &Judged,
        window: WindowRef,
        now: i64,
        outputs: &mut Vec<Output>,
    ) {
        let config = &self.plan.config;
        let h = self.states.entry(key.clone()).or_default();
        h.value = judged.value;
        h.threshold = judged.threshold.unwrap_or(f64::NAN);
        h.p_value = judged.p_value;
        let changed = if judged.bad {
            h.bad_streak += 1;
            h.good_streak = 0;
            if h.firing {
                h.firing_evaluations += 1;
                None
            } else if h.bad_streak >= config.fire_after {
                h.firing = true;
                h.firing_evaluations = 1;
                h.since = now;
                h.alert_id = format!(
                    "{}/{}:{}:{}:{}:{now}",
                    self.plan.model,
                    self.plan.version,
                    key.kind.as_str(),
                    key.feature,
                    key.statistic
                );
                Some(AlertState::Firing)
            } else {
                None
            }
        } else {
            h.good_streak += 1;
            h.bad_streak = 0;
            if h.firing {
                h.firing_evaluations += 1;
                if h.good_streak >= config.resolve_after {
                    h.firing = false;
                    h.since = now;
                    Some(AlertState::Resolved)
                } else {
                    None
                }
            } else {
                None
            }
        };
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
            statistic: key.statistic.clone(),
            value: h.map_or(f64::NAN, |h| h.value),
            threshold: h.map_or(f64::NAN, |h| h.threshold),
            p_value: h.and_then(|h| h.p_value),
            state,
            window,
            reference: self.plan.profile.id.clone(),
            ts: now,
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
                trigger.statistic
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

/// The statistics of one column, judged against its thresholds.
fn judge_column(
    column: &PlannedColumn,
    reference: &ColumnSketch,
    current: &ColumnSketch,
    enough: bool,
    min_samples: u64,
) -> ColumnStatus {
    let (count, missing) = match current {
        ColumnSketch::Numeric(s) => (s.count(), s.missing()),
        ColumnSketch::Categorical(s) => (s.count(), s.missing()),
    };
    let mut status = ColumnStatus {
        name: column.name.clone(),
        kind: current.kind(),
        count,
        missing,
        skipped: None,
        statistics: Vec::new(),
    };
    if !column.enabled {
        status.skipped = Some("disabled");
        return status;
    }
    if !enough {
        status.skipped = Some("window below min_samples");
        return status;
    }
    let t = &column.thresholds;
    let s = &mut status.statistics;
    let mut missing_change = None;
    let present_enough = count >= min_samples;
    match (reference, current) {
        (ColumnSketch::Numeric(r), ColumnSketch::Numeric(c)) => {
            if let Ok(d) = compare_numeric_prepared(r, column.prepared.as_ref(), c) {
                missing_change = Some(d.missing);
                if let (Some(d), true) = (d.distribution, present_enough) {
                    s.push(at_least("psi", d.psi, t.psi));
                    s.push(at_least("js", d.js_distance, t.js));
                    let mut w = at_least("wasserstein", d.wasserstein.value, t.wasserstein);
                    w.bound = Some(d.wasserstein.bound);
                    s.push(w);
                    s.push(ks_judged(
                        d.ks.value,
                        d.ks.bound,
                        (r.count(), c.count()),
                        t.ks_p_value,
                        t.ks_min_effect,
                    ));
                }
            }
        }
        (ColumnSketch::Categorical(r), ColumnSketch::Categorical(c)) => {
            if let Ok(d) = compare_categorical(r, c) {
                missing_change = Some(d.missing);
                if let (Some(d), true) = (d.distribution, present_enough) {
                    s.push(at_least("psi", d.psi, t.psi));
                    if let Some(j) = chi_square_judged(
                        r.counts(),
                        c.counts(),
                        t.chi_square_p_value,
                        t.chi_square_min_effect,
                    ) {
                        s.push(j);
                    }
                }
            }
        }
        _ => {}
    }
    if let Some(m) = missing_change {
        s.push(Judged {
            statistic: "missing_rate",
            value: m.difference,
            threshold: t.missing_rate,
            p_value: Some(m.p_value),
            bound: None,
            effect: None,
            bad: t
                .missing_rate
                .is_some_and(|th| m.difference.abs() >= th && m.p_value <= MISSING_RATE_P),
        });
    }
    if !present_enough && status.skipped.is_none() {
        status.skipped = Some("too few present values for distribution statistics");
    }
    status
}

fn at_least(statistic: &'static str, value: f64, threshold: Option<f64>) -> Judged {
    Judged {
        statistic,
        value,
        threshold,
        p_value: None,
        bound: None,
        effect: None,
        bad: threshold.is_some_and(|t| value >= t),
    }
}

/// KS judged on the lower confidence bound of D: significant at `alpha`
/// and at least `min_effect`; `threshold` is the D̂ at which it fires.
fn ks_judged(
    d: f64,
    bound: f64,
    n: (u64, u64),
    alpha: Option<f64>,
    min_effect: Option<f64>,
) -> Judged {
    let (n_ref, n_cur) = n;
    let lower = (d - bound).max(0.0);
    let p = ks_p_value(lower, n_ref, n_cur);
    let floor = min_effect.unwrap_or(0.0);
    let threshold = alpha
        .map(|a| invert_decreasing(|x| ks_p_value(x, n_ref, n_cur), a, 1.0).max(floor) + bound);
    Judged {
        statistic: "ks",
        value: d,
        threshold,
        p_value: Some(p),
        bound: Some(bound),
        effect: Some(lower),
        bad: alpha.is_some_and(|a| p <= a && lower >= floor),
    }
}

/// Chi-square of the current counts against the reference shares, with
/// buckets whose expected count is below [`MIN_EXPECTED`] pooled into one.
fn chi_square_judged(
    reference: &[u64],
    current: &[u64],
    alpha: Option<f64>,
    min_effect: Option<f64>,
) -> Option<Judged> {
    let total_r: u64 = reference.iter().sum();
    let total_c: u64 = current.iter().sum();
    if total_r == 0 || total_c == 0 {
        return None;
    }
    let (mut r_pooled, mut c_pooled) = (Vec::new(), Vec::new());
    let (mut r_small, mut c_small) = (0u64, 0u64);
    for (&r, &c) in reference.iter().zip(current) {
        let expected = r as f64 / total_r as f64 * total_c as f64;
        if expected < MIN_EXPECTED {
            r_small += r;
            c_small += c;
        } else {
            r_pooled.push(r);
            c_pooled.push(c);
        }
    }
    if r_small > 0 || c_small > 0 {
        r_pooled.push(r_small);
        c_pooled.push(c_small);
    }
    let chi = chi_square_from_counts(&r_pooled, &c_pooled).ok()?;
    let effect = psi_from_counts(&r_pooled, &c_pooled).ok()?;
    let threshold = match (alpha, chi.dof) {
        (Some(a), dof) if dof > 0 => Some(invert_decreasing(|x| chi2_sf(x, dof), a, 1e4)),
        _ => None,
    };
    Some(Judged {
        statistic: "chi_square",
        value: chi.statistic,
        threshold,
        p_value: Some(chi.p_value),
        bound: None,
        effect: Some(effect),
        bad: alpha.is_some_and(|a| {
            chi.dof > 0 && chi.p_value <= a && effect >= min_effect.unwrap_or(0.0)
        }),
    })
}

/// The `x` where a decreasing `p(x)` crosses `alpha`, by bisection on
/// `[0, hi]` (doubling `hi` while `p(hi) > alpha`), to a relative 1e-12:
/// the threshold is reported, not judged by, and a fixed 100 steps (most
/// of them below f64 resolution) were a sixth of each window evaluation.
fn invert_decreasing(p: impl Fn(f64) -> f64, alpha: f64, mut hi: f64) -> f64 {
    let mut lo = 0.0;
    for _ in 0..60 {
        if p(hi) <= alpha {
            break;
        }
        hi *= 2.0;
    }
    for _ in 0..100 {
        if hi - lo <= 1e-12 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if p(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
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
