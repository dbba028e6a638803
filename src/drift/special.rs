//! The few special functions the drift p-values need, in plain `f64`.
//!
//! Guarantee: every function is total (no panic, no NaN for arguments in its
//! documented domain) and agrees with the SciPy function it names to about
//! 1e-12 absolute, far inside the 1e-6 the parity fixtures check. They are
//! written out here rather than pulled from a statistics crate because the
//! whole need is three functions, and the candidates bring linear-algebra
//! dependencies into the service binary.

use std::f64::consts::{LN_2, PI};

/// Relative accuracy at which the series and continued fraction stop.
const EPS: f64 = 1e-16;
/// Guard against division by zero in the modified Lentz algorithm.
const TINY: f64 = 1e-300;
/// Iteration cap; convergence needs O(sqrt(a)) steps, so this only bounds
/// pathological arguments (the result is then the best estimate so far).
const MAX_ITER: usize = 100_000;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms: ~1e-15 relative).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx). Only reached for a < 0.5,
        // which the callers never pass, but kept so the function is total.
        return (PI / (PI * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        acc += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

/// Regularised upper incomplete gamma function `Q(a, x) = Γ(a, x) / Γ(a)`
/// for `a > 0`, `x ≥ 0` (SciPy: `scipy.special.gammaincc`).
///
/// Series for `P = 1 - Q` below `x < a + 1`, Lentz continued fraction for
/// `Q` above, as in Numerical Recipes §6.2: each converges fast on its side.
pub(crate) fn gamma_q(a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let log_prefactor = -x + a * x.ln() - ln_gamma(a);
    let q = if x < a + 1.0 {
        let mut ap = a;
        let mut term = 1.0 / a;
        let mut sum = term;
        for _ in 0..MAX_ITER {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * log_prefactor.exp()
    } else {
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_ITER {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < EPS {
                break;
            }
        }
        log_prefactor.exp() * h
    };
    q.clamp(0.0, 1.0)
}

/// Survival function of the chi-square distribution with `dof` degrees of
/// freedom (SciPy: `scipy.stats.chi2.sf`). `dof = 0` has no distribution;
/// the callers never ask for it, and it answers 1 (no evidence of a change).
pub(crate) fn chi2_sf(statistic: f64, dof: u64) -> f64 {
    if dof == 0 {
        return 1.0;
    }
    gamma_q(dof as f64 / 2.0, statistic / 2.0)
}

/// Two-sided normal p-value `2 (1 - Φ(|z|)) = erfc(|z| / √2)`
/// (SciPy: `2 * scipy.stats.norm.sf(abs(z))`), via `erfc(t) = Q(1/2, t²)`.
pub(crate) fn normal_two_sided_p(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    gamma_q(0.5, z * z / 2.0)
}

/// Survival function of the Kolmogorov distribution, `P(K > x)` for the
/// limit `K` of `√n · D_n` (SciPy: `scipy.special.kolmogorov`).
///
/// Two series, each used where it converges in a few terms (the same split
/// as SciPy's implementation):
/// - `x ≥ 0.82`: `Q(x) = 2 Σ_{k≥1} (-1)^{k-1} exp(-2 k² x²)`;
/// - `x < 0.82`: `1 - Q(x) = √(2π)/x Σ_{k≥1} exp(-(2k-1)² π² / (8 x²))`.
pub(crate) fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let sf = if x < 0.82 {
        let w = -PI * PI / (8.0 * x * x);
        let mut sum = 0.0;
        for k in 1..=20u32 {
            let odd = f64::from(2 * k - 1);
            let term = (odd * odd * w).exp();
            sum += term;
            if term <= sum * EPS {
                break;
            }
        }
        1.0 - (2.0 * PI).sqrt() / x * sum
    } else {
        let t = -2.0 * x * x;
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (kf * kf * t).exp();
            sum += sign * term;
            if term <= sum.abs() * EPS {
                break;
            }
            sign = -sign;
        }
        2.0 * sum
    };
    sf.clamp(0.0, 1.0)
}

/// Upper tail of the standard normal, `P(Z > z) = erfc(z / √2) / 2`
/// (SciPy: `scipy.stats.norm.sf`), accurate in both tails.
pub(crate) fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * gamma_q(0.5, z * z / 2.0);
    if z >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// The `z` with `P(Z > z) = p` (SciPy: `scipy.stats.norm.isf`), by
/// bisection on [`normal_sf`] to f64 resolution; `p` outside `(0, 1)` gives
/// ±∞ (and NaN for NaN). Used for reported thresholds, not on a hot path.
pub(crate) fn normal_isf(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::INFINITY;
    }
    if p >= 1.0 {
        return f64::NEG_INFINITY;
    }
    // P(Z > 40) is far below the smallest positive f64.
    let (mut lo, mut hi) = (-40.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid == lo || mid == hi {
            break;
        }
        if normal_sf(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Terms of the series `Σ_j λ_j …` summed explicitly before the tail
/// correction (see [`ad_inf_sf`]); the neglected remainder is below 1e-11.
const AD_TERMS: u32 = 100;

/// Cumulant generating function of `A²∞` with `m` degrees of freedom and
/// its first two derivatives at `t < 1`: `A²∞ = Σ_j λ_j χ²_m,j` with
/// `λ_j = 1 / (j (j + 1))`, so `K(t) = -(m/2) Σ_j ln(1 - 2 t λ_j)`.
/// Terms past [`AD_TERMS`] use `Σ_{j>J} λ_j = 1/(J+1)` (exact, the series
/// telescopes) and `Σ_{j>J} λ_j² ≈ 1/(3 (J+1)³)`.
fn ad_cgf(t: f64, m: f64) -> (f64, f64, f64) {
    let (mut k0, mut k1, mut k2) = (0.0, 0.0, 0.0);
    for j in 1..=AD_TERMS {
        let j = f64::from(j);
        let lambda = 1.0 / (j * (j + 1.0));
        let one = 1.0 - 2.0 * t * lambda;
        k0 += one.ln();
        k1 += lambda / one;
        k2 += lambda * lambda / (one * one);
    }
    let j1 = f64::from(AD_TERMS) + 1.0;
    let (s1, s2) = (1.0 / j1, 1.0 / (3.0 * j1 * j1 * j1));
    k0 += -2.0 * t * s1 - 2.0 * t * t * s2;
    k1 += s1 + 2.0 * t * s2;
    k2 += s2;
    (-0.5 * m * k0, m * k1, 2.0 * m * k2)
}

/// Upper tail `P(A²∞ > x)` of the limiting distribution of the k-sample
/// Anderson-Darling statistic with `m = k - 1` (Scholz and Stephens 1987:
/// `A²akN → Σ_j χ²_m,j / (j (j+1))`; mean `m`, variance
/// `m · 2(π² - 9)/3`).
///
/// Computed with the Lugannani-Rice saddlepoint approximation of that
/// weighted sum of chi-squares, which keeps a small *relative* error deep
/// in the tail, where SciPy's `anderson_ksamp` interpolates a table and
/// caps the p-value at 0.001. Checked against numerical inversion of the
/// characteristic function (Imhof): between p = 0.05 and 1e-10 it is at
/// most 1% low and up to 8% high (the error grows slowly into the tail and
/// is on the conservative side there: a test judged by it fires slightly
/// less often than its level says); below the mean, up to 3% low. At the mean itself the approximation
/// is 0/0 and the normal approximation is used (p ≈ 0.5 where the truth
/// is ≈ 0.36, far from any decision). Total: NaN only for NaN input, 1 for
/// `x ≤ 0`, 0 for `x = ∞`; `m` must be > 0 (else 1).
pub(crate) fn ad_inf_sf(x: f64, m: f64) -> f64 {
    if x.is_nan() || m.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 || m <= 0.0 || !m.is_finite() {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let mean = m;
    let sd = (m * 2.0 * (PI * PI - 9.0) / 3.0).sqrt();
    // Solve K'(t) = x: K' increases from 0 (t → -∞) to ∞ (t → 1).
    let (mut lo, mut hi) = (-1.0f64, 1.0f64);
    while ad_cgf(lo, m).1 > x && lo > -1e12 {
        lo *= 4.0;
    }
    for _ in 0..300 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if ad_cgf(mid, m).1 < x {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let t = 0.5 * (lo + hi);
    let (k0, _, k2) = ad_cgf(t, m);
    let w2 = 2.0 * (t * x - k0);
    // Near the mean the formula is 0/0; the normal approximation is exact
    // enough there (p ≈ 0.4-0.6 is never near a decision).
    if t.abs() < 1e-5 || w2 <= 0.0 || !k2.is_finite() || k2 <= 0.0 {
        return normal_sf((x - mean) / sd).clamp(0.0, 1.0);
    }
    let w = t.signum() * w2.sqrt();
    let u = t * k2.sqrt();
    let density = (-0.5 * w * w).exp() / (2.0 * PI).sqrt();
    (normal_sf(w) + density * (1.0 / u - 1.0 / w)).clamp(0.0, 1.0)
}

/// `ln 2`, the divisor that turns natural-log divergences into bits.
pub(crate) const LN_BASE_2: f64 = LN_2;

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-14));
        assert!(close(ln_gamma(0.5), PI.sqrt().ln(), 1e-14));
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-12));
        assert!(close(ln_gamma(100.5), 361.435_540_467_777_57, 1e-10));
    }

    // Reference values: SciPy 1.17.1 (`chi2.sf`, `norm.sf`, `special.kolmogorov`, `gammaln`).
    #[test]
    fn chi2_sf_matches_scipy() {
        assert!(close(chi2_sf(3.0, 2), 0.223_130_160_148_429_82, 1e-13));
        assert!(close(chi2_sf(10.0, 3), 0.018_566_135_463_043_25, 1e-13));
        assert!(close(chi2_sf(0.5, 7), 0.999_446_481_390_424_9, 1e-13));
        assert!(close(
            chi2_sf(1200.0, 1000),
            1.225_594_233_062_289_3e-5,
            1e-12
        ));
        assert_eq!(chi2_sf(0.0, 4), 1.0);
        assert_eq!(chi2_sf(5.0, 0), 1.0);
    }

    #[test]
    fn normal_p_matches_scipy() {
        assert!(close(
            normal_two_sided_p(1.959_963_984_540_054),
            0.05,
            1e-13
        ));
        assert!(close(
            normal_two_sided_p(-3.0),
            0.002_699_796_063_260_186_6,
            1e-14
        ));
        assert_eq!(normal_two_sided_p(0.0), 1.0);
    }

    #[test]
    fn kolmogorov_matches_scipy() {
        assert!(close(kolmogorov_sf(0.5), 0.963_945_243_664_875_1, 1e-13));
        assert!(close(kolmogorov_sf(0.82), 0.511_971_705_298_497_3, 1e-13));
        assert!(close(kolmogorov_sf(1.0), 0.269_999_671_677_354_56, 1e-13));
        assert!(close(kolmogorov_sf(1.36), 0.049_485_876_755_377_876, 1e-13));
        assert!(close(kolmogorov_sf(3.0), 3.045_995_948_942_526e-8, 1e-20));
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(kolmogorov_sf(0.05), 1.0);
    }
}
