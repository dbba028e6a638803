//! `driftline report`: judges a data file against a model's reference
//! profile with the service's own monitor, and says whether it drifted.
//!
//! # One code path
//!
//! The file is read and scored as `driftline profile` reads it (every
//! input from the row, the manifest's defaults for missing values;
//! [`super::profile`]), and every scored row goes through the
//! service's [`Recorder`] and [`Evaluator`], built on the same [`Plan`]
//! from the same `[drift]` settings as `serve`. The statistics, thresholds
//! and verdicts are therefore the service's, not a copy of them.
//!
//! # Windows
//!
//! By default the whole file is one window. With `window` set, the file is
//! judged in consecutive (tumbling) windows of that many scored rows, the
//! last one shorter; a window with fewer than `drift.min_samples` events is
//! evaluated but not judged. `drift.window = "time"` does not apply (a file
//! has no wall clock); `drift.sub_windows` is 1. Streaming aggregate
//! columns are judged from the first row and `drift.warmup_events` is 0:
//! the file carries their values already computed, so there is no cold
//! start. A seasonal column (the
//! profile's `season`) is judged on its last whole season of event time
//! in windowed mode, as the service does; with the whole file as one
//! window it is judged on the whole file, unless `drift.features.<name>.season`
//! says otherwise.
//!
//! # Verdict
//!
//! The file drifted when any statistic of any judged window was bad (past
//! its threshold): the rules that were bad are listed in
//! [`ReportSummary::rules`]. Alerts (hysteresis across windows) are
//! reported as the service would have raised them, but the verdict does
//! not wait for `fire_after` bad windows: a CI gate wants every bad window.
//!
//! Guarantees: no panic on any input; every error names the file, and
//! where it applies the column and the row.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::profile::{replay, ProfileBuildError, Progress, Reader, Scorer};
use super::watched_columns;
use crate::drift::monitor::{
    DriftConfig, DriftStatus, DriftView, Evaluator, MonitorError, PageHinkleyDetector, Plan,
    Recorder, RecorderStats, ReportSummary, SkippedSummary, ViewConfig, WindowKind,
};
use crate::drift::profile::Profile;
use crate::score::manifest::InputKind;
use crate::score::{Model, ModelError};
use crate::tabular::Format;

/// How to build a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// The model directory: its inputs read the file, it scores the rows.
    pub model_dir: PathBuf,
    /// The reference profile; `None` takes the model manifest's
    /// `reference` (checked against its `reference_sha256`).
    pub reference: Option<PathBuf>,
    /// `[drift]` as `serve` reads it (window settings are overridden, see
    /// the module docs).
    pub drift: DriftConfig,
    /// Events per window; `None`: the whole file as one window.
    pub window: Option<u64>,
    /// Rows per record batch (memory use while reading).
    pub batch_rows: usize,
    /// The column naming each row's entity (effective sample size of
    /// store and aggregate columns).
    pub entity_column: String,
}

/// Why a report could not be made. Every variant names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model {model} has no reference profile (its manifest names none): pass --reference")]
    NoReference { model: String },
    #[error("{}: {source}", path.display())]
    Monitor { path: PathBuf, source: MonitorError },
    #[error("[drift]: {}", problems.join("; "))]
    Config { problems: Vec<String> },
    /// Reading or scoring the data file.
    #[error(transparent)]
    Data(#[from] ProfileBuildError),
    #[error("{}: no rows", path.display())]
    NoRows { path: PathBuf },
}

/// A finished report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The JSON of `--json` and what the HTML page draws.
    pub view: DriftView,
    /// Wall time, model load included.
    pub elapsed: Duration,
}

/// The `[drift]` a report judges with: `drift` with its windows made
/// count windows of `window` events (the whole file when `None`), one
/// sub-window each, and no warm-up (the file's aggregates are computed
/// already: there is nothing cold to skip).
pub fn report_config(drift: &DriftConfig, window: Option<u64>) -> DriftConfig {
    DriftConfig {
        window: WindowKind::Count,
        window_events: window.unwrap_or(u64::MAX).max(1),
        sub_windows: 1,
        warmup_events: 0,
        ..drift.clone()
    }
}

