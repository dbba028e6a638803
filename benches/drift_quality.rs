//! Detection quality of the drift monitor, end to end (not a timing
//! benchmark): every kind of column of `drift::synthetic::StreamKind`
//! (normal, log-normal, exponential, zero-inflated, bimodal, integer ties,
//! decimal prices, categorical, store features repeated per entity and in
//! bursts of new entities) as the one watched column of a monitor, fed
//! through the service's own `Recorder` → `Evaluator` (windows, tests at
//! the family budget, CUSUM, hysteresis, messages) with the default
//! `[drift]` (sliding 5,000 = 5 × 1,000 events, `false_alarm_rate` 1e-3,
//! fire after 1, resolve after 5), against a reference of 50,000 events.
//!
//! - **False alarms**: share of the evaluations (one per 1,000-event
//!   sub-window, each judging a 5,000-event window) in which any statistic
//!   of the column was bad, and the `firing` messages, over 2,000 windows
//!   of 5,000 events per kind.
//! - **Detection**: the shift starts at a uniformly random event of a
//!   window (after 10,000 + U[0, 5,000) stationary events); delay = events
//!   from the first shifted event to the first `firing` message on the
//!   column. The shift runs for 50,000 events, then the stream returns to
//!   stationary for 30,000: the messages of the column are counted (one
//!   firing and one resolved per episode is the goal).

//!
//! `cargo bench --bench drift_quality` prints the tables of docs/drift.md.
//! Run as a test (`cargo test --benches`, no `--bench` argument) it makes
//! one short pass of each row.

use std::path::Path;
use std::sync::{Arc, Mutex};

use driftline::drift::columns::{ColumnKind, Encoding, ValueSource, Watched};
use driftline::drift::distinct::EntityCounter;
use driftline::drift::monitor::{
    AlertState, ColumnSettings, DriftConfig, DriftStatus, Evaluator, Output, Plan, Recorder,
    RecorderStats, Window,
};
use driftline::drift::profile::{
    ColumnProfile, ColumnSketch, Profile, ProfileSource, ReferenceEntities, PROFILE_FORMAT,
};
use driftline::drift::sketch::{CategoricalSketch, NumericSketch};
use driftline::drift::synthetic::{exact_reference, Stream, StreamKind, StreamShift};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const REFERENCE: usize = 50_000;
const WINDOW: usize = 5_000;
/// Run lengths: the full measurement, or the quick pass of `cargo test`.
struct Sizes {
    /// Stationary windows per kind.
    windows: usize,
    /// Runs per shift.
    runs: usize,
    /// Shifted events per run (a run not detected by then counts as not
    /// detected).
    shifted: usize,
    /// Stationary events after the shift.
    tail: usize,
    /// Shifts per kind of column (the first ones of [`shifts`]).
    shifts: usize,
}

const FULL: Sizes = Sizes {
    windows: 2_000,
    runs: 20,
    shifted: 50_000,
    tail: 30_000,
    shifts: 4,
};

const QUICK: Sizes = Sizes {
    windows: 2,
    runs: 1,
    shifted: 6_000,
    // Resolving takes a clean window (5,000) and `resolve_after` (5)
    // evaluations of 1,000.
    tail: 12_000,
    shifts: 1,
};

const CATEGORIES: [&str; 8] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];

