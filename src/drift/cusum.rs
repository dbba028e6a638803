//! Two-sided CUSUM across windows: sequential evidence for persistent
//! shifts too small for one window's tests, with its false-alarm rate
//! calibrated analytically and stated per step.
//!
//! # What it accumulates
//!
//! One detector per feature statistic (a numeric feature's mean, a
//! category's share), fed once per *non-overlapping* sub-window with the
//! standardised difference of that sub-window from the reference,
//!
//! ```text
//! z_t = (x̄_t - μ_r) / (σ_r / √n_t)        (n_t: the effective size)
//! S⁺_t = max(0, S⁺_{t-1} + z_t - (k + u_t)),   S⁻_t = max(0, S⁻_{t-1} - z_t - (k + u_t))
//! ```
//!
//! and alarms when either side exceeds `h` (then both restart at 0).
//! Sliding windows overlap and would feed correlated increments, hence
//! sub-windows.
//!
//! # The reference margin `u_t`
//!
//! The reference is a fixed sample: its mean is off the true one by
//! `e ~ N(0, σ²/N_r)`, the *same* `e` in every step. A CUSUM sums steps,
//! so it would eventually alarm on the reference's own error. In `z_t`
//! units that error is `e √n_t / σ`, with standard deviation
//! `√(n_t / N_r)`; the allowance is raised by `u_t = c √(n_t / N_r)`
//! ([`reference_margin`], `c` = [`REFERENCE_SDS`] = 4: exceeded by one
//! reference in 16,000), and the threshold is calibrated for the worst case
//! `|e|` = that margin: the drift of the side it pushes is then `-k`.
//! The price is a floor on what can be detected: shifts below about
//! `(k + u_t) / √n_t` reference σ per step, i.e. `≈ 4 σ / √N_r` for a
//! long run, which no comparison with that reference can beat.
//!
//! # Calibration
//!
//! Siegmund's approximation of the in-control average run length of a
//! one-sided CUSUM of N(-k, 1) steps,
//! `ARL0 = (e^{2 k b} - 2 k b - 1) / (2 k²)`, `b = h + 1.166`
//! ([`arl0`]), accurate to a few per cent for normal steps (the unit test
//! checks it by simulation). Two sides alarm at most at rate `2 / ARL0` per
//! step; [`threshold_for`] picks the `h` that holds that rate at the
//! budget's `α` per step. Steps are sub-window means, so their normality
//! holds for any column with a finite variance and hundreds of events per
//! sub-window.
//!
//! Guarantees: no panic; non-finite steps are ignored (counted).

use serde::{Deserialize, Serialize};

/// Which side alarmed: the mean (or share) moved up or down.
pub use super::sequential::Direction;

/// Reference standard errors added to the allowance ([`reference_margin`]).
pub const REFERENCE_SDS: f64 = 4.0;

/// Default allowance `k` in per-step z units: the detector is most
/// efficient for persistent shifts of `2k` z units per step on top of the
/// margin.
pub const DEFAULT_ALLOWANCE: f64 = 0.5;

/// Settings of a [`Cusum`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CusumParams {
    /// Allowance `k` (per-step z units) before the reference margin.
    pub allowance: f64,
    /// Alarm threshold `h` of either side.
    pub threshold: f64,
}

impl CusumParams {
    /// The threshold that holds a false-alarm rate of `alpha` per step
    /// with the given allowance ([`threshold_for`]).
    pub fn calibrated(alpha: f64, allowance: f64) -> Self {
        CusumParams {
            allowance,
            threshold: threshold_for(alpha, allowance),
        }
    }
}

/// Siegmund's in-control ARL of a one-sided CUSUM whose steps are N(-k, 1)
/// (`k > 0`), threshold `h`; see the module docs. `∞` for `k ≤ 0` is not
/// claimed: it returns the Brownian limit `(h + 1.166)²` there.
pub fn arl0(k: f64, h: f64) -> f64 {
    let b = h.max(0.0) + 1.166;
    if k.is_nan() || k <= 1e-9 {
        return b * b;
    }
    let x = 2.0 * k * b;
    (x.exp() - x - 1.0) / (2.0 * k * k)
}

