//! Exact-or-sketch column windows: a numeric column's values kept exactly
//! (as the `f32` the model reads) up to a configured count, and a KLL
//! quantile sketch beyond it, with exact moments either way.
//!
//! # Why
//!
//! A 5,000-event window of 14 inputs is 280 KB of `f32` values: keeping
//! them makes every statistic of the usual window exact (KS, Anderson-
//! Darling and Wasserstein without the sketch's ~1.3% rank error, which
//! otherwise dominates the sampling error of such a window and hides
//! shifts of 0.1σ). Longer windows fall back to the sketch, which bounds
//! memory.
//!
//! # Guarantees
//!
//! - **Same values on both sides.** [`ColumnValues::update`] takes the
//!   `f32` the model input holds, for the reference profile and for live
//!   windows alike, so a decimal value such as 9.99 (which `f32` rounds to
//!   9.98999977) is the same number on both sides and ties stay ties.
//! - **Exact while exact.** Up to `cap` present values the ECDF, and so KS,
//!   Anderson-Darling and Wasserstein, are computed on every value (rank
//!   error 0). Beyond it, the values go into a KLL sketch (`k` =
//!   [`super::sketch::KLL_K`]) and the statistics carry its rank error.
//! - **Moments are always exact** ([`Moments`]): count, power sums about
//!   a fixed centre and the sum of absolute deviations from it, so the mean
//!   and scale tests ([`super::significance`]) are exact in both modes.
//! - **Mergeable and serialisable.** [`ColumnValues::merge`] concatenates
//!   exact values while the sum fits the cap and merges sketches otherwise;
//!   serde round-trips either mode (format [`FORMAT`]). NaN and ±∞ count
//!   as missing. Nothing panics on any input, serialised or not.

use serde::{Deserialize, Serialize};

use super::significance::{
    abs_dev_test, anderson_adjusted, anderson_ecdfs, design_effect, ks_test, mean_test,
    variance_test, AndersonDarling, KsTest, Summary, ZTest, AD_MAX_TIE_SHARE,
};
use super::sketch::{kll_retained, Kll, KLL_K};
use super::stats::Ecdf;
use super::{DriftError, Side};
use datasketches::kll::{KllFloat, KllSketch};

/// Serialised format version of [`ColumnValues`]; bump on any change.
pub const FORMAT: u32 = 1;

/// Default cap of a live window: 5,000 values per column (20 KB of `f32`),
/// the usual window, so its statistics are exact.
pub const DEFAULT_EXACT_MAX_VALUES: usize = 5_000;

/// Default cap of a reference profile column: 2^16 values (256 KB), so a
/// training set of that size is kept whole.
pub const DEFAULT_REFERENCE_MAX_VALUES: usize = 1 << 16;

/// Exact moments of a column about a fixed centre `c` (the reference's
/// median, shared by every window compared with it): power sums of
/// `y = x - c` up to the fourth and `Σ |y|`. Sums about a central point
/// keep the variance and fourth moment free of the cancellation raw sums
/// would suffer; merging adds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moments {
    center: f64,
    n: u64,
    s1: f64,
    s2: f64,
    s3: f64,
    s4: f64,
    abs: f64,
}

impl Moments {
    /// Empty moments about `center` (a non-finite centre is taken as 0).
    pub fn new(center: f64) -> Self {
        Moments {
            center: if center.is_finite() { center } else { 0.0 },
            n: 0,
            s1: 0.0,
            s2: 0.0,
            s3: 0.0,
            s4: 0.0,
            abs: 0.0,
        }
    }

    /// Adds one finite value.
    #[inline]
    fn add(&mut self, x: f64) {
        let y = x - self.center;
        let y2 = y * y;
        self.n += 1;
        self.s1 += y;
        self.s2 += y2;
        self.s3 += y2 * y;
        self.s4 += y2 * y2;
        self.abs += y.abs();
    }

