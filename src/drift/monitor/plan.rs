//! The plan: how to read each watched column out of an encoded row, the
//! reference it is compared with, and the thresholds that judge it.

use std::path::Path;
use std::time::Duration;

use crate::duration::DurationError;

use super::config::{ColumnSettings, DriftConfig, Thresholds};
use super::window::Window;
use crate::drift::columns::{ColumnKind, Slot, Watched};
use crate::drift::profile::{ColumnSketch, Profile, ProfileError, SCORE_COLUMN};
use crate::drift::sketch::{NumericSketch, PreparedReference};
use crate::drift::DriftError;

/// How the recorder reads one column out of a row.
#[derive(Debug, Clone)]
pub(super) enum Probe {
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

/// One column as the recorder reads it and the evaluator judges it.
#[derive(Debug, Clone)]
pub(super) struct PlannedColumn {
    pub(super) name: String,
    pub(super) probe: Probe,
    pub(super) enabled: bool,
    pub(super) thresholds: Thresholds,
    /// The reference's ECDF, for numeric columns with values.
    pub(super) prepared: Option<PreparedReference>,
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
    Profile(#[from] ProfileError),
    #[error("reference profile column `{column}`: {source}")]
    Column { column: String, source: DriftError },
    /// A time window needs a length; a bad one is a config error whatever
    /// `drift.window` says.
    #[error("drift.window_duration: {0}")]
    WindowDuration(DurationError),
}

/// How rows map to columns, the reference, and the judging rules; shared
/// by the recorder and the evaluator.
#[derive(Debug)]
pub struct Plan {
    pub(super) model: String,
    pub(super) version: String,
    pub(super) profile: Profile,
    pub(super) score_reference: NumericSketch,
    pub(super) columns: Vec<PlannedColumn>,
    pub(super) score: PlannedColumn,
    pub(super) config: DriftConfig,
    /// Length of a time sub-window (`drift.window = "time"`).
    pub(super) sub_duration: Duration,
}

impl Plan {
    /// Checks the profile against the watched columns and resolves each.
    pub fn new(
        watched: &Watched,
        profile: Profile,
        profile_path: &Path,
        config: DriftConfig,
    ) -> Result<Self, MonitorError> {
        profile.check_against(watched, profile_path)?;
        let sub_duration = config
            .sub_window_duration()
            .map_err(MonitorError::WindowDuration)?;
        let mut columns = Vec::with_capacity(watched.columns().len());
        for (watch, column) in watched.columns().iter().zip(&profile.columns) {
            let settings = config.features.get(&watch.name);
            let probe = match (&column.sketch, watch.kind, &watch.slot) {
                (ColumnSketch::Numeric(_), ColumnKind::Numeric, slot) => Probe::Numeric {
                    offset: slot.offset(),
                },
                (ColumnSketch::Categorical(s), ColumnKind::Boolean, Slot::Value { offset }) => {
                    Probe::Ordinal {
                        offset: *offset,
                        buckets: vec![s.bucket_of("false"), s.bucket_of("true")],
                        other: s.categories().len(),
                    }
                }
                (
                    ColumnSketch::Categorical(s),
                    ColumnKind::Categorical,
                    Slot::OneHot { offset, vocabulary },
                ) => Probe::OneHot {
                    offset: *offset,
                    buckets: vocabulary.iter().map(|v| s.bucket_of(v)).collect(),
                    other: s.categories().len(),
                },
                (
                    ColumnSketch::Categorical(s),
                    ColumnKind::Categorical,
                    Slot::Ordinal { offset, vocabulary },
                ) => Probe::Ordinal {
                    offset: *offset,
                    buckets: vocabulary.iter().map(|v| s.bucket_of(v)).collect(),
                    other: s.categories().len(),
                },
                // check_against has matched the sketch kinds; what is left
                // is a slot that cannot hold the kind (a categorical in one
                // plain value, a boolean spread over a vocabulary).
                _ => {
                    return Err(MonitorError::Column {
                        column: watch.name.clone(),
                        source: DriftError::IncompatibleSketches {
                            reason: "the column's slot in the row does not fit its kind",
                        },
                    })
                }
            };
            columns.push(PlannedColumn {
                name: watch.name.clone(),
                probe,
                enabled: settings.and_then(|s| s.enabled).unwrap_or(true),
                thresholds: resolve(&config, settings),
                prepared: prepare(&watch.name, &column.sketch)?,
            });
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
            model: watched.model.clone(),
            version: watched.version.clone(),
            profile,
            columns,
            score,
            config,
            sub_duration,
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
