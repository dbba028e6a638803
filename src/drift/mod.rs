//! Drift monitoring: distribution statistics between a reference profile and
//! the current window, and the mergeable window sketches they are computed
//! from (spec: "Drift").
//!
//! # Two modes, one definition
//!
//! - [`stats`], *exact mode*: pure functions over raw samples or over
//!   already binned counts. They define every statistic and match SciPy to
//!   floating-point rounding (`tests/parity/drift_parity.rs`, fixtures from
//!   `scripts/make_drift_fixtures.py`).
//! - [`sketch`], *sketch mode*: bounded-memory, mergeable, serialisable
//!   per-column window sketches ([`sketch::NumericSketch`],
//!   [`sketch::CategoricalSketch`]) and the same statistics computed from
//!   them. Counts, missing counts and histograms are exact, so PSI,
//!   Jensen-Shannon, chi-square and the missing-rate change equal exact mode
//!   given the same bin edges and categories; Kolmogorov-Smirnov and
//!   Wasserstein come from a KLL quantile sketch and carry an error bound.
//!
//! | statistic | numbers | categoricals | definition |
//! |---|---|---|---|
//! | PSI | reference-decile bins | categories (union) | [`stats::psi_from_counts`] |
//! | Jensen-Shannon distance (base 2) | reference-decile bins | | [`stats::js_distance_from_counts`] |
//! | Kolmogorov-Smirnov D, p-value | raw / KLL | | [`stats::ks_2samp`] |
//! | Wasserstein-1 | raw / KLL | | [`stats::wasserstein`] |
//! | chi-square, p-value | | categories | [`stats::chi_square_from_counts`] |
//! | missing-rate change, z, p-value | both | both | [`stats::missing_rate_change`] |
//!
//! # Detection with power, calibrated (issue 13)
//!
//! - [`significance`]: Anderson-Darling (k-sample, midrank), standardised
//!   mean and scale tests, KS and chi-square at *effective* sample sizes,
//!   and the Bonferroni budget that holds a false-alarm rate per evaluation.
//! - [`exact`]: a numeric column window that keeps the model's `f32` values
//!   exactly up to a cap and a KLL sketch beyond, with exact moments.
//! - [`distinct`]: entities behind a window's events (DataSketches Tuple
//!   sketch), for the effective size of store features and aggregates.
//! - [`cusum`]: two-sided CUSUM across sub-windows, calibrated per step.
//!
//! `docs/drift.md` says how they fit together and what they measured.
//!
//! # What drift sees
//!
//! Numbers, not models: the columns it watches come as a
//! [`columns::Watched`] list (name, kind, slot in the encoded row) built by
//! the caller, and profiles are built from column values
//! ([`profile_build`]). Nothing here imports the model, the enricher, the
//! feature store, Kafka, HTTP or telemetry.
//!
//! # Guarantees
//!
//! No function here panics on its input: empty samples, NaN, infinities,
//! mismatched bins or incompatible sketches are a [`DriftError`] that names
//! the side (reference or current) and the position or reason.

pub mod columns;
pub mod cusum;
pub mod distinct;
pub mod exact;
pub mod labels;
pub mod monitor;
pub mod profile;
pub mod profile_build;
pub mod sequential;
pub mod significance;
pub mod sketch;
mod special;
pub mod stats;
pub mod synthetic;

use std::fmt;

use thiserror::Error;

/// Which of the two compared samples an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The reference profile (training or a chosen baseline period).
    Reference,
    /// The window being checked.
    Current,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Reference => "reference",
            Side::Current => "current",
        })
    }
}

/// Everything that can stop a drift statistic or a sketch operation.
///
/// The feature name is not known at this level; the caller that owns the
/// column adds it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DriftError {
    /// A statistic needs at least one value on each side.
    #[error("the {side} sample is empty")]
    EmptySample { side: Side },
    /// NaN or ±∞ in a raw sample: no distribution statistic is defined for it
    /// (sketches count such values as missing instead).
    #[error("the {side} sample has a non-finite value ({value}) at index {index}")]
    NonFinite {
        side: Side,
        index: usize,
        value: f64,
    },
    /// Reference and current counts must cover the same bins or categories.
    #[error("bin counts differ in length: reference {reference}, current {current}")]
    LengthMismatch { reference: usize, current: usize },
    /// Binning asks for at least two bins (one bin makes every PSI zero).
    #[error("at least 2 bins are needed, got {bins}")]
    TooFewBins { bins: usize },
    /// Bin edges must be finite, strictly increasing and at least one.
    #[error("invalid bin edges: {reason}")]
    InvalidEdges { reason: &'static str },
    /// A missing count larger than its total.
    #[error("the {side} side has {missing} missing values out of {total}")]
    InvalidCounts {
        side: Side,
        missing: u64,
        total: u64,
    },
    /// The same category twice in a categorical sketch's list.
    #[error("category {category:?} is listed twice")]
    DuplicateCategory { category: String },
    /// Two sketches built on different bin edges or category lists, or whose
    /// counts would overflow `u64`, cannot be merged or compared.
    #[error("sketches are incompatible: {reason}")]
    IncompatibleSketches { reason: &'static str },
    /// A serialised sketch that does not decode or whose parts disagree.
    #[error("corrupt sketch: {reason}")]
    CorruptSketch { reason: String },
}