    fn merge(&mut self, other: &Moments) -> Result<(), DriftError> {
        if self.center.to_bits() != other.center.to_bits() {
            return Err(DriftError::IncompatibleSketches {
                reason: "different moment centres",
            });
        }
        self.n = self
            .n
            .checked_add(other.n)
            .ok_or(DriftError::IncompatibleSketches {
                reason: "counts overflow u64",
            })?;
        self.s1 += other.s1;
        self.s2 += other.s2;
        self.s3 += other.s3;
        self.s4 += other.s4;
        self.abs += other.abs;
        Ok(())
    }

    /// The centre the sums are taken about.
    pub fn center(&self) -> f64 {
        self.center
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The moment tests' view with effective size `n_eff` (`None` when
    /// empty). Central moments use divisor `n`; rounding can make a
    /// variance of identical values a tiny negative, clamped to 0.
    pub fn summary(&self, n_eff: f64) -> Option<Summary> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let (e1, e2, e3, e4) = (self.s1 / n, self.s2 / n, self.s3 / n, self.s4 / n);
        let variance = (e2 - e1 * e1).max(0.0);
        let m4 = (e4 - 4.0 * e1 * e3 + 6.0 * e1 * e1 * e2 - 3.0 * e1.powi(4)).max(0.0);
        let abs_dev = self.abs / n;
        Some(Summary {
            n: n_eff,
            mean: self.center + e1,
            variance,
            m4,
            abs_dev,
            abs_dev_variance: (e2 - abs_dev * abs_dev).max(0.0),
        })
    }
}

/// One numeric column of a window or a reference: exact `f32` values up to
/// `cap`, a KLL sketch beyond; see the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ColumnValuesRepr", into = "ColumnValuesRepr")]
pub struct ColumnValues {
    cap: usize,
    /// Present values while exact; empty once sketched.
    values: Vec<f32>,
    /// `Some` once more than `cap` values were seen.
    sketch: Option<Kll>,
    moments: Moments,
    missing: u64,
}

/// Equal when they describe the same values: the same cap, moments and
/// missing count, and the same multiset of exact values (their order is
/// not kept by serialisation and matters to no statistic) or the same
/// sketch image.
impl PartialEq for ColumnValues {
    fn eq(&self, other: &Self) -> bool {
        let sorted = |v: &[f32]| {
            let mut v = v.to_vec();
            v.sort_unstable_by(f32::total_cmp);
            v
        };
        self.cap == other.cap
            && self.missing == other.missing
            && self.moments == other.moments
            && match (&self.sketch, &other.sketch) {
                (None, None) => sorted(&self.values) == sorted(&other.values),
                (Some(a), Some(b)) => a.serialize() == b.serialize(),
                _ => false,
            }
    }
}

impl ColumnValues {
    /// An empty column keeping up to `cap` values exactly, with moments
    /// about `center` (the reference's median; any fixed value is valid,
    /// a central one keeps the sums well conditioned).
    pub fn new(cap: usize, center: f64) -> Self {
        ColumnValues {
            cap,
            values: Vec::new(),
            sketch: None,
            moments: Moments::new(center),
            missing: 0,
        }
    }

    /// An empty column with the same cap and centre: the next window.
    pub fn empty_like(&self) -> Self {
        Self::new(self.cap, self.moments.center)
    }

    /// Adds the model input's value; NaN and ±∞ count as missing.
    #[inline]
    pub fn update(&mut self, value: f32) {
        if !value.is_finite() {
            self.missing += 1;
            return;
        }
        let x = f64::from(value);
        self.moments.add(x);
        match &mut self.sketch {
            Some(kll) => kll_update(kll, x),
            None => {
                if self.values.len() == self.values.capacity() {
                    // Doubling, but never past `cap + 1`: what the window's
                    // byte bound (`bytes_bound`) counts on.
                    let want = (self.values.len() * 2).max(16).min(self.cap + 1);
                    self.values
                        .reserve_exact(want.saturating_sub(self.values.len()).max(1));
                }
                self.values.push(value);
                if self.values.len() > self.cap {
                    self.spill();
                }
            }
        }
    }

