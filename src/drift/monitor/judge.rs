//! Judging: the statistics of one column against the reference, each
//! compared with its threshold.
//!
//! Numeric columns with exact reference values (profile format 2) run the
//! significance tests of [`crate::drift::significance`] on the window's
//! values as the model read them, at effective sample sizes: KS,
//! Anderson-Darling (unless the reference has a heavy tie), the mean and
//! scale z tests, each firing at the family's per-test level; the
//! variance test is reported. Categoricals run the two-sample chi-square
//! at effective sizes. PSI, Jensen-Shannon and Wasserstein are reported
//! and fire only at a user threshold. Every judged statistic carries the
//! value at which it fires on its own scale (`threshold`).

use serde::Serialize;

use super::plan::PlannedColumn;
use super::Thresholds;
use crate::drift::columns::ValueSource;
use crate::drift::exact::{compare_columns, ColumnValues};
use crate::drift::profile::ColumnSketch;
use crate::drift::significance::{chi_square_test, effective_n, KsTest, ZTest};
use crate::drift::sketch::{compare_categorical, compare_numeric_prepared};
use crate::drift::special::{ad_inf_sf, chi2_sf, kolmogorov_sf, normal_isf};
#[cfg(test)]
use crate::drift::stats::chi_square_from_counts;
use crate::drift::stats::{ks_p_value, psi_from_counts};

/// p-value the missing-rate z test must reach on top of the rate change, so
/// a small window's noise does not fire `missing_rate`.
const MISSING_RATE_P: f64 = 1e-3;

/// Chi-square buckets with fewer expected counts are pooled (the usual
/// validity rule of the asymptotic test).
const MIN_EXPECTED: f64 = 5.0;

/// A judged statistic: the object `/v1/drift`'s columns and every
/// `drift-alerts` message's `statistics` hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub statistic: &'static str,
    pub value: f64,
    /// The value at which it fires (`None`: no threshold, reported only).
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Error bound of a sketch-mode value (0 when exact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// The effect size a user minimum is compared with (`ks`: the lower
    /// bound of D; `mean`/`scale`/`variance`: the difference in reference
    /// standard deviations; `chi_square`: PSI over its buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    pub bad: bool,
}

/// Reference and current distribution of a column, for drawing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Histogram {
    /// Counts between the reference's decile edges: bin `i` holds values
    /// in `(edges[i-1], edges[i]]`, the first everything up to `edges[0]`,
    /// the last everything above the last edge.
    Bins {
        edges: Vec<f64>,
        reference: Vec<u64>,
        current: Vec<u64>,
    },
    /// Counts per listed category, then `other` (values outside the list).
    Categories {
        categories: Vec<String>,
        reference: Vec<u64>,
        current: Vec<u64>,
    },
}

/// The statistics of one column at the latest evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnStatus {
    pub name: String,
    /// `numeric` or `categorical` (booleans are categoricals).
    pub kind: &'static str,
    /// Where its values come from: `event`, `store`, `aggregate`.
    pub source: ValueSource,
    /// Present values in the window.
    pub count: u64,
    pub missing: u64,
    /// Independent draws behind the present values (the entities' Kish
    /// size for store and aggregate columns); `None` when not judged.
    pub effective_n: Option<f64>,
    /// Whether the distribution statistics are exact (every value kept on
    /// both sides); `None` when not judged or categorical (always exact).
    pub exact: Option<bool>,
    /// `None` when the column was not judged (disabled, too few values).
    pub skipped: Option<&'static str>,
    pub statistics: Vec<Judged>,
    /// A distribution statistic is still significant at the resolve level
    /// (`drift.resolve_p_value`, with the column's effect floors): a
    /// firing episode does not count this evaluation as good. Not in the
    /// JSON: `p_value` shows it.
    #[serde(skip)]
    pub holding: bool,
    /// Reference and current histograms.
    pub histogram: Option<Histogram>,
}

/// What every column's judgement shares in one evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    /// The window holds all its sub-windows and `min_samples` events.
    pub(super) enough: bool,
    pub(super) min_samples: u64,
    /// The per-test level of the family budget.
    pub(super) level: f64,
    /// The level below which a significance test's p-value keeps a firing
    /// episode from resolving (`drift.resolve_p_value`).
    pub(super) resolve: f64,
    /// Events and their entities' Kish size (store/aggregate columns).
    pub(super) entities: Option<(u64, f64)>,
}

