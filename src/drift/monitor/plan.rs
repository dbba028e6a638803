//! The plan: how to read each watched column out of an encoded row, the
//! reference it is compared with, and the thresholds that judge it.

use std::mem::size_of;
use std::path::Path;
use std::time::Duration;

use crate::duration::DurationError;

use super::config::{parse_season, ColumnSettings, DriftConfig, Thresholds};
use super::recorder::SEASON_BUCKETS;
use super::window::{SeasonSlice, Window};
use crate::drift::columns::{ColumnKind, Slot, ValueSource, Watched};
use crate::drift::distinct::EntityCounter;
use crate::drift::exact::{ColumnValues, PreparedColumn};
use crate::drift::profile::{ColumnProfile, ColumnSketch, Profile, ProfileError, SCORE_COLUMN};
use crate::drift::significance::{Budget, AD_MAX_TIE_SHARE};
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
    /// Where the values come from (their effective sample size).
    pub(super) source: ValueSource,
    /// The reference's exact values, prepared (numeric columns).
    pub(super) exact: Option<PreparedColumn>,
    /// The reference's effective sample size of present values.
    pub(super) e_ref: f64,
    /// Statistics switched off (`drift.disable`, the column's `disable`).
    pub(super) disabled: Vec<String>,
    /// A CUSUM runs on its mean across sub-windows.
    pub(super) cusum: bool,
    /// Event time the stream must have covered before the column is
    /// judged (a streaming aggregate's window; 0 otherwise).
    pub(super) history_ms: i64,
    /// Judged on the last whole season of event time (ms) instead of the
    /// event window.
    pub(super) season_ms: Option<i64>,
}

impl PlannedColumn {
    /// Whether `statistic` is judged on this column.
    pub(super) fn judges(&self, statistic: &str) -> bool {
        !self.disabled.iter().any(|d| d == statistic)
    }

    /// Significance tests this column runs per evaluation (its share of
    /// the family budget).
    fn tests(&self) -> u32 {
        if !self.enabled {
            return 0;
        }
        let numeric = match &self.exact {
            Some(p) => {
                let anderson = p.largest_tie() <= AD_MAX_TIE_SHARE && self.judges("anderson");
                ["ks", "mean", "scale"]
                    .iter()
                    .filter(|s| self.judges(s))
                    .count() as u32
                    + u32::from(anderson)
                    + u32::from(self.cusum)
            }
            None => 0,
        };
        let categorical = matches!(self.probe, Probe::OneHot { .. } | Probe::Ordinal { .. })
            && self.judges("chi_square");
        numeric + u32::from(categorical)
    }
}

/// The effective size of a reference column with `present` values: every
/// value for event columns; the entities' Kish size, in proportion to the
/// present values, for store and aggregate ones.
fn reference_size(profile: &Profile, source: ValueSource, present: u64) -> f64 {
    let n = present as f64;
    match (source, &profile.entities) {
        (ValueSource::Event, _) => n,
        (_, Some(e)) if e.events > 0 && e.kish > 0.0 => {
            (e.kish * n / e.events as f64).clamp(n.min(1.0), n)
        }
        _ => n,
    }
}

fn exact_of(name: &str, column: &ColumnProfile) -> Result<Option<PreparedColumn>, MonitorError> {
    match &column.values {
        Some(v) => PreparedColumn::new(v).map_err(|source| MonitorError::Column {
            column: name.into(),
            source,
        }),
        None => Ok(None),
    }
}

