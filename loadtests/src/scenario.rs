//! Scenarios: one folder each, `scenario.toml` (the load) and
//! `driftline.toml` (the service config for it).
//!
//! Guarantees: unknown keys and missing mode sections are errors naming the
//! file; a scenario turns into one [`Plan`] (the open-loop schedule plus
//! which of its segments are reported), the same for both systems of a run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::saturation::Rules;
use crate::schedule::{Schedule, Segment};

/// How the load is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One rate for `duration_s` after the warm-up.
    Steady,
    /// Rate steps up until the output falls behind.
    Saturation,
    /// Base rate, then `factor` × base for `burst_s`, then base again.
    Burst,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Steady => "steady",
            Mode::Saturation => "saturation",
            Mode::Burst => "burst",
        }
    }
}

/// `scenario.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub description: String,
    pub mode: Mode,
    /// Partitions of the input and output topics.
    pub partitions: i32,
    /// Cards (entities) the generator draws from.
    pub cards: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Seconds at the first rate before anything is measured (connections,
    /// fetch sessions, caches).
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    /// Steady: measured seconds.
    #[serde(default)]
    pub duration_s: f64,
    /// Steady: the rate; burst: the base rate (events/s). The fallback when
    /// `rate_of_saturation` is set but no saturation was measured before.
    #[serde(default)]
    pub rate: f64,
    /// This share of driftline's saturation throughput measured earlier in
    /// the same command, instead of `rate`.
    pub rate_of_saturation: Option<f64>,
    /// Longest wait for the last outputs after the last send.
    #[serde(default = "default_drain")]
    pub drain_s: f64,
    /// `linger.ms` of the generator's producer (default 5, as driftline's).
    #[serde(default = "default_linger")]
    pub producer_linger_ms: u32,
    pub saturation: Option<SaturationSettings>,
    pub burst: Option<BurstSettings>,
    /// A store snapshot of `cards` cards to generate before the run.
    pub snapshot: Option<SnapshotSettings>,
}

fn default_seed() -> u64 {
    7
}
fn default_warmup() -> f64 {
    5.0
}
fn default_drain() -> f64 {
    60.0
}
fn default_linger() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaturationSettings {
    pub start_rate: f64,
    /// Rate multiplier per step.
    #[serde(default = "default_factor")]
    pub factor: f64,
    pub step_s: f64,
    /// Most steps of the ramp (before bisecting).
    pub max_steps: usize,
    /// Bisection steps after the first step that fell behind.
    #[serde(default = "default_refine")]
    pub refine_steps: usize,
    /// A step whose p99 exceeds this fell behind.
    #[serde(default = "default_max_p99")]
    pub max_p99_ms: f64,
    /// A step that reads (or sends) less than this share fell behind.
    #[serde(default = "default_min_ratio")]
    pub min_ratio: f64,
}

fn default_factor() -> f64 {
    1.3
}
fn default_refine() -> usize {
    2
}
fn default_max_p99() -> f64 {
    1000.0
}
fn default_min_ratio() -> f64 {
    0.95
}