impl Context {
    /// Effective size of `present` values of a column from `source`.
    fn effective(&self, source: ValueSource, present: u64) -> f64 {
        match self.entities {
            Some((events, kish)) if events > 0 && kish > 0.0 => {
                // Σ m_e² scaled to the present values: f2 = events² / kish.
                let scale = present as f64 / events as f64;
                let f2 = (events as f64).powi(2) / kish * scale * scale;
                effective_n(source, present, Some(f2))
            }
            _ => present as f64,
        }
    }
}

/// The statistics of one column, judged against its thresholds.
pub(super) fn judge_column(
    column: &PlannedColumn,
    reference: &ColumnSketch,
    current: &ColumnSketch,
    values: Option<&ColumnValues>,
    ctx: &Context,
) -> ColumnStatus {
    let (count, missing) = match current {
        ColumnSketch::Numeric(s) => (s.count(), s.missing()),
        ColumnSketch::Categorical(s) => (s.count(), s.missing()),
    };
    let mut status = ColumnStatus {
        name: column.name.clone(),
        kind: current.kind(),
        source: column.source,
        count,
        missing,
        effective_n: None,
        exact: None,
        skipped: None,
        statistics: Vec::new(),
        histogram: histogram(reference, current),
        holding: false,
    };
    if !column.enabled {
        status.skipped = Some("disabled");
        return status;
    }
    if !ctx.enough {
        status.skipped = Some("window below min_samples");
        return status;
    }
    let t = &column.thresholds;
    let level = ctx.level;
    let mut missing_change = None;
    let present_enough = count >= ctx.min_samples;
    let mut s = Vec::new();
    match (reference, current) {
        (ColumnSketch::Numeric(r), ColumnSketch::Numeric(c)) => {
            if let Ok(d) = compare_numeric_prepared(r, column.prepared.as_ref(), c) {
                missing_change = Some(d.missing);
                if let (Some(d), true) = (d.distribution, present_enough) {
                    s.push(at_least("psi", d.psi, t.psi));
                    s.push(at_least("js", d.js_distance, t.js));
                    let e_cur = ctx.effective(column.source, count);
                    let exact = match (&column.exact, values) {
                        (Some(prepared), Some(v)) => {
                            compare_columns(prepared, column.e_ref, v, e_cur)
                                .ok()
                                .flatten()
                        }
                        _ => None,
                    };
                    match exact {
                        Some(nt) => {
                            status.effective_n = Some(e_cur);
                            status.exact = Some(nt.exact);
                            let mut w = at_least("wasserstein", nt.ks.wasserstein, t.wasserstein);
                            w.bound = Some(nt.wasserstein_bound);
                            // A sketched Wasserstein is judged only when its
                            // error cannot decide (heavy tails make it large).
                            w.bad &= t
                                .wasserstein
                                .is_some_and(|th| nt.wasserstein_bound < th / 2.0);
                            s.push(w);
                            let ks_alpha =
                                column.judges("ks").then(|| t.ks_p_value.unwrap_or(level));
                            s.push(ks_sized(
                                &nt.ks,
                                (column.e_ref, e_cur),
                                ks_alpha,
                                t.ks_min_effect,
                            ));
                            let ad_alpha =
                                (nt.anderson_judged && column.judges("anderson")).then_some(level);
                            s.push(Judged {
                                statistic: "anderson",
                                value: nt.anderson.statistic,
                                threshold: ad_alpha
                                    .map(|a| anderson_threshold(a, nt.anderson.samples)),
                                p_value: Some(nt.anderson.p_value),
                                bound: None,
                                effect: None,
                                bad: ad_alpha.is_some_and(|a| nt.anderson.p_value <= a),
                            });
                            let judged = |name| column.judges(name).then_some(level);
                            s.push(z_judged(
                                "mean",
                                &nt.mean,
                                judged("mean"),
                                t.mean_min_effect,
                            ));
                            s.push(z_judged("scale", &nt.abs_dev, judged("scale"), None));
                            s.push(z_judged("variance", &nt.variance, None, None));
                        }
                        None => {
                            // No exact reference values: the sketch's KS.
                            let mut w = at_least("wasserstein", d.wasserstein.value, t.wasserstein);
                            w.bound = Some(d.wasserstein.bound);
                            s.push(w);
                            s.push(ks_judged(
                                d.ks.value,
                                d.ks.bound,
                                (r.count(), c.count()),
                                column.judges("ks").then(|| t.ks_p_value.unwrap_or(level)),
                                t.ks_min_effect,
                            ));
                        }
                    }
                }
            }
        }
        (ColumnSketch::Categorical(r), ColumnSketch::Categorical(c)) => {
            if let Ok(d) = compare_categorical(r, c) {
                missing_change = Some(d.missing);
                if let (Some(d), true) = (d.distribution, present_enough) {
                    s.push(at_least("psi", d.psi, t.psi));
                    let e_cur = ctx.effective(column.source, count);
                    status.effective_n = Some(e_cur);
                    let alpha = column
                        .judges("chi_square")
                        .then(|| t.chi_square_p_value.unwrap_or(level));
                    if let Some(j) = chi_square_sized(
                        r.counts(),
                        c.counts(),
                        (column.e_ref, e_cur),
                        alpha,
                        t.chi_square_min_effect,
                    ) {
                        s.push(j);
                    }
                }
            }
        }
        _ => {}
    }
    if let Some(m) = missing_change {
        s.push(Judged {
            statistic: "missing_rate",
            value: m.difference,
            threshold: t.missing_rate,
            p_value: Some(m.p_value),
            bound: None,
            effect: None,
            bad: t
                .missing_rate
                .is_some_and(|th| m.difference.abs() >= th && m.p_value <= MISSING_RATE_P),
        });
    }
    status.holding = s
        .iter()
        .any(|j| j.statistic != "missing_rate" && holding(j, t, ctx.resolve));
    status.statistics = s;
    if !present_enough && status.skipped.is_none() {
        status.skipped = Some("too few present values for distribution statistics");
    }
    status
}

