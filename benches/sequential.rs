//! The sequential score detector: cost of an update, and (on request) the
//! long simulation its defaults and its module table come from.
//!
//! - `update/score`: one score into a two-sided Page-Hinkley detector
//!   (goal: a few ns, no allocation).
//! - `update_all/4096 f32`: a sub-window's scores, as the evaluator feeds them.
//!
//! `SEQUENTIAL_SIMULATE=1 cargo bench --bench sequential` skips criterion and
//! prints, for the default parameters: ARL0 (mean scores between false
//! alarms) on stationary streams, measured over `SEQUENTIAL_EVENTS` scores
//! per stream (default 10⁹, ~2 min per stream on 2 cores), the ARL0 at
//! reduced thresholds that the unit tests check, and detection delays of
//! mean shifts. The streams are sampled directly (not bootstrapped as in the
//! unit tests) and standardised with their exact mean and σ.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use driftline::drift::sequential::{PageHinkley, Params};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, StandardNormal};

/// A stationary score distribution with a mean shift applied on request.
#[derive(Clone, Copy)]
enum Stream {
    Normal,
    /// Beta(0.5, 20): skewness 2.5.
    Beta,
    /// 98% Beta(1, 50) + `rate` Beta(5, 2): a fraud model's score.
    Mixture {
        rate: f64,
    },
    /// The mixture rounded to 0.01: heavy ties.
    Rounded,
    /// Five leaf values of a small tree model.
    Discrete,
}

struct Sampler {
    stream: Stream,
    beta: Beta<f64>,
    bulk: Beta<f64>,
    tail: Beta<f64>,
    /// Added to every score (raw units).
    shift: f64,
}

impl Sampler {
    fn new(stream: Stream) -> Self {
        Sampler {
            stream,
            beta: Beta::new(0.5, 20.0).expect("valid"),
            bulk: Beta::new(1.0, 50.0).expect("valid"),
            tail: Beta::new(5.0, 2.0).expect("valid"),
            shift: 0.0,
        }
    }

    fn mixture(&self, rng: &mut SmallRng, rate: f64) -> f64 {
        if rng.random_bool(rate) {
            self.tail.sample(rng)
        } else {
            self.bulk.sample(rng)
        }
    }

    fn draw(&self, rng: &mut SmallRng) -> f64 {
        let x = match self.stream {
            Stream::Normal => rng.sample(StandardNormal),
            Stream::Beta => self.beta.sample(rng),
            Stream::Mixture { rate } => self.mixture(rng, rate),
            Stream::Rounded => (self.mixture(rng, 0.02) * 100.0).round() / 100.0,
            Stream::Discrete => {
                let u: f64 = rng.random();
                match u {
                    u if u < 0.60 => 0.01,
                    u if u < 0.85 => 0.02,
                    u if u < 0.95 => 0.05,
                    u if u < 0.99 => 0.30,
                    _ => 0.90,
                }
            }
        };
        x + self.shift
    }
}

fn name(stream: Stream) -> &'static str {
    match stream {
        Stream::Normal => "normal",
        Stream::Beta => "Beta(0.5, 20)",
        Stream::Mixture { .. } => "98% Beta(1,50) + 2% Beta(5,2)",
        Stream::Rounded => "same, rounded to 0.01",
        Stream::Discrete => "5 tree leaves",
    }
}

/// Mean and σ of a stream: exact for the normal, else from 2·10⁷ draws
/// (standard error of the mean < 0.0003 σ, far below δ).
fn moments(stream: Stream) -> (f64, f64) {
    if let Stream::Normal = stream {
        return (0.0, 1.0);
    }
    let s = Sampler::new(stream);
    let mut rng = SmallRng::seed_from_u64(7);
    let n = 20_000_000;
    let xs: Vec<f64> = (0..n).map(|_| s.draw(&mut rng)).collect();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    (mean, var.sqrt())
}

const STATIONARY: [Stream; 5] = [
    Stream::Normal,
    Stream::Beta,
    Stream::Mixture { rate: 0.02 },
    Stream::Rounded,
    Stream::Discrete,
];

/// Alarms (up, down) over `n` stationary scores.
fn count_alarms(stream: Stream, params: Params, n: u64, seed: u64) -> (u64, u64) {
    let (mean, std) = moments(stream);
    let s = Sampler::new(stream);
    let mut d = PageHinkley::new(params, mean, std).expect("valid");
    let mut rng = SmallRng::seed_from_u64(seed);
    for _ in 0..n {
        d.update(s.draw(&mut rng));
    }
    let st = d.state();
    (st.alarms_up, st.alarms_down)
}

