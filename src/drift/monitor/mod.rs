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
//! events (`tests/parity/drift_monitor.rs`).
//!
//! # Files
//!
//! One job each: `config.rs` (`[drift]` and its validation), `plan.rs`
//! (watched columns resolved against the reference profile), `window.rs`
//! (mergeable windows), `recorder.rs` (the hot path), `judge.rs` (one
//! column's statistics against its thresholds), `alert.rs` (alert kinds,
//! messages and hysteresis), `evaluator.rs` (the evaluator thread),
//! `view.rs` (the JSON of `/v1/drift` and `driftline report`).

mod alert;
mod config;
mod evaluator;
mod judge;
mod plan;
mod recorder;
mod view;
mod window;

pub use alert::{AlertKind, AlertMessage, AlertState, AlertStatus, Output, RetrainRequest};
pub use config::{ColumnSettings, DriftConfig, Thresholds, WindowKind, STATISTICS};
pub use evaluator::{
    spawn, BudgetStatus, DriftStatus, EvaluationSink, Evaluator, PageHinkleyDetector,
    PerformanceReading, PerformanceSource, ScoreDetector, DEFAULT_HISTORY,
};
pub use judge::{ColumnStatus, Histogram, Judged};
pub use plan::{MonitorError, Plan};
pub use recorder::{Recorder, RecorderStats};
pub use view::{
    BadRule, DriftView, ReportSummary, RuleCount, SkippedSummary, ViewConfig, WindowVerdict,
};
pub use window::{SeasonSlice, Window, WindowRef};
