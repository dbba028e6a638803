//! From measurements to results: one run summarised, saturation steps
//! combined, per-thread CPU shares, and the ratios and goals that compare
//! driftline with the pass-through.

use hdrhistogram::Histogram;

use super::model::*;
use crate::measure::{self, Measurement, Sample};
use crate::saturation;
use crate::scenario::{Mode, Plan};

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
}
