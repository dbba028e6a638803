//! Saturation search: which rate to try next, and when a step counts as
//! "kept up".
//!
//! The rate ramps up by a factor per step until a step falls behind, then
//! [`next_rate`] bisects (geometrically) between the highest rate that kept
//! up and the lowest that did not, a fixed number of times. Each step is
//! judged by [`judge`]; the saturation throughput is the highest rate that
//! kept up below every rate that fell behind ([`saturation`]).
//!
//! A step falls behind when any of these holds (thresholds in [`Rules`]):
//! - the generator could not send its schedule (the input side refused the
//!   load: producer queue full, broker slow to acknowledge);
//! - fewer outputs were read than events sent (< 95 % by default);
//! - the lag (sent − read) grew by more than a share of the step's events;
//! - the p99 latency of what was read during the step exceeds a bound (1 s).

use serde::Serialize;

/// Thresholds of the step decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Smallest acceptable read/sent and sent/target ratio over a step.
    pub min_ratio: f64,
    /// Largest acceptable lag growth over a step, as a share of its target events.
    pub max_lag_growth: f64,
    /// Largest acceptable p99 latency over a step, in microseconds.
    pub max_p99_us: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_ratio: 0.95,
            max_lag_growth: 0.05,
            max_p99_us: 1_000_000,
        }
    }
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Target events per second.
    pub rate: f64,
    pub secs: f64,
    /// Events handed to the producer during the step.
    pub sent: u64,
    /// Outputs read during the step.
    pub read: u64,
    /// Lag (sent − read, cumulative) at the start and the end of the step.
    pub lag_start: u64,
    pub lag_end: u64,
    /// p99 latency of the outputs read during the step (`None`: none read).
    pub p99_us: Option<u64>,
}

/// Why a step fell behind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Behind {
    /// The generator sent less than its schedule (the input side is the limit).
    Input { sent_ratio: f64 },
    /// Fewer outputs than inputs.
    Output { read_ratio: f64 },
    /// Lag grew by this many events.
    Lag { growth: u64 },
    /// p99 over the bound.
    Latency { p99_us: u64 },
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Behind::Input { sent_ratio } => {
                write!(
                    f,
                    "input side sent {:.0}% of the target",
                    sent_ratio * 100.0
                )
            }
            Behind::Output { read_ratio } => {
                write!(f, "output {:.0}% of input", read_ratio * 100.0)
            }
            Behind::Lag { growth } => write!(f, "lag grew by {growth}"),
            Behind::Latency { p99_us } => {
                write!(f, "p99 {:.0} ms", *p99_us as f64 / 1000.0)
            }
        }
    }
}

/// The verdict on one step.
pub fn judge(step: &Step, rules: &Rules) -> Result<(), Behind> {
    let target = (step.rate * step.secs).max(1.0);
    let sent_ratio = step.sent as f64 / target;
    if sent_ratio < rules.min_ratio {
        return Err(Behind::Input { sent_ratio });
    }
    let read_ratio = step.read as f64 / step.sent.max(1) as f64;
    if read_ratio < rules.min_ratio {
        return Err(Behind::Output { read_ratio });
    }
    let growth = step.lag_end.saturating_sub(step.lag_start);
    if growth as f64 > rules.max_lag_growth * target {
        return Err(Behind::Lag { growth });
    }
    match step.p99_us {
        Some(p99_us) if p99_us > rules.max_p99_us => Err(Behind::Latency { p99_us }),
        // No output at all while sending is caught by the read ratio above.
        _ => Ok(()),
    }
}

/// The next rate to try: the next rate of `ramp` until a step fell behind,
/// then up to `refine` geometric midpoints between the highest rate that
/// kept up and the lowest that fell behind. `tried` holds `(rate, kept up)`
/// in the order run. `None`: the search is over.
pub fn next_rate(ramp: &[f64], tried: &[(f64, bool)], refine: usize) -> Option<f64> {
    let Some(first_bad) = tried.iter().position(|(_, ok)| !ok) else {
        return ramp.get(tried.len()).copied();
    };
    let refined = tried.len() - (first_bad + 1);
    if refined >= refine {
        return None;
    }
    let good = tried
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(r, _)| *r)
        .fold(f64::NAN, f64::max);
    let bad = tried
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(r, _)| *r)
        .fold(f64::NAN, f64::min);
    // Nothing kept up (the first step fell behind): no bracket to narrow.
    let mid = (good * bad).sqrt().round();
    (good.is_finite() && mid > good && mid < bad).then_some(mid)
}

