//! Detection quality of the drift monitor (not a timing benchmark): false
//! alarms on stationary streams and detection delay after known shifts, on
//! the synthetic toy model of `driftline::drift::synthetic` (amount ~
//! N(50, 10²), channel 40/30/20/10%), with the service's default thresholds.
//!
//! `cargo bench --bench drift_quality` prints the table README quotes. Run
//! as a test (`cargo test --benches`) it does a short pass of each row.
//!
//! - false alarms: alert `firing` messages per 5,000-event window elapsed
//!   on a stationary stream (any feature, any statistic);
//! - delay: events from the first shifted event to the first `firing`
//!   message on the shifted feature, the shift starting at a random point
//!   of a sub-window after 20,000 stationary events.

use driftline::drift::monitor::{AlertState, DriftConfig, Output};
use driftline::drift::synthetic::{Shift, Simulation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where a run is cut off when nothing fired.
const GIVE_UP: usize = 50_000;

struct Layout {
    name: &'static str,
    config: DriftConfig,
}

fn layouts() -> Vec<Layout> {
    vec![
        Layout {
            name: "sliding 5,000 (5 x 1,000), default",
            config: DriftConfig::default(),
        },
        Layout {
            name: "tumbling 5,000",
            config: DriftConfig {
                sub_windows: 1,
                ..DriftConfig::default()
            },
        },
    ]
}

fn fired_on(outputs: &[Output], feature: &str) -> bool {
    outputs.iter().any(
        |o| matches!(o, Output::Alert(a) if a.state == AlertState::Firing && a.feature == feature),
    )
}

/// False alarms per 5,000-event window over `windows` windows of each seed.
fn false_alarms(config: &DriftConfig, seeds: u64, windows: usize) -> (f64, usize, usize) {
    let mut fired = 0;
    let mut total = 0;
    for seed in 0..seeds {
        let mut sim = match Simulation::new(config.clone(), 1000 + seed) {
            Ok(s) => s,
            Err(e) => panic!("the toy monitor: {e}"),
        };
        sim.feed(windows * 5000, Shift::None);
        fired += sim
            .outputs()
            .iter()
            .filter(|o| matches!(o, Output::Alert(a) if a.state == AlertState::Firing))
            .count();
        total += windows;
    }
    (fired as f64 / total as f64, fired, total)
}

/// Detection delays (events) of `shift` on `feature`; `None` = not within
/// [`GIVE_UP`] events.
fn delays(config: &DriftConfig, shift: Shift, feature: &str, seeds: u64) -> Vec<Option<usize>> {
    (0..seeds)
        .map(|seed| {
            let mut sim = match Simulation::new(config.clone(), 2000 + seed) {
                Ok(s) => s,
                Err(e) => panic!("the toy monitor: {e}"),
            };
            let lead = 20_000 + StdRng::seed_from_u64(seed).random_range(0..1000);
            sim.feed(lead, Shift::None);
            sim.take_outputs();
            for n in 1..=GIVE_UP {
                sim.step(shift);
                if fired_on(&sim.take_outputs(), feature) {
                    return Some(n);
                }
            }
            None
        })
        .collect()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (seeds, windows) = if full { (10, 200) } else { (1, 10) };
    println!("drift detection quality ({seeds} seed(s) per row; default thresholds: psi 0.2, ks alpha 1e-6 on the sketch's lower bound, chi-square alpha 1e-6, missing rate 0.1; fire after 1, resolve after 5)");
    println!();
    println!("| window | stream | false alarms / 5,000-event window | detected within 5,000 | within 10,000 | mean delay (events) | max delay |");
    println!("|---|---|---|---|---|---|---|");
    for layout in layouts() {
        let (rate, fired, total) = false_alarms(&layout.config, seeds, windows);
        println!(
            "| {} | stationary ({} windows) | {rate:.4} ({fired} alarms) | | | | |",
            layout.name, total
        );
        for (label, shift, feature) in [
            ("amount mean +0.25 sd", Shift::Mean(0.25), "amount"),
            ("amount sd x1.5", Shift::Scale(1.5), "amount"),
            (
                "channel `online` share +10 points",
                Shift::Surge(0.10),
                "channel",
            ),
            ("amount missing 20%", Shift::Missing(0.2), "amount"),
        ] {
            let d = delays(&layout.config, shift, feature, seeds);
            let found: Vec<usize> = d.iter().flatten().copied().collect();
            let within = |n: usize| found.iter().filter(|&&x| x <= n).count();
            let mean = if found.is_empty() {
                f64::NAN
            } else {
                found.iter().sum::<usize>() as f64 / found.len() as f64
            };
            println!(
                "| {} | {label} | | {}/{} | {}/{} | {mean:.0} | {} |",
                layout.name,
                within(5000),
                d.len(),
                within(10_000),
                d.len(),
                if found.len() < d.len() {
                    format!("> {GIVE_UP}")
                } else {
                    found.iter().max().map_or("-".into(), |m| m.to_string())
                }
            );
        }
    }
}
