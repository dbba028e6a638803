//! Building a reference [`Profile`]'s sketches from column values: the two
//! passes behind `driftline profile`. Reading the data file and scoring its
//! rows is the command's side (`app::profile`); this module sees only the
//! values of each column and the scores.
//!
//! The profile holds one sketch per watched column, in row order, and one
//! of the model's score on the same rows (layout: [`super::profile`] and
//! `docs/profile.md`).
//!
//! # Two streaming passes, bounded memory
//!
//! The values come one batch at a time, twice:
//!
//! 1. **Distributions** ([`Distributions`]). A KLL quantile sketch (`k` =
//!    [`EDGE_KLL_K`]) per numeric column and of the score, and exact counts
//!    per distinct value of each categorical column (at most
//!    [`MAX_DISTINCT`] values: more is an error, such a column is an id
//!    rather than a category).
//! 2. **Sketches** ([`Sketches`]). Bin edges come from pass 1; every value
//!    is fed into a [`NumericSketch`] on those edges or a
//!    [`CategoricalSketch`] on the top-K categories, exactly as a live
//!    window would be.
//!
//! Memory is about 100 KB per numeric column (pass 1's KLL; the profile's
//! own sketches take ~5 KB) and the distinct values of each categorical,
//! whatever the number of rows.
//!
//! # Bin edges
//!
//! The edges are meant to be [`stats::reference_edges`]: the present
//! values' `i/bins` quantiles, repeats dropped. Exact quantiles need the
//! whole column in memory, so they are taken from pass 1's KLL instead:
//! not exact quantiles, but within its normalised rank error `ε` (99%
//! confidence, DataSketches' bound `2.296 / k^0.9723`, see
//! [`super::sketch`]). That is about 1.3% at the window sketches' `k` =
//! [`sketch::KLL_K`] = 200, and 0.07% at the `k` = [`EDGE_KLL_K`] = 4096
//! pass 1 uses, since its sketch is thrown away after the build and only
//! costs memory while it runs. An edge meant to sit at the 30th percentile sits
//! between the 29.93rd and the 30.07th. That is harmless: PSI and
//! Jensen-Shannon are exact for any fixed edges (the histograms are exact
//! counts on both sides), the edges only choose which bins are compared.
//! While a column has fewer values than the KLL keeps (about `k`), its
//! quantiles are exact ranks of the data (the nearest value, not NumPy's
//! interpolation) and the edges are the same on every build; beyond that
//! KLL is randomised, and rebuilding may move the edges within `ε`.
//!
//! # Values
//!
//! Booleans are sketched as categoricals with the categories `false` and
//! `true`. A null, an empty text or a NaN is missing; ±∞ is missing to the
//! sketches as it is in a live window.
//!
//! Guarantees: no panic on any value; the only errors are a categorical
//! with too many distinct values and bin options no sketch can have.
//!
//! [`Profile`]: super::profile::Profile
//! [`stats::reference_edges`]: super::stats::reference_edges
//! [`sketch::KLL_K`]: super::sketch::KLL_K

use std::collections::HashMap;

use compact_str::CompactString;
use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};

use super::columns::ColumnKind;
use super::exact::{ColumnValues, DEFAULT_REFERENCE_MAX_VALUES};
use super::profile::ColumnSketch;
use super::sketch::{CategoricalSketch, NumericSketch, DEFAULT_TOP_K};
use super::stats::DEFAULT_BINS;
use super::DriftError;

/// Distinct values a categorical column may have in pass 1. Counts are
/// exact, so memory grows with the distinct values; beyond this many the
/// column is almost certainly an identifier, and the build stops.
pub const MAX_DISTINCT: usize = 100_000;

/// KLL accuracy of pass 1, from which bin edges are derived: rank error
/// `ε ≈ 0.0007` (0.07%), about 12k retained values (~100 KB) per column.
/// Larger than the window sketches' [`KLL_K`](super::sketch::KLL_K) because this sketch is only
/// held while the profile is built, never stored or merged.
pub const EDGE_KLL_K: u16 = 4096;

/// Categories of a boolean column's sketch, in bucket order.
const BOOLEAN_CATEGORIES: [&str; 2] = ["false", "true"];

type Kll = KllSketch<KllFloat<f64>>;

fn new_kll() -> Kll {
    // EDGE_KLL_K is within the library's 8..=65535, so `new` cannot fail;
    // the fallback is the library default (k = 200), still a valid sketch.
    KllSketch::new(EDGE_KLL_K).unwrap_or_default()
}

/// The shape of the sketches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SketchOptions {
    /// Histogram bins of numeric columns and the score (edges at the
    /// `i/bins` quantiles); at least 2.
    pub bins: usize,
    /// Categories kept per categorical column; the rest share "other".
    pub top_k: usize,
}

