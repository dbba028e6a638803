//! Windows: the sketches of every watched column and of the score over a
//! span of events, mergeable across sub-windows and instances.

use serde::{Deserialize, Serialize};

use crate::drift::distinct::EntityCounter;
use crate::drift::exact::ColumnValues;
use crate::drift::profile::ColumnSketch;
use crate::drift::sketch::NumericSketch;
use crate::drift::DriftError;

/// The sketches of one (sub-)window: one per model input, in manifest
/// order, and one of the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Sequence number of the sub-window within this process.
    pub seq: u64,
    pub columns: Vec<ColumnSketch>,
    /// Per column, a numeric column's values as the model read them
    /// (exact up to `drift.exact_max_values`, sketched beyond); `None` for
    /// categoricals.
    pub values: Vec<Option<ColumnValues>>,
    pub score: NumericSketch,
    pub score_values: ColumnValues,
    /// The entities behind the events, when a store or aggregate column
    /// is watched (their effective sample size).
    pub entities: Option<EntityCounter>,
    /// Per column, a seasonal column's values again, split by event-time
    /// bucket (an hour of a day), for its season window; empty for other
    /// columns.
    pub seasons: Vec<Vec<SeasonSlice>>,
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
    /// the score cap `drift.max_window_bytes` leaves; not serialised (a
    /// merged view has no single order).
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
        if self.values.len() != other.values.len() {
            return Err(DriftError::IncompatibleSketches {
                reason: "windows of different models",
            });
        }
        for (a, b) in self.values.iter_mut().zip(&other.values) {
            match (a, b) {
                (Some(a), Some(b)) => a.merge(b)?,
                (None, None) => {}
                _ => {
                    return Err(DriftError::IncompatibleSketches {
                        reason: "column kinds differ",
                    })
                }
            }
        }
        self.score_values.merge(&other.score_values)?;
        for (a, b) in self.seasons.iter_mut().zip(&other.seasons) {
            a.extend(b.iter().cloned());
        }
        match (&mut self.entities, &other.entities) {
            (Some(a), Some(b)) => a.merge(b)?,
            (None, None) => {}
            _ => {
                return Err(DriftError::IncompatibleSketches {
                    reason: "one window counts entities, the other does not",
                })
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

    /// Bytes held now: every sketch, exact value, season slice, the
    /// entity counter and the kept scores.
    pub fn bytes(&self) -> usize {
        let values = |v: &Option<ColumnValues>| v.as_ref().map_or(0, ColumnValues::bytes);
        std::mem::size_of::<Self>()
            + self.columns.iter().map(ColumnSketch::bytes).sum::<usize>()
            + self.values.iter().map(values).sum::<usize>()
            + self.score.bytes()
            + self.score_values.bytes()
            + self.entities.as_ref().map_or(0, EntityCounter::bytes)
            + self
                .seasons
                .iter()
                .flatten()
                .map(|s| std::mem::size_of::<SeasonSlice>() + s.sketch.bytes() + values(&s.values))
                .sum::<usize>()
            + self.scores.capacity() * std::mem::size_of::<f32>()
    }

    pub(super) fn flush(&mut self) {
        for c in &mut self.columns {
            if let ColumnSketch::Numeric(s) = c {
                s.flush();
            }
        }
        self.score.flush();
    }
}

pub(super) fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A seasonal column's values in one event-time bucket of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonSlice {
    /// Start of the bucket, epoch ms.
    pub bucket_ms: i64,
    pub sketch: ColumnSketch,
    pub values: Option<ColumnValues>,
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
