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


if __name__ == "__main__":
    main()
