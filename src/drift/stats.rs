//! Exact drift statistics between a reference and a current sample: the
//! definitions that sketch mode approximates and the parity fixtures check.
//!
//! Every function is pure, takes either raw samples or already binned
//! counts, returns a [`DriftError`] instead of panicking, and matches the
//! SciPy/NumPy computation named in its docs to floating-point rounding
//! (the parity test allows 1e-6). Raw numeric samples must be finite: NaN or
//! ±∞ is [`DriftError::NonFinite`]; missing values are counted apart and
//! compared with [`missing_rate_change`].
//!
//! # Binning (PSI and Jensen-Shannon on numbers)
//!
//! [`reference_edges`] cuts the reference at its `i/B` quantiles,
//! `i = 1..B-1` (default `B` = [`DEFAULT_BINS`] = 10, deciles), computed like
//! `numpy.quantile(reference, np.arange(1, B) / B)` (method `linear`,
//! Hyndman-Fan type 7), then drops repeated edges (`numpy.unique`), which
//! ties produce. With edges `e_1 < … < e_m` and `e_0 = -∞`, `e_{m+1} = +∞`,
//! bin `i` holds `e_{i-1} < x ≤ e_i` (NumPy:
//! `numpy.searchsorted(edges, x, side="left")`), so there are `m + 1 ≤ B` bins.
//!
//! # Reference in NumPy/SciPy
//!
//! ```text
//! edges = np.unique(np.quantile(ref, np.arange(1, B) / B))
//! counts(x) = np.bincount(np.searchsorted(edges, x, "left"), minlength=len(edges) + 1)
//! pr, pc = np.maximum(r / r.sum(), 1e-4), np.maximum(c / c.sum(), 1e-4)
//! psi = np.sum((pc - pr) * np.log(pc / pr))
//! js  = scipy.spatial.distance.jensenshannon(r, c, base=2)
//! ks  = scipy.stats.ks_2samp(ref, cur).statistic
//! p   = scipy.special.kolmogorov(np.sqrt(n*m / (n+m)) * ks)
//! w1  = scipy.stats.wasserstein_distance(ref, cur)
//! chi = scipy.stats.chisquare(c, f_exp=renormalised(np.maximum(r / r.sum(), 1e-4)) * c.sum())
//! ```

use std::collections::BTreeMap;

use serde::Serialize;

use super::special::{chi2_sf, kolmogorov_sf, normal_two_sided_p, LN_BASE_2};
use super::{DriftError, Side};

/// Number of reference-quantile bins for numeric PSI and Jensen-Shannon:
/// deciles, the usual PSI convention.
pub const DEFAULT_BINS: usize = 10;

/// Floor on every bin or category proportion in PSI and on the reference
/// proportions of chi-square, so that an empty bin costs a large but finite
/// amount instead of `ln 0`. 1e-4 is a common choice: an empty side against
/// a bin holding 10% adds `(0.1 - 1e-4) · ln(1000) ≈ 0.69`, which alone is
/// far above the usual 0.25 alert level.
pub const PSI_EPSILON: f64 = 1e-4;

// ---------------------------------------------------------------------------
// Samples

/// Checks that a raw sample is non-empty and finite.
fn check_sample(sample: &[f64], side: Side) -> Result<(), DriftError> {
    if sample.is_empty() {
        return Err(DriftError::EmptySample { side });
    }
    match sample.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(DriftError::NonFinite {
            side,
            index,
            value: sample[index],
        }),
        None => Ok(()),
    }
}

/// A checked, sorted copy of a raw sample.
fn sorted_sample(sample: &[f64], side: Side) -> Result<Vec<f64>, DriftError> {
    check_sample(sample, side)?;
    let mut sorted = sample.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    Ok(sorted)
}

/// The `q`-quantile of a sorted, non-empty sample with NumPy's default
/// `linear` method (Hyndman-Fan type 7), operation for operation as
/// `numpy.quantile` computes it so that bin edges agree to the last bit.
///
/// `None` when the sample is empty or `q` is outside `[0, 1]`. The sample is
/// assumed sorted ascending; an unsorted one gives a meaningless value, not
/// a panic.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let last = sorted.len() - 1;
    let virtual_index = last as f64 * q;
    if virtual_index >= last as f64 {
        return sorted.last().copied();
    }
    let previous = virtual_index.floor();
    let i = previous as usize;
    let (a, b) = (*sorted.get(i)?, *sorted.get(i + 1)?);
    let t = virtual_index - previous;
    let diff = b - a;
    // NumPy's `_lerp`: interpolate from the nearer end, which keeps the
    // result monotone and exact at t = 1.
    Some(if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    })
}