    /// Bytes held now: the exact values' capacity, or the sketch's
    /// retained values.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.values.capacity() * std::mem::size_of::<f32>()
            + self
                .sketch
                .as_ref()
                .map_or(0, |k| k.num_retained() * std::mem::size_of::<f64>())
    }

    /// The most [`bytes`](Self::bytes) can reach, however many values:
    /// `cap + 1` exact values (the one that spills them), or a KLL's most.
    pub fn bytes_bound(&self) -> usize {
        std::mem::size_of::<Self>()
            + ((self.cap + 1) * std::mem::size_of::<f32>())
                .max(super::sketch::KLL_RETAINED_BOUND * std::mem::size_of::<f64>())
    }

    /// Counts one missing value.
    #[inline]
    pub fn update_missing(&mut self) {
        self.missing += 1;
    }

    /// Moves the exact values into a new KLL sketch.
    fn spill(&mut self) {
        let mut kll = KllSketch::new(KLL_K).unwrap_or_default();
        for &v in &self.values {
            kll_update(&mut kll, f64::from(v));
        }
        self.values = Vec::new();
        self.sketch = Some(kll);
    }

    /// Adds `other` into `self`; afterwards `self` describes both. Exact
    /// while the values fit `self`'s cap, sketched otherwise. On error
    /// `self` is unchanged.
    ///
    /// Errors: different centres, or counts beyond `u64`.
    pub fn merge(&mut self, other: &ColumnValues) -> Result<(), DriftError> {
        let mut moments = self.moments.clone();
        moments.merge(&other.moments)?;
        let missing =
            self.missing
                .checked_add(other.missing)
                .ok_or(DriftError::IncompatibleSketches {
                    reason: "counts overflow u64",
                })?;
        let fits = self.sketch.is_none()
            && other.sketch.is_none()
            && self.values.len() + other.values.len() <= self.cap;
        if fits {
            self.values.reserve_exact(other.values.len());
            self.values.extend_from_slice(&other.values);
        } else {
            if self.sketch.is_none() {
                self.spill();
            }
            if let Some(kll) = &mut self.sketch {
                match &other.sketch {
                    // Cannot fail: same k family, counts checked above.
                    Some(o) => {
                        let _ = kll.merge(o);
                    }
                    None => other
                        .values
                        .iter()
                        .for_each(|&v| kll_update(kll, f64::from(v))),
                }
            }
        }
        self.moments = moments;
        self.missing = missing;
        Ok(())
    }

    /// The same column with its moments about the exact median of its
    /// values (the mean of the two middle ones for an even count, in
    /// `f32` as NumPy's `median` of `float32` values), when exact; a
    /// sketched column is returned as it is. Windows compared with a
    /// reference share its centre, so the scale test's `|x - median|` is
    /// about the reference's own median.
    pub fn recentred_on_median(&self) -> ColumnValues {
        if self.sketch.is_some() || self.values.is_empty() {
            return self.clone();
        }
        let mut sorted = self.values.clone();
        sorted.sort_unstable_by(f32::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        let mut c = ColumnValues::new(self.cap, f64::from(median));
        self.values.iter().for_each(|&v| c.update(v));
        c.missing = self.missing;
        c
    }

    /// Whether every present value is kept (statistics are exact).
    pub fn is_exact(&self) -> bool {
        self.sketch.is_none()
    }

    /// The exact values (empty once sketched).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Present values seen.
    pub fn count(&self) -> u64 {
        self.moments.n
    }

    /// Missing values seen.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The exact moments.
    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    /// The cap on exact values.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Exact smallest and largest present value.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        match &self.sketch {
            Some(kll) => Some((**kll.min_item()?, **kll.max_item()?)),
            None => self.values.iter().fold(None, |acc, &v| {
                let v = f64::from(v);
                Some(acc.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v))))
            }),
        }
    }

    /// The ECDF and its normalised rank error (0 while exact; the KLL's
    /// 99%-confidence bound once sketched).
    ///
    /// Errors: no present value (`EmptySample` for `side`), or a sketch
    /// image the reader does not understand.
    pub fn ecdf(&self, side: Side) -> Result<(Ecdf, f64), DriftError> {
        match &self.sketch {
            None => {
                let values: Vec<f64> = self.values.iter().map(|&v| f64::from(v)).collect();
                Ok((Ecdf::from_sample(&values, side)?, 0.0))
            }
            Some(kll) => {
                if kll.is_empty() {
                    return Err(DriftError::EmptySample { side });
                }
                let error = if kll.is_estimation_mode() {
                    kll.normalized_rank_error()
                } else {
                    0.0
                };
                Ok((Ecdf::from_weighted(kll_retained(kll)?, side)?, error))
            }
        }
    }
}