fn disabled(config: &DriftConfig, settings: Option<&ColumnSettings>) -> Vec<String> {
    let mut d = config.disable.clone();
    if let Some(s) = settings {
        d.extend(s.disable.iter().cloned());
    }
    d
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
    /// A season (profile or `drift.features.<name>.season`) that is not a
    /// duration.
    #[error("column `{column}`: season: {source}")]
    Season {
        column: String,
        source: DurationError,
    },
    /// A time window needs a length; a bad one is a config error whatever
    /// `drift.window` says.
    #[error("drift.window_duration: {0}")]
    WindowDuration(DurationError),
    /// The sketches of one window leave no room for scores.
    #[error(
        "drift.max_window_bytes: {max} bytes, but one window's sketches and exact values can take \
         {sketches} bytes{}: raise it to at least {}, or lower drift.exact_max_values or the \
         columns watched", if *sequential { " and the sequential detector needs room for scores past them" } else { "" },
        sketches + if *sequential { 8 } else { 0 }
    )]
    WindowBytes {
        max: usize,
        sketches: usize,
        sequential: bool,
    },
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
    /// Scores a sub-window keeps for the sequential detector: what
    /// `drift.max_window_bytes` leaves past the sketches' bound.
    pub(super) score_cap: usize,
    /// Windows count the entities behind their events.
    pub(super) per_entity: bool,
    /// `drift.false_alarm_rate` over the evaluation's significance tests.
    pub(super) budget: Budget,
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
            let present = match &column.sketch {
                ColumnSketch::Numeric(s) => s.count(),
                ColumnSketch::Categorical(s) => s.count(),
            };
            let disabled = disabled(&config, settings);
            let exact = exact_of(&watch.name, column)?;
            let season = settings
                .and_then(|s| s.season.as_deref())
                .or(column.season.as_deref());
            let season_ms = match season.map(parse_season) {
                Some(Ok(s)) => s.filter(|&ms| ms > 0),
                Some(Err(e)) => {
                    return Err(MonitorError::Season {
                        column: watch.name.clone(),
                        source: e,
                    })
                }
                None => None,
            };
            columns.push(PlannedColumn {
                name: watch.name.clone(),
                probe,
                enabled: settings.and_then(|s| s.enabled).unwrap_or(true),
                thresholds: resolve(&config, settings),
                prepared: prepare(&watch.name, &column.sketch)?,
                source: watch.source,
                // A seasonal column's sub-window means move with the
                // season by design: no CUSUM across them.
                cusum: config.cusum
                    && watch.source == ValueSource::Event
                    && season_ms.is_none()
                    && exact.is_some()
                    && !disabled.iter().any(|d| d == "cusum"),
                history_ms: watch.history_ms,
                season_ms,
                exact,
                e_ref: reference_size(&profile, watch.source, present),
                disabled,
            });
        }
        // The score depends on every input: as independent as the least
        // independent of them.
        let score_source = if watched.per_entity() {
            ValueSource::Store
        } else {
            ValueSource::Event
        };
        let score_present = match &profile.score.sketch {
            ColumnSketch::Numeric(s) => s.count(),
            ColumnSketch::Categorical(s) => s.count(),
        };
        let score = PlannedColumn {
            name: SCORE_COLUMN.into(),
            probe: Probe::Numeric { offset: 0 },
            enabled: config.prediction.enabled.unwrap_or(true),
            thresholds: resolve(&config, Some(&config.prediction)),
            prepared: prepare(SCORE_COLUMN, &profile.score.sketch)?,
            source: score_source,
            exact: exact_of(SCORE_COLUMN, &profile.score)?,
            e_ref: reference_size(&profile, score_source, score_present),
            disabled: disabled(&config, Some(&config.prediction)),
            cusum: false,
            history_ms: 0,
            season_ms: None,
        };
        let tests = columns
            .iter()
            .chain([&score])
            .map(|c| c.tests())
            .sum::<u32>()
            + u32::from(config.sequential);
        let budget = Budget {
            alpha: config.false_alarm_rate,
            tests: tests.max(1),
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
        let mut plan = Plan {
            score_cap: 0,
            score_reference,
            model: watched.model.clone(),
            version: watched.version.clone(),
            profile,
            columns,
            score,
            per_entity: watched.per_entity(),
            budget,
            config,
            sub_duration,
        };
        let sketches = plan.window_bytes_bound();
        let max = plan.config.max_window_bytes;
        // Scores need room only when the detector keeps them.
        let scores = if plan.config.sequential { 2 } else { 0 };
        if sketches + scores * size_of::<f32>() > max {
            return Err(MonitorError::WindowBytes {
                max,
                sketches,
                sequential: plan.config.sequential,
            });
        }
        plan.score_cap = (max - sketches) / size_of::<f32>();
        Ok(plan)
    }

    /// The most one window holds without its kept scores, however many
    /// events it sees: every sketch and exact-value column at its bound,
    /// the entity counter's, and [`SEASON_BUCKETS`] + 1 season slices per
    /// seasonal column (the recorder keeps no more).
    pub fn window_bytes_bound(&self) -> usize {
        let w = self.empty_window(0);
        let values = |v: &Option<ColumnValues>| v.as_ref().map_or(0, ColumnValues::bytes_bound);
        let seasonal = self.columns.iter().filter(|c| c.season_ms.is_some());
        let slices = seasonal
            .zip(w.columns.iter().zip(&w.values))
            .map(|(_, (sketch, v))| {
                (SEASON_BUCKETS as usize + 1)
                    * (size_of::<SeasonSlice>() + sketch.bytes_bound() + values(v))
            })
            .sum::<usize>();
        size_of::<Window>()
            + w.columns
                .iter()
                .map(ColumnSketch::bytes_bound)
                .sum::<usize>()
            + w.values.iter().map(values).sum::<usize>()
            + w.score.bytes_bound()
            + w.score_values.bytes_bound()
            + w.entities
                .as_ref()
                .map_or(0, |_| crate::drift::distinct::BYTES_BOUND)
            + slices
    }

    /// The family budget: the level every significance test fires at.
    pub fn budget(&self) -> Budget {
        self.budget
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

    /// Scores a sub-window keeps for the sequential detector.
    pub fn score_cap(&self) -> usize {
        self.score_cap
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
            values: self
                .profile
                .columns
                .iter()
                .map(|c| c.values.as_ref().map(|v| self.window_values(v)))
                .collect(),
            score: self.score_reference.empty_like(),
            score_values: match &self.profile.score.values {
                Some(v) => self.window_values(v),
                None => ColumnValues::new(0, 0.0),
            },
            entities: self.per_entity.then(EntityCounter::new),
            seasons: vec![Vec::new(); self.columns.len()],
            count: 0,
            first_ts_ms: None,
            last_ts_ms: None,
            opened_ms: crate::event::now_ms(),
            closed_ms: None,
            scores: Vec::new(),
            score_stride: 1,
        }
    }

    /// An empty window column about the reference's centre.
    fn window_values(&self, reference: &ColumnValues) -> ColumnValues {
        ColumnValues::new(self.config.exact_max_values, reference.moments().center())
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
