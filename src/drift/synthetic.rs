//! A synthetic stream and model for drift tests and the detection-quality
//! benchmark: a toy model with one number (`amount`, N(50, 10²)), one
//! one-hot categorical (`channel`, shares 40/30/20/10%) and one boolean,
//! its reference profile, and the shifts the benchmark measures (mean,
//! variance, category share, missing values); and seeded [`Stream`]s of
//! every kind of column ([`StreamKind`]: skewed, heavy-tailed, tied,
//! decimal, categorical, repeated per entity) with the shifts
//! `benches/drift_quality.rs` measures ([`StreamShift`]). Not used by the
//! service.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::columns::{ColumnKind, Encoding, Watched};
use super::exact::{ColumnValues, DEFAULT_REFERENCE_MAX_VALUES};
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
        values: None,
        season: None,
    };
    let numeric = |name: &str, values: &[f64]| -> Result<ColumnProfile, DriftError> {
        Ok(ColumnProfile {
            name: name.into(),
            sketch: ColumnSketch::Numeric(NumericSketch::reference(values, 10)?),
            values: Some(exact_reference(values)),
            season: None,
        })
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
        entities: None,
        columns: vec![
            numeric("amount", &amounts)?,
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
        score: numeric("score", &scores)?,
    })
}

/// A reference column of `values` as a model reads them (`f32`; NaN is
/// missing), exact up to the reference cap, centred on the median.
pub fn exact_reference(values: &[f64]) -> ColumnValues {
    let mut column = ColumnValues::new(DEFAULT_REFERENCE_MAX_VALUES, 0.0);
    values.iter().for_each(|&v| column.update(v as f32));
    column.recentred_on_median()
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
            .observe(&row, &missing, e.score, self.events as i64, "");
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

// ---------------------------------------------------------------------------
// Streams of every kind of column, for the detection-quality harness
// (`benches/drift_quality.rs`).

/// Kinds of stationary column the harness measures: shapes that break the
/// assumptions of one test or another (skew, heavy tails, ties, point
/// masses, two modes, decimal grids, repeated store values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// N(50, 10²).
    Normal,
    /// exp(N(3, 1)): skewness 6, kurtosis 114.
    LogNormal,
    /// Exponential, mean 20.
    Exponential,
    /// 60% exact zeros, else exp(N(3, 0.8)).
    ZeroInflated,
    /// ½ N(20, 4²) + ½ N(60, 8²).
    Bimodal,
    /// Poisson(3): integers, heavy ties.
    IntegerTies,
    /// Prices in cents (9.99, 0.10, 1.10, ...): a decimal grid that `f32`
    /// does not represent exactly, with a few very common prices.
    DecimalPrices,
    /// Eight categories, shares 30/20/15/12/10/6/4/3%.
    Categorical,
    /// A store feature: 20,000 entities with skewed activity (log-normal
    /// weights), each event repeating its entity's value. Window and
    /// reference share the population.
    StoreRepeated,
    /// A store feature of entities that come in bursts: each entity is new
    /// (value exp(N(7, 0.5))) and makes 1 + Geometric(0.25) events in a
    /// row (mean 4), so a window holds a fresh sample of ~1,250 entities
    /// each repeated: the case where events are not independent draws.
    StoreBursty,
}

impl StreamKind {
    /// Every kind, in the order the harness reports them.
    pub const ALL: [StreamKind; 10] = [
        StreamKind::Normal,
        StreamKind::LogNormal,
        StreamKind::Exponential,
        StreamKind::ZeroInflated,
        StreamKind::Bimodal,
        StreamKind::IntegerTies,
        StreamKind::DecimalPrices,
        StreamKind::Categorical,
        StreamKind::StoreRepeated,
        StreamKind::StoreBursty,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Normal => "normal",
            StreamKind::LogNormal => "lognormal",
            StreamKind::Exponential => "exponential",
            StreamKind::ZeroInflated => "zero-inflated",
            StreamKind::Bimodal => "bimodal",
            StreamKind::IntegerTies => "integer ties",
            StreamKind::DecimalPrices => "decimal prices",
            StreamKind::Categorical => "categorical",
            StreamKind::StoreRepeated => "store, repeated per entity",
            StreamKind::StoreBursty => "store, bursts of new entities",
        }
    }

    pub fn is_categorical(self) -> bool {
        self == StreamKind::Categorical
    }

    /// Whether events of one entity repeat its value (a store feature).
    pub fn is_store(self) -> bool {
        matches!(self, StreamKind::StoreRepeated | StreamKind::StoreBursty)
    }
}