impl SaturationSettings {
    pub fn rules(&self) -> Rules {
        Rules {
            min_ratio: self.min_ratio,
            max_p99_us: (self.max_p99_ms * 1000.0) as u64,
            ..Rules::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstSettings {
    /// Burst rate = factor × base rate.
    pub factor: f64,
    pub before_s: f64,
    pub burst_s: f64,
    pub after_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettings {
    /// CSV file to write (relative to the repository root); the scenario's
    /// `driftline.toml` must point `store.snapshot` at it.
    pub path: PathBuf,
}

/// A scenario found on disk.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub dir: PathBuf,
    pub scenario: Scenario,
}

impl Found {
    pub fn driftline_config(&self) -> PathBuf {
        self.dir.join("driftline.toml")
    }
}

/// Finds `arg`: a folder holding `scenario.toml`, else the name of one under `scenarios`.
pub fn find(arg: &str, scenarios: &Path) -> anyhow::Result<Found> {
    let as_path = PathBuf::from(arg);
    let dir = if as_path.join("scenario.toml").is_file() {
        as_path
    } else {
        scenarios.join(arg)
    };
    let file = dir.join("scenario.toml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("scenario {arg:?}: reading {}", file.display()))?;
    let scenario: Scenario =
        toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    scenario
        .validate()
        .with_context(|| format!("in {}", file.display()))?;
    if !dir.join("driftline.toml").is_file() {
        bail!("scenario {arg:?}: {} has no driftline.toml", dir.display());
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_string());
    Ok(Found {
        name,
        dir,
        scenario,
    })
}

/// Where a reported latency comes from, and what else the mode measures.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schedule: Schedule,
    /// Segments whose events make up the reported latency (saturation: the
    /// steps that kept up, decided during the run).
    pub measured: Vec<usize>,
    /// Saturation: the segments judged as steps, in order.
    pub steps: Vec<usize>,
    /// Burst: (before, burst, after) segments.
    pub burst: Option<(usize, usize, usize)>,
    /// Steady rate, burst base rate, or first saturation step.
    pub rate: f64,
    /// Where `rate` came from, for the report.
    pub rate_source: String,
}

impl Scenario {
    fn validate(&self) -> anyhow::Result<()> {
        if self.partitions < 1 {
            bail!("partitions must be at least 1");
        }
        if self.cards < 1 {
            bail!("cards must be at least 1");
        }
        let positive = |what: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                bail!("{what} must be a positive number (got {x})")
            }
        };
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0) {
            bail!("warmup_s must be 0 or more");
        }
        positive("drain_s", self.drain_s)?;
        if let Some(f) = self.rate_of_saturation {
            positive("rate_of_saturation", f)?;
        }
        match self.mode {
            Mode::Steady => {
                positive("rate", self.rate)?;
                positive("duration_s", self.duration_s)?;
            }
            Mode::Burst => {
                positive("rate", self.rate)?;
                let Some(b) = &self.burst else {
                    bail!("mode = \"burst\" needs a [burst] section");
                };
                positive("burst.factor", b.factor)?;
                positive("burst.before_s", b.before_s)?;
                positive("burst.burst_s", b.burst_s)?;
                positive("burst.after_s", b.after_s)?;
            }
            Mode::Saturation => {
                let Some(s) = &self.saturation else {
                    bail!("mode = \"saturation\" needs a [saturation] section");
                };
                positive("saturation.start_rate", s.start_rate)?;
                positive("saturation.step_s", s.step_s)?;
                positive("saturation.max_p99_ms", s.max_p99_ms)?;
                if !(s.factor.is_finite() && s.factor > 1.0) {
                    bail!("saturation.factor must be above 1 (got {})", s.factor);
                }
                if !(s.min_ratio > 0.0 && s.min_ratio <= 1.0) {
                    bail!("saturation.min_ratio must be in (0, 1]");
                }
                if s.max_steps < 1 {
                    bail!("saturation.max_steps must be at least 1");
                }
            }
        }
        Ok(())
    }

    /// The rate of a steady or burst scenario: `rate_of_saturation` × the
    /// saturation measured earlier in the run when both exist, else `rate`.
    pub fn resolve_rate(&self, saturation: Option<f64>) -> (f64, String) {
        match (self.rate_of_saturation, saturation) {
            (Some(share), Some(sat)) if sat > 0.0 => (
                (share * sat).round().max(1.0),
                format!(
                    "{share} × driftline's saturation throughput ({sat:.0}/s) measured in this run"
                ),
            ),
            (Some(_), _) => (
                self.rate,
                "fixed fallback rate (no saturation measured earlier in this run)".into(),
            ),
            (None, _) => (self.rate, "fixed rate".into()),
        }
    }

    /// The schedule and what is reported from it.
    pub fn plan(&self, saturation: Option<f64>) -> Plan {
        match self.mode {
            Mode::Steady => {
                let (rate, rate_source) = self.resolve_rate(saturation);
                Plan {
                    schedule: Schedule::new(vec![
                        Segment::new("warmup", rate, self.warmup_s),
                        Segment::new("steady", rate, self.duration_s),
                    ]),
                    measured: vec![1],
                    steps: vec![],
                    burst: None,
                    rate,
                    rate_source,
                }
            }
            Mode::Burst => {
                let (rate, rate_source) = self.resolve_rate(saturation);
                let b = self.burst.clone().unwrap_or(BurstSettings {
                    factor: 5.0,
                    before_s: 10.0,
                    burst_s: 10.0,
                    after_s: 20.0,
                });
                Plan {
                    schedule: Schedule::new(vec![
                        Segment::new("warmup", rate, self.warmup_s),
                        Segment::new("before", rate, b.before_s),
                        Segment::new("burst", rate * b.factor, b.burst_s),
                        Segment::new("after", rate, b.after_s),
                    ]),
                    measured: vec![1, 2, 3],
                    steps: vec![],
                    burst: Some((1, 2, 3)),
                    rate,
                    rate_source,
                }
            }
            Mode::Saturation => self.step_plan(0, self.saturation_rates()[0]),
        }
    }

    fn saturation_settings(&self) -> SaturationSettings {
        self.saturation.clone().unwrap_or(SaturationSettings {
            start_rate: 5000.0,
            factor: default_factor(),
            step_s: 8.0,
            max_steps: 12,
            refine_steps: default_refine(),
            max_p99_ms: default_max_p99(),
            min_ratio: default_min_ratio(),
        })
    }

    /// Saturation: bisection steps after the ramp.
    pub fn refine_steps(&self) -> usize {
        self.saturation_settings().refine_steps
    }