/// Interior bin edges at the reference's `i/bins` quantiles, repeated edges
/// dropped (see the module docs). The result is finite, strictly increasing
/// and has between 1 and `bins - 1` edges.
///
/// Errors: fewer than 2 bins, empty or non-finite reference.
pub fn reference_edges(reference: &[f64], bins: usize) -> Result<Vec<f64>, DriftError> {
    if bins < 2 {
        return Err(DriftError::TooFewBins { bins });
    }
    let sorted = sorted_sample(reference, Side::Reference)?;
    let mut edges: Vec<f64> = (1..bins)
        .filter_map(|i| quantile_sorted(&sorted, i as f64 / bins as f64))
        .collect();
    // `numpy.unique` sorts before removing repeats; linear quantiles are
    // monotone in q, so the sort only guards against rounding.
    edges.sort_unstable_by(f64::total_cmp);
    edges.dedup_by(|a, b| a == b);
    Ok(edges)
}

/// Checks edges as [`reference_edges`] produces them.
pub(crate) fn check_edges(edges: &[f64]) -> Result<(), DriftError> {
    if edges.is_empty() {
        return Err(DriftError::InvalidEdges { reason: "no edges" });
    }
    if edges.iter().any(|e| !e.is_finite()) {
        return Err(DriftError::InvalidEdges {
            reason: "an edge is not finite",
        });
    }
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(DriftError::InvalidEdges {
            reason: "edges are not strictly increasing",
        });
    }
    Ok(())
}

/// Bin of `x` for `edges`: the number of edges strictly below `x`, i.e.
/// bin `i` holds `e_{i-1} < x ≤ e_i`. Always `≤ edges.len()`.
#[inline]
pub fn bin_index(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e < x)
}

/// Counts per bin (`edges.len() + 1` bins) of a finite sample.
///
/// Errors: invalid edges, empty or non-finite sample.
pub fn bin_counts(edges: &[f64], sample: &[f64], side: Side) -> Result<Vec<u64>, DriftError> {
    check_edges(edges)?;
    check_sample(sample, side)?;
    let mut counts = vec![0u64; edges.len() + 1];
    for &x in sample {
        if let Some(c) = counts.get_mut(bin_index(edges, x)) {
            *c += 1;
        }
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------
// Binned statistics

/// Checks two count vectors over the same bins and returns their totals.
fn check_counts(reference: &[u64], current: &[u64]) -> Result<(f64, f64), DriftError> {
    if reference.len() != current.len() {
        return Err(DriftError::LengthMismatch {
            reference: reference.len(),
            current: current.len(),
        });
    }
    let total = |counts: &[u64], side| {
        let sum: u64 = counts.iter().fold(0u64, |acc, &c| acc.saturating_add(c));
        if sum == 0 {
            Err(DriftError::EmptySample { side })
        } else {
            Ok(sum as f64)
        }
    };
    Ok((
        total(reference, Side::Reference)?,
        total(current, Side::Current)?,
    ))
}

/// Population stability index of current against reference counts over the
/// same bins (numeric bins or categories):
///
/// ```text
/// PSI = Σ_i (c_i - r_i) · ln(c_i / r_i),   r_i = max(R_i / ΣR, ε),  c_i = max(C_i / ΣC, ε)
/// ```
///
/// with `ε` = [`PSI_EPSILON`] and no renormalisation after the floor. PSI is
/// ≥ 0, 0 for equal proportions, and symmetric in the two sides. Bins empty
/// on both sides contribute 0.
///
/// Errors: different lengths, or a side whose counts sum to 0.
pub fn psi_from_counts(reference: &[u64], current: &[u64]) -> Result<f64, DriftError> {
    let (total_r, total_c) = check_counts(reference, current)?;
    Ok(reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let r = (r as f64 / total_r).max(PSI_EPSILON);
            let c = (c as f64 / total_c).max(PSI_EPSILON);
            (c - r) * (c / r).ln()
        })
        .sum())
}

