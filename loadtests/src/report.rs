//! Results, ratios and the report files.
//!
//! One run of one system becomes a [`SystemResult`] ([`summarize`]); a
//! scenario pairs the pass-through's and driftline's results with their
//! [`Comparison`]; the whole command writes `report.json` (every number),
//! `report.md` (tables), `<scenario>-<system>.hgrm` (percentile
//! distributions in HdrHistogram's classic text format, values in
//! milliseconds) and `latency.svg` (latency by percentile, both systems on
//! one chart per scenario).
//!
//! Guarantees: a ratio or difference is `None` (shown as "-") when an
//! operand is missing or zero, never a division by zero or a NaN in the
//! files; every number in `report.md` is also in `report.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::measure::{self, Measurement, Sample};
use crate::saturation;
use crate::scenario::{Mode, Plan};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    /// From a histogram in microseconds (`None` when empty).
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }
}

/// One saturation step as reported.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub rate_target: f64,
    pub rate_in: f64,
    pub rate_out: f64,
    pub lag_end: u64,
    pub p99_ms: Option<f64>,
    pub kept_up: bool,
    /// Why it fell behind (absent when it kept up).
    pub behind: Option<saturation::Behind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaturationResult {
    /// Target rate of the highest step that kept up (events/s).
    pub throughput: Option<f64>,
    /// What ended the search.
    pub limit: Limit,
    pub steps: Vec<StepResult>,
}

/// What bounds a saturation throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// A step above it fell behind on the output side: the system's limit.
    System,
    /// Every step above it failed only because the generator could not send
    /// its schedule (load generator or broker intake): a lower bound.
    Input,
    /// No step fell behind: a lower bound (raise `max_steps`).
    NotReached,
}

impl Limit {
    /// From the steps above the saturation throughput that fell behind.
    pub fn of(failures: &[&saturation::Behind]) -> Limit {
        if failures.is_empty() {
            Limit::NotReached
        } else if failures
            .iter()
            .all(|b| matches!(b, saturation::Behind::Input { .. }))
        {
            Limit::Input
        } else {
            Limit::System
        }
    }

    /// Whether the throughput is only a lower bound.
    pub fn lower_bound(self) -> bool {
        self != Limit::System
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BurstResult {
    pub base_rate: f64,
    pub burst_rate: f64,
    /// Seconds from the end of the burst until the lag was back to the
    /// threshold (`None`: not within the run).
    pub recovery_s: Option<f64>,
    /// "Near 0": twice the median lag before the burst, at least 50 events.
    pub recovery_threshold: u64,
    pub peak_lag: u64,
    pub before: Option<Percentiles>,
    pub burst: Option<Percentiles>,
    pub after: Option<Percentiles>,
}

/// Facts about the system's process, gathered outside the measurement.
#[derive(Debug, Clone, Default)]
pub struct ProcessFacts {
    /// Seconds from start until ready (readiness endpoint or "ready" line).
    pub ready_s: f64,
    /// How it ended after SIGTERM.
    pub exit: String,
    /// VmHWM just before it was stopped.
    pub peak_rss_kb: Option<u64>,
}

/// One system in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    pub system: String,
    /// Target rate over the reported window (saturation: of the best step).
    pub rate_target: f64,
    pub rate_in: Option<f64>,
    pub rate_out: Option<f64>,
    /// End to end: scheduled send → output read, events of the reported segments.
    pub latency: Option<Percentiles>,
    pub sent: u64,
    pub produce_failed: u64,
    pub received: u64,
    pub dlq: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub foreign: u64,
    pub lag_at_end: u64,
    pub drain_s: f64,
    pub cpu_percent: Option<f64>,
    pub broker_cpu_percent: Option<f64>,
    /// The load test itself (generator, its producer, the reader).
    pub loadgen_cpu_percent: Option<f64>,
    /// Every other process on the machine: anything much above 0 means the
    /// run shared the cores with other work and its numbers are suspect.
    pub other_cpu_percent: Option<f64>,
    /// CPU seconds per event out, in µs, over the reported window: the
    /// system, the broker, the load test. Less sensitive to the machine's
    /// speed than a rate when compared between systems of one run.
    pub cpu_us_per_event: Option<f64>,
    pub broker_cpu_us_per_event: Option<f64>,
    pub loadgen_cpu_us_per_event: Option<f64>,
    /// The system's threads over the reported window, busiest first.
    pub threads: Vec<ThreadShare>,
    pub rss_mb: Option<f64>,
    /// RSS at the first and the last sample of the reported window: flat
    /// memory over a long steady run shows as the two being close.
    pub rss_start_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub ready_s: f64,
    pub exit: String,
    pub saturation: Option<SaturationResult>,
    pub burst: Option<BurstResult>,
}

/// One thread of a system over the reported window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThreadShare {
    pub name: String,
    pub tid: u32,
    /// 100 % = one core.
    pub cpu_percent: f64,
    pub us_per_event: Option<f64>,
}

/// Per-thread CPU between the first thread sample at or after `a` and the
/// last at or before `b`, for `rate_out` events/s; threads that used no
/// CPU are left out.
pub fn thread_shares(
    threads: &[(f64, Vec<crate::procs::ThreadCpu>)],
    (a, b): (f64, f64),
    rate_out: Option<f64>,
) -> Vec<ThreadShare> {
    let first = threads.iter().find(|(t, _)| *t >= a);
    let last = threads.iter().rev().find(|(t, _)| *t <= b);
    let (Some((t0, before)), Some((t1, after))) = (first, last) else {
        return Vec::new();
    };
    let secs = t1 - t0;
    if secs <= 0.0 {
        return Vec::new();
    }
    let mut shares: Vec<ThreadShare> = after
        .iter()
        .filter_map(|t| {
            let start = before
                .iter()
                .find(|b| b.tid == t.tid)
                .map_or(0.0, |b| b.secs);
            let used = t.secs - start;
            (used > 0.0).then(|| ThreadShare {
                name: t.name.clone(),
                tid: t.tid,
                cpu_percent: 100.0 * used / secs,
                us_per_event: rate_out.filter(|r| *r > 0.0).map(|r| used / secs / r * 1e6),
            })
        })
        .collect();
    shares.sort_by(|x, y| y.cpu_percent.total_cmp(&x.cpu_percent));
    shares
}