    /// Saturation: the target rate of every step of the ramp, lowest first.
    pub fn saturation_rates(&self) -> Vec<f64> {
        let s = self.saturation_settings();
        let mut rate = s.start_rate;
        let mut rates = Vec::with_capacity(s.max_steps);
        for _ in 0..s.max_steps.max(1) {
            rates.push(rate.round());
            rate *= s.factor;
        }
        rates
    }

    /// Saturation: the plan of step `step` (0-based), run on its own fresh
    /// topics and process: `warmup_s` at the step's rate, then the step.
    pub fn step_plan(&self, step: usize, rate: f64) -> Plan {
        let s = self.saturation_settings();
        Plan {
            schedule: Schedule::new(vec![
                Segment::new("warmup", rate, self.warmup_s),
                Segment::new(format!("step {}", step + 1), rate, s.step_s),
            ]),
            measured: vec![1],
            steps: vec![1],
            burst: None,
            rate,
            rate_source: format!(
                "steps from {:.0}/s, ×{} each, then {} bisection steps; {} s warm-up + {} s measured per step on fresh topics",
                s.start_rate, s.factor, s.refine_steps, self.warmup_s, s.step_s
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn steady_plan_and_rate_of_saturation() {
        let s = parse(
            "mode = \"steady\"\npartitions = 4\ncards = 2000\nrate = 1000\nduration_s = 20\nrate_of_saturation = 0.5\nwarmup_s = 2",
        )
        .unwrap();
        let fallback = s.plan(None);
        assert_eq!(fallback.rate, 1000.0);
        assert_eq!(fallback.schedule.total(), 2000 + 20_000);
        assert_eq!(fallback.measured, vec![1]);
        let half = s.plan(Some(30_001.0));
        assert_eq!(half.rate, 15_001.0);
        assert!(half.rate_source.contains("0.5 ×"));
    }

    #[test]
    fn saturation_steps_up_one_plan_per_step() {
        let s = parse(
            "mode = \"saturation\"\npartitions = 2\ncards = 10\nwarmup_s = 1\n[saturation]\nstart_rate = 1000\nfactor = 1.5\nstep_s = 2\nmax_steps = 3",
        )
        .unwrap();
        assert_eq!(s.saturation_rates(), vec![1000.0, 1500.0, 2250.0]);
        let p = s.step_plan(2, 2250.0);
        let rates: Vec<f64> = p.schedule.segments().iter().map(|s| s.rate).collect();
        assert_eq!(rates, vec![2250.0, 2250.0]);
        assert_eq!(p.schedule.segments()[1].label, "step 3");
        assert_eq!((p.steps.clone(), p.measured.clone()), (vec![1], vec![1]));
        assert_eq!(p.schedule.total(), 2250 + 4500);
    }

    #[test]
    fn burst_plan() {
        let s = parse(
            "mode = \"burst\"\npartitions = 1\ncards = 10\nrate = 100\nwarmup_s = 1\n[burst]\nfactor = 5\nbefore_s = 2\nburst_s = 3\nafter_s = 4",
        )
        .unwrap();
        let p = s.plan(None);
        assert_eq!(p.burst, Some((1, 2, 3)));
        assert_eq!(p.schedule.segments()[2].rate, 500.0);
        assert_eq!(p.schedule.total(), 100 + 200 + 1500 + 400);
    }

    /// Every committed scenario folder parses, validates, makes a plan,
    /// and its driftline.toml loads with driftline's own loader.
    #[test]
    fn committed_scenarios_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("scenarios");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.len() >= 5, "{names:?}");
        for name in &names {
            let found = find(name, &dir).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let plan = found.scenario.plan(Some(100_000.0));
            assert!(plan.schedule.total() > 0, "{name}");
            let config = std::fs::read_to_string(found.driftline_config()).unwrap();
            // Relative paths in the configs are resolved from the repository root.
            let parsed: driftline::config::Config =
                toml::from_str(&config).unwrap_or_else(|e| panic!("{name}/driftline.toml: {e}"));
            assert!(
                root.join("..").join(&parsed.model.dir).is_dir(),
                "{name}: model {}",
                parsed.model.dir.display()
            );
        }
    }

    #[test]
    fn bad_scenarios_are_refused() {
        for bad in [
            "mode = \"steady\"\npartitions = 1\ncards = 1\nrate = 0\nduration_s = 1",
            "mode = \"burst\"\npartitions = 1\ncards = 1\nrate = 10",
            "mode = \"saturation\"\npartitions = 1\ncards = 1",
            "mode = \"steady\"\npartitions = 0\ncards = 1\nrate = 1\nduration_s = 1",
            "mode = \"steady\"\npartitions = 1\ncards = 1\nrate = 1\nduration_s = 1\ntypo = 3",
            "mode = \"sideways\"\npartitions = 1\ncards = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