/// `x · ln(x / y)` with SciPy's `rel_entr` conventions (0 for `x = 0`).
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen-Shannon **distance** with base-2 logarithms between the
/// proportions of two count vectors, exactly
/// `scipy.spatial.distance.jensenshannon(reference, current, base=2)`:
///
/// ```text
/// p = R/ΣR, q = C/ΣC, m = (p+q)/2,  JSD = (KL(p‖m) + KL(q‖m)) / (2 ln 2),  result = √JSD
/// ```
///
/// The result is in `[0, 1]` (1: disjoint supports); its square is the base-2
/// JS divergence. No epsilon is needed: `m > 0` wherever `p` or `q` is. A
/// rounding-negative `JSD` of identical inputs is clamped to 0 rather than
/// giving NaN (SciPy would return NaN there).
///
/// Errors: different lengths, or a side whose counts sum to 0.
pub fn js_distance_from_counts(reference: &[u64], current: &[u64]) -> Result<f64, DriftError> {
    let (total_r, total_c) = check_counts(reference, current)?;
    let (mut left, mut right) = (0.0, 0.0);
    for (&r, &c) in reference.iter().zip(current) {
        let p = r as f64 / total_r;
        let q = c as f64 / total_c;
        let m = (p + q) / 2.0;
        left += rel_entr(p, m);
        right += rel_entr(q, m);
    }
    let divergence = (left + right) / LN_BASE_2;
    Ok((divergence / 2.0).max(0.0).sqrt())
}

/// PSI over reference-quantile bins of two raw finite samples (see the
/// module docs for the binning; `bins` = [`DEFAULT_BINS`] usually).
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> Result<f64, DriftError> {
    let (r, c) = binned(reference, current, bins)?;
    psi_from_counts(&r, &c)
}

/// Jensen-Shannon distance (base 2) over reference-quantile bins of two raw
/// finite samples, the same bins as [`psi`].
pub fn js_distance(reference: &[f64], current: &[f64], bins: usize) -> Result<f64, DriftError> {
    let (r, c) = binned(reference, current, bins)?;
    js_distance_from_counts(&r, &c)
}

fn binned(
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> Result<(Vec<u64>, Vec<u64>), DriftError> {
    let edges = reference_edges(reference, bins)?;
    Ok((
        bin_counts(&edges, reference, Side::Reference)?,
        bin_counts(&edges, current, Side::Current)?,
    ))
}

// ---------------------------------------------------------------------------
// Empirical distributions: Kolmogorov-Smirnov and Wasserstein

/// An empirical distribution function: distinct finite values in ascending
/// order with cumulative weights. Built from a raw sample (weight 1 per
/// value) or from a quantile sketch's retained items (weight `2^level`), so
/// exact and sketch mode share one KS and one Wasserstein implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct Ecdf {
    values: Vec<f64>,
    cumulative: Vec<u64>,
    total: u64,
}

impl Ecdf {
    /// The ECDF of a raw sample. Errors: empty or non-finite sample.
    pub fn from_sample(sample: &[f64], side: Side) -> Result<Self, DriftError> {
        let sorted = sorted_sample(sample, side)?;
        Ok(Self::from_sorted_weighted(
            sorted.into_iter().map(|v| (v, 1)),
        ))
    }