impl Default for SketchOptions {
    fn default() -> Self {
        Self {
            bins: DEFAULT_BINS,
            top_k: DEFAULT_TOP_K,
        }
    }
}

/// A categorical column with more than [`MAX_DISTINCT`] distinct values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {limit} distinct values; a categorical input is expected to have few")]
pub struct TooManyCategories {
    pub limit: usize,
}

/// Sketches that cannot be made from what pass 1 saw.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// Column `column` (its index in the watched list).
    #[error("column {column}: {source}")]
    Column { column: usize, source: DriftError },
    /// The score's sketch.
    #[error("score: {0}")]
    Score(DriftError),
}

/// Pass 1: quantiles of the numeric columns and the score, counts of the
/// categoricals' values.
pub struct Distributions {
    columns: Vec<FirstPass>,
    score: Kll,
}

impl Distributions {
    /// One state per column, of the columns' kinds in row order.
    pub fn new(kinds: impl IntoIterator<Item = ColumnKind>) -> Self {
        Distributions {
            columns: kinds.into_iter().map(FirstPass::new).collect(),
            score: new_kll(),
        }
    }

    /// One batch of a numeric column's values; other kinds ignore them.
    pub fn numbers(&mut self, column: usize, values: impl IntoIterator<Item = Option<f64>>) {
        if let Some(state) = self.columns.get_mut(column) {
            state.numbers(values);
        }
    }

    /// One batch of a categorical column's values; other kinds ignore them.
    pub fn texts<'a>(
        &mut self,
        column: usize,
        values: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Result<(), TooManyCategories> {
        match self.columns.get_mut(column) {
            Some(state) => state.texts(values),
            None => Ok(()),
        }
    }

    /// One score (NaN is ignored: the KLL cannot hold it).
    pub fn score(&mut self, score: f64) {
        if let Ok(v) = KllFloat::<f64>::new(score) {
            self.score.update(v);
        }
    }

    /// The empty pass-2 sketches: edges from the quantiles, the top-K
    /// categories, `false`/`true` for booleans.
    pub fn into_sketches(mut self, opts: &SketchOptions) -> Result<Sketches, SketchError> {
        let values = self.columns_medians();
        let columns = std::mem::take(&mut self.columns)
            .into_iter()
            .enumerate()
            .map(|(column, state)| {
                state
                    .into_sketch(opts)
                    .map_err(|source| SketchError::Column { column, source })
            })
            .collect::<Result<_, _>>()?;
        let edges = kll_edges(&self.score, opts.bins).map_err(SketchError::Score)?;
        let score = NumericSketch::new(edges).map_err(SketchError::Score)?;
        Ok(Sketches {
            columns,
            values,
            score,
            score_values: ColumnValues::new(DEFAULT_REFERENCE_MAX_VALUES, kll_median(&self.score)),
        })
    }

    /// Empty exact-value columns for the numeric columns, centred on their
    /// medians (as `f32`, the value a model input can hold).
    fn columns_medians(&self) -> Vec<Option<ColumnValues>> {
        self.columns
            .iter()
            .map(|c| match c {
                FirstPass::Numeric(kll) => Some(ColumnValues::new(
                    DEFAULT_REFERENCE_MAX_VALUES,
                    kll_median(kll),
                )),
                _ => None,
            })
            .collect()
    }
}

/// Pass 2: every value into the sketches on pass 1's edges and categories,
/// and every numeric value, as the model's `f32`, into its exact column.
pub struct Sketches {
    columns: Vec<ColumnSketch>,
    values: Vec<Option<ColumnValues>>,
    score: NumericSketch,
    score_values: ColumnValues,
}

/// What pass 2 made.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Per column, in row order.
    pub columns: Vec<ColumnSketch>,
    /// Per column: the exact values of a numeric column.
    pub values: Vec<Option<ColumnValues>>,
    pub score: NumericSketch,
    pub score_values: ColumnValues,
}

impl Sketches {
    /// One batch of a numeric column's values (null, NaN, ±∞: missing).
    pub fn numbers(&mut self, column: usize, values: impl IntoIterator<Item = Option<f64>>) {
        let exact = self.values.get_mut(column).and_then(Option::as_mut);
        if let (Some(ColumnSketch::Numeric(s)), Some(exact)) = (self.columns.get_mut(column), exact)
        {
            for x in values {
                match x {
                    Some(x) => {
                        s.update(x);
                        // What the encoder hands the model (`x as f32`), so
                        // reference and live windows hold the same numbers.
                        exact.update(x as f32);
                    }
                    None => {
                        s.update_missing();
                        exact.update_missing();
                    }
                }
            }
        }
    }