/// Driftline against the pass-through in one scenario.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Comparison {
    /// driftline / pass-through output rate.
    pub rate_out_ratio: Option<f64>,
    /// driftline / pass-through saturation throughput (saturation mode).
    pub saturation_ratio: Option<f64>,
    /// How far `saturation_ratio` can be trusted: `exact`, `at_most` (the
    /// pass-through's throughput is only a lower bound), `at_least`
    /// (driftline's is), or `unknown` (both are).
    pub saturation_ratio_is: Option<Bound>,
    /// driftline p99 − pass-through p99, ms.
    pub p99_delta_ms: Option<f64>,
    /// driftline p99 / pass-through p99.
    pub p99_ratio: Option<f64>,
    /// driftline / pass-through CPU per event (the systems alone).
    pub cpu_per_event_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    pub mode: String,
    pub partitions: i32,
    pub cards: usize,
    pub rate: f64,
    pub rate_source: String,
    pub passthrough: SystemResult,
    pub driftline: SystemResult,
    pub comparison: Comparison,
}

/// What kind of number a ratio of two saturation throughputs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Exact,
    AtMost,
    AtLeast,
    Unknown,
}

impl Bound {
    /// Of driftline / pass-through, from what limits each.
    pub fn of(driftline: Limit, passthrough: Limit) -> Bound {
        match (driftline.lower_bound(), passthrough.lower_bound()) {
            (false, false) => Bound::Exact,
            (false, true) => Bound::AtMost,
            (true, false) => Bound::AtLeast,
            (true, true) => Bound::Unknown,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Bound::Exact => "",
            Bound::AtMost => "≤ ",
            Bound::AtLeast => "≥ ",
            Bound::Unknown => "~",
        }
    }

    /// Whether `ratio` (of this kind) meets a `≥ goal`: `None` when the
    /// bound cannot tell.
    pub fn meets(self, ratio: f64, goal: f64) -> Option<bool> {
        match self {
            Bound::Exact => Some(ratio >= goal),
            Bound::AtMost if ratio < goal => Some(false),
            Bound::AtLeast if ratio >= goal => Some(true),
            _ => None,
        }
    }
}

/// The two goals of issue 6.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Goals {
    /// driftline / pass-through saturation throughput; goal ≥ 0.8.
    pub saturation_ratio: Option<f64>,
    pub saturation_ratio_is: Option<Bound>,
    /// `None` when not measured or when the bounds cannot tell.
    pub saturation_met: Option<bool>,
    /// driftline p99 − pass-through p99 at `steady-half`, ms; goal ≤ 1.
    pub steady_half_p99_delta_ms: Option<f64>,
    pub steady_half_met: Option<bool>,
}

pub const SATURATION_GOAL: f64 = 0.8;
/// CPU of other processes (percent of one core) above which a run is flagged.
pub const OTHER_CPU_WARNING: f64 = 10.0;
pub const P99_DELTA_GOAL_MS: f64 = 1.0;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_utc: String,
    pub finished_utc: String,
    pub machine: Machine,
    pub broker: String,
    pub goals: Goals,
    pub scenarios: Vec<ScenarioResult>,
}

/// `a / b`, when both are usable and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (a.is_finite() && b.is_finite() && b != 0.0).then_some(a / b)
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (a.is_finite() && b.is_finite()).then_some(a - b)
}

pub fn compare(passthrough: &SystemResult, driftline: &SystemResult) -> Comparison {
    let p99 = |r: &SystemResult| r.latency.as_ref().map(|l| l.p99_ms);
    let sat = |r: &SystemResult| r.saturation.as_ref().and_then(|s| s.throughput);
    let (saturation_ratio, saturation_ratio_is) =
        match (&passthrough.saturation, &driftline.saturation) {
            (Some(p), Some(d)) => {
                let r = ratio(sat(driftline), sat(passthrough));
                (r, r.map(|_| Bound::of(d.limit, p.limit)))
            }
            _ => (None, None),
        };
    Comparison {
        rate_out_ratio: ratio(driftline.rate_out, passthrough.rate_out),
        saturation_ratio,
        saturation_ratio_is,
        p99_delta_ms: delta(p99(driftline), p99(passthrough)),
        p99_ratio: ratio(p99(driftline), p99(passthrough)),
        cpu_per_event_ratio: ratio(driftline.cpu_us_per_event, passthrough.cpu_us_per_event),
    }
}

/// The goals, from the first saturation scenario and the one named `steady-half`.
pub fn goals(scenarios: &[ScenarioResult]) -> Goals {
    let sat = scenarios
        .iter()
        .find(|s| s.mode == Mode::Saturation.name())
        .map(|s| &s.comparison);
    let saturation_ratio = sat.and_then(|c| c.saturation_ratio);
    let saturation_ratio_is = sat.and_then(|c| c.saturation_ratio_is);
    let steady = scenarios
        .iter()
        .find(|s| s.name == "steady-half")
        .and_then(|s| s.comparison.p99_delta_ms);
    Goals {
        saturation_ratio,
        saturation_ratio_is,
        saturation_met: saturation_ratio
            .zip(saturation_ratio_is)
            .and_then(|(r, b)| b.meets(r, SATURATION_GOAL)),
        steady_half_p99_delta_ms: steady,
        steady_half_met: steady.map(|d| d <= P99_DELTA_GOAL_MS),
    }
}

/// Median of a list (0 for an empty one).
fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs.get(xs.len() / 2).copied().unwrap_or(0)
}

