//! Drift sketches on the hot path and at window close, for an event of 10
//! monitored features shaped like the demo's card events: 7 numbers (normal,
//! heavy-tailed and discrete, 1% missing) and 3 categoricals.
//!
//! - `update/10 features`: one event into the 10 window sketches (goal
//!   ≤ 300 ns). The windows keep growing during the run, so the time includes
//!   the KLL compactions a long window pays.
//! - `close/10 features`: all statistics of 10 windows of 20k events against
//!   their references (what a window close computes, after `flush`).
//! - `evaluate/fraud-mlp, 5 x 1000`: what the evaluator thread does when a
//!   sub-window closes under the service defaults (a sliding window of 5
//!   sub-windows of 1,000 events): merge the 5, judge the fraud model's 14
//!   inputs and its score against the bundled reference, update the alert
//!   states. Fed with the encoded rows and scores of the model's fixtures.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use driftline::drift::monitor::{
    DriftConfig, DriftStatus, Evaluator, Plan, Recorder, RecorderStats, Window,
};
use driftline::drift::profile::Profile as ReferenceProfile;
use driftline::drift::sketch::{
    compare_categorical, compare_numeric, CategoricalSketch, NumericSketch, DEFAULT_TOP_K,
};
use driftline::drift::stats::DEFAULT_BINS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal, Poisson};

const NUMERIC: usize = 7;
const CATEGORICAL: usize = 3;
const MERCHANTS: [&str; 8] = [
    "grocery",
    "online",
    "travel",
    "fuel",
    "atm",
    "restaurant",
    "pharmacy",
    "electronics",
];
const CHANNELS: [&str; 3] = ["pos", "online", "contactless"];
const COUNTRIES: [&str; 6] = ["DE", "FR", "NL", "US", "GB", "ES"];

struct Event {
    numbers: [f64; NUMERIC],
    categories: [&'static str; CATEGORICAL],
}

fn events(n: usize, seed: u64, shift: f64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(shift, 1.0).expect("valid");
    let amount = LogNormal::new(3.5 + shift, 1.2).expect("valid");
    let count = Poisson::new(4.0 + shift.abs()).expect("valid");
    (0..n)
        .map(|_| {
            let mut numbers = [0.0; NUMERIC];
            for (i, x) in numbers.iter_mut().enumerate() {
                *x = if rng.random_bool(0.01) {
                    f64::NAN
                } else {
                    match i % 3 {
                        0 => normal.sample(&mut rng),
                        1 => amount.sample(&mut rng),
                        _ => count.sample(&mut rng),
                    }
                };
            }
            Event {
                numbers,
                categories: [
                    MERCHANTS[rng.random_range(0..MERCHANTS.len())],
                    CHANNELS[rng.random_range(0..CHANNELS.len())],
                    COUNTRIES[rng.random_range(0..COUNTRIES.len())],
                ],
            }
        })
        .collect()
}

struct Profile {
    numeric: Vec<NumericSketch>,
    categorical: Vec<CategoricalSketch>,
}

impl Profile {
    fn reference(events: &[Event]) -> Self {
        Self {
            numeric: (0..NUMERIC)
                .map(|i| {
                    let column: Vec<f64> = events.iter().map(|e| e.numbers[i]).collect();
                    NumericSketch::reference(&column, DEFAULT_BINS).expect("reference")
                })
                .collect(),
            categorical: (0..CATEGORICAL)
                .map(|i| {
                    CategoricalSketch::reference(
                        events.iter().map(|e| Some(e.categories[i])),
                        DEFAULT_TOP_K,
                    )
                })
                .collect(),
        }
    }

    fn empty_like(&self) -> Self {
        Self {
            numeric: self.numeric.iter().map(NumericSketch::empty_like).collect(),
            categorical: self
                .categorical
                .iter()
                .map(CategoricalSketch::empty_like)
                .collect(),
        }
    }