fn histogram(reference: &ColumnSketch, current: &ColumnSketch) -> Option<Histogram> {
    match (reference, current) {
        (ColumnSketch::Numeric(r), ColumnSketch::Numeric(c)) => Some(Histogram::Bins {
            edges: r.edges().to_vec(),
            reference: r.histogram().to_vec(),
            current: c.histogram().to_vec(),
        }),
        (ColumnSketch::Categorical(r), ColumnSketch::Categorical(c)) => {
            Some(Histogram::Categories {
                categories: r.categories().iter().map(|c| c.to_string()).collect(),
                reference: r.counts().to_vec(),
                current: c.counts().to_vec(),
            })
        }
        _ => None,
    }
}

/// Whether a judged distribution statistic would still fire at the looser
/// `resolve` level (or its own, when looser), with the same effect floor:
/// the second level of the hysteresis. A statistic that hovers at its
/// threshold (a real but borderline shift) then keeps its episode firing
/// instead of resolving and firing again at every crossing. Statistics
/// without a p-value (effect sizes) and the missing rate hold while bad.
fn holding(j: &Judged, t: &Thresholds, resolve: f64) -> bool {
    let (Some(_), Some(p)) = (j.threshold, j.p_value) else {
        return j.bad;
    };
    let (own, floor) = match j.statistic {
        "ks" => (t.ks_p_value, t.ks_min_effect),
        "chi_square" => (t.chi_square_p_value, t.chi_square_min_effect),
        "mean" => (None, t.mean_min_effect),
        "anderson" | "scale" => (None, None),
        _ => return j.bad,
    };
    let level = own.map_or(resolve, |a| a.max(resolve));
    j.bad || (p <= level && j.effect.map_or(0.0, f64::abs) >= floor.unwrap_or(0.0))
}