/// Turns one measurement into its reported numbers. Returns the result and
/// the latency histogram of the reported segments (for `.hgrm` and the chart).
pub fn summarize(
    system: &str,
    plan: &Plan,
    m: &Measurement,
    facts: &ProcessFacts,
) -> (SystemResult, Histogram<u64>) {
    let schedule = &plan.schedule;
    let mut saturation = None;
    let (measured, window, rate_target): (Vec<usize>, Option<(f64, f64)>, f64) =
        if plan.steps.is_empty() {
            let first = plan.measured.first().and_then(|&i| schedule.bounds(i));
            let last = plan.measured.last().and_then(|&i| schedule.bounds(i));
            let window = first.zip(last).map(|(f, l)| (f.0, l.1));
            (plan.measured.clone(), window, plan.rate)
        } else {
            let tried: Vec<(f64, bool)> = m
                .steps
                .iter()
                .map(|s| (s.step.rate, s.verdict.is_ok()))
                .collect();
            let best = saturation::saturation(&tried);
            let steps = m
                .steps
                .iter()
                .map(|o| StepResult {
                    rate_target: o.step.rate,
                    rate_in: o.step.sent as f64 / o.step.secs,
                    rate_out: o.step.read as f64 / o.step.secs,
                    lag_end: o.step.lag_end,
                    p99_ms: o.step.p99_us.map(|us| us as f64 / 1000.0),
                    kept_up: o.verdict.is_ok(),
                    behind: o.verdict.clone().err(),
                })
                .collect();
            let failures: Vec<&saturation::Behind> = m
                .steps
                .iter()
                .filter_map(|s| s.verdict.as_ref().err())
                .collect();
            saturation = Some(SaturationResult {
                throughput: best.map(|i| m.steps[i].step.rate),
                limit: Limit::of(&failures),
                steps,
            });
            match best {
                Some(i) => (
                    vec![m.steps[i].segment],
                    Some(m.steps[i].window),
                    m.steps[i].step.rate,
                ),
                None => (vec![], None, plan.rate),
            }
        };

    let mut latency = crate::measure::new_histogram();
    for &i in &measured {
        if let Some(h) = m.by_segment.get(i) {
            // Same bounds on both sides: adding cannot fail.
            let _ = latency.add(h);
        }
    }
    let sent = measure::series(&m.samples, |s| Some(s.sent as f64));
    let done = measure::series(&m.samples, |s| Some(s.done as f64));
    let cpu = measure::series(&m.samples, |s| s.system_cpu_s);
    let broker_cpu = measure::series(&m.samples, |s| s.broker_cpu_s);
    let loadgen_cpu = measure::series(&m.samples, |s| s.loadgen_cpu_s);
    let other_cpu = measure::series(&m.samples, |s| {
        Some(s.machine_busy_s? - s.system_cpu_s? - s.broker_cpu_s? - s.loadgen_cpu_s?)
    });
    let over =
        |points: &[(f64, f64)]| window.and_then(|(a, b)| measure::rate_between(points, a, b));
    let burst = plan
        .burst
        .and_then(|(before, burst, after)| burst_result(plan, m, before, burst, after));
    let per_event = |cpu: &[(f64, f64)]| {
        let (c, r) = (over(cpu)?, over(&done)?);
        (r > 0.0).then(|| c / r * 1e6)
    };
    let threads = window
        .map(|w| thread_shares(&m.threads, w, over(&done)))
        .unwrap_or_default();
    let mb = |kb: u64| kb as f64 / 1024.0;
    let rss_in_window: Vec<u64> = m
        .samples
        .iter()
        .filter(|s| window.is_some_and(|(a, b)| s.t >= a && s.t <= b))
        .filter_map(|s| s.system_rss_kb)
        .collect();
    let result = SystemResult {
        system: system.to_string(),
        rate_target,
        rate_in: over(&sent),
        rate_out: over(&done),
        latency: Percentiles::of(&latency),
        sent: m.accounting.sent,
        produce_failed: m.accounting.produce_failed,
        received: m.accounting.received,
        dlq: m.accounting.dlq,
        duplicates: m.accounting.duplicates,
        lost: m.accounting.lost(),
        foreign: m.foreign,
        lag_at_end: m.lag_at_end,
        drain_s: m.drain_secs,
        cpu_percent: over(&cpu).map(|c| c * 100.0),
        broker_cpu_percent: over(&broker_cpu).map(|c| c * 100.0),
        loadgen_cpu_percent: over(&loadgen_cpu).map(|c| c * 100.0),
        other_cpu_percent: over(&other_cpu).map(|c| (c * 100.0).max(0.0)),
        cpu_us_per_event: per_event(&cpu),
        broker_cpu_us_per_event: per_event(&broker_cpu),
        loadgen_cpu_us_per_event: per_event(&loadgen_cpu),
        threads,
        rss_mb: m
            .samples
            .iter()
            .filter_map(|s| s.system_rss_kb)
            .max()
            .map(mb),
        rss_start_mb: rss_in_window.first().copied().map(mb),
        rss_end_mb: rss_in_window.last().copied().map(mb),
        peak_rss_mb: facts.peak_rss_kb.map(mb),
        ready_s: facts.ready_s,
        exit: facts.exit.clone(),
        saturation,
        burst,
    };
    (result, latency)
}

