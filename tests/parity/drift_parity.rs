//! Drift statistics against NumPy/SciPy: `tests/fixtures/drift/*.json`,
//! written by `scripts/make_drift_fixtures.py` (definitions there and in
//! `src/drift/stats.rs`).
//!
//! - Exact mode (`driftline::drift::stats`) must equal SciPy within 1e-6
//!   (bin edges and counts exactly).
//! - Sketch mode (`driftline::drift::sketch`): PSI, Jensen-Shannon,
//!   chi-square and missing-rate statistics within 1e-6 (they come from exact
//!   counts); KS and Wasserstein within the bound each value reports, plus
//!   1e-6 for rounding.
//!
//! Run with `--nocapture` to see the largest differences per fixture.

use std::path::Path;

use driftline::drift::sketch::{
    compare_categorical, compare_numeric, CategoricalSketch, NumericSketch, DEFAULT_TOP_K,
};
use driftline::drift::stats::{
    self, align_categories, bin_counts, reference_edges, MissingRateChange, PSI_EPSILON,
};
use driftline::drift::Side;
use serde::Deserialize;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixture<T, E> {
    name: String,
    kind: String,
    bins: usize,
    psi_epsilon: f64,
    reference: Vec<Option<T>>,
    current: Vec<Option<T>>,
    expected: E,
}

#[derive(Deserialize)]
struct Missing {
    reference_rate: f64,
    current_rate: f64,
    difference: f64,
    z: f64,
    p_value: f64,
}

#[derive(Deserialize)]
struct NumericExpected {
    edges: Vec<f64>,
    reference_counts: Vec<u64>,
    current_counts: Vec<u64>,
    psi: f64,
    js_distance: f64,
    ks_statistic: f64,
    ks_p_value: f64,
    wasserstein: f64,
    missing: Missing,
}

#[derive(Deserialize)]
struct ChiSquare {
    statistic: f64,
    p_value: f64,
    dof: u64,
}

#[derive(Deserialize)]
struct CategoricalExpected {
    categories: Vec<String>,
    reference_counts: Vec<u64>,
    current_counts: Vec<u64>,
    psi: f64,
    chi_square: ChiSquare,
    missing: Missing,
}

/// Largest difference seen per statistic, for the report and the assertion.
#[derive(Default)]
struct Diffs(Vec<(String, f64, f64)>);

impl Diffs {
    /// Records `|got - want|` and checks it against `allowed`.
    fn check(&mut self, what: &str, got: f64, want: f64, allowed: f64) {
        let diff = if got == want { 0.0 } else { (got - want).abs() };
        assert!(
            diff <= allowed,
            "{what}: driftline {got:e}, SciPy {want:e}, difference {diff:e} > {allowed:e}"
        );
        self.0.push((what.to_string(), diff, allowed));
    }
}

fn check_missing(d: &mut Diffs, mode: &str, got: &MissingRateChange, want: &Missing) {
    d.check(
        &format!("{mode} missing.reference_rate"),
        got.reference_rate,
        want.reference_rate,
        TOLERANCE,
    );
    d.check(
        &format!("{mode} missing.current_rate"),
        got.current_rate,
        want.current_rate,
        TOLERANCE,
    );
    d.check(
        &format!("{mode} missing.difference"),
        got.difference,
        want.difference,
        TOLERANCE,
    );
    d.check(&format!("{mode} missing.z"), got.z, want.z, TOLERANCE);
    d.check(
        &format!("{mode} missing.p_value"),
        got.p_value,
        want.p_value,
        TOLERANCE,
    );
}

fn fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drift");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect()
}

fn kind(text: &str) -> String {
    #[derive(Deserialize)]
    struct Kind {
        kind: String,
    }
    serde_json::from_str::<Kind>(text).unwrap().kind
}