/// A reference column prepared once for comparison with window after
/// window: its ECDF (sorting 2^16 values at every close would cost more
/// than the tests) and its moments.
#[derive(Debug, Clone)]
pub struct PreparedColumn {
    ecdf: Ecdf,
    error: f64,
    moments: Moments,
    span: f64,
    largest_tie: f64,
}

impl PreparedColumn {
    /// `None` when the reference holds no present value.
    ///
    /// Errors: a sketch image the reader does not understand.
    pub fn new(reference: &ColumnValues) -> Result<Option<Self>, DriftError> {
        if reference.count() == 0 {
            return Ok(None);
        }
        let (ecdf, error) = reference.ecdf(Side::Reference)?;
        Ok(Some(PreparedColumn {
            error,
            moments: reference.moments.clone(),
            span: reference.min_max().map_or(0.0, |(lo, hi)| hi - lo),
            largest_tie: ecdf.largest_share(),
            ecdf,
        }))
    }

    /// The reference's moments.
    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    /// The largest share of the reference at one value (see
    /// [`AD_MAX_TIE_SHARE`]).
    pub fn largest_tie(&self) -> f64 {
        self.largest_tie
    }
}

/// Every numeric test of a window against its reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NumericTests {
    /// Both sides exact: KS, Anderson-Darling and Wasserstein are exact.
    pub exact: bool,
    /// Design effect applied ([`design_effect`]).
    pub deff: f64,
    /// KS (p-value on the sketch-error lower bound, effective sizes) and
    /// Wasserstein.
    pub ks: KsTest,
    /// `|W - W_exact| ≤ wasserstein_bound`: 0 when exact; otherwise
    /// `ε_r · range_r + ε_c · range_c`, honest but large on heavy tails,
    /// where a sketched Wasserstein is unreliable.
    pub wasserstein_bound: f64,
    /// Anderson-Darling with the design effect applied (exact ECDFs:
    /// SciPy's midrank statistic; sketched: the weighted approximation).
    pub anderson: AndersonDarling,
    /// Whether its p-value is to be judged: the reference has no tie
    /// holding more than [`AD_MAX_TIE_SHARE`] of its values.
    pub anderson_judged: bool,
    /// Location: standardised mean difference.
    pub mean: ZTest,
    /// Scale, light tails: variance difference.
    pub variance: ZTest,
    /// Scale, any tails: mean absolute deviation from the reference median.
    pub abs_dev: ZTest,
}