/// Saturation: the runs of one system's steps (in the order run, each its
/// own process on fresh topics) as one result. The counts add up over every
/// step; rates, latency, CPU and memory are those of the highest step that
/// kept up (the system at its saturation throughput), and the histogram is
/// that step's.
pub fn combine_steps(
    system: &str,
    runs: Vec<(SystemResult, Histogram<u64>)>,
) -> Option<(SystemResult, Histogram<u64>)> {
    let steps: Vec<StepResult> = runs
        .iter()
        .filter_map(|(r, _)| r.saturation.as_ref())
        .flat_map(|s| s.steps.iter().cloned())
        .collect();
    let tried: Vec<(f64, bool)> = steps.iter().map(|s| (s.rate_target, s.kept_up)).collect();
    let best = saturation::saturation(&tried);
    let sum = |f: fn(&SystemResult) -> u64| runs.iter().map(|(r, _)| f(r)).sum::<u64>();
    let (sent, lost, duplicates, dlq, failed, foreign, received) = (
        sum(|r| r.sent),
        sum(|r| r.lost),
        sum(|r| r.duplicates),
        sum(|r| r.dlq),
        sum(|r| r.produce_failed),
        sum(|r| r.foreign),
        sum(|r| r.received),
    );
    let unclean = runs
        .iter()
        .find(|(r, _)| !r.exit.starts_with("0 "))
        .map(|(r, _)| r.exit.clone());
    let failures: Vec<&saturation::Behind> =
        steps.iter().filter_map(|s| s.behind.as_ref()).collect();
    let limit = Limit::of(&failures);
    let throughput = best.map(|i| steps[i].rate_target);
    // The step at saturation, else the first (nothing kept up).
    let (mut result, hist) = runs.into_iter().nth(best.unwrap_or(0))?;
    if best.is_none() {
        result.latency = None;
    }
    result.system = system.to_string();
    result.sent = sent;
    result.lost = lost;
    result.duplicates = duplicates;
    result.dlq = dlq;
    result.produce_failed = failed;
    result.foreign = foreign;
    result.received = received;
    if let Some(exit) = unclean {
        result.exit = exit;
    }
    result.saturation = Some(SaturationResult {
        throughput,
        limit,
        steps,
    });
    Some((result, hist))
}

fn burst_result(
    plan: &Plan,
    m: &Measurement,
    before: usize,
    burst: usize,
    after: usize,
) -> Option<BurstResult> {
    let schedule = &plan.schedule;
    let (b0, b1) = schedule.bounds(before)?;
    let (_, burst_end) = schedule.bounds(burst)?;
    let in_before: Vec<u64> = m
        .samples
        .iter()
        .filter(|s| s.t >= b0 && s.t < b1)
        .map(Sample::lag)
        .collect();
    let threshold = (2 * median(in_before)).max(50);
    let peak_lag = m
        .samples
        .iter()
        .filter(|s| s.t >= b1)
        .map(Sample::lag)
        .max()
        .unwrap_or(0);
    let seg = schedule.segments();
    Some(BurstResult {
        base_rate: seg.get(before)?.rate,
        burst_rate: seg.get(burst)?.rate,
        recovery_s: measure::recovery_secs(&m.samples, burst_end, threshold),
        recovery_threshold: threshold,
        peak_lag,
        before: m.by_segment.get(before).and_then(Percentiles::of),
        burst: m.by_segment.get(burst).and_then(Percentiles::of),
        after: m.by_segment.get(after).and_then(Percentiles::of),
    })
}

// --- formatting --------------------------------------------------------------

/// An integer with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(r: Option<f64>) -> String {
    r.filter(|r| r.is_finite() && *r >= 0.0)
        .map_or("-".into(), |r| thousands(r.round() as u64))
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

fn signed_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:+.2} ms"))
}

fn times(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}×"))
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("-".into(), f)
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured (or the bounds cannot tell)",
    }
}

fn bounded_ratio(r: Option<f64>, bound: Option<Bound>) -> String {
    opt(r, |r| {
        format!("{}{r:.2}", bound.unwrap_or(Bound::Exact).prefix())
    })
}

/// `report.md`.
pub fn markdown(report: &Report, command: &str) -> String {
    let mut o = String::new();
    let g = &report.goals;
    let _ = writeln!(o, "# driftline load test\n");
    let _ = writeln!(
        o,
        "Run {} → {} on {} cores ({}, {:.0} GB); broker: {}. Command: `{command}`.\n",
        report.started_utc,
        report.finished_utc,
        report.machine.cores,
        report.machine.cpu,
        report.machine.memory_gb,
        report.broker
    );
    let _ = writeln!(
        o,
        "Every latency is end to end: from the time the generator was *scheduled* to send the event to the time its output was read back from the broker (open loop; see loadtests/README.md). Both systems ran one after the other on the same broker, machine and settings.\n"
    );
    let _ = writeln!(o, "| goal | measured | target | |\n|---|---:|---:|---|");
    let _ = writeln!(
        o,
        "| saturation throughput, driftline / pass-through | {} | ≥ {SATURATION_GOAL} | {} |",
        bounded_ratio(g.saturation_ratio, g.saturation_ratio_is),
        met(g.saturation_met)
    );
    let _ = writeln!(
        o,
        "| p99 at steady-half, driftline − pass-through | {} | ≤ {P99_DELTA_GOAL_MS} ms | {} |\n",
        signed_ms(g.steady_half_p99_delta_ms),
        met(g.steady_half_met)
    );
    for s in &report.scenarios {
        scenario_markdown(&mut o, s);
    }
    o
}