/// Judges `data` (format from its extension) against the reference; see
/// the module docs.
pub fn build_report(
    data: &Path,
    opts: &ReportOptions,
    progress: &mut dyn Progress,
) -> Result<Report, ReportError> {
    let started = Instant::now();
    let format = Format::from_path(data).ok_or_else(|| ProfileBuildError::UnknownFormat {
        path: data.to_owned(),
    })?;
    let config = report_config(&opts.drift, opts.window);
    let mut problems = Vec::new();
    config.problems(&mut problems);
    if !problems.is_empty() {
        return Err(ReportError::Config { problems });
    }
    let model = Arc::new(Model::load(&opts.model_dir)?);
    let manifest = model.manifest();
    let model_name = format!("{}/{}", manifest.name, manifest.version);
    // The manifest's hash vouches for its own reference only.
    let (reference, expected) = match (&opts.reference, &manifest.reference) {
        (Some(path), _) => (path.clone(), None),
        (None, Some(r)) => (opts.model_dir.join(r), manifest.reference_sha256.as_deref()),
        (None, None) => return Err(ReportError::NoReference { model: model_name }),
    };
    let monitor_err = |source: MonitorError| ReportError::Monitor {
        path: reference.clone(),
        source,
    };
    let profile = Profile::load_verified(&reference, expected)
        .map_err(|e| monitor_err(MonitorError::Profile(e)))?;
    let mut config = config;
    if opts.window.is_none() {
        // One window of the whole file: a seasonal column is judged on it,
        // seasons and all, not on its last season (which a single window
        // never completes).
        for column in profile.columns.iter().filter(|c| c.season.is_some()) {
            let settings = config.features.entry(column.name.clone()).or_default();
            settings.season.get_or_insert_with(|| "none".into());
        }
    }
    let watched = watched_columns(manifest);
    config.check_features(&watched, &mut problems);
    if !problems.is_empty() {
        return Err(ReportError::Config { problems });
    }
    let plan = Arc::new(Plan::new(&watched, profile, &reference, config).map_err(monitor_err)?);

    let stats = Arc::new(RecorderStats::default());
    let (mut recorder, rx) = Recorder::new(plan.clone(), stats.clone());
    let status = Arc::new(RwLock::new(DriftStatus::default()));
    let mut evaluator = Evaluator::new(plan.clone(), stats, status.clone(), Box::new(|_, _, _| {}))
        .with_history(usize::MAX)
        .with_warm_aggregates();
    if let Some(Ok(detector)) = PageHinkleyDetector::for_plan(&plan) {
        evaluator = evaluator.with_detector(Box::new(detector));
    }

    let inputs: Vec<(&str, InputKind)> = manifest
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    let reader = Reader {
        path: data,
        format,
        inputs: &inputs,
        batch_rows: opts.batch_rows.max(1),
        allow_missing: false,
        model: &model_name,
        entity: &opts.entity_column,
    };
    let mut scorer = Scorer::new(&model)?;
    progress.start(super::profile::Pass::Report, reader.open()?.rows);
    let rows = replay(
        &reader,
        &mut scorer,
        &mut recorder,
        &rx,
        &mut evaluator,
        progress,
    )?;
    recorder.close_now();
    for window in rx.try_iter() {
        evaluator.push(window);
    }
    progress.finish();
    if rows == 0 {
        return Err(ReportError::NoRows {
            path: data.to_owned(),
        });
    }
    let skipped = scorer.skipped();
    if scorer.scored == 0 {
        let reasons = skipped
            .iter()
            .map(|s| format!("{} rows {}, e.g. {}", s.rows, s.reason, s.example))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ProfileBuildError::NoScores {
            path: data.to_owned(),
            reasons,
        }
        .into());
    }
    let status = status.read().clone();
    let mut summary = ReportSummary {
        data: data.display().to_string(),
        model: model_name,
        rows,
        scored: scorer.scored,
        skipped: skipped
            .into_iter()
            .map(|k| SkippedSummary {
                reason: k.reason.code().to_owned(),
                rows: k.rows,
                example: k.example,
            })
            .collect(),
        window_events: opts.window,
        windows: 0,
        judged_windows: 0,
        drifted: false,
        rules: Vec::new(),
    };
    summary.conclude(&status.history);
    Ok(Report {
        view: DriftView {
            enabled: true,
            reference: plan.profile().id.clone(),
            config: ViewConfig::of(plan.config()),
            status,
            report: Some(summary),
        },
        elapsed: started.elapsed(),
    })
}
