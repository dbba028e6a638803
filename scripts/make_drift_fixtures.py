#!/usr/bin/env python3
"""Parity fixtures for driftline's drift statistics (src/drift/stats.rs).

Run from the repository root:   python3 scripts/make_drift_fixtures.py
(package versions: scripts/requirements-drift.txt; NumPy and SciPy only).

Writes tests/fixtures/drift/<name>.json, one data set each, drawn from one
Generator seeded with SEED and rounded to 5 decimals (short JSON that reads
back to the same doubles). Each file holds the samples (JSON null = missing
value) and the values NumPy/SciPy compute from them; tests/parity/drift_parity.rs
checks driftline's exact mode against them within 1e-6 and its sketch mode
within the stated error bound.

Definitions (the same as the Rust docs; "present" = the non-null values):

numeric
    edges        np.unique(np.quantile(ref, np.arange(1, B) / B)), B = 10,
                 NumPy's default "linear" quantile method
    counts       np.bincount(np.searchsorted(edges, x, "left"), minlength=len(edges) + 1),
                 i.e. bin i holds edges[i-1] < x <= edges[i]
    psi          sum((pc - pr) * ln(pc / pr)), p = max(count / total, 1e-4), natural log
    js_distance  scipy.spatial.distance.jensenshannon(ref_counts, cur_counts, base=2)
    ks_statistic scipy.stats.ks_2samp(ref, cur).statistic
    ks_p_value   scipy.special.kolmogorov(sqrt(n*m/(n+m)) * D): the Kolmogorov limit.
                 ks_2samp(method="asymp") uses kstwo.sf(D, round(n*m/(n+m))) instead;
                 it is recorded as ks_p_value_kstwo for comparison, not checked.
    wasserstein  scipy.stats.wasserstein_distance(ref, cur)
categorical (union of categories, sorted)
    psi          as above over categories
    chi_square   scipy.stats.chisquare(cur, f_exp=E), E = r * sum(cur),
                 r = max(ref / sum(ref), 1e-4) renormalised to sum 1; dof = k - 1
both
    missing      pooled two-proportion z test of the missing rates,
                 p = 2 * scipy.stats.norm.sf(|z|)

Significance tests (src/drift/significance.rs, src/drift/exact.rs) are in
tests/fixtures/drift_tests/<name>.json, checked by tests/parity/drift_tests_parity.rs.
They come from a second Generator (SEED_TESTS), so the fixtures above stay
byte for byte what they were. Values are model inputs: each sample is cast to
float32 (np.float32, round to nearest, as Rust's `as f32`) and computed on in
float64, so repeated decimal values (9.99, 0.10, 1.10) tie on both sides.

    anderson     scipy.stats.anderson_ksamp(samples, variant="midrank"):
                 statistic (standardised T) and its capped, interpolated
                 p-value; critical values b0 + b1/sqrt(m) + b2/m (Scholz and
                 Stephens table 2, as SciPy); p_value_limit = P(A2inf > m + T
                 sigma_inf) by Imhof's numerical inversion (null where that
                 point is beyond 20, where the integral is not accurate)
    ks           statistic of scipy.stats.ks_2samp; p-value with the
                 Kolmogorov limit at the effective sizes
    wasserstein  scipy.stats.wasserstein_distance
    mean_test    z = (mean_c - mean_r) / sqrt(var_r (1/e_r + 1/e_c)),
                 p = 2 norm.sf(|z|); var with ddof=0
    variance_test z = (var_c - var_r) / sqrt((m4_r - var_r^2)(1/e_r + 1/e_c))
    abs_dev_test  mean_test of |x - center|, center = np.median(reference)
    e_r, e_c     effective sizes: the counts, or for samples with entity ids
                 the Kish size n^2 / sum(m_e^2)
"""

import json
import math
import pathlib

import numpy as np
import scipy
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

SEED = 20261125
BINS = 10
EPS = 1e-4
OUT = pathlib.Path("tests/fixtures/drift")

rng = np.random.default_rng(SEED)


def with_missing(x, rate):
    """Values as a list with about `rate` of them replaced by None."""
    x = np.round(np.asarray(x, dtype=float), 5)
    holes = rng.random(len(x)) < rate
    return [None if h else float(v) for v, h in zip(x, holes)]


def present(xs):
    return np.array([v for v in xs if v is not None], dtype=float)


def proportions(counts):
    c = np.asarray(counts, dtype=float)
    return np.maximum(c / c.sum(), EPS)


def psi(ref_counts, cur_counts):
    pr, pc = proportions(ref_counts), proportions(cur_counts)
    return float(np.sum((pc - pr) * np.log(pc / pr)))