    /// One batch of a categorical column's values (null, empty: missing).
    pub fn texts<'a>(&mut self, column: usize, values: impl IntoIterator<Item = Option<&'a str>>) {
        if let Some(ColumnSketch::Categorical(s)) = self.columns.get_mut(column) {
            for v in values {
                match v.filter(|v| !v.is_empty()) {
                    Some(v) => s.update(v),
                    None => s.update_missing(),
                }
            }
        }
    }

    /// One batch of a boolean column's values (null: missing).
    pub fn bools(&mut self, column: usize, values: impl IntoIterator<Item = Option<bool>>) {
        if let Some(ColumnSketch::Categorical(s)) = self.columns.get_mut(column) {
            for b in values {
                match b {
                    Some(b) => s.update(BOOLEAN_CATEGORIES[usize::from(b)]),
                    None => s.update_missing(),
                }
            }
        }
    }

    /// `rows` missing values of a column (one the data does not have).
    pub fn missing(&mut self, column: usize, rows: usize) {
        if let Some(Some(exact)) = self.values.get_mut(column) {
            (0..rows).for_each(|_| exact.update_missing());
        }
        match self.columns.get_mut(column) {
            Some(ColumnSketch::Numeric(s)) => (0..rows).for_each(|_| s.update_missing()),
            Some(ColumnSketch::Categorical(s)) => (0..rows).for_each(|_| s.update_missing()),
            None => {}
        }
    }

    /// One score.
    pub fn score(&mut self, score: f64) {
        self.score.update(score);
        self.score_values.update(score as f32);
    }

    /// The finished sketches and exact values of the columns, in row
    /// order, and of the score.
    pub fn finish(mut self) -> Finished {
        for sketch in &mut self.columns {
            if let ColumnSketch::Numeric(s) = sketch {
                s.flush();
            }
        }
        self.score.flush();
        Finished {
            columns: self.columns,
            values: self
                .values
                .iter()
                .map(|v| v.as_ref().map(ColumnValues::recentred_on_median))
                .collect(),
            score: self.score,
            score_values: self.score_values.recentred_on_median(),
        }
    }
}

/// Interior bin edges at the sketch's `i/bins` quantiles (inclusive
/// ranks), repeats dropped: [`stats::reference_edges`] within the KLL's
/// rank error (module docs). A sketch without values (a column that is
/// all missing) gets the single edge 0: any edge will do for a reference
/// with nothing in it, and [`NumericSketch::new`] needs one.
///
/// [`stats::reference_edges`]: super::stats::reference_edges
fn kll_edges(kll: &Kll, bins: usize) -> Result<Vec<f64>, DriftError> {
    if bins < 2 {
        return Err(DriftError::TooFewBins { bins });
    }
    let ranks: Vec<f64> = (1..bins).map(|i| i as f64 / bins as f64).collect();
    let quantiles = kll
        .quantiles(&ranks, SearchCriteria::Inclusive)
        .map_err(|e| DriftError::CorruptSketch {
            reason: format!("KLL quantiles: {e}"),
        })?;
    let Some(quantiles) = quantiles else {
        return Ok(vec![0.0]);
    };
    let mut edges: Vec<f64> = quantiles.into_iter().map(|q| q.into_inner()).collect();
    // Quantiles are monotone in the rank; the sort only guards the dedup.
    edges.sort_unstable_by(f64::total_cmp);
    edges.dedup();
    Ok(edges)
}

/// The sketch's median as an `f32` widened back (0 when empty): the
/// centre of a column's exact moments, which live windows share.
fn kll_median(kll: &Kll) -> f64 {
    kll.quantile(0.5, SearchCriteria::Inclusive)
        .ok()
        .flatten()
        .map_or(0.0, |q| f64::from(q.into_inner() as f32))
}

// ---------------------------------------------------------------------------
// Per-column state

/// What pass 1 keeps of one column.
enum FirstPass {
    Numeric(Kll),
    /// Exact counts per distinct value (at most [`MAX_DISTINCT`]).
    Categorical(HashMap<CompactString, u64, foldhash::fast::RandomState>),
    /// Categories are fixed (`false`, `true`): nothing to learn.
    Boolean,
}