/// A z test judged at `alpha` (and a minimum `|effect|`); its threshold is
/// the `|z|` at which it fires.
fn z_judged(
    statistic: &'static str,
    z: &ZTest,
    alpha: Option<f64>,
    min_effect: Option<f64>,
) -> Judged {
    Judged {
        statistic,
        value: z.z,
        threshold: alpha.map(|a| normal_isf(a / 2.0)),
        p_value: Some(z.p_value),
        bound: None,
        effect: Some(z.effect),
        bad: alpha.is_some_and(|a| z.p_value <= a && z.effect.abs() >= min_effect.unwrap_or(0.0)),
    }
}

/// The standardised Anderson-Darling statistic at which the limiting
/// distribution's tail falls to `alpha` (`samples` samples).
fn anderson_threshold(alpha: f64, samples: usize) -> f64 {
    let m = (samples.max(2) - 1) as f64;
    let sigma_inf = (m * 2.0 * (std::f64::consts::PI.powi(2) - 9.0) / 3.0).sqrt();
    let x = invert_decreasing(|x| ad_inf_sf(x, m), alpha, m + 10.0 * sigma_inf);
    (x - m) / sigma_inf
}

/// KS at effective sizes, judged on the sketch-error lower bound of D;
/// `threshold` is the D̂ at which it fires.
fn ks_sized(ks: &KsTest, e: (f64, f64), alpha: Option<f64>, min_effect: Option<f64>) -> Judged {
    let (e_r, e_c) = e;
    let lower = (ks.statistic - ks.bound).max(0.0);
    let floor = min_effect.unwrap_or(0.0);
    let scale = if e_r > 0.0 && e_c > 0.0 {
        (e_r * e_c / (e_r + e_c)).sqrt()
    } else {
        0.0
    };
    let threshold = alpha
        .filter(|_| scale > 0.0)
        .map(|a| (invert_decreasing(kolmogorov_sf, a, 1.0) / scale).max(floor) + ks.bound);
    Judged {
        statistic: "ks",
        value: ks.statistic,
        threshold,
        p_value: Some(ks.p_value),
        bound: Some(ks.bound),
        effect: Some(lower),
        bad: alpha.is_some_and(|a| ks.p_value <= a && lower >= floor),
    }
}

/// The two-sample chi-square at effective sizes; `threshold` is the
/// statistic at which it fires.
fn chi_square_sized(
    reference: &[u64],
    current: &[u64],
    e: (f64, f64),
    alpha: Option<f64>,
    min_effect: Option<f64>,
) -> Option<Judged> {
    let chi = chi_square_test(reference, current, e.0, e.1).ok()?;
    let effect = pooled_psi(reference, current)?;
    let threshold = match (alpha, chi.dof) {
        (Some(a), dof) if dof > 0 => Some(invert_decreasing(|x| chi2_sf(x, dof), a, 1e4)),
        _ => None,
    };
    Some(Judged {
        statistic: "chi_square",
        value: chi.statistic,
        threshold,
        p_value: Some(chi.p_value),
        bound: None,
        effect: Some(effect),
        bad: alpha.is_some_and(|a| {
            chi.dof > 0 && chi.p_value <= a && effect >= min_effect.unwrap_or(0.0)
        }),
    })
}

/// PSI over the buckets the chi-square keeps (rare ones pooled).
fn pooled_psi(reference: &[u64], current: &[u64]) -> Option<f64> {
    let (r, c) = pool(reference, current)?;
    psi_from_counts(&r, &c).ok()
}

/// Buckets with an expected count below [`MIN_EXPECTED`] pooled into one.
fn pool(reference: &[u64], current: &[u64]) -> Option<(Vec<u64>, Vec<u64>)> {
    let total_r: u64 = reference.iter().sum();
    let total_c: u64 = current.iter().sum();
    if total_r == 0 || total_c == 0 {
        return None;
    }
    let (mut r_pooled, mut c_pooled) = (Vec::new(), Vec::new());
    let (mut r_small, mut c_small) = (0u64, 0u64);
    for (&r, &c) in reference.iter().zip(current) {
        let expected = r as f64 / total_r as f64 * total_c as f64;
        if expected < MIN_EXPECTED {
            r_small += r;
            c_small += c;
        } else {
            r_pooled.push(r);
            c_pooled.push(c);
        }
    }
    if r_small > 0 || c_small > 0 {
        r_pooled.push(r_small);
        c_pooled.push(c_small);
    }
    Some((r_pooled, c_pooled))
}