    /// The ECDF of weighted items in any order. Errors: no item with a
    /// positive weight, a non-finite value, or total weight beyond `u64`.
    pub fn from_weighted(mut items: Vec<(f64, u64)>, side: Side) -> Result<Self, DriftError> {
        if let Some(index) = items.iter().position(|(v, _)| !v.is_finite()) {
            return Err(DriftError::NonFinite {
                side,
                index,
                value: items[index].0,
            });
        }
        items.retain(|&(_, w)| w > 0);
        if items.is_empty() {
            return Err(DriftError::EmptySample { side });
        }
        if items
            .iter()
            .try_fold(0u64, |acc, &(_, w)| acc.checked_add(w))
            .is_none()
        {
            return Err(DriftError::CorruptSketch {
                reason: format!("the {side} weights overflow u64"),
            });
        }
        // Stable sort (driftsort) finds and merges already-sorted runs; a
        // KLL image is one sorted run per compacted level, so this is a
        // merge of a few runs plus a sort of level 0, where the unstable
        // sort re-sorted everything (a sixth of a window evaluation).
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Self::from_sorted_weighted(items.into_iter()))
    }

    /// Collapses equal values (`-0.0 == 0.0` too) of sorted items.
    fn from_sorted_weighted(items: impl Iterator<Item = (f64, u64)>) -> Self {
        let mut values: Vec<f64> = Vec::new();
        let mut cumulative: Vec<u64> = Vec::new();
        let mut total = 0u64;
        for (v, w) in items {
            total += w;
            match (values.last(), cumulative.last_mut()) {
                (Some(&last), Some(cum)) if last == v => *cum = total,
                _ => {
                    values.push(v);
                    cumulative.push(total);
                }
            }
        }
        Self {
            values,
            cumulative,
            total,
        }
    }

    /// Total weight (the sample size for a raw sample).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Never true for an `Ecdf` built by the constructors.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The distinct values, ascending.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Weight at values `≤ values()[i]`, for each `i`.
    pub fn cumulative(&self) -> &[u64] {
        &self.cumulative
    }

    /// The largest share of the total weight at one value: 1/n for
    /// distinct values, the point mass of the heaviest tie otherwise.
    pub fn largest_share(&self) -> f64 {
        let mut previous = 0u64;
        let mut largest = 0u64;
        for &c in &self.cumulative {
            largest = largest.max(c.saturating_sub(previous));
            previous = c;
        }
        if self.total == 0 {
            0.0
        } else {
            largest as f64 / self.total as f64
        }
    }

    /// `F(x)`: the fraction of the weight at values `≤ x`.
    pub fn cdf(&self, x: f64) -> f64 {
        let i = self.values.partition_point(|&v| v <= x);
        match i.checked_sub(1).and_then(|i| self.cumulative.get(i)) {
            Some(&cum) => cum as f64 / self.total as f64,
            None => 0.0,
        }
    }
}

/// Walks the union of both ECDFs' values in ascending order and calls
/// `f(|F_a(x) - F_b(x)|, next_x - x)` at each (the gap is 0 after the last).
/// Both ECDFs are right-continuous step functions that change only at their
/// values, so this visits every value either can take.
fn walk(a: &Ecdf, b: &Ecdf, mut f: impl FnMut(f64, f64)) {
    let (total_a, total_b) = (a.total as f64, b.total as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut fa, mut fb) = (0.0f64, 0.0f64);
    loop {
        let x = match (a.values.get(i), b.values.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => break,
        };
        // Values are distinct within one ECDF, so each side steps at most once.
        if let (Some(&u), Some(&cum)) = (a.values.get(i), a.cumulative.get(i)) {
            if u <= x {
                fa = cum as f64 / total_a;
                i += 1;
            }
        }
        if let (Some(&v), Some(&cum)) = (b.values.get(j), b.cumulative.get(j)) {
            if v <= x {
                fb = cum as f64 / total_b;
                j += 1;
            }
        }
        let next = match (a.values.get(i), b.values.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => x,
        };
        f((fa - fb).abs(), next - x);
    }
}

/// Two-sample Kolmogorov-Smirnov statistic `D = sup_x |F_a(x) - F_b(x)|`
/// (`scipy.stats.ks_2samp(a, b).statistic`).
pub fn ks_statistic(a: &Ecdf, b: &Ecdf) -> f64 {
    let mut d = 0.0f64;
    walk(a, b, |diff, _| d = d.max(diff));
    d
}

/// [`ks_statistic`] and [`wasserstein_ecdf`] in one walk over both ECDFs
/// (what a window close needs for every numeric column).
pub fn ks_and_wasserstein(a: &Ecdf, b: &Ecdf) -> (f64, f64) {
    let mut d = 0.0f64;
    let mut w = CompensatedSum::default();
    walk(a, b, |diff, gap| {
        d = d.max(diff);
        w.add(diff * gap);
    });
    (d, w.total())
}

/// Neumaier's compensated sum.
#[derive(Default)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn add(&mut self, term: f64) {
        let t = self.sum + term;
        if self.sum.abs() >= term.abs() {
            self.compensation += (self.sum - t) + term;
        } else {
            self.compensation += (term - t) + self.sum;
        }
        self.sum = t;
    }

    fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Wasserstein-1 distance `∫ |F_a(x) - F_b(x)| dx`
