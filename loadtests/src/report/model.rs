//! The result model: what one run of one system measured, the two
//! systems compared per scenario, the goals, and the whole report (the
//! shape of `report.json`).

use serde::Serialize;

use hdrhistogram::Histogram;

use crate::saturation;

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

    pub(super) fn prefix(self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
