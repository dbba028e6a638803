//! Detection quality of the drift *tests* (issue 13, phase A): per kind of
//! column and per test, the false-alarm rate on stationary windows, the
//! power per window against the shifts users care about, and the
//! detection delay with the shift starting anywhere in a window. Not a
//! timing benchmark. Built on the pure statistics (`drift::exact`,
//! `drift::significance`, `drift::cusum`, `drift::distinct`) and the
//! streams of `drift::synthetic`; the monitor (hysteresis, messages per
//! episode) is measured end to end once it is wired to them.
//!
//! `cargo bench --bench drift_quality2` prints the tables quoted in
//! `docs/drift-design.md`. Run as a test (`cargo test --benches`, no
//! `--bench` argument) it makes one short pass of each row.
//!
//! Set-up per stream: a reference of 50,000 events kept exactly, windows
//! of 5,000 events (exact), sub-windows of 1,000 for the sliding window
//! and the CUSUM. A test fires at `p ≤ α / m` with the per-evaluation
//! family rate `α` = 1e-3 spread over `m` = 64 tests (about a 14-input
//! model: 4 tests per column plus CUSUMs).

use std::collections::VecDeque;

use driftline::drift::cusum::{reference_margin, Cusum, CusumParams, DEFAULT_ALLOWANCE};
use driftline::drift::distinct::EntityCounter;
use driftline::drift::exact::{
    compare_columns, ColumnValues, NumericTests, PreparedColumn, DEFAULT_EXACT_MAX_VALUES,
    DEFAULT_REFERENCE_MAX_VALUES,
};
use driftline::drift::significance::{
    chi_square_test, mean_test, Budget, Summary, ValueSource, AD_MAX_TIE_SHARE,
};
use driftline::drift::synthetic::{Stream, StreamKind, StreamShift, CATEGORY_SHARES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WINDOW: usize = 5_000;
const SUB_WINDOWS: usize = 5;
const SUB: usize = WINDOW / SUB_WINDOWS;
const BUDGET: Budget = Budget {
    alpha: 1e-3,
    tests: 64,
};

/// The tests reported, in column order. `naive_mean` is the mean test
/// with every event counted as an independent draw, reported for store
/// columns to show what the effective size corrects.
const TESTS: [&str; 7] = [
    "ks",
    "anderson",
    "mean",
    "variance",
    "abs_dev",
    "chi_square",
    "naive_mean",
];
/// The tests the design judges by (see docs/drift-design.md); Anderson-
/// Darling only on columns without a heavy tie (`AD_MAX_TIE_SHARE`).
const JUDGED: [&str; 5] = ["ks", "anderson", "mean", "abs_dev", "chi_square"];

struct Sizes {
    /// Events after the onset before a run counts as not detected.
    give_up: usize,
    reference: usize,
    stationary: usize,
    power: usize,
    delay_runs: usize,
}

struct Reference {
    kind: StreamKind,
    numeric: Option<PreparedColumn>,
    counts: Vec<u64>,
    events: f64,
    effective: f64,
    summary: Option<Summary>,
}

/// One window's column: values or category counts, and its entities.
struct Window {
    values: ColumnValues,
    counts: Vec<u64>,
    entities: EntityCounter,
}

impl Window {
    fn new(center: f64) -> Window {
        Window {
            values: ColumnValues::new(DEFAULT_EXACT_MAX_VALUES, center),
            counts: vec![0; CATEGORY_SHARES.len()],
            entities: EntityCounter::new(),
        }
    }

    fn observe(&mut self, kind: StreamKind, d: &driftline::drift::synthetic::Draw) {
        if kind.is_categorical() {
            if let Some(c) = self.counts.get_mut(d.category) {
                *c += 1;
            }
        } else {
            self.values.update(d.value);
        }
        if kind.is_store() {
            self.entities.update(&d.entity.to_string());
        }
    }

    fn merge(&mut self, other: &Window) {
        let merged = self
            .values
            .merge(&other.values)
            .and_then(|()| self.entities.merge(&other.entities));
        if let Err(e) = merged {
            panic!("windows of one reference must merge: {e}");
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    fn events(&self, kind: StreamKind) -> u64 {
        if kind.is_categorical() {
            self.counts.iter().sum()
        } else {
            self.values.count()
        }
    }

    fn effective(&self, kind: StreamKind) -> f64 {
        let source = if kind.is_store() {
            ValueSource::Store
        } else {
            ValueSource::Event
        };
        let f2 = kind.is_store().then(|| self.entities.stats().f2);
        driftline::drift::significance::effective_n(source, self.events(kind), f2)
    }
}

fn reference(kind: StreamKind, n: usize, seed: u64) -> Reference {
    let mut stream = Stream::new(kind, seed);
    let draws: Vec<_> = (0..n).map(|_| stream.next(StreamShift::None)).collect();
    let mut sorted: Vec<f32> = draws.iter().map(|d| d.value).collect();
    sorted.sort_by(f32::total_cmp);
    let center = sorted.get(n / 2).map_or(0.0, |&v| f64::from(v));
    let mut w = Window::new(center);
    w.values = ColumnValues::new(DEFAULT_REFERENCE_MAX_VALUES, center);
    for d in &draws {
        w.observe(kind, d);
    }
    let effective = w.effective(kind);
    let numeric = match PreparedColumn::new(&w.values) {
        Ok(p) => p,
        Err(e) => panic!("reference of {}: {e}", kind.name()),
    };
    Reference {
        kind,
        summary: w.values.moments().summary(effective),
        numeric,
        counts: w.counts,
        events: n as f64,
        effective,
    }
}

/// p-values of every test in [`TESTS`] (`None`: not applicable), and
/// whether Anderson-Darling is judged on this column (no heavy tie).
fn p_values(r: &Reference, w: &Window) -> ([Option<f64>; 7], bool) {
    let e_cur = w.effective(r.kind);
    if r.kind.is_categorical() {
        let chi = chi_square_test(&r.counts, &w.counts, r.effective, e_cur).ok();
        return (
            [None, None, None, None, None, chi.map(|c| c.p_value), None],
            false,
        );
    }
    let Some(prepared) = &r.numeric else {
        return ([None; 7], false);
    };
    let t: Option<NumericTests> = match compare_columns(prepared, r.effective, &w.values, e_cur) {
        Ok(t) => t,
        Err(e) => panic!("{}: {e}", r.kind.name()),
    };
    match t {
        Some(t) => (
            [
                Some(t.ks.p_value),
                Some(t.anderson.p_value),
                Some(t.mean.p_value),
                Some(t.variance.p_value),
                Some(t.abs_dev.p_value),
                None,
                naive_mean(r, w),
            ],
            t.anderson_judged,
        ),
        None => ([None; 7], false),
    }
}

/// The mean test with events as the sample sizes (store columns only).
fn naive_mean(r: &Reference, w: &Window) -> Option<f64> {
    if !r.kind.is_store() {
        return None;
    }
    let reference = Summary {
        n: r.events,
        ..r.summary?
    };
    let current = w.values.moments().summary(w.values.count() as f64)?;
    Some(mean_test(&reference, &current).p_value)
}

fn judged_fires((p, anderson_judged): &([Option<f64>; 7], bool)) -> bool {
    let level = BUDGET.per_test();
    TESTS.iter().zip(p).any(|(name, p)| {
        let judged = JUDGED.contains(name) && (*name != "anderson" || *anderson_judged);
        judged && p.is_some_and(|p| p <= level)
    })
}

fn fill(stream: &mut Stream, w: &mut Window, n: usize, shift: StreamShift) {
    for _ in 0..n {
        let d = stream.next(shift);
        w.observe(stream.kind(), &d);
    }
}

fn center(r: &Reference) -> f64 {
    r.numeric.as_ref().map_or(0.0, |p| p.moments().center())
}

/// Stationary windows: share with p ≤ 0.01, ≤ 0.001, ≤ α/m per test, of
/// the judged family, and CUSUM alarms over the windows' sub-windows.
fn stationary(r: &Reference, windows: usize, seed: u64) -> ([[u32; 3]; 7], u32, u32) {
    let mut stream = Stream::new(r.kind, seed);
    let mut hits = [[0u32; 3]; 7];
    let mut family = 0;
    let mut sequential = Sequential::new(r);
    let mut cusum_alarms = 0;
    for _ in 0..windows {
        let mut w = Window::new(center(r));
        for _ in 0..SUB_WINDOWS {
            let mut sub = Window::new(center(r));
            fill(&mut stream, &mut sub, SUB, StreamShift::None);
            cusum_alarms += u32::from(sequential.step(r, &sub));
            w.merge(&sub);
        }
        let judged = p_values(r, &w);
        for (h, p) in hits.iter_mut().zip(&judged.0) {
            if let Some(p) = p {
                for (slot, level) in h.iter_mut().zip([1e-2, 1e-3, BUDGET.per_test()]) {
                    *slot += u32::from(*p <= level);
                }
            }
        }
        family += u32::from(judged_fires(&judged));
    }
    (hits, family, cusum_alarms)
}

/// Windows shifted from their first event: share firing per test and of
/// the family.
fn power(r: &Reference, shift: StreamShift, windows: usize, seed: u64) -> ([u32; 7], u32) {
    let mut stream = Stream::new(r.kind, seed);
    let mut hits = [0u32; 7];
    let mut family = 0;
    for _ in 0..windows {
        let mut w = Window::new(center(r));
        fill(&mut stream, &mut w, WINDOW, shift);
        let judged = p_values(r, &w);
        for (h, p) in hits.iter_mut().zip(&judged.0) {
            *h += u32::from(p.is_some_and(|p| p <= BUDGET.per_test()));
        }
        family += u32::from(judged_fires(&judged));
    }
    (hits, family)
}

/// Per-sub-window CUSUMs: the mean of a numeric column, each category's
/// share of a categorical one.
struct Sequential {
    detectors: Vec<Cusum>,
}

impl Sequential {
    fn new(r: &Reference) -> Sequential {
        let count = if r.kind.is_categorical() {
            CATEGORY_SHARES.len()
        } else {
            1
        };
        let params = CusumParams::calibrated(BUDGET.per_test(), DEFAULT_ALLOWANCE);
        Sequential {
            detectors: vec![Cusum::new(params); count],
        }
    }

    /// One sub-window; true on an alarm.
    fn step(&mut self, r: &Reference, w: &Window) -> bool {
        let e = w.effective(r.kind);
        let margin = reference_margin(e, r.effective);
        if r.kind.is_categorical() {
            let total_r: u64 = r.counts.iter().sum();
            let total_c: u64 = w.counts.iter().sum();
            let mut alarm = false;
            for ((cusum, &rc), &cc) in self.detectors.iter_mut().zip(&r.counts).zip(&w.counts) {
                let p = rc as f64 / total_r.max(1) as f64;
                let share = cc as f64 / total_c.max(1) as f64;
                let z = (share - p) / (p * (1.0 - p) / e).sqrt();
                alarm |= cusum.update(z, margin).is_some();
            }
            return alarm;
        }
        let (Some(reference), Some(current)) = (r.summary, w.values.moments().summary(e)) else {
            return false;
        };
        // The window's own sampling error only: the reference's is the
        // margin's business.
        let known = Summary {
            n: f64::INFINITY,
            ..reference
        };
        let z = mean_test(&known, &current).z;
        self.detectors
            .iter_mut()
            .any(|c| c.update(z, margin).is_some())
    }
}

struct Delay {
    /// Events from the first shifted one to detection; `None`: not within
    /// `Sizes::give_up`.
    events: Option<usize>,
    by_cusum: bool,
    false_alarms: u32,
}

/// Sliding window of 5 sub-windows and the CUSUMs; the shift starts at a
/// uniformly random event of the third window.
fn delay(r: &Reference, shift: StreamShift, seed: u64, give_up: usize) -> Delay {
    let mut stream = Stream::new(r.kind, seed);
    let onset = 2 * WINDOW + StdRng::seed_from_u64(seed).random_range(0..WINDOW);
    let mut recent: VecDeque<Window> = VecDeque::new();
    let mut sequential = Sequential::new(r);
    let mut false_alarms = 0;
    let mut event = 0usize;
    while event < onset + give_up {
        let mut sub = Window::new(center(r));
        for _ in 0..SUB {
            let s = if event >= onset {
                shift
            } else {
                StreamShift::None
            };
            let d = stream.next(s);
            sub.observe(r.kind, &d);
            event += 1;
        }
        let by_cusum = sequential.step(r, &sub);
        recent.push_back(sub);
        if recent.len() > SUB_WINDOWS {
            recent.pop_front();
        }
        let mut by_window = false;
        if recent.len() == SUB_WINDOWS {
            let mut merged = Window::new(center(r));
            for w in &recent {
                merged.merge(w);
            }
            by_window = judged_fires(&p_values(r, &merged));
        }
        if by_window || by_cusum {
            if event <= onset {
                false_alarms += 1;
                continue;
            }
            return Delay {
                events: Some(event - onset),
                by_cusum: by_cusum && !by_window,
                false_alarms,
            };
        }
    }
    Delay {
        events: None,
        by_cusum: false,
        false_alarms,
    }
}

fn shifts(kind: StreamKind) -> Vec<(&'static str, StreamShift)> {
    if kind.is_categorical() {
        vec![
            ("+5 points", StreamShift::CategoryPoints(0.05)),
            ("+10 points", StreamShift::CategoryPoints(0.10)),
        ]
    } else {
        vec![
            ("mean +0.05σ", StreamShift::Mean(0.05)),
            ("mean +0.125σ", StreamShift::Mean(0.125)),
            ("mean +0.25σ", StreamShift::Mean(0.25)),
            ("variance ×1.25", StreamShift::Variance(1.25)),
            ("variance ×1.5", StreamShift::Variance(1.5)),
        ]
    }
}

fn rate(hits: u32, total: usize) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:.4}", f64::from(hits) / total as f64)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            give_up: 50_000,
            reference: 50_000,
            stationary: 2_000,
            power: 200,
            delay_runs: 20,
        }
    } else {
        Sizes {
            give_up: 10_000,
            reference: 5_000,
            stationary: 2,
            power: 1,
            delay_runs: 1,
        }
    };
    let only = std::env::var("DRIFT_QUALITY_STREAM").ok();
    println!(
        "drift test quality: reference {} events (exact), windows of {WINDOW} events (exact), \
         a test fires at p <= {:.2e} (family alpha {} per evaluation over {} tests; |z| >= {:.2})",
        sizes.reference,
        BUDGET.per_test(),
        BUDGET.alpha,
        BUDGET.tests,
        BUDGET.z_threshold()
    );
    println!();
    println!(
        "## False alarms on stationary windows ({} windows per stream)",
        sizes.stationary
    );
    println!();
    println!("| stream | test | p <= 0.01 (expected 0.01) | p <= 0.001 | fires (p <= alpha/m) |");
    println!("|---|---|---|---|---|");
    let kinds: Vec<StreamKind> = StreamKind::ALL
        .into_iter()
        .filter(|k| only.as_deref().is_none_or(|o| k.name().starts_with(o)))
        .collect();
    let references: Vec<Reference> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| reference(k, sizes.reference, 100 + i as u64))
        .collect();
    for (i, r) in references.iter().enumerate() {
        let (hits, family, cusum_alarms) = stationary(r, sizes.stationary, 1_000 + i as u64);
        for (name, h) in TESTS.iter().zip(hits) {
            let applies = match *name {
                "chi_square" => r.kind.is_categorical(),
                "naive_mean" => r.kind.is_store(),
                _ => !r.kind.is_categorical(),
            };
            if !applies {
                continue;
            }
            let heavy_ties = r
                .numeric
                .as_ref()
                .is_some_and(|p| p.largest_tie() > AD_MAX_TIE_SHARE);
            let label = if *name == "anderson" && heavy_ties {
                "anderson (reported only: heavy ties)"
            } else if *name == "variance" {
                "variance (reported only)"
            } else if *name == "naive_mean" {
                "mean with n = events (not used)"
            } else {
                name
            };
            println!(
                "| {} | {label} | {} | {} | {} |",
                r.kind.name(),
                rate(h[0], sizes.stationary),
                rate(h[1], sizes.stationary),
                rate(h[2], sizes.stationary)
            );
        }
        println!(
            "| {} | cusum (alarms per sub-window) | | | {} |",
            r.kind.name(),
            rate(cusum_alarms, sizes.stationary * SUB_WINDOWS)
        );
        println!(
            "| {} | **judged family** | | | {} |",
            r.kind.name(),
            rate(family, sizes.stationary)
        );
    }
    println!();
    println!(
        "## Power per window (shift from the window's first event; {} windows each)",
        sizes.power
    );
    println!();
    println!("| stream | shift | ks | anderson | mean | variance | abs_dev | chi_square | judged family |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, r) in references.iter().enumerate() {
        for (label, shift) in shifts(r.kind) {
            let (hits, family) = power(r, shift, sizes.power, 2_000 + i as u64);
            let cells: Vec<String> = TESTS
                .iter()
                .zip(hits)
                .filter(|(name, _)| **name != "naive_mean")
                .map(|(name, h)| {
                    if r.kind.is_categorical() == (*name == "chi_square") {
                        rate(h, sizes.power)
                    } else {
                        "".into()
                    }
                })
                .collect();
            println!(
                "| {} | {label} | {} | {} |",
                r.kind.name(),
                cells.join(" | "),
                rate(family, sizes.power)
            );
        }
    }
    println!();
    println!(
        "## Detection delay, onset uniform over a window (sliding 5 x 1,000 and CUSUM per sub-window; {} runs each)",
        sizes.delay_runs
    );
    println!();
    println!("| stream | shift | within 5,000 | within 10,000 | mean delay | max delay | found by CUSUM first | false alarms before onset |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in references.iter().enumerate() {
        for (label, shift) in shifts(r.kind) {
            let runs: Vec<Delay> = (0..sizes.delay_runs)
                .map(|s| delay(r, shift, 3_000 + 100 * i as u64 + s as u64, sizes.give_up))
                .collect();
            let found: Vec<usize> = runs.iter().filter_map(|d| d.events).collect();
            let within = |n: usize| found.iter().filter(|&&x| x <= n).count();
            let mean = if found.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{:.0}",
                    found.iter().sum::<usize>() as f64 / found.len() as f64
                )
            };
            let max = if found.len() < runs.len() {
                format!("> {}", sizes.give_up)
            } else {
                found.iter().max().map_or("-".into(), |m| m.to_string())
            };
            println!(
                "| {} | {label} | {}/{} | {}/{} | {mean} | {max} | {} | {} |",
                r.kind.name(),
                within(5_000),
                runs.len(),
                within(10_000),
                runs.len(),
                runs.iter().filter(|d| d.by_cusum).count(),
                runs.iter().map(|d| d.false_alarms).sum::<u32>()
            );
        }
    }
}