/// (`scipy.stats.wasserstein_distance(a, b)`), summed with Neumaier
/// compensation so long samples do not drift from NumPy's pairwise sum.
pub fn wasserstein_ecdf(a: &Ecdf, b: &Ecdf) -> f64 {
    let mut w = CompensatedSum::default();
    walk(a, b, |diff, gap| w.add(diff * gap));
    w.total()
}

/// Asymptotic two-sided p-value of a two-sample KS statistic `d` for sample
/// sizes `n` and `m`: the Kolmogorov limit
///
/// ```text
/// p = Q_K(√(n·m / (n+m)) · d),   Q_K(x) = 2 Σ_{k≥1} (-1)^{k-1} e^{-2k²x²}
/// ```
///
/// equal to `scipy.special.kolmogorov(np.sqrt(n*m/(n+m)) * d)`. Note that
/// `scipy.stats.ks_2samp(..., method="asymp")` instead evaluates the finite-n
/// `kstwo` distribution at `round(n·m/(n+m))`; the two agree as the samples
/// grow (the fixtures record both). 1 when either size is 0.
pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let (n, m) = (n as f64, m as f64);
    let en = n * m / (n + m);
    kolmogorov_sf(en.sqrt() * d)
}

/// A Kolmogorov-Smirnov result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KolmogorovSmirnov {
    /// `D = sup |F_reference - F_current|`, in `[0, 1]`.
    pub statistic: f64,
    /// Asymptotic two-sided p-value ([`ks_p_value`]).
    pub p_value: f64,
}

/// Two-sample KS test of two raw finite samples. All-equal samples are
/// fine (one step each). Errors: empty or non-finite sample.
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> Result<KolmogorovSmirnov, DriftError> {
    let a = Ecdf::from_sample(reference, Side::Reference)?;
    let b = Ecdf::from_sample(current, Side::Current)?;
    let statistic = ks_statistic(&a, &b);
    Ok(KolmogorovSmirnov {
        statistic,
        p_value: ks_p_value(statistic, a.total(), b.total()),
    })
}

/// Wasserstein-1 distance of two raw finite samples, in the samples' unit.
/// Errors: empty or non-finite sample.
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Result<f64, DriftError> {
    let a = Ecdf::from_sample(reference, Side::Reference)?;
    let b = Ecdf::from_sample(current, Side::Current)?;
    Ok(wasserstein_ecdf(&a, &b))
}

/// All numeric statistics of two raw samples at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NumericStats {
    pub psi: f64,
    pub js_distance: f64,
    pub ks: KolmogorovSmirnov,
    pub wasserstein: f64,
}

/// [`psi`], [`js_distance`], [`ks_2samp`] and [`wasserstein`] of two raw
/// finite samples, sorting each only once.
pub fn numeric_stats(
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> Result<NumericStats, DriftError> {
    let (r, c) = binned(reference, current, bins)?;
    let a = Ecdf::from_sample(reference, Side::Reference)?;
    let b = Ecdf::from_sample(current, Side::Current)?;
    let d = ks_statistic(&a, &b);
    Ok(NumericStats {
        psi: psi_from_counts(&r, &c)?,
        js_distance: js_distance_from_counts(&r, &c)?,
        ks: KolmogorovSmirnov {
            statistic: d,
            p_value: ks_p_value(d, a.total(), b.total()),
        },
        wasserstein: wasserstein_ecdf(&a, &b),
    })
}

// ---------------------------------------------------------------------------
// Categoricals

/// Reference and current counts over the union of categories seen on either
/// side, in ascending byte order of the category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryCounts<'a> {
    pub categories: Vec<&'a str>,
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
}

/// Counts both raw categorical samples over the union of their categories.
pub fn align_categories<'a>(reference: &[&'a str], current: &[&'a str]) -> CategoryCounts<'a> {
    let mut union: BTreeMap<&'a str, (u64, u64)> = BTreeMap::new();
    for &r in reference {
        union.entry(r).or_default().0 += 1;
    }
    for &c in current {
        union.entry(c).or_default().1 += 1;
    }
    let mut out = CategoryCounts {
        categories: Vec::with_capacity(union.len()),
        reference: Vec::with_capacity(union.len()),
        current: Vec::with_capacity(union.len()),
    };
    for (category, (r, c)) in union {
        out.categories.push(category);
        out.reference.push(r);
        out.current.push(c);
    }
    out
}

/// PSI over categories of two raw categorical samples: [`psi_from_counts`]
/// on the union of categories, so a category seen on one side only gets the
/// `ε` floor on the other. Errors: an empty sample.
pub fn psi_categorical(reference: &[&str], current: &[&str]) -> Result<f64, DriftError> {
    let counts = align_categories(reference, current);
    psi_from_counts(&counts.reference, &counts.current)
}

/// A chi-square goodness-of-fit result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquare {
    /// `Σ (O_i - E_i)² / E_i`.
    pub statistic: f64,
    /// `P(χ²_dof > statistic)`; 1 when `dof = 0`.
    pub p_value: f64,
    /// Categories compared minus one.
    pub dof: u64,
}