/// Compares a window with a prepared reference, with the effective sizes
/// of both ([`super::significance::effective_n`]). `Ok(None)` when the
/// window has no present value.
///
/// Errors: the window's moments are about another centre (it was not made
/// from this reference), or an unreadable sketch image.
pub fn compare_columns(
    reference: &PreparedColumn,
    e_ref: f64,
    current: &ColumnValues,
    e_cur: f64,
) -> Result<Option<NumericTests>, DriftError> {
    if reference.moments.center.to_bits() != current.moments.center.to_bits() {
        return Err(DriftError::IncompatibleSketches {
            reason: "the window's moments are about another centre",
        });
    }
    if current.count() == 0 {
        return Ok(None);
    }
    let (ecdf, error) = current.ecdf(Side::Current)?;
    let n_ref = reference.moments.n as f64;
    let n_cur = current.count() as f64;
    let deff = design_effect(n_ref, e_ref, n_cur, e_cur);
    let ks = ks_test(
        (&reference.ecdf, reference.error, e_ref),
        (&ecdf, error, e_cur),
    );
    let anderson = anderson_adjusted(&anderson_ecdfs(&[&reference.ecdf, &ecdf])?, deff);
    let span = current.min_max().map_or(0.0, |(lo, hi)| hi - lo);
    let (r, c) = match (
        reference.moments.summary(e_ref),
        current.moments.summary(e_cur),
    ) {
        (Some(r), Some(c)) => (r, c),
        _ => return Ok(None),
    };
    Ok(Some(NumericTests {
        exact: reference.error == 0.0 && error == 0.0,
        deff,
        ks,
        wasserstein_bound: reference.error * reference.span + error * span,
        anderson,
        anderson_judged: reference.largest_tie <= AD_MAX_TIE_SHARE,
        mean: mean_test(&r, &c),
        variance: variance_test(&r, &c),
        abs_dev: abs_dev_test(&r, &c),
    }))
}