/// The smallest `h` with `2 / arl0(k, h) ≤ alpha` (two sides), found by
/// bisection; `alpha` outside `(0, 1)` or `k ≤ 0` gives `∞` (never alarm).
pub fn threshold_for(alpha: f64, k: f64) -> f64 {
    if !(alpha > 0.0 && alpha < 1.0 && k > 0.0) {
        return f64::INFINITY;
    }
    let target = 2.0 / alpha;
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while arl0(k, hi) < target {
        hi *= 2.0;
        if hi > 1e6 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if arl0(k, mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The allowance added for the reference's own error (module docs):
/// `REFERENCE_SDS · √(n_step / n_reference)`, both effective sizes. An
/// empty reference gives `∞` (nothing can be detected against it).
pub fn reference_margin(n_step: f64, n_reference: f64) -> f64 {
    if n_reference.is_nan() || n_reference <= 0.0 {
        return f64::INFINITY;
    }
    REFERENCE_SDS * (n_step.max(0.0) / n_reference).sqrt()
}

/// An alarm: the side, the statistic that crossed and the steps since the
/// side last left 0 (the estimated duration of the shift).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Alarm {
    pub direction: Direction,
    pub statistic: f64,
    pub threshold: f64,
    pub steps: u64,
}

/// A two-sided CUSUM; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cusum {
    params: CusumParams,
    up: f64,
    down: f64,
    up_steps: u64,
    down_steps: u64,
    /// Non-finite steps ignored.
    ignored: u64,
}

impl Cusum {
    pub fn new(params: CusumParams) -> Self {
        Cusum {
            params,
            up: 0.0,
            down: 0.0,
            up_steps: 0,
            down_steps: 0,
            ignored: 0,
        }
    }

    /// One step: the sub-window's standardised difference `z` and the
    /// reference margin for its size ([`reference_margin`]). Returns an
    /// alarm (and restarts) when a side crosses the threshold.
    pub fn update(&mut self, z: f64, margin: f64) -> Option<Alarm> {
        if !z.is_finite() || margin.is_nan() {
            self.ignored += 1;
            return None;
        }
        let k = self.params.allowance + margin.max(0.0);
        let step = |s: f64, x: f64, n: &mut u64| {
            let next = (s + x - k).max(0.0);
            *n = if next > 0.0 { *n + 1 } else { 0 };
            next
        };
        self.up = step(self.up, z, &mut self.up_steps);
        self.down = step(self.down, -z, &mut self.down_steps);
        let h = self.params.threshold;
        let alarm = if self.up > h {
            Some((Direction::Up, self.up, self.up_steps))
        } else if self.down > h {
            Some((Direction::Down, self.down, self.down_steps))
        } else {
            None
        };
        alarm.map(|(direction, statistic, steps)| {
            self.reset();
            Alarm {
                direction,
                statistic,
                threshold: h,
                steps,
            }
        })
    }

    /// Both sides back to 0.
    pub fn reset(&mut self) {
        self.up = 0.0;
        self.down = 0.0;
        self.up_steps = 0;
        self.down_steps = 0;
    }

    /// The larger side, for status pages.
    pub fn statistic(&self) -> f64 {
        self.up.max(self.down)
    }

    pub fn params(&self) -> CusumParams {
        self.params
    }

    /// Non-finite steps ignored so far.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    /// Mean steps to an alarm of a one-sided CUSUM with N(drift, 1) steps.
    fn simulated_arl(k: f64, h: f64, drift: f64, alarms: usize, seed: u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut s, mut steps, mut seen) = (0.0f64, 0u64, 0usize);
        while seen < alarms {
            let x: f64 = StandardNormal.sample(&mut rng);
            steps += 1;
            s = (s + x + drift - k).max(0.0);
            if s > h {
                seen += 1;
                s = 0.0;
            }
        }
        steps as f64 / alarms as f64
    }

    #[test]
    fn siegmund_matches_simulation() {
        let (k, h) = (0.5, 4.0);
        let predicted = arl0(k, h);
        let simulated = simulated_arl(k, h, 0.0, 3000, 7);
        let ratio = simulated / predicted;
        assert!((0.85..1.15).contains(&ratio), "{simulated} vs {predicted}");
    }

    #[test]
    fn a_persistent_shift_is_found_and_the_margin_holds_a_biased_reference() {
        let params = CusumParams::calibrated(1e-3, 0.5);
        assert!(2.0 / arl0(0.5, params.threshold) <= 1e-3 * (1.0 + 1e-9));
        let mut rng = StdRng::seed_from_u64(3);
        // Reference off by its margin, no shift: no alarm in 1,000 steps
        // (expected rate 1e-3 per step at the worst case, so ~37% chance
        // of one alarm; test the up side at half the margin instead).
        let margin = reference_margin(1000.0, 40_000.0);
        let mut c = Cusum::new(params);
        let mut alarms = 0;
        for _ in 0..1000 {
            let x: f64 = StandardNormal.sample(&mut rng);
            alarms += usize::from(c.update(x + margin / 2.0, margin).is_some());
        }
        assert_eq!(alarms, 0);
        // 0.1σ shift, steps of 1,000 events: z drift ≈ 3.2 per step.
        let mut c = Cusum::new(params);
        let found = (1..=100).find(|_| {
            let x: f64 = StandardNormal.sample(&mut rng);
            c.update(x + 0.1 * 1000f64.sqrt(), margin).is_some()
        });
        assert!(found.is_some_and(|n| n <= 10), "{found:?}");
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(threshold_for(0.0, 0.5), f64::INFINITY);
        assert_eq!(threshold_for(0.01, 0.0), f64::INFINITY);
        assert_eq!(reference_margin(10.0, 0.0), f64::INFINITY);
        let mut c = Cusum::new(CusumParams::calibrated(0.01, 0.5));
        assert_eq!(c.update(f64::NAN, 0.0), None);
        assert_eq!(c.update(1e300, f64::INFINITY), None);
        assert_eq!(c.ignored(), 1);
        assert!(arl0(0.0, 3.0).is_finite());
    }
}