fn numeric(text: &str) -> Diffs {
    let f: Fixture<f64, NumericExpected> = serde_json::from_str(text).unwrap();
    assert_eq!(f.kind, "numeric");
    assert_eq!(f.psi_epsilon, PSI_EPSILON, "{}: epsilon", f.name);
    let e = &f.expected;
    let present = |xs: &[Option<f64>]| xs.iter().flatten().copied().collect::<Vec<f64>>();
    let (r, c) = (present(&f.reference), present(&f.current));
    let mut d = Diffs::default();

    // Exact mode.
    let edges = reference_edges(&r, f.bins).unwrap();
    assert_eq!(edges.len(), e.edges.len(), "{}: edges {edges:?}", f.name);
    for (got, want) in edges.iter().zip(&e.edges) {
        d.check("edge", *got, *want, 0.0);
    }
    assert_eq!(
        bin_counts(&edges, &r, Side::Reference).unwrap(),
        e.reference_counts
    );
    assert_eq!(
        bin_counts(&edges, &c, Side::Current).unwrap(),
        e.current_counts
    );
    let s = stats::numeric_stats(&r, &c, f.bins).unwrap();
    d.check("exact psi", s.psi, e.psi, TOLERANCE);
    d.check("exact js_distance", s.js_distance, e.js_distance, TOLERANCE);
    d.check(
        "exact ks_statistic",
        s.ks.statistic,
        e.ks_statistic,
        TOLERANCE,
    );
    d.check("exact ks_p_value", s.ks.p_value, e.ks_p_value, TOLERANCE);
    d.check("exact wasserstein", s.wasserstein, e.wasserstein, TOLERANCE);
    let count_missing = |xs: &[Option<f64>]| xs.iter().filter(|x| x.is_none()).count() as u64;
    let m = stats::missing_rate_change(
        count_missing(&f.reference),
        f.reference.len() as u64,
        count_missing(&f.current),
        f.current.len() as u64,
    )
    .unwrap();
    check_missing(&mut d, "exact", &m, &e.missing);

    // Sketch mode: a reference profile and one window fed value by value.
    let feed = |s: &mut NumericSketch, xs: &[Option<f64>]| {
        for x in xs {
            match x {
                Some(v) => s.update(*v),
                None => s.update_missing(),
            }
        }
    };
    let ref_values: Vec<f64> = f.reference.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
    let reference = NumericSketch::reference(&ref_values, f.bins).unwrap();
    assert_eq!(reference.edges(), e.edges.as_slice());
    let mut current = reference.empty_like();
    feed(&mut current, &f.current);
    let got = compare_numeric(&reference, &current).unwrap();
    let g = got.distribution.unwrap();
    d.check("sketch psi", g.psi, e.psi, TOLERANCE);
    d.check(
        "sketch js_distance",
        g.js_distance,
        e.js_distance,
        TOLERANCE,
    );
    d.check(
        "sketch ks_statistic",
        g.ks.value,
        e.ks_statistic,
        g.ks.bound + TOLERANCE,
    );
    d.check(
        "sketch wasserstein",
        g.wasserstein.value,
        e.wasserstein,
        g.wasserstein.bound + TOLERANCE,
    );
    check_missing(&mut d, "sketch", &got.missing, &e.missing);
    println!(
        "{}: sketch KS |Δ| {:.1e} (bound {:.1e}), Wasserstein |Δ| {:.1e} of {:.3} (bound {:.1e})",
        f.name,
        (g.ks.value - e.ks_statistic).abs(),
        g.ks.bound,
        (g.wasserstein.value - e.wasserstein).abs(),
        e.wasserstein,
        g.wasserstein.bound
    );

    // A window split in two and merged gives the same counts.
    let half = f.current.len() / 2;
    let mut a = reference.empty_like();
    let mut b = reference.empty_like();
    feed(&mut a, &f.current[..half]);
    feed(&mut b, &f.current[half..]);
    a.merge(&b).unwrap();
    assert_eq!(a.histogram(), current.histogram());
    assert_eq!(
        (a.count(), a.missing()),
        (current.count(), current.missing())
    );
    d
}