/// Category shares of [`StreamKind::Categorical`].
pub const CATEGORY_SHARES: [f64; 8] = [0.30, 0.20, 0.15, 0.12, 0.10, 0.06, 0.04, 0.03];

/// Entities of [`StreamKind::StoreRepeated`].
pub const STORE_ENTITIES: usize = 20_000;

/// A change of a stream, from some event on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StreamShift {
    None,
    /// Every value moves by this many stationary standard deviations (for
    /// zero-inflated columns only the non-zero part moves, by as much as
    /// makes the overall mean move this far).
    Mean(f64),
    /// The variance is multiplied by this factor: values are spread about
    /// the stationary mean by its square root (the non-zero part's own
    /// mean for zero-inflated columns).
    Variance(f64),
    /// Category 1 (20%) gains this share, taken from the others in
    /// proportion.
    CategoryPoints(f64),
}

/// One drawn event of a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// The model input's value (numeric kinds).
    pub value: f32,
    /// The category (categorical kind).
    pub category: usize,
    /// The event's entity: its own id for event features (every event a
    /// new entity), the store entity otherwise.
    pub entity: u32,
}

/// A seeded stream of one kind of column; see [`StreamKind`].
pub struct Stream {
    kind: StreamKind,
    rng: StdRng,
    /// Stationary mean and standard deviation (numeric kinds); see
    /// [`Stream::stationary_moments`].
    mean: f64,
    sd: f64,
    /// Mean of the non-zero part (zero-inflated).
    nonzero_mean: f64,
    /// Store values and cumulative activity of the entities.
    store: Vec<f64>,
    activity: Vec<f64>,
    events: u32,
    /// The current burst (bursty store kind): events left, value, entity.
    burst: (u32, f64, u32),
}