fn kll_update(kll: &mut Kll, x: f64) {
    if let Ok(v) = KllFloat::<f64>::new(x) {
        kll.update(v);
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnValuesRepr {
    format: u32,
    cap: usize,
    missing: u64,
    moments: Moments,
    /// Exact values, when exact (in arrival order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<f32>>,
    /// Exact values as their distinct values in increasing order and how
    /// often each occurs, when exact and at most half the values are
    /// distinct (ties and decimal grids: a reference profile of 41,904
    /// rows of an integer column is then a few hundred numbers). No
    /// statistic depends on the order of a column's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    distinct: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counts: Option<Vec<u64>>,
    /// DataSketches KLL compact image (f64 items), when sketched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kll: Option<Vec<u8>>,
}

impl From<ColumnValues> for ColumnValuesRepr {
    fn from(c: ColumnValues) -> Self {
        let (values, kll) = match &c.sketch {
            Some(k) => (None, Some(k.serialize())),
            None => (Some(c.values), None),
        };
        let (values, distinct, counts) = match values {
            Some(v) => {
                let mut sorted = v.clone();
                sorted.sort_unstable_by(f32::total_cmp);
                let mut distinct: Vec<f32> = Vec::new();
                let mut counts: Vec<u64> = Vec::new();
                for x in sorted {
                    match distinct.last() {
                        Some(&last) if last.to_bits() == x.to_bits() => {
                            if let Some(c) = counts.last_mut() {
                                *c += 1;
                            }
                        }
                        _ => {
                            distinct.push(x);
                            counts.push(1);
                        }
                    }
                }
                if distinct.len() * 2 <= v.len() {
                    (None, Some(distinct), Some(counts))
                } else {
                    (Some(v), None, None)
                }
            }
            None => (None, None, None),
        };
        ColumnValuesRepr {
            format: FORMAT,
            cap: c.cap,
            missing: c.missing,
            moments: c.moments,
            values,
            distinct,
            counts,
            kll,
        }
    }
}

impl TryFrom<ColumnValuesRepr> for ColumnValues {
    type Error = DriftError;

    fn try_from(r: ColumnValuesRepr) -> Result<Self, DriftError> {
        let corrupt = |reason: String| DriftError::CorruptSketch { reason };
        if r.format != FORMAT {
            return Err(corrupt(format!(
                "column values format {} (this build reads {FORMAT})",
                r.format
            )));
        }
        let sums = [r.moments.center, r.moments.s1, r.moments.s2, r.moments.s3];
        if sums
            .iter()
            .chain([r.moments.s4, r.moments.abs].iter())
            .any(|v| !v.is_finite())
        {
            return Err(corrupt("column values: a moment is not finite".into()));
        }
        let values = match (r.values, r.distinct, r.counts) {
            (values, None, None) => values,
            (None, Some(distinct), Some(counts)) if distinct.len() == counts.len() => {
                let total = counts.iter().try_fold(0u64, |a, &c| a.checked_add(c));
                match total {
                    Some(t) if t <= r.cap as u64 => {}
                    _ => return Err(corrupt(format!("value counts over a cap of {}", r.cap))),
                }
                let mut values = Vec::new();
                for (&v, &c) in distinct.iter().zip(&counts) {
                    values.extend(std::iter::repeat_n(v, c as usize));
                }
                Some(values)
            }
            _ => {
                return Err(corrupt(
                    "column values: `distinct` and `counts` go together, of one length, instead of `values`".into(),
                ))
            }
        };
        let (values, sketch, count) = match (values, r.kll) {
            (Some(values), None) => {
                if values.len() > r.cap {
                    return Err(corrupt(format!(
                        "{} exact values over a cap of {}",
                        values.len(),
                        r.cap
                    )));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(corrupt("column values: a value is not finite".into()));
                }
                let n = values.len() as u64;
                (values, None, n)
            }
            (None, Some(bytes)) => {
                let kll =
                    Kll::deserialize(&bytes).map_err(|e| corrupt(format!("KLL image: {e}")))?;
                let n = kll.n();
                (Vec::new(), Some(kll), n)
            }
            _ => {
                return Err(corrupt(
                    "column values need exactly one of `values` and `kll`".into(),
                ))
            }
        };
        if count != r.moments.n {
            return Err(corrupt(format!(
                "{count} values but moments of {}",
                r.moments.n
            )));
        }
        Ok(ColumnValues {
            cap: r.cap,
            values,
            sketch,
            moments: r.moments,
            missing: r.missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::stats::{ks_statistic, wasserstein_ecdf};
    use proptest::prelude::*;

    fn fed(cap: usize, values: &[f32]) -> ColumnValues {
        let mut c = ColumnValues::new(cap, 1.0);
        values.iter().for_each(|&v| c.update(v));
        c
    }

    #[test]
    fn decimal_values_are_the_same_number_on_both_sides() {
        // 9.99 read from a file as f64 and fed as the model's f32 equals
        // the live f32: the ECDFs agree exactly, KS is 0.
        let prices = [9.99f64, 0.10, 1.10, 9.99, 1.10];
        let reference = fed(100, &prices.map(|p| p as f32));
        let live = fed(100, &[9.99f32, 0.10, 1.10, 9.99, 1.10]);
        let (a, _) = reference.ecdf(Side::Reference).unwrap();
        let (b, _) = live.ecdf(Side::Current).unwrap();
        assert_eq!(ks_statistic(&a, &b), 0.0);
        assert_eq!(wasserstein_ecdf(&a, &b), 0.0);
        assert_eq!(a.len(), 3);
        assert_eq!(a.largest_share(), 0.4);
    }

    #[test]
    fn spills_to_a_sketch_past_the_cap_and_keeps_exact_moments() {
        let values: Vec<f32> = (0..10_000).map(|i| (i % 97) as f32 * 0.5).collect();
        let exact = fed(20_000, &values);
        let sketched = fed(1_000, &values);
        assert!(exact.is_exact() && !sketched.is_exact());
        assert_eq!(sketched.values().len(), 0);
        assert_eq!(exact.moments(), sketched.moments());
        assert_eq!(exact.min_max(), sketched.min_max());
        let (e, err0) = exact.ecdf(Side::Current).unwrap();
        let (s, err) = sketched.ecdf(Side::Current).unwrap();
        assert_eq!(err0, 0.0);
        assert!(err > 0.0 && ks_statistic(&e, &s) <= 2.0 * err);
        let m = exact.moments().summary(10_000.0).unwrap();
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / 10_000.0;
        assert!((m.mean - mean).abs() < 1e-9);
    }

    #[test]
    fn missing_and_non_finite_values_are_counted_apart() {
        let mut c = ColumnValues::new(10, 0.0);
        c.update(f32::NAN);
        c.update(f32::INFINITY);
        c.update_missing();
        c.update(2.0);
        assert_eq!((c.count(), c.missing()), (1, 3));
        assert!(ColumnValues::new(10, 0.0).ecdf(Side::Current).is_err());
        assert!(ColumnValues::new(10, 0.0).moments().summary(1.0).is_none());
    }

    #[test]
    fn corrupt_serialisations_are_errors() {
        let c = fed(10, &[1.0, 2.0, 3.0]);
        let mut json = serde_json::to_value(&c).unwrap();
        json["values"] = serde_json::json!([1.0, 2.0]);
        assert!(serde_json::from_value::<ColumnValues>(json.clone()).is_err());
        json["values"] = serde_json::json!(vec![1.0; 11]);
        assert!(serde_json::from_value::<ColumnValues>(json.clone()).is_err());
        json["kll"] = serde_json::json!([1, 2, 3]);
        assert!(serde_json::from_value::<ColumnValues>(json.clone()).is_err());
        json["format"] = serde_json::json!(2);
        assert!(serde_json::from_value::<ColumnValues>(json).is_err());
        let mut a = fed(10, &[1.0]);
        let b = ColumnValues::new(10, 5.0);
        let before = a.clone();
        assert!(a.merge(&b).is_err());
        assert_eq!(a, before);
    }

    fn sample() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(
            prop_oneof![
                -1e4f32..1e4,
                (0i32..5).prop_map(|v| v as f32 * 0.1),
                Just(f32::NAN),
            ],
            0..600,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn merge_equals_one_window_of_the_union(a in sample(), b in sample(), cap in 0usize..700) {
            let mut merged = fed(cap, &a);
            merged.merge(&fed(cap, &b)).unwrap();
            let union: Vec<f32> = a.iter().chain(&b).copied().collect();
            let single = fed(cap, &union);
            prop_assert_eq!(merged.count(), single.count());
            prop_assert_eq!(merged.missing(), single.missing());
            prop_assert_eq!(merged.min_max(), single.min_max());
            prop_assert_eq!(merged.is_exact(), single.is_exact());
            let (ms, ss) = (merged.moments().summary(1.0), single.moments().summary(1.0));
            if let (Some(m), Some(s)) = (ms, ss) {
                prop_assert!((m.mean - s.mean).abs() <= 1e-6 * (1.0 + s.mean.abs()));
            }
            if merged.is_exact() && merged.count() > 0 {
                let (x, _) = merged.ecdf(Side::Current).unwrap();
                let (y, _) = single.ecdf(Side::Current).unwrap();
                prop_assert_eq!(x, y);
            }
        }

        #[test]
        fn serialisation_round_trips(a in sample(), cap in 0usize..700) {
            let c = fed(cap, &a);
            let json = serde_json::to_string(&c).unwrap();
            let back: ColumnValues = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.count(), c.count());
            // Values may come back in another order (ties are written as
            // distinct values and counts); no statistic depends on it.
            let sorted = |v: &[f32]| {
                let mut v = v.to_vec();
                v.sort_unstable_by(f32::total_cmp);
                v
            };
            prop_assert_eq!(sorted(back.values()), sorted(c.values()));
            prop_assert_eq!(back.moments(), c.moments());
            if c.count() > 0 {
                prop_assert_eq!(back.ecdf(Side::Current).unwrap(), c.ecdf(Side::Current).unwrap());
            }
        }

        #[test]
        fn arbitrary_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120), n in any::<u64>()) {
            let json = serde_json::json!({
                "format": 1, "cap": 10, "missing": 0,
                "moments": {"center": 0.0, "n": n, "s1": 0.0, "s2": 0.0, "s3": 0.0, "s4": 0.0, "abs": 0.0},
                "kll": bytes,
            });
            if let Ok(c) = serde_json::from_value::<ColumnValues>(json) {
                let _ = c.ecdf(Side::Current);
                let _ = c.min_max();
            }
        }
    }
}
