//! A synthetic stream and model for drift tests and the detection-quality
//! benchmark: a toy model with one number (`amount`, N(50, 10²)), one
//! one-hot categorical (`channel`, shares 40/30/20/10%) and one boolean,
//! its reference profile, and the shifts the benchmark measures (mean,
//! variance, category share, missing values). Not used by the service.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::columns::{ColumnKind, Encoding, Watched};
use super::monitor::{
    DriftConfig, DriftStatus, Evaluator, MonitorError, Output, Plan, Recorder, RecorderStats,
    Window,
};
use super::profile::{ColumnProfile, ColumnSketch, Profile, ProfileSource, PROFILE_FORMAT};
use super::sketch::{CategoricalSketch, NumericSketch};
use super::DriftError;

/// The toy model's name and version, as alerts and the profile name it.
pub const MODEL: (&str, &str) = ("toy", "7");

pub const CHANNELS: [&str; 4] = ["chip", "contactless", "online", "swipe"];
pub const SHARES: [f64; 4] = [0.4, 0.3, 0.2, 0.1];
pub const WIDTH: usize = 6;

/// How the stream is changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shift {
    None,
    /// Amount mean moves by this many σ.
    Mean(f64),
    /// Amount σ scales by this factor.
    Scale(f64),
    /// `online` gains this share (points), taken evenly from the others.
    Surge(f64),
    /// Amount is missing with this probability.
    Missing(f64),
}

pub struct Event {
    pub amount: Option<f64>,
    pub channel: usize,
    pub international: bool,
    pub score: f32,
}

pub fn draw(rng: &mut StdRng, shift: Shift) -> Event {
    let (mean, sd) = match shift {
        Shift::Mean(d) => (50.0 + d * 10.0, 10.0),
        Shift::Scale(f) => (50.0, 10.0 * f),
        _ => (50.0, 10.0),
    };
    let amount = Normal::new(mean, sd).map_or(mean, |n| n.sample(rng));
    let mut shares = SHARES;
    if let Shift::Surge(points) = shift {
        for (i, s) in shares.iter_mut().enumerate() {
            *s += if i == 2 { points } else { -points / 3.0 };
        }
    }
    let u: f64 = rng.random();
    let mut channel = 3;
    let mut acc = 0.0;
    for (i, s) in shares.iter().enumerate() {
        acc += s;
        if u < acc {
            channel = i;
            break;
        }
    }
    let missing = matches!(shift, Shift::Missing(p) if rng.random_bool(p));
    Event {
        amount: (!missing).then_some(amount),
        channel,
        international: rng.random_bool(0.05),
        score: (1.0 / (1.0 + (-(amount - 50.0) / 10.0).exp())) as f32,
    }
}

pub fn encode(e: &Event) -> ([f32; WIDTH], [bool; 3]) {
    let mut row = [0.0f32; WIDTH];
    row[0] = e.amount.unwrap_or(0.0) as f32;
    row[1 + e.channel] = 1.0;
    row[5] = f32::from(u8::from(e.international));
    (row, [e.amount.is_none(), false, false])
}

/// The toy model's watched columns: `amount` (a number), `channel`
/// (one-hot over [`CHANNELS`]) and `international` (a boolean), [`WIDTH`]
/// floats in all.
pub fn watched() -> Watched {
    let mut w = Watched::new(MODEL.0, MODEL.1);
    w.push("amount", ColumnKind::Numeric, Encoding::Value);
    w.push(
        "channel",
        ColumnKind::Categorical,
        Encoding::OneHot(CHANNELS.iter().map(|c| c.to_string()).collect()),
    );
    w.push("international", ColumnKind::Boolean, Encoding::Value);
    w
}