fn scenario_markdown(o: &mut String, s: &ScenarioResult) {
    let (p, d, c) = (&s.passthrough, &s.driftline, &s.comparison);
    let _ = writeln!(o, "## {}\n", s.name);
    if !s.description.is_empty() {
        let _ = writeln!(o, "{}\n", s.description.trim());
    }
    let _ = writeln!(
        o,
        "Mode {}, {} partitions, {} cards; rate: {:.0}/s ({}).\n",
        s.mode,
        s.partitions,
        thousands(s.cards as u64),
        s.rate,
        s.rate_source
    );
    let _ = writeln!(
        o,
        "| | pass-through | driftline | driftline vs pass-through |\n|---|---:|---:|---:|"
    );
    let mut row = |name: &str, a: String, b: String, cmp: String| {
        let _ = writeln!(o, "| {name} | {a} | {b} | {cmp} |");
    };
    if let (Some(ps), Some(ds)) = (&p.saturation, &d.saturation) {
        let sat = |r: &SaturationResult| {
            let v = rate(r.throughput);
            match r.limit {
                Limit::System => v,
                Limit::Input => format!("≥ {v} (input side limit)"),
                Limit::NotReached => format!("≥ {v} (not reached)"),
            }
        };
        row(
            "saturation throughput (events/s)",
            sat(ps),
            sat(ds),
            format!(
                "**{}** (goal ≥ {SATURATION_GOAL})",
                bounded_ratio(c.saturation_ratio, c.saturation_ratio_is)
            ),
        );
    }
    row(
        "target rate (events/s)",
        rate(Some(p.rate_target)),
        rate(Some(d.rate_target)),
        String::new(),
    );
    row(
        "rate in (events/s)",
        rate(p.rate_in),
        rate(d.rate_in),
        String::new(),
    );
    row(
        "rate out (events/s)",
        rate(p.rate_out),
        rate(d.rate_out),
        times(c.rate_out_ratio),
    );
    let l = |r: &SystemResult, f: fn(&Percentiles) -> f64| ms(r.latency.as_ref().map(f));
    row(
        "latency p50 (ms)",
        l(p, |x| x.p50_ms),
        l(d, |x| x.p50_ms),
        String::new(),
    );
    row(
        "latency p90 (ms)",
        l(p, |x| x.p90_ms),
        l(d, |x| x.p90_ms),
        String::new(),
    );
    row(
        "latency p99 (ms)",
        l(p, |x| x.p99_ms),
        l(d, |x| x.p99_ms),
        format!("{} ({})", signed_ms(c.p99_delta_ms), times(c.p99_ratio)),
    );
    row(
        "latency p99.9 (ms)",
        l(p, |x| x.p999_ms),
        l(d, |x| x.p999_ms),
        String::new(),
    );
    row(
        "latency max (ms)",
        l(p, |x| x.max_ms),
        l(d, |x| x.max_ms),
        String::new(),
    );
    row(
        "events timed",
        opt(p.latency.as_ref(), |x| thousands(x.count)),
        opt(d.latency.as_ref(), |x| thousands(x.count)),
        String::new(),
    );
    let n = |v: u64| thousands(v);
    row("events sent", n(p.sent), n(d.sent), String::new());
    row("lost", n(p.lost), n(d.lost), String::new());
    row(
        "duplicates",
        n(p.duplicates),
        n(d.duplicates),
        String::new(),
    );
    row("DLQ", n(p.dlq), n(d.dlq), String::new());
    if p.produce_failed + d.produce_failed > 0 {
        row(
            "refused by the broker on the way in",
            n(p.produce_failed),
            n(d.produce_failed),
            String::new(),
        );
    }
    row(
        "lag when sending stopped",
        n(p.lag_at_end),
        n(d.lag_at_end),
        String::new(),
    );
    if let (Some(pb), Some(db)) = (&p.burst, &d.burst) {
        let rec = |b: &BurstResult| {
            opt(b.recovery_s, |s| format!("{s:.1}")).replace('-', "not recovered")
        };
        row(
            "recovery after the burst (s)",
            rec(pb),
            rec(db),
            format!(
                "lag ≤ {} / {} events",
                thousands(pb.recovery_threshold),
                thousands(db.recovery_threshold)
            ),
        );
        row("peak lag", n(pb.peak_lag), n(db.peak_lag), String::new());
        let p99 = |x: &Option<Percentiles>| ms(x.as_ref().map(|x| x.p99_ms));
        row(
            "p99 of events sent during the burst (ms)",
            p99(&pb.burst),
            p99(&db.burst),
            String::new(),
        );
        row(
            "p99 of events sent after the burst (ms)",
            p99(&pb.after),
            p99(&db.after),
            String::new(),
        );
    }
    let pct = |v: Option<f64>| opt(v, |v| format!("{v:.0} %"));
    row(
        "CPU of the system",
        pct(p.cpu_percent),
        pct(d.cpu_percent),
        String::new(),
    );
    row(
        "CPU of the broker",
        pct(p.broker_cpu_percent),
        pct(d.broker_cpu_percent),
        String::new(),
    );
    row(
        "CPU of the load generator and reader",
        pct(p.loadgen_cpu_percent),
        pct(d.loadgen_cpu_percent),
        String::new(),
    );
    row(
        "CPU of other processes (should be ~0)",
        pct(p.other_cpu_percent),
        pct(d.other_cpu_percent),
        String::new(),
    );
    let us = |v: Option<f64>| opt(v, |v| format!("{v:.2}"));
    row(
        "CPU per event out: system (µs)",
        us(p.cpu_us_per_event),
        us(d.cpu_us_per_event),
        opt(c.cpu_per_event_ratio, |r| format!("{r:.2}×")),
    );
    row(
        "CPU per event out: broker / load generator (µs)",
        format!(
            "{} / {}",
            us(p.broker_cpu_us_per_event),
            us(p.loadgen_cpu_us_per_event)
        ),
        format!(
            "{} / {}",
            us(d.broker_cpu_us_per_event),
            us(d.loadgen_cpu_us_per_event)
        ),
        String::new(),
    );
    let mb = |v: Option<f64>| opt(v, |v| format!("{v:.0}"));
    row(
        "RSS, largest sample (MB)",
        mb(p.rss_mb),
        mb(d.rss_mb),
        String::new(),
    );
    row(
        "RSS at the start / end of the measured window (MB)",
        format!("{} / {}", mb(p.rss_start_mb), mb(p.rss_end_mb)),
        format!("{} / {}", mb(d.rss_start_mb), mb(d.rss_end_mb)),
        String::new(),
    );
    row(
        "RSS peak, VmHWM (MB)",
        mb(p.peak_rss_mb),
        mb(d.peak_rss_mb),
        String::new(),
    );
    row(
        "ready after (s)",
        format!("{:.1}", p.ready_s),
        format!("{:.1}", d.ready_s),
        String::new(),
    );
    row(
        "exit after SIGTERM",
        p.exit.clone(),
        d.exit.clone(),
        String::new(),
    );
    let _ = writeln!(o);
    for r in [p, d] {
        if r.threads.is_empty() {
            continue;
        }
        let list: Vec<String> = r
            .threads
            .iter()
            .take(8)
            .map(|t| match t.us_per_event {
                Some(us) => format!("{} {:.0} % ({us:.2} µs/event)", t.name, t.cpu_percent),
                None => format!("{} {:.0} %", t.name, t.cpu_percent),
            })
            .collect();
        let _ = writeln!(
            o,
            "{} threads (100 % = one core): {}.\n",
            r.system,
            list.join(", ")
        );
    }
    for r in [p, d] {
        let Some(sat) = &r.saturation else { continue };
        let _ = writeln!(
            o,
            "{} steps:\n\n| target (events/s) | in | out | lag at end | p99 (ms) | verdict |\n|---:|---:|---:|---:|---:|---|",
            r.system
        );
        for st in &sat.steps {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                rate(Some(st.rate_target)),
                rate(Some(st.rate_in)),
                rate(Some(st.rate_out)),
                thousands(st.lag_end),
                ms(st.p99_ms),
                match &st.behind {
                    None => "kept up".to_string(),
                    Some(b) => format!("behind: {b}"),
                }
            );
        }
        let _ = writeln!(o);
    }
}