fn categorical(text: &str) -> Diffs {
    let f: Fixture<String, CategoricalExpected> = serde_json::from_str(text).unwrap();
    assert_eq!(f.kind, "categorical");
    let e = &f.expected;
    fn present(xs: &[Option<String>]) -> Vec<&str> {
        xs.iter().flatten().map(String::as_str).collect()
    }
    let (r, c) = (present(&f.reference), present(&f.current));
    let mut d = Diffs::default();

    // Exact mode.
    let aligned = align_categories(&r, &c);
    assert_eq!(aligned.categories, e.categories);
    assert_eq!(aligned.reference, e.reference_counts);
    assert_eq!(aligned.current, e.current_counts);
    d.check(
        "exact psi",
        stats::psi_categorical(&r, &c).unwrap(),
        e.psi,
        TOLERANCE,
    );
    let chi = stats::chi_square_categorical(&r, &c).unwrap();
    assert_eq!(chi.dof, e.chi_square.dof);
    // The statistic can be in the thousands: relative tolerance there.
    let rel = TOLERANCE * e.chi_square.statistic.abs().max(1.0);
    d.check(
        "exact chi_square.statistic",
        chi.statistic,
        e.chi_square.statistic,
        rel,
    );
    d.check(
        "exact chi_square.p_value",
        chi.p_value,
        e.chi_square.p_value,
        TOLERANCE,
    );
    let count_missing = |xs: &[Option<String>]| xs.iter().filter(|x| x.is_none()).count() as u64;
    let m = stats::missing_rate_change(
        count_missing(&f.reference),
        f.reference.len() as u64,
        count_missing(&f.current),
        f.current.len() as u64,
    )
    .unwrap();
    check_missing(&mut d, "exact", &m, &e.missing);

    // Sketch mode. Every fixture has at most one category outside the
    // reference's list, so pooling into "other" changes nothing.
    let reference =
        CategoricalSketch::reference(f.reference.iter().map(|x| x.as_deref()), DEFAULT_TOP_K);
    let mut current = reference.empty_like();
    for x in &f.current {
        match x {
            Some(v) => current.update(v),
            None => current.update_missing(),
        }
    }
    let got = compare_categorical(&reference, &current).unwrap();
    let g = got.distribution.unwrap();
    d.check("sketch psi", g.psi, e.psi, TOLERANCE);
    assert_eq!(g.chi_square.dof, e.chi_square.dof);
    d.check(
        "sketch chi_square.statistic",
        g.chi_square.statistic,
        e.chi_square.statistic,
        rel,
    );
    d.check(
        "sketch chi_square.p_value",
        g.chi_square.p_value,
        e.chi_square.p_value,
        TOLERANCE,
    );
    check_missing(&mut d, "sketch", &got.missing, &e.missing);
    d
}

#[test]
fn drift_statistics_match_scipy() {
    let files = fixtures();
    assert!(
        files.len() >= 10,
        "expected the 10 fixtures, found {}",
        files.len()
    );
    let mut worst: Vec<(String, f64, f64)> = Vec::new();
    for (path, text) in &files {
        let diffs = match kind(text).as_str() {
            "numeric" => numeric(text),
            "categorical" => categorical(text),
            other => panic!("{path}: unknown kind {other:?}"),
        };
        for (what, diff, allowed) in diffs.0 {
            // Worst relative to what is allowed (sketch bounds vary per fixture).
            let ratio = |d: f64, a: f64| if a > 0.0 { d / a } else { d };
            match worst.iter_mut().find(|(w, _, _)| *w == what) {
                Some(entry) if ratio(entry.1, entry.2) < ratio(diff, allowed) => {
                    *entry = (what, diff, allowed)
                }
                Some(_) => {}
                None => worst.push((what, diff, allowed)),
            }
        }
        println!("{path}: ok");
    }
    println!(
        "\nlargest |driftline - SciPy| over {} fixtures:",
        files.len()
    );
    for (what, diff, allowed) in &worst {
        println!("  {what:32} {diff:9.2e}  (allowed {allowed:.2e})");
    }
}