fn at_least(statistic: &'static str, value: f64, threshold: Option<f64>) -> Judged {
    Judged {
        statistic,
        value,
        threshold,
        p_value: None,
        bound: None,
        effect: None,
        bad: threshold.is_some_and(|t| value >= t),
    }
}

/// KS judged on the lower confidence bound of D: significant at `alpha`
/// and at least `min_effect`; `threshold` is the D̂ at which it fires.
fn ks_judged(
    d: f64,
    bound: f64,
    n: (u64, u64),
    alpha: Option<f64>,
    min_effect: Option<f64>,
) -> Judged {
    let (n_ref, n_cur) = n;
    let lower = (d - bound).max(0.0);
    let p = ks_p_value(lower, n_ref, n_cur);
    let floor = min_effect.unwrap_or(0.0);
    let threshold = alpha
        .map(|a| invert_decreasing(|x| ks_p_value(x, n_ref, n_cur), a, 1.0).max(floor) + bound);
    Judged {
        statistic: "ks",
        value: d,
        threshold,
        p_value: Some(p),
        bound: Some(bound),
        effect: Some(lower),
        bad: alpha.is_some_and(|a| p <= a && lower >= floor),
    }
}

/// Chi-square of the current counts against the reference shares, with
/// buckets whose expected count is below [`MIN_EXPECTED`] pooled into one
/// (a goodness-of-fit test against the reference; kept for profiles
/// without exact values and as the unit tests' reference).
#[cfg(test)]
fn chi_square_judged(
    reference: &[u64],
    current: &[u64],
    alpha: Option<f64>,
    min_effect: Option<f64>,
) -> Option<Judged> {
    let (r_pooled, c_pooled) = pool(reference, current)?;
    let chi = chi_square_from_counts(&r_pooled, &c_pooled).ok()?;
    let effect = psi_from_counts(&r_pooled, &c_pooled).ok()?;
    let threshold = match (alpha, chi.dof) {
        (Some(a), dof) if dof > 0 => Some(invert_decreasing(|x| chi2_sf(x, dof), a, 1e4)),
        _ => None,
    };
    Some(Judged {
        statistic: "chi_square",
        value: chi.statistic,
        threshold,
        p_value: Some(chi.p_value),
        bound: None,
        effect: Some(effect),
        bad: alpha.is_some_and(|a| {
            chi.dof > 0 && chi.p_value <= a && effect >= min_effect.unwrap_or(0.0)
        }),
    })
}