/// HdrHistogram's classic percentile distribution (`outputPercentileDistribution`
/// with 5 ticks per half distance), values in ms for a histogram in µs.
pub fn hgrm(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    o,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / SCALE };
    let stdev = if h.is_empty() { 0.0 } else { h.stdev() / SCALE };
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(o, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]");
    let _ = writeln!(
        o,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    o
}

/// Label of a position on the "nines" axis: 0 → 0%, 1 → 90%, 2 → 99%, 3 → 99.9%.
pub fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i64 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

/// Points (nines, ms) of a latency-by-percentile curve.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return vec![];
    }
    // Beyond log10(count) nines the curve is the max: stop there.
    let max_x = (h.len() as f64).log10().clamp(1.0, 6.0);
    let steps = (max_x * 50.0).ceil() as usize;
    let mut points: Vec<(f64, f64)> = (0..=steps)
        .map(|i| {
            let x = max_x * i as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q).max(1) as f64 / 1000.0)
        })
        .collect();
    points.push((max_x, h.max().max(1) as f64 / 1000.0));
    points
}

/// Tick values for a log axis from `lo` to `hi`: 1, 1.5, 2, 3, 5, 7 per
/// decade, thinned to at most about a dozen.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return vec![];
    }
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 1.5, 2.0, 3.0, 5.0, 7.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    let keep = ticks.len().div_ceil(12).max(1);
    ticks.into_iter().step_by(keep).collect()
}

/// One chart of `latency.svg`.
pub struct Chart<'a> {
    pub title: String,
    pub series: Vec<(&'a str, &'a Histogram<u64>)>,
}

/// The title of a scenario's chart, with its ratios.
pub fn chart_title(s: &ScenarioResult) -> String {
    let c = &s.comparison;
    let mut parts = vec![];
    if c.saturation_ratio.is_some() {
        parts.push(format!(
            "throughput driftline/pass-through {} (goal ≥ {SATURATION_GOAL})",
            bounded_ratio(c.saturation_ratio, c.saturation_ratio_is)
        ));
    }
    if let Some(d) = c.p99_delta_ms {
        let goal = if s.name == "steady-half" {
            format!(" (goal ≤ {P99_DELTA_GOAL_MS} ms)")
        } else {
            String::new()
        };
        parts.push(format!("p99 Δ {d:+.2} ms{goal}"));
    }
    if let Some(r) = c.rate_out_ratio {
        parts.push(format!("out rate {r:.2}×"));
    }
    format!("{}: {}", s.name, parts.join(", "))
}