/// The reference profile of one stream kind (one column, and a score the
/// monitor is told not to judge).
fn profile(kind: StreamKind) -> Profile {
    let mut stream = Stream::new(kind, 1);
    let draws: Vec<_> = (0..REFERENCE)
        .map(|_| stream.next(StreamShift::None))
        .collect();
    let values: Vec<f64> = draws.iter().map(|d| f64::from(d.value)).collect();
    let column = if kind.is_categorical() {
        ColumnProfile {
            name: "x".into(),
            sketch: ColumnSketch::Categorical(CategoricalSketch::reference(
                draws.iter().map(|d| Some(CATEGORIES[d.category])),
                32,
            )),
            values: None,
            season: None,
        }
    } else {
        ColumnProfile {
            name: "x".into(),
            sketch: ColumnSketch::Numeric(NumericSketch::reference(&values, 10).expect("sketch")),
            values: Some(exact_reference(&values)),
            season: None,
        }
    };
    let mut entities = EntityCounter::new();
    draws
        .iter()
        .for_each(|d| entities.update(&d.entity.to_string()));
    let stats = entities.stats();
    let scores = vec![0.5; 100];
    Profile {
        format: PROFILE_FORMAT,
        id: format!("quality/{}@bench", kind.name()),
        model: "quality".into(),
        model_version: "1".into(),
        created_ms: 0,
        source: ProfileSource {
            path: "generated".into(),
            rows: REFERENCE as u64,
            sha256: String::new(),
        },
        entities: Some(ReferenceEntities {
            column: "entity_id".into(),
            events: stats.events,
            distinct: stats.distinct,
            kish: stats.kish(),
        }),
        columns: vec![column],
        score: ColumnProfile {
            name: "score".into(),
            sketch: ColumnSketch::Numeric(NumericSketch::reference(&scores, 2).expect("score")),
            values: None,
            season: None,
        },
    }
}

fn watched(kind: StreamKind) -> Watched {
    let mut w = Watched::new("quality", "1");
    if kind.is_categorical() {
        let vocabulary = CATEGORIES.iter().map(|c| c.to_string()).collect();
        w.push("x", ColumnKind::Categorical, Encoding::OneHot(vocabulary));
    } else {
        let source = if kind.is_store() {
            ValueSource::Store
        } else {
            ValueSource::Event
        };
        w.push_from("x", ColumnKind::Numeric, Encoding::Value, source);
    }
    w
}

/// A monitor of one stream kind: what an evaluation saw is tallied.
struct Monitor {
    kind: StreamKind,
    stream: Stream,
    recorder: Recorder,
    rx: std::sync::mpsc::Receiver<Window>,
    evaluator: Evaluator,
    /// Judged evaluations, evaluations with a bad statistic of the column.
    tally: Arc<Mutex<(u64, u64)>>,
    row: Vec<f32>,
    events: i64,
}

impl Monitor {
    fn new(kind: StreamKind, reference: &Profile, seed: u64) -> Monitor {
        let config = DriftConfig {
            prediction: ColumnSettings {
                enabled: Some(false),
                ..ColumnSettings::default()
            },
            ..DriftConfig::default()
        };
        let plan = Arc::new(
            Plan::new(
                &watched(kind),
                reference.clone(),
                Path::new("quality"),
                config,
            )
            .expect("plan"),
        );
        let stats = Arc::new(RecorderStats::default());
        let (recorder, rx) = Recorder::new(plan.clone(), stats.clone());
        let tally = Arc::new(Mutex::new((0, 0)));
        let t = tally.clone();
        let sink = move |status: &DriftStatus, _: &[Output], _: std::time::Duration| {
            let Some(col) = status.columns.first() else {
                return;
            };
            if col.skipped.is_none() && !col.statistics.is_empty() {
                let mut t = t.lock().expect("tally");
                t.0 += 1;
                t.1 += u64::from(col.statistics.iter().any(|j| j.bad));
            }
        };
        let evaluator = Evaluator::new(
            plan,
            stats,
            Arc::new(parking_lot::RwLock::new(DriftStatus::default())),
            Box::new(sink),
        );
        Monitor {
            kind,
            stream: Stream::new(kind, seed),
            recorder,
            rx,
            evaluator,
            tally,
            row: vec![0.0; if kind.is_categorical() { 8 } else { 1 }],
            events: 0,
        }
    }