/// The `x` where a decreasing `p(x)` crosses `alpha`, by bisection on
/// `[0, hi]` (doubling `hi` while `p(hi) > alpha`), to a relative 1e-12:
/// the threshold is reported, not judged by, and a fixed 100 steps (most
/// of them below f64 resolution) were a sixth of each window evaluation.
fn invert_decreasing(p: impl Fn(f64) -> f64, alpha: f64, mut hi: f64) -> f64 {
    let mut lo = 0.0;
    for _ in 0..60 {
        if p(hi) <= alpha {
            break;
        }
        hi *= 2.0;
    }
    for _ in 0..100 {
        if hi - lo <= 1e-12 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if p(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::exact::PreparedColumn;
    use crate::drift::monitor::plan::Probe;
    use crate::drift::monitor::Thresholds;
    use crate::drift::sketch::{CategoricalSketch, NumericSketch, PreparedReference};

    fn numeric_column(thresholds: Thresholds, reference: &NumericSketch) -> PlannedColumn {
        PlannedColumn {
            name: "amount".into(),
            probe: Probe::Numeric { offset: 0 },
            enabled: true,
            thresholds,
            prepared: PreparedReference::new(reference).unwrap(),
            source: ValueSource::Event,
            exact: None,
            e_ref: reference.count() as f64,
            disabled: Vec::new(),
            cusum: false,
            history_ms: 0,
            season_ms: None,
        }
    }

    fn ctx(enough: bool, min_samples: u64) -> Context {
        Context {
            enough,
            min_samples,
            level: 1e-6,
            resolve: 1e-2,
            entities: None,
        }
    }

    #[test]
    fn a_statistic_holds_while_significant_at_the_resolve_level_above_its_floor() {
        let j = |statistic, p: f64, effect: f64| Judged {
            statistic,
            value: 1.0,
            threshold: Some(2.0),
            p_value: Some(p),
            bound: None,
            effect: Some(effect),
            bad: false,
        };
        let none = Thresholds::defaults();
        assert!(holding(&j("anderson", 1e-3, 0.0), &none, 1e-2));
        assert!(!holding(&j("anderson", 0.2, 0.0), &none, 1e-2));
        assert!(holding(&j("mean", 5e-3, -0.3), &none, 1e-2));
        // Below the user's effect floor a shift does not matter: it clears.
        let floored = Thresholds {
            mean_min_effect: Some(0.5),
            ..none
        };
        assert!(!holding(&j("mean", 1e-9, -0.3), &floored, 1e-2));
        // A looser level of the statistic's own is the one that holds.
        let own = Thresholds {
            ks_p_value: Some(0.05),
            ..none
        };
        assert!(holding(&j("ks", 0.03, 0.1), &own, 1e-2));
        assert!(!holding(&j("ks", 0.03, 0.1), &none, 1e-2));
        // Effect sizes without a p-value and unjudged statistics hold only
        // while bad.
        let psi = Judged {
            p_value: None,
            ..j("psi", 0.0, 0.0)
        };
        assert!(!holding(&psi, &none, 1e-2));
        assert!(holding(&Judged { bad: true, ..psi }, &none, 1e-2));
        let reported = Judged {
            threshold: None,
            ..j("variance", 1e-9, 1.0)
        };
        assert!(!holding(&reported, &none, 1e-2));
    }

    fn with_psi() -> Thresholds {
        Thresholds {
            psi: Some(0.2),
            ..Thresholds::defaults()
        }
    }

    fn exact(values: impl IntoIterator<Item = f64>) -> ColumnValues {
        let mut v = ColumnValues::new(10_000, 20.0);
        values.into_iter().for_each(|x| v.update(x as f32));
        v
    }

    fn numbers(
        edges: &[f64],
        values: impl IntoIterator<Item = f64>,
        missing: u64,
    ) -> NumericSketch {
        let mut s = NumericSketch::new(edges.to_vec()).unwrap();
        for v in values {
            s.update(v);
        }
        for _ in 0..missing {
            s.update_missing();
        }
        s.flush();
        s
    }

    fn statistic<'a>(status: &'a ColumnStatus, name: &str) -> &'a Judged {
        status
            .statistics
            .iter()
            .find(|j| j.statistic == name)
            .unwrap_or_else(|| panic!("no {name} in {status:?}"))
    }

    #[test]
    fn at_least_fires_at_the_threshold_and_not_without_one() {
        assert!(at_least("psi", 0.2, Some(0.2)).bad);
        assert!(!at_least("psi", 0.19, Some(0.2)).bad);
        let unjudged = at_least("js", 9.0, None);
        assert!(!unjudged.bad);
        assert_eq!(unjudged.threshold, None);
    }

    #[test]
    fn the_threshold_inverts_the_p_value() {
        // p(x) = exp(-x) crosses 1e-6 at x = ln(1e6).
        let x = invert_decreasing(|x| (-x).exp(), 1e-6, 1.0);
        assert!((x - 1e6f64.ln()).abs() < 1e-9, "{x}");
        // Already below alpha at 0: the crossing is at the start.
        assert!(invert_decreasing(|_| 0.0, 0.5, 1.0) <= 1e-12);
    }

    #[test]
    fn ks_fires_only_when_significant_and_large_enough() {
        let n = (10_000, 10_000);
        // A large D on large samples: significant, and its lower bound
        // clears the minimum effect.
        let big = ks_judged(0.2, 0.01, n, Some(1e-6), Some(0.05));
        assert!(big.bad, "{big:?}");
        assert_eq!(big.effect, Some(0.2 - 0.01));
        // The value that would fire sits between the effect floor plus the
        // bound and D.
        let t = big.threshold.unwrap();
        assert!((0.06 - 1e-12..=0.2).contains(&t), "{t}");
        // The same D whose sketch error covers it: its lower bound is 0.
        let uncertain = ks_judged(0.2, 0.25, n, Some(1e-6), Some(0.05));
        assert!(!uncertain.bad);
        assert_eq!(uncertain.effect, Some(0.0));
        // Significant but below the minimum effect.
        let small = ks_judged(0.04, 0.0, (1_000_000, 1_000_000), Some(1e-6), Some(0.05));
        assert!(small.p_value.unwrap() < 1e-6 && !small.bad, "{small:?}");
        // No alpha: reported, never judged.
        let off = ks_judged(0.9, 0.0, n, None, Some(0.05));
        assert!(!off.bad && off.threshold.is_none());
    }

    #[test]
    fn chi_square_pools_rare_buckets() {
        // Two rare categories (expected < 5) are pooled into one bucket,
        // leaving three buckets: 2 degrees of freedom.
        let reference = [500, 480, 2, 1, 17];
        let current = [490, 470, 3, 2, 35];
        let j = chi_square_judged(&reference, &current, Some(1e-6), Some(0.05)).unwrap();
        let pooled_r = [500, 480, 17, 3];
        let pooled_c = [490, 470, 35, 5];
        let want = chi_square_from_counts(&pooled_r, &pooled_c).unwrap();
        assert_eq!(j.value, want.statistic);
        assert_eq!(j.p_value, Some(want.p_value));
        assert!(j.threshold.unwrap() > 0.0);
        assert_eq!(chi_square_judged(&[0, 0], &[1, 2], Some(0.01), None), None);
        // A strong shift fires.
        let shifted = chi_square_judged(&[900, 100], &[500, 500], Some(1e-6), Some(0.05)).unwrap();
        assert!(shifted.bad, "{shifted:?}");
    }

    #[test]
    fn a_column_is_skipped_when_disabled_or_below_min_samples() {
        let edges = [10.0, 20.0, 30.0];
        let reference = numbers(&edges, (0..400).map(|i| f64::from(i % 40)), 0);
        let current = numbers(&edges, (0..400).map(|i| f64::from(i % 40)), 0);
        let (r, c) = (
            ColumnSketch::Numeric(reference.clone()),
            ColumnSketch::Numeric(current),
        );
        let mut column = numeric_column(Thresholds::defaults(), &reference);
        let status = judge_column(&column, &r, &c, None, &ctx(false, 100));
        assert_eq!(status.skipped, Some("window below min_samples"));
        assert!(status.statistics.is_empty());
        assert_eq!(
            (status.count, status.missing, status.kind),
            (400, 0, "numeric")
        );
        column.enabled = false;
        assert_eq!(
            judge_column(&column, &r, &c, None, &ctx(true, 100)).skipped,
            Some("disabled")
        );
        // Enough events in the window, but too few present values for
        // distribution statistics: only the missing rate is judged.
        column.enabled = true;
        let status = judge_column(&column, &r, &c, None, &ctx(true, 1_000));
        assert_eq!(
            status.skipped,
            Some("too few present values for distribution statistics")
        );
        let names: Vec<&str> = status.statistics.iter().map(|j| j.statistic).collect();
        assert_eq!(names, ["missing_rate"]);
    }

    #[test]
    fn a_shifted_numeric_column_fires_psi_and_ks_and_missing_values_fire_missing_rate() {
        let edges = [10.0, 20.0, 30.0];
        let reference = numbers(&edges, (0..4_000).map(|i| f64::from(i % 40)), 0);
        let same = numbers(&edges, (0..4_000).map(|i| f64::from((i + 7) % 40)), 0);
        let shifted = numbers(&edges, (0..4_000).map(|i| f64::from(i % 40) + 15.0), 2_000);
        let column = numeric_column(with_psi(), &reference);
        let r = ColumnSketch::Numeric(reference);
        let calm = judge_column(
            &column,
            &r,
            &ColumnSketch::Numeric(same),
            None,
            &ctx(true, 100),
        );
        assert!(calm.statistics.iter().all(|j| !j.bad), "{calm:?}");
        let status = judge_column(
            &column,
            &r,
            &ColumnSketch::Numeric(shifted),
            None,
            &ctx(true, 100),
        );
        assert_eq!(status.skipped, None);
        assert!(statistic(&status, "psi").bad);
        assert!(statistic(&status, "ks").bad);
        assert!(!statistic(&status, "js").bad, "js has no default threshold");
        let missing = statistic(&status, "missing_rate");
        assert!(missing.bad && missing.value > 0.3, "{missing:?}");
    }

    #[test]
    fn categorical_columns_get_psi_chi_square_and_missing_rate() {
        let categories = || vec!["a".into(), "b".into(), "c".into()];
        let mut reference = CategoricalSketch::new(categories()).unwrap();
        let mut current = CategoricalSketch::new(categories()).unwrap();
        for i in 0..3_000 {
            reference.update(["a", "b", "c"][i % 3]);
            current.update(if i % 4 == 0 { "b" } else { "a" });
        }
        let column = PlannedColumn {
            name: "channel".into(),
            probe: Probe::OneHot {
                offset: 0,
                buckets: vec![0, 1, 2],
                other: 3,
            },
            enabled: true,
            thresholds: with_psi(),
            prepared: None,
            source: ValueSource::Event,
            exact: None,
            e_ref: 3_000.0,
            disabled: Vec::new(),
            cusum: false,
            history_ms: 0,
            season_ms: None,
        };
        let status = judge_column(
            &column,
            &ColumnSketch::Categorical(reference),
            &ColumnSketch::Categorical(current),
            None,
            &ctx(true, 100),
        );
        let names: Vec<&str> = status.statistics.iter().map(|j| j.statistic).collect();
        assert_eq!(names, ["psi", "chi_square", "missing_rate"]);
        assert!(statistic(&status, "psi").bad && statistic(&status, "chi_square").bad);
        assert!(!statistic(&status, "missing_rate").bad);
        assert!(matches!(
            status.histogram,
            Some(Histogram::Categories { ref current, .. }) if current == &[2_250, 750, 0, 0]
        ));
    }

    #[test]
    fn exact_values_run_the_significance_tests_at_the_family_level() {
        let edges = [10.0, 20.0, 30.0];
        let base = |i: i32| f64::from(i % 40) + 0.25 * f64::from(i % 7);
        let reference = numbers(&edges, (0..8_000).map(base), 0);
        let mut column = numeric_column(Thresholds::defaults(), &reference);
        column.exact = PreparedColumn::new(&exact((0..8_000).map(base))).unwrap();
        let r = ColumnSketch::Numeric(reference);
        let judge = |values: Vec<f64>| {
            let sketch = numbers(&edges, values.iter().copied(), 0);
            judge_column(
                &column,
                &r,
                &ColumnSketch::Numeric(sketch),
                Some(&exact(values)),
                &ctx(true, 100),
            )
        };
        let calm = judge((0..4_000).map(|i| base(i + 3)).collect());
        let names: Vec<&str> = calm.statistics.iter().map(|j| j.statistic).collect();
        assert_eq!(
            names,
            [
                "psi",
                "js",
                "wasserstein",
                "ks",
                "anderson",
                "mean",
                "scale",
                "variance",
                "missing_rate"
            ]
        );
        assert!(calm.statistics.iter().all(|j| !j.bad), "{calm:?}");
        assert_eq!((calm.exact, calm.effective_n), (Some(true), Some(4_000.0)));
        // Judged tests carry the value at which they fire; reported ones none.
        for j in &calm.statistics {
            let judged = ["ks", "anderson", "mean", "scale", "missing_rate"].contains(&j.statistic);
            assert_eq!(j.threshold.is_some(), judged, "{j:?}");
        }
        // A location shift of 2 units (0.17 sd, z ≈ 9): the mean test sees
        // it, and Anderson-Darling too, with every value kept.
        let shifted = judge((0..4_000).map(|i| base(i) + 2.0).collect());
        assert!(statistic(&shifted, "mean").bad, "{shifted:?}");
        assert!(statistic(&shifted, "anderson").bad, "{shifted:?}");
        let mean = statistic(&shifted, "mean");
        assert!(mean.value > mean.threshold.unwrap());
    }
}