/// Chi-square goodness of fit of the current counts `O` against the
/// reference proportions, `scipy.stats.chisquare(O, f_exp=E)` with
///
/// ```text
/// r_i = max(R_i / ΣR, ε) / Σ_j max(R_j / ΣR, ε),   E_i = r_i · ΣO,   dof = k - 1
/// ```
///
/// - Empty expected categories: a category absent from the reference (but
///   present now) would have `E_i = 0` and an infinite statistic; its
///   reference share is floored at `ε` = [`PSI_EPSILON`] and the shares
///   renormalised so `ΣE = ΣO`, which keeps the test finite but strongly
///   significant.
/// - Categories with zero counts on both sides are left out (`k` counts only
///   the others): they carry no information and would add `ε` mass and a
///   degree of freedom.
/// - A single category left (`k = 1`, `dof = 0`): statistic 0, p-value 1
///   (SciPy gives NaN for the p-value).
///
/// Errors: different lengths, or a side whose counts sum to 0.
pub fn chi_square_from_counts(reference: &[u64], current: &[u64]) -> Result<ChiSquare, DriftError> {
    let (total_r, total_c) = check_counts(reference, current)?;
    let pairs = || {
        reference
            .iter()
            .zip(current)
            .filter(|(&r, &c)| r > 0 || c > 0)
    };
    let share = |r: u64| (r as f64 / total_r).max(PSI_EPSILON);
    let norm: f64 = pairs().map(|(&r, _)| share(r)).sum();
    let mut statistic = 0.0;
    let mut k = 0u64;
    for (&r, &c) in pairs() {
        let expected = share(r) / norm * total_c;
        let d = c as f64 - expected;
        statistic += d * d / expected;
        k += 1;
    }
    let dof = k.saturating_sub(1);
    if dof == 0 {
        return Ok(ChiSquare {
            statistic: 0.0,
            p_value: 1.0,
            dof,
        });
    }
    Ok(ChiSquare {
        statistic,
        p_value: chi2_sf(statistic, dof),
        dof,
    })
}

/// [`chi_square_from_counts`] on the union of categories of two raw samples.
pub fn chi_square_categorical(
    reference: &[&str],
    current: &[&str],
) -> Result<ChiSquare, DriftError> {
    let counts = align_categories(reference, current);
    chi_square_from_counts(&counts.reference, &counts.current)
}

// ---------------------------------------------------------------------------
// Missing values

/// Change of the missing-value rate between reference and current.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MissingRateChange {
    /// `missing / total` of the reference.
    pub reference_rate: f64,
    /// `missing / total` of the current window.
    pub current_rate: f64,
    /// `current_rate - reference_rate`.
    pub difference: f64,
    /// Two-proportion z statistic with the pooled rate (sign of `difference`).
    pub z: f64,
    /// Two-sided normal p-value of `z`.
    pub p_value: f64,
}