    /// Feeds `n` events; returns the alert messages they caused.
    fn feed(&mut self, n: usize, shift: StreamShift) -> Vec<(AlertState, usize)> {
        let mut messages = Vec::new();
        let mut entity = String::new();
        for i in 0..n {
            let d = self.stream.next(shift);
            if self.kind.is_categorical() {
                self.row.iter_mut().for_each(|v| *v = 0.0);
                self.row[d.category] = 1.0;
            } else {
                self.row[0] = d.value;
            }
            entity.clear();
            entity.push_str(&d.entity.to_string());
            self.events += 1;
            self.recorder
                .observe(&self.row, &[false], 0.5, self.events, &entity);
            for window in self.rx.try_iter() {
                for o in self.evaluator.push(window) {
                    if let Output::Alert(a) = o {
                        messages.push((a.state, i + 1));
                    }
                }
            }
        }
        messages
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
            ("mean +0.125σ", StreamShift::Mean(0.125)),
            ("mean +0.25σ", StreamShift::Mean(0.25)),
            ("variance ×1.25", StreamShift::Variance(1.25)),
            ("variance ×1.5", StreamShift::Variance(1.5)),
        ]
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { QUICK };
    let (windows, runs) = (sizes.windows, sizes.runs);
    println!(
        "### False alarms on stationary streams ({windows} windows of {WINDOW} events per kind)"
    );
    println!();
    println!("| column | evaluations | with a bad statistic | share | firing messages |");
    println!("|---|---|---|---|---|");
    let references: Vec<Profile> = StreamKind::ALL.iter().map(|&k| profile(k)).collect();
    for (kind, reference) in StreamKind::ALL.into_iter().zip(&references) {
        let mut m = Monitor::new(kind, reference, 100);
        let messages = m.feed(windows * WINDOW, StreamShift::None);
        let (judged, bad) = *m.tally.lock().expect("tally");
        let firing = messages
            .iter()
            .filter(|(s, _)| *s == AlertState::Firing)
            .count();
        println!(
            "| {} | {judged} | {bad} | {:.4} | {firing} |",
            kind.name(),
            bad as f64 / judged.max(1) as f64
        );
    }
    println!();
    println!("### Detection, onset uniform over a window ({runs} runs per row)");
    println!();
    println!("| column | shift | within 5,000 | within 10,000 | mean delay | max delay | messages per episode (firing + resolved) |");
    println!("|---|---|---|---|---|---|---|");
    for (kind, reference) in StreamKind::ALL.into_iter().zip(&references) {
        for (label, shift) in shifts(kind).into_iter().take(sizes.shifts) {
            let mut delays = Vec::new();
            let mut episodes = Vec::new();
            for run in 0..runs {
                let mut m = Monitor::new(kind, reference, 1_000 + run as u64);
                let lead = 10_000 + StdRng::seed_from_u64(run as u64).random_range(0..WINDOW);
                let before = m.feed(lead, StreamShift::None);
                let shifted = m.feed(sizes.shifted, shift);
                let delay = shifted
                    .iter()
                    .find(|(s, _)| *s == AlertState::Firing)
                    .map(|&(_, at)| at);
                delays.push(delay);
                if delay.is_some() {
                    let after = m.feed(sizes.tail, StreamShift::None);
                    let count = |s: AlertState| {
                        before
                            .iter()
                            .chain(&shifted)
                            .chain(&after)
                            .filter(|(x, _)| *x == s)
                            .count()
                    };
                    episodes.push((count(AlertState::Firing), count(AlertState::Resolved)));
                }
            }
            let found: Vec<usize> = delays.iter().flatten().copied().collect();
            let within = |n: usize| found.iter().filter(|&&x| x <= n).count();
            let mean = if found.is_empty() {
                f64::NAN
            } else {
                found.iter().sum::<usize>() as f64 / found.len() as f64
            };
            let one_each = episodes.iter().filter(|&&e| e == (1, 1)).count();
            println!(
                "| {} | {label} | {}/{runs} | {}/{runs} | {mean:.0} | {} | {one_each}/{} one firing + one resolved |",
                kind.name(),
                within(5_000),
                within(10_000),
                if found.len() < delays.len() {
                    format!("> {}", sizes.shifted)
                } else {
                    found.iter().max().map_or("-".into(), |m| m.to_string())
                },
                episodes.len()
            );
        }
    }
}