def missing(ref, cur):
    mr, nr = sum(v is None for v in ref), len(ref)
    mc, nc = sum(v is None for v in cur), len(cur)
    pooled = (mr + mc) / (nr + nc)
    var = pooled * (1 - pooled) * (1 / nr + 1 / nc)
    diff = mc / nc - mr / nr
    z = diff / math.sqrt(var) if var > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z))) if var > 0 else 1.0
    return {
        "reference_rate": mr / nr,
        "current_rate": mc / nc,
        "difference": diff,
        "z": z,
        "p_value": p,
    }


def numeric(name, description, ref, cur):
    r, c = present(ref), present(cur)
    edges = np.unique(np.quantile(r, np.arange(1, BINS) / BINS))
    rc = np.bincount(np.searchsorted(edges, r, "left"), minlength=len(edges) + 1)
    cc = np.bincount(np.searchsorted(edges, c, "left"), minlength=len(edges) + 1)
    ks = stats.ks_2samp(r, c)
    en = len(r) * len(c) / (len(r) + len(c))
    expected = {
        "edges": edges.tolist(),
        "reference_counts": rc.tolist(),
        "current_counts": cc.tolist(),
        "psi": psi(rc, cc),
        "js_distance": float(jensenshannon(rc, cc, base=2)),
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(special.kolmogorov(math.sqrt(en) * ks.statistic)),
        "ks_p_value_kstwo": float(stats.ks_2samp(r, c, method="asymp").pvalue),
        "wasserstein": float(stats.wasserstein_distance(r, c)),
        "missing": missing(ref, cur),
    }
    write(name, "numeric", description, ref, cur, expected)


def categorical(name, description, ref, cur):
    r = [v for v in ref if v is not None]
    c = [v for v in cur if v is not None]
    cats = sorted(set(r) | set(c))
    rc = np.array([r.count(k) for k in cats])
    cc = np.array([c.count(k) for k in cats])
    shares = proportions(rc)
    shares = shares / shares.sum()
    chi = stats.chisquare(cc, f_exp=shares * cc.sum())
    expected = {
        "categories": cats,
        "reference_counts": rc.tolist(),
        "current_counts": cc.tolist(),
        "psi": psi(rc, cc),
        "chi_square": {
            "statistic": float(chi.statistic),
            "p_value": float(chi.pvalue),
            "dof": len(cats) - 1,
        },
        "missing": missing(ref, cur),
    }
    write(name, "categorical", description, ref, cur, expected)


def write(name, kind, description, ref, cur, expected):
    doc = {
        "name": name,
        "kind": kind,
        "description": description,
        "bins": BINS,
        "psi_epsilon": EPS,
        "generator": {"numpy": np.__version__, "scipy": scipy.__version__, "seed": SEED},
        "reference": ref,
        "current": cur,
        "expected": expected,
    }
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")
    print(f"{path}: {len(ref)} reference, {len(cur)} current values")


def draw_categories(shares, n, rate):
    names = list(shares)
    p = np.array([shares[k] for k in names], dtype=float)
    picks = rng.choice(len(names), size=n, p=p / p.sum())
    holes = rng.random(n) < rate
    return [None if h else names[i] for i, h in zip(picks, holes)]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    numeric(
        "normal_shift",
        "N(0,1) against N(0.3,1), with missing values on both sides",
        with_missing(rng.normal(0, 1, 5000), 0.01),
        with_missing(rng.normal(0.3, 1, 4000), 0.03),
    )
    numeric(
        "no_drift",
        "two samples of the same N(5,2)",
        with_missing(rng.normal(5, 2, 3000), 0.0),
        with_missing(rng.normal(5, 2, 3000), 0.0),
    )
    numeric(
        "variance_change",
        "N(0,1) against N(0,1.5): same median, wider spread",
        with_missing(rng.normal(0, 1, 5000), 0.0),
        with_missing(rng.normal(0, 1.5, 5000), 0.0),
    )
    numeric(
        "heavy_tail",
        "Pareto(a=3) against Pareto(a=1.5) amounts: long right tail",
        with_missing(10 * (1 + rng.pareto(3.0, 3000)), 0.02),
        with_missing(10 * (1 + rng.pareto(1.5, 3000)), 0.02),
    )
    numeric(
        "ties_discrete",
        "Poisson(3) against Poisson(3.6): heavy ties, repeated decile edges",
        with_missing(rng.poisson(3.0, 3000), 0.0),
        with_missing(rng.poisson(3.6, 3000), 0.0),
    )
    numeric(
        "small_samples",
        "12 against 7 values",
        with_missing(rng.normal(0, 1, 12), 0.0),
        with_missing(rng.normal(0.5, 1, 7), 0.0),
    )
    numeric(
        "constant_reference",
        "an all-equal reference (one edge) against a spread current",
        [2.5] * 50,
        with_missing(rng.normal(2.5, 0.5, 80), 0.1),
    )
    base = {"grocery": 0.40, "online": 0.30, "travel": 0.15, "fuel": 0.10, "atm": 0.05}
    categorical(
        "categorical_shift",
        "online share up from 30% to 40%, grocery down",
        draw_categories(base, 4000, 0.01),
        draw_categories({**base, "grocery": 0.30, "online": 0.40}, 4000, 0.02),
    )
    categorical(
        "categorical_new_category",
        "a category the reference never saw takes 3%; one reference category disappears",
        draw_categories(base, 3000, 0.0),
        draw_categories({**base, "atm": 0.0, "crypto": 0.03}, 3000, 0.0),
    )
    categorical(
        "categorical_small",
        "20 against 15 values",
        draw_categories(base, 20, 0.05),
        draw_categories(base, 15, 0.0),
    )