/// Writes `latency.svg`: one chart per scenario, stacked.
pub fn svg(path: &Path, charts: &[Chart<'_>]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    const COLORS: [RGBColor; 4] = [
        RGBColor(120, 120, 120),
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    let n = charts.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, 420 * n)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        for (area, chart) in root.split_evenly((n as usize, 1)).iter().zip(charts) {
            let curves: Vec<(&str, Vec<(f64, f64)>)> = chart
                .series
                .iter()
                .map(|(name, h)| (*name, percentile_curve(h)))
                .collect();
            let all = curves.iter().flat_map(|(_, c)| c.iter());
            let max_x = all.clone().map(|p| p.0).fold(2.0, f64::max).ceil();
            let lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = all.map(|p| p.1).fold(0.0, f64::max);
            let (lo, hi) = if lo.is_finite() && hi > 0.0 {
                (lo * 0.8, hi * 1.25)
            } else {
                (0.1, 10.0)
            };
            let mut c = ChartBuilder::on(area)
                .caption(&chart.title, ("sans-serif", 17))
                .margin(14)
                .margin_right(40)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(
                    0f64..max_x,
                    (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
                )?;
            c.configure_mesh()
                .x_desc("percentile")
                .y_desc("latency, scheduled send → output read (ms)")
                .x_labels(max_x as usize + 1)
                .x_label_formatter(&|x| nines_label(*x))
                .y_label_formatter(&|y| {
                    if *y >= 10.0 {
                        format!("{y:.0}")
                    } else {
                        format!("{y:.2}")
                    }
                })
                .draw()?;
            for (i, (name, curve)) in curves.into_iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                c.draw_series(LineSeries::new(curve, color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

/// A run's samples as CSV, one row per second: counters, lag, latency of
/// what was read in that second, CPU (cumulative seconds) and memory.
pub fn timeline_csv(samples: &[Sample]) -> String {
    let mut o = String::from(
        "t_s,sent,out,lag,p50_ms,p99_ms,max_ms,system_cpu_s,broker_cpu_s,loadgen_cpu_s,machine_busy_s,system_rss_mb\n",
    );
    let f = |v: Option<f64>, d: usize| v.map_or(String::new(), |v| format!("{v:.d$}"));
    for s in samples.iter().filter(|s| s.latency_us.is_some()) {
        let (p50, p99, max) = s.latency_us.unwrap_or_default();
        let _ = writeln!(
            o,
            "{:.1},{},{},{},{:.3},{:.3},{:.3},{},{},{},{},{}",
            s.t,
            s.sent,
            s.done,
            s.lag(),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            max as f64 / 1000.0,
            f(s.system_cpu_s, 2),
            f(s.broker_cpu_s, 2),
            f(s.loadgen_cpu_s, 2),
            f(s.machine_busy_s, 2),
            f(s.system_rss_kb.map(|kb| kb as f64 / 1024.0), 1),
        );
    }
    o
}

/// Writes every report file into `out`.
pub fn write_all(
    out: &Path,
    report: &Report,
    command: &str,
    histograms: &[(String, String, Histogram<u64>)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out.join("report.json"), json + "\n")?;
    std::fs::write(out.join("report.md"), markdown(report, command))?;
    for (scenario, system, h) in histograms {
        std::fs::write(out.join(format!("{scenario}-{system}.hgrm")), hgrm(h))?;
    }
    let charts: Vec<Chart<'_>> = report
        .scenarios
        .iter()
        .map(|s| Chart {
            title: chart_title(s),
            series: histograms
                .iter()
                .filter(|(name, _, _)| *name == s.name)
                .map(|(_, system, h)| {
                    let name = if system == "passthrough" {
                        "pass-through"
                    } else {
                        system.as_str()
                    };
                    (name, h)
                })
                .collect(),
        })
        .collect();
    svg(&out.join("latency.svg"), &charts).context("writing latency.svg")?;
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_shares_cover_the_window_busiest_first() {
        use crate::procs::ThreadCpu;
        let th = |tid, name: &str, secs| ThreadCpu {
            tid,
            name: name.to_string(),
            secs,
        };
        let threads = vec![
            (0.5, vec![th(1, "scoring", 0.1), th(2, "rdk:broker1", 0.0)]),
            (1.0, vec![th(1, "scoring", 0.2), th(2, "rdk:broker1", 0.0)]),
            (
                3.0,
                vec![
                    th(1, "scoring", 1.2),
                    th(2, "rdk:broker1", 0.4),
                    th(3, "idle", 0.0),
                ],
            ),
            (4.0, vec![th(1, "scoring", 2.0), th(2, "rdk:broker1", 0.5)]),
        ];
        // Window 1..3 s: the samples at 1.0 and 3.0.
        let s = thread_shares(&threads, (0.9, 3.5), Some(10_000.0));
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!((s[0].name.as_str(), s[0].tid), ("scoring", 1));
        assert!((s[0].cpu_percent - 50.0).abs() < 1e-9);
        assert!((s[0].us_per_event.unwrap() - 50.0).abs() < 1e-9);
        assert!((s[1].cpu_percent - 20.0).abs() < 1e-9);
        assert!(thread_shares(&threads, (3.5, 3.9), None).is_empty());
        assert!(thread_shares(&[], (0.0, 9.0), None).is_empty());
    }

    fn system(name: &str, out: f64, p99: f64, sat: Option<f64>) -> SystemResult {
        SystemResult {
            system: name.into(),
            rate_target: out,
            rate_in: Some(out),
            rate_out: Some(out),
            latency: Some(Percentiles {
                count: 1000,
                p50_ms: p99 / 2.0,
                p90_ms: p99 * 0.8,
                p99_ms: p99,
                p999_ms: p99 * 1.5,
                max_ms: p99 * 2.0,
                mean_ms: p99 / 2.0,
            }),
            sent: 1000,
            produce_failed: 0,
            received: 1000,
            dlq: 0,
            duplicates: 0,
            lost: 0,
            foreign: 0,
            lag_at_end: 0,
            drain_s: 0.1,
            cpu_percent: None,
            broker_cpu_percent: None,
            loadgen_cpu_percent: None,
            other_cpu_percent: None,
            cpu_us_per_event: None,
            broker_cpu_us_per_event: None,
            loadgen_cpu_us_per_event: None,
            threads: Vec::new(),
            rss_mb: None,
            rss_start_mb: None,
            rss_end_mb: None,
            peak_rss_mb: None,
            ready_s: 1.0,
            exit: "0".into(),
            saturation: sat.map(|t| SaturationResult {
                throughput: Some(t),
                limit: Limit::System,
                steps: vec![],
            }),
            burst: None,
        }
    }

    fn scenario(name: &str, mode: Mode, p: SystemResult, d: SystemResult) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            description: String::new(),
            mode: mode.name().into(),
            partitions: 4,
            cards: 2000,
            rate: 1.0,
            rate_source: String::new(),
            comparison: compare(&p, &d),
            passthrough: p,
            driftline: d,
        }
    }

    #[test]
    fn ratios_and_goals() {
        let sat = scenario(
            "saturation",
            Mode::Saturation,
            system("pass-through", 40_000.0, 10.0, Some(40_000.0)),
            system("driftline", 34_000.0, 12.0, Some(34_000.0)),
        );
        assert_eq!(sat.comparison.saturation_ratio, Some(0.85));
        assert_eq!(sat.comparison.saturation_ratio_is, Some(Bound::Exact));
        let half = scenario(
            "steady-half",
            Mode::Steady,
            system("pass-through", 17_000.0, 8.0, None),
            system("driftline", 17_000.0, 9.5, None),
        );
        assert_eq!(half.comparison.p99_delta_ms, Some(1.5));
        assert_eq!(half.comparison.rate_out_ratio, Some(1.0));
        assert_eq!(half.comparison.saturation_ratio, None);
        let g = goals(&[sat, half]);
        assert_eq!(g.saturation_met, Some(true));
        assert_eq!(g.steady_half_met, Some(false));
        assert_eq!(goals(&[]), Goals::default());
    }

    fn step_run(rate: f64, kept_up: bool, exit: &str) -> (SystemResult, Histogram<u64>) {
        let mut r = system("x", rate, rate / 1000.0, None);
        r.sent = 10;
        r.lost = u64::from(!kept_up);
        r.exit = exit.into();
        r.saturation = Some(SaturationResult {
            throughput: kept_up.then_some(rate),
            limit: if kept_up {
                Limit::NotReached
            } else {
                Limit::System
            },
            steps: vec![StepResult {
                rate_target: rate,
                rate_in: rate,
                rate_out: if kept_up { rate } else { rate / 2.0 },
                lag_end: 0,
                p99_ms: Some(1.0),
                kept_up,
                behind: (!kept_up).then_some(saturation::Behind::Output { read_ratio: 0.5 }),
            }],
        });
        let mut h = crate::measure::new_histogram();
        h.record(rate as u64).unwrap();
        (r, h)
    }

    #[test]
    fn saturation_steps_combine_into_one_result() {
        let runs = vec![
            step_run(1000.0, true, "0 (clean)"),
            step_run(2000.0, true, "0 (clean)"),
            step_run(4000.0, false, "0 (clean)"),
        ];
        let (r, h) = combine_steps("driftline", runs).unwrap();
        let sat = r.saturation.as_ref().unwrap();
        assert_eq!(sat.throughput, Some(2000.0));
        assert_eq!(sat.limit, Limit::System);
        assert_eq!(sat.steps.len(), 3);
        // Rates and latency of the step at saturation; counts of all steps.
        assert_eq!(r.rate_out, Some(2000.0));
        assert_eq!(h.max(), h.highest_equivalent(2000));
        assert_eq!((r.sent, r.lost), (30, 1));
        assert_eq!(r.system, "driftline");

        let (r, _) = combine_steps(
            "pass-through",
            vec![
                step_run(1000.0, true, "0 (clean)"),
                step_run(2000.0, true, "1 (see log)"),
            ],
        )
        .unwrap();
        let sat = r.saturation.as_ref().unwrap();
        assert_eq!(sat.throughput, Some(2000.0));
        assert_eq!(sat.limit, Limit::NotReached, "a lower bound only");
        assert_eq!(r.exit, "1 (see log)");

        let (r, _) = combine_steps("x", vec![step_run(1000.0, false, "0 (clean)")]).unwrap();
        assert_eq!(r.saturation.as_ref().unwrap().throughput, None);
        assert!(r.latency.is_none());
        assert!(combine_steps("x", vec![]).is_none());
    }

    #[test]
    fn bounds_of_saturation_ratios() {
        use saturation::Behind;
        let input = Behind::Input { sent_ratio: 0.7 };
        let output = Behind::Output { read_ratio: 0.5 };
        assert_eq!(Limit::of(&[]), Limit::NotReached);
        assert_eq!(Limit::of(&[&input, &input]), Limit::Input);
        assert_eq!(Limit::of(&[&input, &output]), Limit::System);
        // Pass-through limited by the generator: driftline/pass-through is at most r.
        let b = Bound::of(Limit::System, Limit::Input);
        assert_eq!(b, Bound::AtMost);
        assert_eq!(b.meets(0.55, 0.8), Some(false));
        assert_eq!(b.meets(0.9, 0.8), None);
        let b = Bound::of(Limit::NotReached, Limit::System);
        assert_eq!(b, Bound::AtLeast);
        assert_eq!(b.meets(0.9, 0.8), Some(true));
        assert_eq!(b.meets(0.5, 0.8), None);
        assert_eq!(Bound::of(Limit::Input, Limit::Input).meets(0.9, 0.8), None);
        assert_eq!(
            Bound::of(Limit::System, Limit::System).meets(0.79, 0.8),
            Some(false)
        );
    }

    #[test]
    fn ratios_never_divide_by_zero() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(f64::NAN), Some(2.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        let mut p = system("pass-through", 0.0, 1.0, Some(0.0));
        p.latency = None;
        let d = system("driftline", 10.0, 1.0, Some(10.0));
        let c = compare(&p, &d);
        assert_eq!(c.saturation_ratio, None);
        assert_eq!(c.rate_out_ratio, None);
        assert_eq!(c.p99_delta_ms, None);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_600_000), "2026-11-25T09:46:40Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn hgrm_has_the_classic_layout() {
        let mut h = crate::measure::new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let text = hgrm(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].trim_start().starts_with("Value"));
        assert!(lines[1].is_empty());
        // Rows: value (ms), percentile, cumulative count, 1/(1-p).
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.001");
        let last_row = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        let last: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(last.len(), 3, "{last_row}");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        let counts: Vec<u64> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        // 10,000 µs sits in a bucket whose highest equivalent value is 10,007.
        assert!(text.contains("#[Max     =       10.007, Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048"));
    }

    #[test]
    fn log_ticks_cover_the_range() {
        assert_eq!(log_ticks(30.0, 140.0), vec![30.0, 50.0, 70.0, 100.0]);
        let wide = log_ticks(0.5, 20_000.0);
        assert!(wide.len() <= 12 && wide.len() >= 5, "{wide:?}");
        assert!(wide.iter().all(|t| (0.5..=20_000.0).contains(t)));
        assert!(log_ticks(0.0, 1.0).is_empty());
        assert!(log_ticks(5.0, 5.0).is_empty());
    }

    #[test]
    fn curve_spans_the_nines_the_data_supports() {
        let mut h = crate::measure::new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let c = percentile_curve(&h);
        assert_eq!(c.first().map(|p| p.0), Some(0.0));
        assert!((c.last().unwrap().0 - 3.0).abs() < 1e-9);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(percentile_curve(&crate::measure::new_histogram()).is_empty());
    }
}