impl FirstPass {
    fn new(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Numeric => FirstPass::Numeric(new_kll()),
            ColumnKind::Categorical => FirstPass::Categorical(HashMap::default()),
            ColumnKind::Boolean => FirstPass::Boolean,
        }
    }

    /// Takes one batch of a numeric column's values (null, NaN and ±∞ are
    /// missing, and the KLL learns nothing from them).
    fn numbers(&mut self, values: impl IntoIterator<Item = Option<f64>>) {
        if let FirstPass::Numeric(kll) = self {
            // Null and NaN fail `KllFloat::new`; ±∞ is filtered as the
            // sketch counts it missing.
            for x in values.into_iter().flatten().filter(|x| x.is_finite()) {
                if let Ok(v) = KllFloat::<f64>::new(x) {
                    kll.update(v);
                }
            }
        }
    }

    /// Takes one batch of a categorical column's values (null and empty
    /// text are missing).
    fn texts<'a>(
        &mut self,
        values: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Result<(), TooManyCategories> {
        if let FirstPass::Categorical(counts) = self {
            for v in values.into_iter().flatten().filter(|v| !v.is_empty()) {
                if let Some(c) = counts.get_mut(v) {
                    *c += 1;
                } else if counts.len() < MAX_DISTINCT {
                    counts.insert(v.into(), 1);
                } else {
                    return Err(TooManyCategories {
                        limit: MAX_DISTINCT,
                    });
                }
            }
        }
        Ok(())
    }

    /// The empty pass-2 sketch: edges from the quantiles, or the top-K
    /// categories (ranked as [`CategoricalSketch::reference`] ranks them).
    fn into_sketch(self, opts: &SketchOptions) -> Result<ColumnSketch, DriftError> {
        Ok(match self {
            FirstPass::Numeric(kll) => {
                ColumnSketch::Numeric(NumericSketch::new(kll_edges(&kll, opts.bins)?)?)
            }
            FirstPass::Categorical(counts) => {
                let mut ranked: Vec<(CompactString, u64)> = counts.into_iter().collect();
                ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                ranked.truncate(opts.top_k);
                let categories = ranked.into_iter().map(|(name, _)| name).collect();
                ColumnSketch::Categorical(CategoricalSketch::new(categories)?)
            }
            FirstPass::Boolean => ColumnSketch::Categorical(CategoricalSketch::new(
                BOOLEAN_CATEGORIES.iter().map(|&c| c.into()).collect(),
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::stats::reference_edges;
    use proptest::prelude::*;

    fn kll_of(values: &[f64]) -> Kll {
        let mut kll = new_kll();
        for &v in values {
            kll.update(KllFloat::<f64>::new(v).unwrap());
        }
        kll
    }

    #[test]
    fn edges_of_small_constant_and_empty_columns() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        // Exact while the sketch holds every value: the nearest-rank deciles.
        let edges = kll_edges(&kll_of(&hundred), 10).unwrap();
        assert_eq!(
            edges,
            [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
        );
        assert_eq!(kll_edges(&kll_of(&[7.5; 30]), 10).unwrap(), [7.5]);
        assert_eq!(kll_edges(&kll_of(&[0.0, 1.0]), 4).unwrap(), [0.0, 1.0]);
        assert_eq!(kll_edges(&new_kll(), 10).unwrap(), [0.0]);
        assert_eq!(
            kll_edges(&new_kll(), 1),
            Err(DriftError::TooFewBins { bins: 1 })
        );
    }

    #[test]
    fn pass_one_memory_stays_bounded() {
        let mut kll = new_kll();
        for i in 0..2_000_000u32 {
            kll.update(KllFloat::<f64>::new(f64::from(i.wrapping_mul(2_654_435_761))).unwrap());
        }
        // About 12k values (95 KB) at 2M; KLL grows only by a few values
        // per doubling of n from here.
        let bytes = kll.num_retained() * std::mem::size_of::<f64>();
        assert!(bytes < 120_000, "{bytes}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The edges from the sketch sit within its rank error of the exact
        /// deciles ([`reference_edges`]), measured as ranks in the sample.
        #[test]
        fn edges_are_within_the_rank_error_of_the_exact_deciles(
            seed in any::<u64>(),
            n in 1usize..60_000,
            discrete in any::<bool>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let sample: Vec<f64> = (0..n)
                .map(|_| {
                    let x: f64 = rng.random::<f64>().powi(2) * 100.0;
                    if discrete { x.round() } else { x }
                })
                .collect();
            let kll = kll_of(&sample);
            let edges = kll_edges(&kll, DEFAULT_BINS).unwrap();
            let exact = reference_edges(&sample, DEFAULT_BINS).unwrap();
            prop_assert!(!edges.is_empty() && edges.windows(2).all(|w| w[0] < w[1]));
            let eps = if kll.is_estimation_mode() { kll.normalized_rank_error() } else { 0.0 };
            let total = n as f64;
            let rank = |e: f64| {
                let below = sample.iter().filter(|&&x| x < e).count() as f64 / total;
                let at = sample.iter().filter(|&&x| x <= e).count() as f64 / total;
                (below, at)
            };
            // Every decile is covered by an edge whose rank interval (ties
            // make it wide) is within 2ε (+1/n for the nearest rank).
            for i in 1..DEFAULT_BINS {
                let q = i as f64 / DEFAULT_BINS as f64;
                let slack = 2.0 * eps + 1.0 / total;
                let hit = edges.iter().any(|&e| {
                    let (below, at) = rank(e);
                    below - slack <= q && q <= at + slack
                });
                prop_assert!(hit, "decile {} has no edge within {}: {:?} vs exact {:?}",
                    q, slack, edges, exact);
            }
        }
    }
}
