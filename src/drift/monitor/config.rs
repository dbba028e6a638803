//! `[drift]`: windows, thresholds, hysteresis, per-column overrides, and the
//! validation that reports every problem naming its key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drift::columns::Watched;
use crate::drift::sequential;
use crate::duration::{self, DurationError};

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

/// User thresholds of the statistics. The significance tests (`ks`,
/// `anderson`, `mean`, `scale`, `chi_square`, `cusum`) fire at the
/// family's per-test level (`drift.false_alarm_rate / m`) unless a
/// `*_p_value` here sets their own; effect-size floors and the
/// effect-size statistics (`psi`, `js`, `wasserstein`) are off unless set.
/// Keys left out of `[drift.thresholds]` keep their defaults (turn a
/// statistic off with `drift.disable`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub psi: Option<f64>,
    pub js: Option<f64>,
    pub wasserstein: Option<f64>,
    /// Significance level α of the KS test (default: the family's
    /// per-test level).
    pub ks_p_value: Option<f64>,
    /// Smallest KS distance (lower confidence bound of D) worth an alert,
    /// on top of significance (default off).
    pub ks_min_effect: Option<f64>,
    /// Significance level α of the chi-square test (default: the family's
    /// per-test level).
    pub chi_square_p_value: Option<f64>,
    /// Smallest PSI over the chi-square's buckets worth an alert, on top
    /// of significance (default off).
    pub chi_square_min_effect: Option<f64>,
    /// Smallest standardised mean shift `|Δmean| / σ_ref` worth an alert,
    /// on top of significance (default off).
    pub mean_min_effect: Option<f64>,
    /// Absolute change of the missing rate.
    pub missing_rate: Option<f64>,
}

impl Thresholds {
    /// The defaults of the module docs' table.
    pub fn defaults() -> Self {
        Thresholds {
            psi: None,
            js: None,
            wasserstein: None,
            ks_p_value: None,
            ks_min_effect: None,
            chi_square_p_value: None,
            chi_square_min_effect: None,
            mean_min_effect: None,
            missing_rate: Some(0.1),
        }
    }

    /// `self` with every threshold `over` sets replaced.
    pub(super) fn overlay(self, over: &Thresholds) -> Self {
        Thresholds {
            psi: over.psi.or(self.psi),
            js: over.js.or(self.js),
            wasserstein: over.wasserstein.or(self.wasserstein),
            ks_p_value: over.ks_p_value.or(self.ks_p_value),
            ks_min_effect: over.ks_min_effect.or(self.ks_min_effect),
            chi_square_p_value: over.chi_square_p_value.or(self.chi_square_p_value),
            chi_square_min_effect: over.chi_square_min_effect.or(self.chi_square_min_effect),
            mean_min_effect: over.mean_min_effect.or(self.mean_min_effect),
            missing_rate: over.missing_rate.or(self.missing_rate),
        }
    }