SEED_TESTS = 20261202
TESTS_OUT = pathlib.Path("tests/fixtures/drift_tests")
rng_tests = np.random.default_rng(SEED_TESTS)

# Anderson-Darling critical-value coefficients (SciPy, Scholz and Stephens).
AD_B0 = np.array([0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085])
AD_B1 = np.array([-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615])
AD_B2 = np.array([-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154])


def ad_limit_sf(x, m, terms=20000):
    """P(sum_j chi2_m,j / (j (j+1)) > x) by Imhof's inversion."""
    from scipy import integrate

    j = np.arange(1, terms + 1)
    lam = 1.0 / (j * (j + 1.0))

    def integrand(u):
        theta = 0.5 * m * (np.sum(np.arctan(lam * u)) + u / (terms + 1)) - 0.5 * x * u
        rho = np.exp(0.25 * m * np.sum(np.log1p((lam * u) ** 2)))
        return np.sin(theta) / (u * rho)

    val, _ = integrate.quad(integrand, 0, np.inf, limit=2000, epsabs=1e-15, epsrel=1e-12)
    return 0.5 + val / np.pi


def kish(entities):
    _, counts = np.unique(np.asarray(entities), return_counts=True)
    return float(len(entities)) ** 2 / float(np.sum(counts.astype(float) ** 2))


def moments(x, center):
    mean = float(np.mean(x))
    var = float(np.mean((x - mean) ** 2))
    m4 = float(np.mean((x - mean) ** 4))
    d = np.abs(x - center)
    return mean, var, m4, float(np.mean(d)), float(np.mean((x - center) ** 2) - np.mean(d) ** 2)


def z_test(diff, var_r, e_r, e_c):
    if var_r <= 0:
        return {"z": 0.0, "p_value": 1.0}
    z = diff / math.sqrt(var_r * (1 / e_r + 1 / e_c))
    return {"z": z, "p_value": float(min(1.0, 2 * stats.norm.sf(abs(z))))}


def tests_fixture(name, description, samples, entities=None):
    """samples: list of float64 arrays (decimal values); the first is the reference."""
    as_model = [np.asarray(s, dtype=np.float32).astype(np.float64) for s in samples]
    ad = stats.anderson_ksamp(as_model, variant="midrank")
    m = len(samples) - 1
    critical = AD_B0 + AD_B1 / math.sqrt(m) + AD_B2 / m
    sigma_inf = math.sqrt(m * 2 * (math.pi**2 - 9) / 3)
    r, c = as_model[0], as_model[1]
    e_r, e_c = float(len(r)), float(len(c))
    if entities is not None:
        e_r, e_c = kish(entities[0]), kish(entities[1])
    center = float(np.median(r))
    mr, vr, m4r, ar, avr = moments(r, center)
    mc, vc, _, ac, _ = moments(c, center)
    ks = stats.ks_2samp(r, c)
    expected = {
        "anderson": {
            "statistic": float(ad.statistic),
            "p_value_scipy": float(ad.pvalue),
            "critical_values": critical.tolist(),
            # Imhof's integral loses its accuracy far in the tail: kept only
            # where the limit is above ~1e-10.
            "p_value_limit": (
                float(ad_limit_sf(x, m)) if (x := m + float(ad.statistic) * sigma_inf) <= 20 else None
            ),
        },
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(special.kolmogorov(math.sqrt(e_r * e_c / (e_r + e_c)) * ks.statistic)),
        "wasserstein": float(stats.wasserstein_distance(r, c)),
        "center": center,
        "effective_reference": e_r,
        "effective_current": e_c,
        "mean_test": z_test(mc - mr, vr, e_r, e_c),
        "variance_test": z_test(vc - vr, m4r - vr * vr, e_r, e_c),
        "abs_dev_test": z_test(ac - ar, avr, e_r, e_c),
    }
    doc = {
        "name": name,
        "description": description,
        "generator": {"numpy": np.__version__, "scipy": scipy.__version__, "seed": SEED_TESTS},
        "samples": [[float(v) for v in s] for s in samples],
        "entities": entities,
        "expected": expected,
    }
    path = TESTS_OUT / f"{name}.json"
    path.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")
    print(f"{path}: " + ", ".join(str(len(s)) for s in samples) + " values")