/// ARL0 with a 95% interval: alarms of a renewal process with roughly
/// exponential run lengths are close to Poisson.
fn arl0_line(stream: Stream, lambda: f64, n: u64, (up, down): (u64, u64)) -> String {
    let a = (up + down) as f64;
    let (arl, lo, hi) = if a == 0.0 {
        // No alarm: one-sided 95% bound, 3 expected alarms.
        (f64::INFINITY, n as f64 / 3.0, f64::INFINITY)
    } else {
        let half = 1.96 * a.sqrt();
        (
            n as f64 / a,
            n as f64 / (a + half),
            n as f64 / (a - half).max(0.5),
        )
    };
    format!(
        "| {} | {lambda} | {n:.1e} | {up} / {down} | {arl:.3e} [{lo:.2e}, {hi:.2e}] |",
        name(stream)
    )
}

/// Runs `jobs` on two threads (the machines have two cores).
fn parallel<T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send>>) -> Vec<T> {
    let mut jobs: Vec<_> = jobs.into_iter().enumerate().collect();
    let (a, b): (Vec<_>, Vec<_>) = jobs.drain(..).partition(|(i, _)| i % 2 == 0);
    std::thread::scope(|scope| {
        let run = |half: Vec<(usize, Box<dyn FnOnce() -> T + Send>)>| {
            half.into_iter().map(|(i, f)| (i, f())).collect::<Vec<_>>()
        };
        let ha = scope.spawn(move || run(a));
        let hb = scope.spawn(move || run(b));
        let mut out: Vec<(usize, T)> = ha.join().expect("worker");
        out.extend(hb.join().expect("worker"));
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, t)| t).collect()
    })
}

/// Delays (scores from the change to the alarm, change included) of `reps`
/// shifts applied after 10,000 stationary scores, i.e. from the detector's
/// steady state; runs with a false alarm before the change are redrawn.
fn delays(stream: Stream, after: Stream, shift_sd: f64, params: Params, reps: usize) -> Vec<u64> {
    let (mean, std) = moments(stream);
    let before = Sampler::new(stream);
    let mut changed = Sampler::new(after);
    changed.shift = shift_sd * std;
    let mut rng = SmallRng::seed_from_u64(5);
    let mut out = Vec::with_capacity(reps);
    while out.len() < reps {
        let mut d = PageHinkley::new(params, mean, std).expect("valid");
        if (0..10_000).any(|_| d.update(before.draw(&mut rng)).is_some()) {
            continue;
        }
        let mut n = 0;
        loop {
            n += 1;
            if d.update(changed.draw(&mut rng)).is_some() {
                break;
            }
        }
        out.push(n);
    }
    out.sort_unstable();
    out
}