    pub(super) fn without(mut self, disabled: &[String]) -> Self {
        for d in disabled {
            match d.as_str() {
                "psi" => self.psi = None,
                "js" => self.js = None,
                "wasserstein" => self.wasserstein = None,
                "missing_rate" => self.missing_rate = None,
                // The significance tests are switched off in the plan's
                // list of disabled statistics: an absent level means "the
                // family's".
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
        check(
            "mean_min_effect",
            self.mean_min_effect,
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
    /// Statistics not judged for this column (see [`STATISTICS`]).
    pub disable: Vec<String>,
    pub psi: Option<f64>,
    pub js: Option<f64>,
    pub wasserstein: Option<f64>,
    pub ks_p_value: Option<f64>,
    pub ks_min_effect: Option<f64>,
    pub chi_square_p_value: Option<f64>,
    pub chi_square_min_effect: Option<f64>,
    pub mean_min_effect: Option<f64>,
    pub missing_rate: Option<f64>,
    /// `"24h"` (any duration): judge the column on the last whole season of
    /// event time; `"none"`: on the event window, whatever the profile
    /// says. Unset: the profile's `season`.
    pub season: Option<String>,
}

/// A season setting: `Ok(None)` for `"none"`, else its length.
pub fn parse_season(s: &str) -> Result<Option<i64>, DurationError> {
    if s.trim() == "none" {
        return Ok(None);
    }
    duration::parse_ms(s).map(Some)
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
            mean_min_effect: self.mean_min_effect,
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
    /// A firing alert's evaluation counts as good only when none of its
    /// significance tests has a p-value at or below this (nor its own
    /// `*_p_value` when looser), effect floors applied: the second level
    /// of the hysteresis, so that a statistic hovering at its (much
    /// stricter) firing level keeps one episode instead of flapping.
    pub resolve_p_value: f64,
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
    /// Probability that an evaluation of a stationary stream raises any
    /// bad judgement, whatever the number of columns: spent over the
    /// evaluation's `m` significance tests by Bonferroni (each fires at
    /// `p ≤ false_alarm_rate / m`; `drift::significance::Budget`).
    pub false_alarm_rate: f64,
    /// Present values of a numeric column a window keeps exactly (the
    /// model's `f32`, 4 bytes each); beyond, a KLL sketch and statistics
    /// with its rank error. Moments stay exact either way.
    pub exact_max_values: usize,
    /// CUSUM across sub-windows on the mean of each numeric input that
    /// comes with the event (store and aggregate inputs repeat per entity
    /// across sub-windows, which breaks its independent steps).
    pub cusum: bool,
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
    pub page_hinkley: sequential::Params,
    /// Most bytes one sub-window holds: its sketches, exact values, season
    /// slices and entity counter (each bounded whatever the events; their
    /// sum must fit, checked when the monitor is built) and the scores
    /// kept for the sequential detector (4 bytes each; a time window would
    /// otherwise keep every score). Past it the kept scores are thinned
    /// to every 2nd, 4th, ... score, so the detector still sees the whole
    /// sub-window in order, at a lower rate. Nothing is kept when
    /// `sequential` is off.
    pub max_window_bytes: usize,
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
            resolve_p_value: 0.01,
            retrain_after: 20,
            queue: 64,
            warmup_events: 0,
            false_alarm_rate: 1e-3,
            exact_max_values: crate::drift::exact::DEFAULT_EXACT_MAX_VALUES,
            cusum: true,
            thresholds: Thresholds::defaults(),
            disable: Vec::new(),
            features: BTreeMap::new(),
            prediction: ColumnSettings::default(),
            sequential: false,
            page_hinkley: sequential::Params::default(),
            max_window_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Statistic names `disable` lists accept.
pub const STATISTICS: [&str; 11] = [
    "psi",
    "js",
    "wasserstein",
    "ks",
    "anderson",
    "mean",
    "scale",
    "chi_square",
    "cusum",
    "page_hinkley",
    "missing_rate",
];

impl DriftConfig {
    /// Every problem, each naming its key.
    pub fn problems(&self, p: &mut Vec<String>) {
        if self.max_window_bytes < 64 * 1024 {
            p.push(format!(
                "drift.max_window_bytes: {} is below 64 KiB (one window's sketches alone take tens of KiB)",
                self.max_window_bytes
            ));
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
        if let Err(e) = self.sub_window_duration() {
            p.push(format!("drift.window_duration: {e}"));
        }
        if self.fire_after == 0 {
            p.push("drift.fire_after: must be at least 1".into());
        }
        if self.resolve_after == 0 {
            p.push("drift.resolve_after: must be at least 1".into());
        }
        if !(self.resolve_p_value > 0.0 && self.resolve_p_value < 1.0) {
            p.push(format!(
                "drift.resolve_p_value: {} is outside (0, 1)",
                self.resolve_p_value
            ));
        }
        if self.queue == 0 {
            p.push("drift.queue: must be at least 1".into());
        }
        if !(self.false_alarm_rate > 0.0 && self.false_alarm_rate <= 0.5) {
            p.push(format!(
                "drift.false_alarm_rate: {} is outside (0, 0.5]",
                self.false_alarm_rate
            ));
        }
        if self.exact_max_values > 1 << 24 {
            p.push(format!(
                "drift.exact_max_values: {} is above 16777216 (64 MB per column and window)",
                self.exact_max_values
            ));
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
            if let Some(Err(e)) = c.season.as_deref().map(parse_season) {
                p.push(format!("drift.features.{name}.season: {e} (or \"none\")"));
            }
            c.thresholds()
                .problems(&format!("drift.features.{name}"), p);
        }
    }

    /// Checks that per-feature settings name watched columns of the model.
    pub fn check_features(&self, watched: &Watched, p: &mut Vec<String>) {
        for name in self.features.keys() {
            if !watched.columns().iter().any(|c| &c.name == name) {
                p.push(format!(
                    "drift.features.{name}: model {} has no input `{name}`",
                    watched.label()
                ));
            }
        }
    }

    pub(super) fn sub_window_events(&self) -> u64 {
        (self.window_events / u64::from(self.sub_windows.max(1))).max(1)
    }

    /// Length of a time sub-window: `window_duration / sub_windows`, at
    /// least a millisecond. A `window_duration` that is not a duration is
    /// an error, also when windows are counted (it is a config error
    /// either way, and switching `window` must not uncover it later).
    pub fn sub_window_duration(&self) -> Result<Duration, DurationError> {
        let ms = duration::parse_ms(&self.window_duration)?;
        Ok(Duration::from_millis(
            (ms as u64 / u64::from(self.sub_windows.max(1))).max(1),
        ))
    }
}