impl Stream {
    /// A stream of `kind` drawn from `seed`. Store entities (values and
    /// activity) come from a fixed seed, so every stream of that kind sees
    /// the same population, as a reference and the live traffic do.
    pub fn new(kind: StreamKind, seed: u64) -> Stream {
        let mut population = StdRng::seed_from_u64(0x5eed_0fe7_7177);
        let (store, activity) = if kind == StreamKind::StoreRepeated {
            let value = rand_distr::LogNormal::new(7.0, 0.5).ok();
            let weight = rand_distr::LogNormal::new(0.0, 1.0).ok();
            let mut total = 0.0;
            let mut store = Vec::with_capacity(STORE_ENTITIES);
            let mut activity = Vec::with_capacity(STORE_ENTITIES);
            for _ in 0..STORE_ENTITIES {
                store.push(value.map_or(1000.0, |d| d.sample(&mut population)));
                total += weight.map_or(1.0, |d| d.sample(&mut population));
                activity.push(total);
            }
            (store, activity)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut stream = Stream {
            kind,
            rng: StdRng::seed_from_u64(seed),
            mean: 0.0,
            sd: 1.0,
            nonzero_mean: 0.0,
            store,
            activity,
            events: 0,
            burst: (0, 0.0, 0),
        };
        let (mean, sd, nonzero_mean) = stream.stationary_moments(seed);
        stream.mean = mean;
        stream.sd = sd;
        stream.nonzero_mean = nonzero_mean;
        stream
    }

    /// Mean, standard deviation and mean of the non-zero part of the
    /// stationary stream: exact where the distribution has a closed form
    /// (the store kind's from its finite population, weighted by
    /// activity), estimated from 200,000 draws for decimal prices.
    fn stationary_moments(&self, seed: u64) -> (f64, f64, f64) {
        let lognormal = |mu: f64, sigma: f64| {
            let mean = (mu + sigma * sigma / 2.0).exp();
            let second = (2.0 * mu + 2.0 * sigma * sigma).exp();
            (mean, second)
        };
        match self.kind {
            StreamKind::Normal => (50.0, 10.0, 50.0),
            StreamKind::LogNormal => {
                let (m, s2) = lognormal(3.0, 1.0);
                (m, (s2 - m * m).sqrt(), m)
            }
            StreamKind::Exponential => (20.0, 20.0, 20.0),
            StreamKind::ZeroInflated => {
                let (m, s2) = lognormal(3.0, 0.8);
                let mean = 0.4 * m;
                (mean, (0.4 * s2 - mean * mean).sqrt(), m)
            }
            // ½ N(20, 4²) + ½ N(60, 8²).
            StreamKind::Bimodal => (40.0, 440f64.sqrt(), 40.0),
            StreamKind::IntegerTies => (3.0, 3f64.sqrt(), 3.0 / (1.0 - (-3f64).exp())),
            StreamKind::Categorical => (0.0, 1.0, 0.0),
            StreamKind::StoreBursty => {
                let (m, s2) = lognormal(7.0, 0.5);
                (m, (s2 - m * m).sqrt(), m)
            }
            StreamKind::StoreRepeated => {
                let (mut weight, mut sum, mut sum2, mut previous) = (0.0, 0.0, 0.0, 0.0);
                for (&v, &cumulative) in self.store.iter().zip(&self.activity) {
                    let w = cumulative - previous;
                    previous = cumulative;
                    weight += w;
                    sum += w * v;
                    sum2 += w * v * v;
                }
                let mean = sum / weight.max(f64::MIN_POSITIVE);
                let sd = (sum2 / weight.max(f64::MIN_POSITIVE) - mean * mean)
                    .max(0.0)
                    .sqrt();
                (mean, sd, mean)
            }
            StreamKind::DecimalPrices => {
                let mut probe = Stream {
                    rng: StdRng::seed_from_u64(seed ^ 0xa5a5_a5a5),
                    ..Stream::bare(self.kind)
                };
                let (mut sum, mut sum2) = (0.0, 0.0);
                let n = 200_000.0;
                for _ in 0..200_000 {
                    let x = probe.base();
                    sum += x;
                    sum2 += x * x;
                }
                let mean = sum / n;
                (mean, (sum2 / n - mean * mean).max(0.0).sqrt(), mean)
            }
        }
    }

    fn bare(kind: StreamKind) -> Stream {
        Stream {
            kind,
            rng: StdRng::seed_from_u64(0),
            mean: 0.0,
            sd: 1.0,
            nonzero_mean: 0.0,
            store: Vec::new(),
            activity: Vec::new(),
            events: 0,
            burst: (0, 0.0, 0),
        }
    }

    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Stationary standard deviation (numeric kinds).
    pub fn sd(&self) -> f64 {
        self.sd
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        Normal::new(mean, sd).map_or(mean, |d| d.sample(&mut self.rng))
    }

    /// The entity of the next store event, by activity.
    fn pick_entity(&mut self) -> usize {
        let total = self.activity.last().copied().unwrap_or(0.0);
        let u: f64 = self.rng.random::<f64>() * total;
        self.activity
            .partition_point(|&c| c <= u)
            .min(self.activity.len().saturating_sub(1))
    }

    /// A stationary value (numeric kinds); for the store kind the value of
    /// a freshly picked entity.
    fn base(&mut self) -> f64 {
        match self.kind {
            StreamKind::Normal => self.normal(50.0, 10.0),
            StreamKind::LogNormal => self.normal(3.0, 1.0).exp(),
            StreamKind::Exponential => -20.0 * (1.0 - self.rng.random::<f64>()).ln(),
            StreamKind::ZeroInflated => {
                if self.rng.random_bool(0.6) {
                    0.0
                } else {
                    self.normal(3.0, 0.8).exp()
                }
            }
            StreamKind::Bimodal => {
                if self.rng.random_bool(0.5) {
                    self.normal(20.0, 4.0)
                } else {
                    self.normal(60.0, 8.0)
                }
            }
            StreamKind::IntegerTies => {
                rand_distr::Poisson::new(3.0).map_or(3.0, |d| d.sample(&mut self.rng))
            }
            StreamKind::DecimalPrices => {
                const MENU: [f64; 5] = [0.10, 1.10, 9.99, 4.99, 19.99];
                if self.rng.random_bool(0.3) {
                    MENU[self.rng.random_range(0..MENU.len())]
                } else {
                    // Whole-ish prices ending in .99 or .49 and round cents.
                    let p = self.normal(2.3, 0.9).exp();
                    (p * 100.0).round().max(9.0) / 100.0
                }
            }
            StreamKind::StoreRepeated => {
                let e = self.pick_entity();
                self.store.get(e).copied().unwrap_or(0.0)
            }
            StreamKind::StoreBursty => self.normal(7.0, 0.5).exp(),
            StreamKind::Categorical => 0.0,
        }
    }

    /// Puts a shifted value back on the stream's grid (integers, cents) by
    /// unbiased random rounding, so a mean shift stays exact and values
    /// keep the grid's ties.
    fn regrid(&mut self, x: f64) -> f64 {
        let step = match self.kind {
            StreamKind::IntegerTies => 1.0,
            StreamKind::DecimalPrices => 0.01,
            _ => return x,
        };
        let units = x / step;
        let floor = units.floor();
        let up = self.rng.random_bool((units - floor).clamp(0.0, 1.0));
        (floor + f64::from(u8::from(up))) * step
    }

    /// The next event, changed by `shift`.
    pub fn next(&mut self, shift: StreamShift) -> Draw {
        self.events = self.events.wrapping_add(1);
        if self.kind.is_categorical() {
            let mut shares = CATEGORY_SHARES;
            if let StreamShift::CategoryPoints(p) = shift {
                let rest = 1.0 - shares[1];
                for (i, s) in shares.iter_mut().enumerate() {
                    *s = if i == 1 {
                        *s + p
                    } else {
                        *s * (1.0 - p / rest)
                    };
                }
            }
            let u: f64 = self.rng.random();
            let mut acc = 0.0;
            let mut category = shares.len() - 1;
            for (i, s) in shares.iter().enumerate() {
                acc += s;
                if u < acc {
                    category = i;
                    break;
                }
            }
            return Draw {
                value: 0.0,
                category,
                entity: self.events,
            };
        }
        let (x, entity) = match self.kind {
            StreamKind::StoreRepeated => {
                let e = self.pick_entity();
                (self.store.get(e).copied().unwrap_or(0.0), e as u32)
            }
            StreamKind::StoreBursty => {
                if self.burst.0 == 0 {
                    let mut length = 1;
                    while self.rng.random_bool(0.75) {
                        length += 1;
                    }
                    let value = self.base();
                    self.burst = (length, value, self.events);
                }
                self.burst.0 -= 1;
                (self.burst.1, self.burst.2)
            }
            _ => (self.base(), self.events),
        };
        let zero_inflated = self.kind == StreamKind::ZeroInflated;
        let x = match shift {
            StreamShift::Mean(d) if zero_inflated => {
                if x == 0.0 {
                    0.0
                } else {
                    x + d * self.sd / 0.4
                }
            }
            StreamShift::Mean(d) => self.regrid(x + d * self.sd),
            StreamShift::Variance(f) if zero_inflated => {
                if x == 0.0 {
                    0.0
                } else {
                    self.nonzero_mean + f.max(0.0).sqrt() * (x - self.nonzero_mean)
                }
            }
            StreamShift::Variance(f) => {
                self.regrid(self.mean + f.max(0.0).sqrt() * (x - self.mean))
            }
            _ => x,
        };
        Draw {
            value: x as f32,
            category: 0,
            entity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of(stream: &mut Stream, n: usize, shift: StreamShift) -> (f64, Vec<f32>) {
        let values: Vec<f32> = (0..n).map(|_| stream.next(shift).value).collect();
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        (mean, values)
    }

    #[test]
    fn streams_have_their_stated_moments_and_shifts() {
        let n = 40_000;
        for kind in StreamKind::ALL.into_iter().filter(|k| !k.is_categorical()) {
            let mut stream = Stream::new(kind, 11);
            let (sd, se) = (stream.sd(), stream.sd() / (n as f64).sqrt());
            let (before, values) = mean_of(&mut stream, n, StreamShift::None);
            assert!(
                (before - stream.mean).abs() < 5.0 * se,
                "{}: {before} vs {}",
                kind.name(),
                stream.mean
            );
            let (after, shifted) = mean_of(&mut stream, n, StreamShift::Mean(0.25));
            let moved = (after - before) / sd;
            assert!(
                (moved - 0.25).abs() < 0.08,
                "{}: moved {moved}σ",
                kind.name()
            );
            // Grids survive a shift: integers stay integers, prices cents.
            let on_grid = |v: f32, step: f64| ((f64::from(v) / step).round() * step) as f32 == v;
            match kind {
                StreamKind::IntegerTies => {
                    assert!(values.iter().chain(&shifted).all(|&v| on_grid(v, 1.0)))
                }
                StreamKind::DecimalPrices => {
                    assert!(values.iter().chain(&shifted).all(|&v| on_grid(v, 0.01)))
                }
                _ => {}
            }
        }
    }

    #[test]
    fn category_points_move_one_share() {
        let mut stream = Stream::new(StreamKind::Categorical, 5);
        let n = 50_000;
        let share = |stream: &mut Stream, shift| {
            (0..n).filter(|_| stream.next(shift).category == 1).count() as f64 / n as f64
        };
        let before = share(&mut stream, StreamShift::None);
        let after = share(&mut stream, StreamShift::CategoryPoints(0.10));
        assert!(
            (before - 0.20).abs() < 0.01 && (after - 0.30).abs() < 0.01,
            "{before} {after}"
        );
    }

    #[test]
    fn the_watched_columns_cover_the_encoded_row() {
        let w = watched();
        assert_eq!(w.width(), WIDTH);
        let mut rng = StdRng::seed_from_u64(3);
        let (row, missing) = encode(&draw(&mut rng, Shift::None));
        assert_eq!((row.len(), missing.len()), (w.width(), w.columns().len()));
    }
}