/// A reference profile of `n` stationary events drawn with `seed`.
pub fn profile(seed: u64, n: usize) -> Result<Profile, DriftError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let events: Vec<Event> = (0..n).map(|_| draw(&mut rng, Shift::None)).collect();
    let amounts: Vec<f64> = events
        .iter()
        .map(|e| e.amount.unwrap_or(f64::NAN))
        .collect();
    let scores: Vec<f64> = events.iter().map(|e| f64::from(e.score)).collect();
    let column = |name: &str, sketch| ColumnProfile {
        name: name.into(),
        sketch,
    };
    Ok(Profile {
        format: PROFILE_FORMAT,
        id: "toy/7@test".into(),
        model: "toy".into(),
        model_version: "7".into(),
        created_ms: 0,
        source: ProfileSource {
            path: "generated".into(),
            rows: n as u64,
            sha256: String::new(),
        },
        columns: vec![
            column(
                "amount",
                ColumnSketch::Numeric(NumericSketch::reference(&amounts, 10)?),
            ),
            column(
                "channel",
                ColumnSketch::Categorical(CategoricalSketch::reference(
                    events.iter().map(|e| Some(CHANNELS[e.channel])),
                    32,
                )),
            ),
            column(
                "international",
                ColumnSketch::Categorical(CategoricalSketch::reference(
                    events
                        .iter()
                        .map(|e| Some(if e.international { "true" } else { "false" })),
                    32,
                )),
            ),
        ],
        score: column(
            "score",
            ColumnSketch::Numeric(NumericSketch::reference(&scores, 10)?),
        ),
    })
}

/// Recorder and evaluator on one thread, fed from [`draw`]: every window
/// that closes is evaluated at once, so a run is deterministic per seed.
pub struct Simulation {
    pub recorder: Recorder,
    pub rx: Receiver<Window>,
    pub evaluator: Evaluator,
    outputs: Arc<Mutex<Vec<Output>>>,
    pub status: Arc<RwLock<DriftStatus>>,
    rng: StdRng,
    /// Events fed so far.
    pub events: u64,
}

impl Simulation {
    /// A monitor of the toy model against the profile of 50,000 events
    /// (seed 1), fed from `seed`.
    pub fn new(config: DriftConfig, seed: u64) -> Result<Simulation, MonitorError> {
        let profile = profile(1, 50_000).map_err(|source| MonitorError::Column {
            column: "amount".into(),
            source,
        })?;
        let plan = Arc::new(Plan::new(
            &watched(),
            profile,
            Path::new("toy/reference.json"),
            config,
        )?);
        let stats = Arc::new(RecorderStats::default());
        let (recorder, rx) = Recorder::new(plan.clone(), stats.clone());
        let outputs = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(RwLock::new(DriftStatus::default()));
        let sink = outputs.clone();
        let evaluator = Evaluator::new(
            plan,
            stats,
            status.clone(),
            Box::new(move |_, o, _| sink.lock().extend_from_slice(o)),
        );
        Ok(Simulation {
            recorder,
            rx,
            evaluator,
            outputs,
            status,
            rng: StdRng::seed_from_u64(seed),
            events: 0,
        })
    }

    /// The same simulation with performance readings judged at each
    /// evaluation.
    pub fn with_performance(self, source: super::monitor::PerformanceSource) -> Simulation {
        let evaluator = self.evaluator.with_performance(source);
        Simulation { evaluator, ..self }
    }

    /// Closes a due time window and evaluates it.
    pub fn tick(&mut self) {
        self.recorder.tick();
        while let Ok(w) = self.rx.try_recv() {
            self.evaluator.push(w);
        }
    }

    /// Feeds one event; evaluates a window that closes.
    pub fn step(&mut self, shift: Shift) {
        let e = draw(&mut self.rng, shift);
        let (row, missing) = encode(&e);
        self.recorder
            .observe(&row, &missing, e.score, self.events as i64);
        self.events += 1;
        while let Ok(w) = self.rx.try_recv() {
            self.evaluator.push(w);
        }
    }

    /// Feeds `n` events.
    pub fn feed(&mut self, n: usize, shift: Shift) {
        for _ in 0..n {
            self.step(shift);
        }
    }

    /// Every output so far.
    pub fn outputs(&self) -> Vec<Output> {
        self.outputs.lock().clone()
    }

    /// Outputs so far; clears them.
    pub fn take_outputs(&self) -> Vec<Output> {
        std::mem::take(&mut *self.outputs.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watched_columns_cover_the_encoded_row() {
        let w = watched();
        assert_eq!(w.width(), WIDTH);
        let mut rng = StdRng::seed_from_u64(3);
        let (row, missing) = encode(&draw(&mut rng, Shift::None));
        assert_eq!((row.len(), missing.len()), (w.width(), w.columns().len()));
    }
}