fn simulate() {
    let params = Params::default();
    let n: u64 = std::env::var("SEQUENTIAL_EVENTS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(1_000_000_000, |v| v as u64);
    let started = Instant::now();
    println!(
        "## ARL0 at the defaults (delta {}, lambda {})",
        params.delta, params.lambda
    );
    println!("| stream | λ | scores | alarms up / down | ARL0 [95%] |\n|---|---|---|---|---|");
    let jobs: Vec<Box<dyn FnOnce() -> String + Send>> = STATIONARY
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            Box::new(move || {
                arl0_line(
                    s,
                    params.lambda,
                    n,
                    count_alarms(s, params, n, 100 + i as u64),
                )
            }) as Box<dyn FnOnce() -> String + Send>
        })
        .collect();
    for line in parallel(jobs) {
        println!("{line}");
    }

    println!("\n## ARL0 at reduced thresholds (checked by the unit tests), 10^8 scores");
    println!("| stream | λ | scores | alarms up / down | ARL0 [95%] |\n|---|---|---|---|---|");
    let mut jobs: Vec<Box<dyn FnOnce() -> String + Send>> = Vec::new();
    for lambda in [20.0, 40.0] {
        for (i, &s) in STATIONARY.iter().enumerate() {
            let p = Params { lambda, ..params };
            jobs.push(Box::new(move || {
                arl0_line(
                    s,
                    lambda,
                    100_000_000,
                    count_alarms(s, p, 100_000_000, 200 + i as u64),
                )
            }));
        }
    }
    for line in parallel(jobs) {
        println!("{line}");
    }

    println!("\n## Detection delay at the defaults, 2000 changes each");
    println!("| change | mean | p50 | p95 | max |\n|---|---|---|---|---|");
    let mix = Stream::Mixture { rate: 0.02 };
    // Fraud-rate rises that move the mixture's mean by +0.25σ and +0.5σ:
    // Δrate = shift σ / (mean(Beta(5,2)) - mean(Beta(1,50))).
    let rate_for = |sd: f64| 0.02 + sd * 0.10166 / (5.0 / 7.0 - 1.0 / 51.0);
    let cases: Vec<(String, Stream, Stream, f64)> = vec![
        ("normal +0.25σ".into(), Stream::Normal, Stream::Normal, 0.25),
        (
            "normal -0.25σ".into(),
            Stream::Normal,
            Stream::Normal,
            -0.25,
        ),
        ("normal +0.5σ".into(), Stream::Normal, Stream::Normal, 0.5),
        ("normal -0.5σ".into(), Stream::Normal, Stream::Normal, -0.5),
        ("mixture +0.25σ (added)".into(), mix, mix, 0.25),
        ("mixture -0.25σ (added)".into(), mix, mix, -0.25),
        ("mixture +0.5σ (added)".into(), mix, mix, 0.5),
        ("mixture -0.5σ (added)".into(), mix, mix, -0.5),
        (
            format!(
                "mixture +0.25σ (fraud rate 2% → {:.2}%)",
                100.0 * rate_for(0.25)
            ),
            mix,
            Stream::Mixture {
                rate: rate_for(0.25),
            },
            0.0,
        ),
        (
            format!(
                "mixture +0.5σ (fraud rate 2% → {:.2}%)",
                100.0 * rate_for(0.5)
            ),
            mix,
            Stream::Mixture {
                rate: rate_for(0.5),
            },
            0.0,
        ),
        ("normal +0.15σ".into(), Stream::Normal, Stream::Normal, 0.15),
        ("normal +1σ".into(), Stream::Normal, Stream::Normal, 1.0),
    ];
    let jobs: Vec<Box<dyn FnOnce() -> String + Send>> = cases
        .into_iter()
        .map(|(label, before, after, sd)| {
            Box::new(move || {
                let d = delays(before, after, sd, params, 2000);
                let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
                format!(
                    "| {label} | {mean:.0} | {} | {} | {} |",
                    d[d.len() / 2],
                    d[d.len() * 95 / 100],
                    d[d.len() - 1]
                )
            }) as Box<dyn FnOnce() -> String + Send>
        })
        .collect();
    for line in parallel(jobs) {
        println!("{line}");
    }

    println!("\n## Conservative ARL0 estimate (PageHinkley::arl0_estimate on 10^5 draws)");
    println!(
        "| stream | θ up | θ down | estimate at λ = 20 | 40 | 80 |\n|---|---|---|---|---|---|"
    );
    for s in STATIONARY {
        let (mean, std) = moments(s);
        let sampler = Sampler::new(s);
        let mut rng = SmallRng::seed_from_u64(11);
        let sample: Vec<f64> = (0..100_000).map(|_| sampler.draw(&mut rng)).collect();
        let est = |lambda: f64| {
            PageHinkley::new(Params { lambda, ..params }, mean, std)
                .and_then(|d| d.arl0_estimate(&sample))
                .expect("valid")
        };
        let e80 = est(80.0);
        println!(
            "| {} | {:.4} | {:.4} | {:.3e} | {:.3e} | {:.3e} |",
            name(s),
            e80.theta_up,
            e80.theta_down,
            est(20.0).two_sided,
            est(40.0).two_sided,
            e80.two_sided
        );
    }
    println!("\nsimulated in {:.0} s", started.elapsed().as_secs_f64());
}

fn sequential(c: &mut Criterion) {
    let (mean, std) = moments(Stream::Mixture { rate: 0.02 });
    let s = Sampler::new(Stream::Mixture { rate: 0.02 });
    let mut rng = SmallRng::seed_from_u64(1);
    let scores: Vec<f64> = (0..4096).map(|_| s.draw(&mut rng)).collect();
    let scores32: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
    let mut group = c.benchmark_group("sequential");

    group.throughput(Throughput::Elements(scores.len() as u64));
    group.bench_function("update/score", |b| {
        let mut d = PageHinkley::new(Params::default(), mean, std).expect("valid");
        b.iter(|| {
            let mut alarms = 0u32;
            for &x in &scores {
                alarms += u32::from(d.update(black_box(x)).is_some());
            }
            alarms
        })
    });
    group.bench_function("update_all/4096 f32", |b| {
        let mut d = PageHinkley::new(Params::default(), mean, std).expect("valid");
        b.iter(|| {
            let mut alarms = 0u32;
            d.update_all(black_box(&scores32), |_| alarms += 1);
            alarms
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = sequential
}

fn main() {
    if std::env::var_os("SEQUENTIAL_SIMULATE").is_some() {
        simulate();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