/// Difference of missing rates and its two-proportion z test:
///
/// ```text
/// p̂ = (m_r + m_c) / (n_r + n_c)
/// z = (m_c/n_c - m_r/n_r) / √(p̂ (1 - p̂) (1/n_r + 1/n_c))
/// p = 2 Φ(-|z|)
/// ```
///
/// (`statsmodels.stats.proportion.proportions_ztest` with a pooled
/// variance.) When `p̂` is 0 or 1 both rates are equal and the variance is 0:
/// `z = 0`, `p = 1`.
///
/// Errors: a total of 0, or `missing > total`.
pub fn missing_rate_change(
    reference_missing: u64,
    reference_total: u64,
    current_missing: u64,
    current_total: u64,
) -> Result<MissingRateChange, DriftError> {
    for (side, missing, total) in [
        (Side::Reference, reference_missing, reference_total),
        (Side::Current, current_missing, current_total),
    ] {
        if total == 0 {
            return Err(DriftError::EmptySample { side });
        }
        if missing > total {
            return Err(DriftError::InvalidCounts {
                side,
                missing,
                total,
            });
        }
    }
    let (mr, nr) = (reference_missing as f64, reference_total as f64);
    let (mc, nc) = (current_missing as f64, current_total as f64);
    let reference_rate = mr / nr;
    let current_rate = mc / nc;
    let difference = current_rate - reference_rate;
    let pooled = (mr + mc) / (nr + nc);
    let variance = pooled * (1.0 - pooled) * (1.0 / nr + 1.0 / nc);
    let (z, p_value) = if variance > 0.0 {
        let z = difference / variance.sqrt();
        (z, normal_two_sided_p(z))
    } else {
        (0.0, 1.0)
    };
    Ok(MissingRateChange {
        reference_rate,
        current_rate,
        difference,
        z,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_follow_numpy_linear() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&s, 1.0), Some(4.0));
        assert_eq!(quantile_sorted(&s, 0.5), Some(2.5));
        // np.quantile([1, 2, 3, 4], 0.1) == 1.3
        assert_eq!(quantile_sorted(&s, 0.1), Some(1.3));
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(quantile_sorted(&s, 1.5), None);
        assert_eq!(quantile_sorted(&s, f64::NAN), None);
    }

    #[test]
    fn edges_collapse_ties_and_bins_are_right_closed() {
        let edges =
            reference_edges(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0], 10).unwrap();
        // np.unique(np.quantile(r, np.arange(1, 10) / 10)), bit for bit.
        assert_eq!(
            edges,
            vec![0.0, 0.6999999999999997, 1.0, 1.3999999999999995, 2.0]
        );
        assert_eq!(bin_index(&edges, 0.0), 0);
        assert_eq!(bin_index(&edges, 1.0), 2);
        assert_eq!(bin_index(&edges, 2.5), 5);
        let constant = reference_edges(&[3.0; 5], 10).unwrap();
        assert_eq!(constant, vec![3.0]);
        assert_eq!(
            reference_edges(&[1.0], 1),
            Err(DriftError::TooFewBins { bins: 1 })
        );
    }

    #[test]
    fn psi_and_js_of_identical_samples_are_zero() {
        let x: Vec<f64> = (0..100).map(|i| (i as f64).sin()).collect();
        assert_eq!(psi(&x, &x, 10).unwrap(), 0.0);
        assert_eq!(js_distance(&x, &x, 10).unwrap(), 0.0);
        assert_eq!(ks_2samp(&x, &x).unwrap().statistic, 0.0);
        assert_eq!(ks_2samp(&x, &x).unwrap().p_value, 1.0);
        assert_eq!(wasserstein(&x, &x).unwrap(), 0.0);
    }

    #[test]
    fn known_values() {
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0
        assert_eq!(
            wasserstein(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).unwrap(),
            5.0
        );
        // Disjoint samples: D = 1; JS distance of disjoint supports = 1.
        let ks = ks_2samp(&[0.0, 1.0], &[2.0, 3.0, 4.0]).unwrap();
        assert_eq!(ks.statistic, 1.0);
        assert_eq!(js_distance_from_counts(&[5, 0], &[0, 7]).unwrap(), 1.0);
        // PSI with an empty bin uses the epsilon floor.
        let expected = (0.5 - PSI_EPSILON) * (0.5 / PSI_EPSILON).ln()
            + (PSI_EPSILON - 0.5) * (PSI_EPSILON / 0.5).ln();
        let got = psi_from_counts(&[1, 1, 0], &[0, 1, 1]).unwrap();
        assert!((got - expected).abs() < 1e-12);
    }

    #[test]
    fn errors_name_the_side() {
        assert_eq!(
            psi(&[], &[1.0], 10),
            Err(DriftError::EmptySample {
                side: Side::Reference
            })
        );
        assert!(matches!(
            ks_2samp(&[1.0], &[1.0, f64::NAN]),
            Err(DriftError::NonFinite {
                side: Side::Current,
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            wasserstein(&[f64::INFINITY], &[1.0]),
            Err(DriftError::NonFinite {
                side: Side::Reference,
                index: 0,
                ..
            })
        ));
        assert_eq!(
            psi_from_counts(&[1, 2], &[1]),
            Err(DriftError::LengthMismatch {
                reference: 2,
                current: 1
            })
        );
        assert_eq!(
            chi_square_from_counts(&[1, 2], &[0, 0]),
            Err(DriftError::EmptySample {
                side: Side::Current
            })
        );
        assert_eq!(
            missing_rate_change(3, 2, 0, 1),
            Err(DriftError::InvalidCounts {
                side: Side::Reference,
                missing: 3,
                total: 2
            })
        );
    }

    #[test]
    fn chi_square_edge_cases() {
        let one = chi_square_from_counts(&[5, 0], &[3, 0]).unwrap();
        assert_eq!((one.statistic, one.p_value, one.dof), (0.0, 1.0, 0));
        // A category new in the current window: finite but significant.
        let new = chi_square_from_counts(&[50, 50, 0], &[45, 45, 10]).unwrap();
        assert_eq!(new.dof, 2);
        assert!(new.statistic.is_finite() && new.p_value < 1e-10);
        let same = chi_square_from_counts(&[10, 30], &[20, 60]).unwrap();
        assert!(same.statistic < 1e-9 && same.p_value > 0.999_999);
    }

    #[test]
    fn missing_rate_edge_cases() {
        let none = missing_rate_change(0, 10, 0, 20).unwrap();
        assert_eq!((none.z, none.p_value, none.difference), (0.0, 1.0, 0.0));
        let all = missing_rate_change(10, 10, 20, 20).unwrap();
        assert_eq!((all.z, all.p_value), (0.0, 1.0));
        let up = missing_rate_change(10, 1000, 50, 1000).unwrap();
        assert!(up.z > 5.0 && up.p_value < 1e-6 && (up.difference - 0.04).abs() < 1e-15);
    }

    fn sample() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(
            prop_oneof![
                -1e6f64..1e6,
                (0i32..5).prop_map(f64::from),
                Just(0.0),
                Just(-0.0),
            ],
            1..300,
        )
    }

    proptest! {
        #[test]
        fn statistics_are_in_range_and_symmetric(a in sample(), b in sample()) {
            let s = numeric_stats(&a, &b, DEFAULT_BINS).unwrap();
            prop_assert!(s.psi >= 0.0 && s.psi.is_finite());
            prop_assert!((0.0..=1.0).contains(&s.js_distance));
            prop_assert!((0.0..=1.0).contains(&s.ks.statistic));
            prop_assert!((0.0..=1.0).contains(&s.ks.p_value));
            prop_assert!(s.wasserstein >= 0.0 && s.wasserstein.is_finite());
            let t = ks_2samp(&b, &a).unwrap();
            prop_assert_eq!(t.statistic, s.ks.statistic);
            let w = wasserstein(&b, &a).unwrap();
            prop_assert!((w - s.wasserstein).abs() <= 1e-9 * s.wasserstein.max(1.0));
        }

        #[test]
        fn never_panics_on_any_input(
            a in prop::collection::vec(any::<f64>(), 0..50),
            b in prop::collection::vec(any::<f64>(), 0..50),
            bins in 0usize..20,
        ) {
            let _ = numeric_stats(&a, &b, bins);
            let _ = psi(&a, &b, bins);
            let _ = ks_2samp(&a, &b);
            let _ = wasserstein(&a, &b);
        }

        #[test]
        fn counts_functions_never_panic(
            r in prop::collection::vec(any::<u64>(), 0..12),
            c in prop::collection::vec(0u64..1000, 0..12),
            m in any::<u64>(), n in any::<u64>(),
        ) {
            let _ = psi_from_counts(&r, &c);
            let _ = js_distance_from_counts(&r, &c);
            let _ = chi_square_from_counts(&r, &c);
            let _ = missing_rate_change(m, n, m / 2, n / 2);
        }

        #[test]
        fn categorical_psi_is_symmetric(
            a in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 1..100),
            b in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "e"]), 1..100),
        ) {
            let ab = psi_categorical(&a, &b).unwrap();
            let ba = psi_categorical(&b, &a).unwrap();
            prop_assert!((ab - ba).abs() < 1e-12);
            let chi = chi_square_categorical(&a, &b).unwrap();
            prop_assert!(chi.statistic >= 0.0 && (0.0..=1.0).contains(&chi.p_value));
        }
    }
}