/// Index (in `tried`) of the saturation throughput: the highest rate that
/// kept up below every rate that fell behind (`None`: none kept up).
pub fn saturation(tried: &[(f64, bool)]) -> Option<usize> {
    let lowest_bad = tried
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(r, _)| *r)
        .fold(f64::INFINITY, f64::min);
    tried
        .iter()
        .enumerate()
        .filter(|(_, (r, ok))| *ok && *r < lowest_bad)
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, sent: u64, read: u64, lag: (u64, u64), p99_ms: u64) -> Step {
        Step {
            rate,
            secs: 10.0,
            sent,
            read,
            lag_start: lag.0,
            lag_end: lag.1,
            p99_us: Some(p99_ms * 1000),
        }
    }

    #[test]
    fn a_step_that_keeps_up() {
        let rules = Rules::default();
        assert_eq!(
            judge(&step(1000.0, 10_000, 9_990, (20, 30), 12), &rules),
            Ok(())
        );
        // Catching up on an earlier backlog is fine.
        assert_eq!(
            judge(&step(1000.0, 10_000, 10_500, (600, 100), 40), &rules),
            Ok(())
        );
    }

    #[test]
    fn each_way_of_falling_behind() {
        let rules = Rules::default();
        assert!(matches!(
            judge(&step(1000.0, 9_000, 9_000, (0, 0), 1), &rules),
            Err(Behind::Input { .. })
        ));
        assert!(matches!(
            judge(&step(1000.0, 10_000, 9_000, (0, 1_000), 1), &rules),
            Err(Behind::Output { .. })
        ));
        // 96 % read but the lag grew by 600 (> 5 % of 10,000).
        assert_eq!(
            judge(&step(1000.0, 10_000, 9_600, (100, 700), 1), &rules),
            Err(Behind::Lag { growth: 600 })
        );
        assert_eq!(
            judge(&step(1000.0, 10_000, 10_000, (0, 0), 1_500), &rules),
            Err(Behind::Latency { p99_us: 1_500_000 })
        );
        let silent = Step {
            p99_us: None,
            ..step(1000.0, 10_000, 0, (0, 10_000), 0)
        };
        assert!(judge(&silent, &rules).is_err());
    }

    #[test]
    fn ramp_then_bisect() {
        let ramp = [100.0, 200.0, 400.0, 800.0];
        assert_eq!(next_rate(&ramp, &[], 2), Some(100.0));
        assert_eq!(next_rate(&ramp, &[(100.0, true)], 2), Some(200.0));
        let mut tried = vec![(100.0, true), (200.0, true), (400.0, false)];
        // sqrt(200 * 400) = 282.8
        assert_eq!(next_rate(&ramp, &tried, 2), Some(283.0));
        tried.push((283.0, true));
        assert_eq!(next_rate(&ramp, &tried, 2), Some(336.0));
        tried.push((336.0, false));
        assert_eq!(next_rate(&ramp, &tried, 2), None, "two refinements done");
        assert_eq!(saturation(&tried), Some(3));
        // The whole ramp kept up: the last rate, a lower bound.
        let all: Vec<(f64, bool)> = ramp.iter().map(|&r| (r, true)).collect();
        assert_eq!(next_rate(&ramp, &all, 2), None);
        assert_eq!(saturation(&all), Some(3));
        // The first step fell behind: nothing to bisect.
        assert_eq!(next_rate(&ramp, &[(100.0, false)], 2), None);
        assert_eq!(saturation(&[(100.0, false)]), None);
        assert_eq!(saturation(&[]), None);
        // No refinement asked.
        assert_eq!(next_rate(&ramp, &[(100.0, true), (200.0, false)], 0), None);
    }

    #[test]
    fn a_noisy_pass_above_a_failure_does_not_count() {
        // Kept up at 300 after failing at 250 (noise): 250 bounds the result.
        let tried = [(100.0, true), (200.0, true), (250.0, false), (300.0, true)];
        assert_eq!(saturation(&tried), Some(1));
    }
}