    #[inline]
    fn update(&mut self, e: &Event) {
        for (s, &x) in self.numeric.iter_mut().zip(&e.numbers) {
            s.update(x);
        }
        for (s, &c) in self.categorical.iter_mut().zip(&e.categories) {
            s.update(c);
        }
    }
}

fn drift(c: &mut Criterion) {
    let reference = Profile::reference(&events(50_000, 1, 0.0));
    let stream = events(8_192, 2, 0.2);

    let mut group = c.benchmark_group("drift");
    let mut window = reference.empty_like();
    let mut i = 0usize;
    group.bench_function("update/10 features", |b| {
        b.iter(|| {
            i = (i + 1) % stream.len();
            window.update(black_box(&stream[i]));
        })
    });

    let mut window = reference.empty_like();
    for e in events(20_000, 3, 0.2).iter() {
        window.update(e);
    }
    // What a window close does first; compare would otherwise merge the
    // staging KLL into a copy on every call.
    window.numeric.iter_mut().for_each(NumericSketch::flush);
    group.bench_function("close/10 features", |b| {
        b.iter(|| {
            for (r, w) in reference.numeric.iter().zip(&window.numeric) {
                black_box(compare_numeric(r, w).expect("same edges"));
            }
            for (r, w) in reference.categorical.iter().zip(&window.categorical) {
                black_box(compare_categorical(r, w).expect("same categories"));
            }
        })
    });

    // The service's hot path: one scored event of the fraud MLP into the
    // recorder (14 inputs and the score: histograms, KLL, exact values,
    // the entity counter), sub-window closes every 1,000 events included.
    let (plan, rows) = fraud_plan();
    let stats = Arc::new(RecorderStats::default());
    let (mut recorder, _rx) = Recorder::new(plan.clone(), stats);
    let cards: Vec<String> = (0..1_200).map(|c| format!("card-{c:06}")).collect();
    let missing = vec![false; plan.profile().columns.len()];
    let mut i = 0usize;
    group.bench_function("observe/fraud-mlp recorder", |b| {
        b.iter(|| {
            i += 1;
            let (row, score) = &rows[i % rows.len()];
            recorder.observe(
                black_box(row),
                &missing,
                *score,
                common::START_MS + i as i64,
                &cards[(i * 7919) % cards.len()],
            );
        })
    });

    let (mut evaluator, sub_windows) = fraud_evaluator(6);
    for w in &sub_windows[..5] {
        evaluator.push(w.clone());
    }
    let next = &sub_windows[5];
    group.bench_function("evaluate/fraud-mlp, 5 x 1000", |b| {
        b.iter_batched(
            || next.clone(),
            |w| black_box(evaluator.push(w)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The plan of the bundled fraud MLP under the default drift settings,
/// and its fixture rows (encoded input, score).
fn fraud_plan() -> (Arc<Plan>, Vec<(Vec<f32>, f32)>) {
    let dir = common::repo("models/fraud-mlp/1");
    let model = common::model("models/fraud-mlp/1");
    let path = dir.join("reference.json");
    let profile = ReferenceProfile::load(&path).expect("bundled reference");
    let watched = driftline::app::watched_columns(model.manifest());
    let plan = Arc::new(Plan::new(&watched, profile, &path, DriftConfig::default()).expect("plan"));
    let text = std::fs::read_to_string(common::repo("tests/fixtures/scores/fraud-mlp-1.jsonl"))
        .expect("fixture file");
    let rows: Vec<(Vec<f32>, f32)> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("fixture json");
            let input = v["input"].as_array().expect("input array");
            let row = input.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32);
            (row.collect(), v["score"].as_f64().unwrap_or(0.0) as f32)
        })
        .collect();
    (plan, rows)
}

/// The service's evaluator for the bundled fraud MLP under the default
/// drift settings, and `n` closed sub-windows of its fixture rows.
fn fraud_evaluator(n: usize) -> (Evaluator, Vec<Window>) {
    let (plan, rows) = fraud_plan();
    let per_window = plan.config().window_events / u64::from(plan.config().sub_windows);
    let stats = Arc::new(RecorderStats::default());
    let (mut recorder, rx) = Recorder::new(plan.clone(), stats.clone());
    let missing = vec![false; plan.profile().columns.len()];
    // About as many cards per window as the bundled data has.
    let cards: Vec<String> = (0..1_200).map(|c| format!("card-{c:06}")).collect();
    for i in 0..n as u64 * per_window {
        let (row, score) = &rows[i as usize % rows.len()];
        let card = &cards[(i as usize * 7919) % cards.len()];
        recorder.observe(row, &missing, *score, common::START_MS + i as i64, card);
    }
    let windows: Vec<Window> = rx.try_iter().collect();
    assert_eq!(windows.len(), n, "every sub-window closed");
    let status = Arc::new(parking_lot::RwLock::new(DriftStatus::default()));
    let evaluator = Evaluator::new(plan, stats, status, Box::new(|_, _, _| {}));
    (evaluator, windows)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = drift
}
criterion_main!(benches);