def prices(n, shift=0.0):
    """Two-decimal prices, 30% from a short menu of very common ones."""
    menu = np.array([0.10, 1.10, 9.99, 4.99, 19.99])
    common = rng_tests.random(n) < 0.3
    other = np.maximum(np.round(np.exp(rng_tests.normal(2.3, 0.9, n)) * 100), 9) / 100
    x = np.where(common, menu[rng_tests.integers(0, len(menu), n)], other)
    return np.round(x + shift, 2)


def main_tests():
    TESTS_OUT.mkdir(parents=True, exist_ok=True)
    tests_fixture(
        "prices_stationary",
        "two-decimal prices (9.99, 0.10, 1.10 ...) from one distribution: heavy ties on a grid f32 rounds",
        [prices(20000), prices(5000)],
    )
    tests_fixture(
        "prices_shift",
        "two-decimal prices, current 0.25 higher (every price, rounded to cents)",
        [prices(20000), prices(5000, 0.25)],
    )
    rates = np.array([0.05, 0.10, 0.15, 0.20, 0.25, 0.30])
    tests_fixture(
        "rates_repeated",
        "interest-like rates from six values, shares shifted slightly",
        [
            rates[rng_tests.choice(6, 8000, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05])],
            rates[rng_tests.choice(6, 3000, p=[0.27, 0.25, 0.2, 0.13, 0.1, 0.05])],
        ],
    )
    tests_fixture(
        "integer_ties",
        "Poisson(3) against Poisson(3.2): integers, heavy ties",
        [rng_tests.poisson(3.0, 10000), rng_tests.poisson(3.2, 5000)],
    )
    tests_fixture(
        "normal_small_shift",
        "N(50, 10) against N(51.25, 10): a 0.125 sd shift, continuous",
        [np.round(rng_tests.normal(50, 10, 20000), 4), np.round(rng_tests.normal(51.25, 10, 5000), 4)],
    )
    tests_fixture(
        "lognormal_scale",
        "exp(N(3, 1)) against its spread x1.25 about the mean: heavy right tail",
        [
            np.round(np.exp(rng_tests.normal(3, 1, 20000)), 3),
            np.round(33.1 + 1.25 * (np.exp(rng_tests.normal(3, 1, 5000)) - 33.1), 3),
        ],
    )
    zeros = lambda n, s: np.where(rng_tests.random(n) < 0.6, 0.0, np.round(np.exp(rng_tests.normal(3 + s, 0.8, n)), 2))
    tests_fixture(
        "zero_inflated",
        "60% exact zeros, the rest log-normal; current's non-zero part 10% larger",
        [zeros(10000, 0.0), zeros(5000, 0.1)],
    )
    tests_fixture(
        "three_samples",
        "k = 3 samples with ties (rounded to 0.5)",
        [np.round(rng_tests.normal(0, 1, 300) * 2) / 2, np.round(rng_tests.normal(0.2, 1, 200) * 2) / 2,
         np.round(rng_tests.normal(0, 1.3, 250) * 2) / 2],
    )
    tests_fixture(
        "small_samples",
        "9 against 6 values",
        [np.round(rng_tests.normal(0, 1, 9), 3), np.round(rng_tests.normal(1, 1, 6), 3)],
    )
    # A store feature: values repeat per entity, entities with skewed activity.
    values = np.round(np.exp(rng_tests.normal(7, 0.5, 2000)), -1)
    weights = np.exp(rng_tests.normal(0, 1, 2000))
    weights /= weights.sum()
    ref_e = rng_tests.choice(2000, 20000, p=weights)
    cur_e = rng_tests.choice(2000, 5000, p=weights)
    tests_fixture(
        "store_repeated",
        "a store feature: 2,000 entities with log-normal activity, each event repeats its entity's value",
        [values[ref_e], values[cur_e] * 1.02],
        entities=[[f"card-{e}" for e in ref_e], [f"card-{e}" for e in cur_e]],
    )


if __name__ == "__main__":
    main()
    main_tests()
