//! Rollout plans: the `[lifecycle]` configuration and its compiled form.
//!
//! A plan is a list of steps, each run with the plan's gates checked while
//! it runs, modelled on Argo Rollouts' canary steps and analysis:
//!
//! ```toml
//! [lifecycle.plans.fraud-mlp]
//! failure_limit = 0                   # consecutive failed checks tolerated
//! steps = [
//!   { kind = "shadow", events = 20000 },
//!   { kind = "canary", percent = 5, duration = "10m" },
//!   { kind = "canary", percent = 25, events = 50000 },
//!   { kind = "promote" },
//! ]
//! [lifecycle.plans.fraud-mlp.gates]
//! max_rejection_rate = 0.01
//! min_agreement = 0.95
//! ```
//!
//! Guarantees: configuration is parsed strictly (unknown keys are errors)
//! and [`LifecycleConfig::problems`] reports every problem at once, each
//! naming its key (`lifecycle.plans.fraud-mlp.steps[2].percent: ...`); a
//! [`RolloutPlan`] exists only for a plan without problems, so the state
//! machine never meets a plan it cannot run: it ends with its one
//! `promote`, shadow steps come before canary steps, and canary shares never
//! fall (a falling share would move entities back to the primary).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::routing::Share;
use crate::duration::parse_ms as parse_window;

/// `[lifecycle]`: versions, rollouts and where their state lives.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Whether the model's directory (the parent of `model.dir`) is scanned
    /// for new versions; off, versions load only through the admin API.
    pub watch: bool,
    /// How often the directory is scanned (e.g. `10s`). A version is taken
    /// once its files have stayed unchanged for one interval, so a copy in
    /// progress is never validated half-written.
    pub watch_interval: String,
    /// How often a running rollout's gates are checked and its step
    /// progress judged (e.g. `5s`); `failure_limit` counts these checks.
    pub check_interval: String,
    /// How long the old primary stays loaded after a promotion, so that a
    /// manual rollback is instant (e.g. `30m`).
    pub keep_previous: String,
    /// Most bytes of loaded model versions (their ONNX files' sizes, about
    /// what their weights hold in memory). Past it, versions the lifecycle
    /// state does not name (loaded by the watcher or `load` and never
    /// rolled out, or long replaced) are released, least recently loaded
    /// first; the configured version and those the state names are always
    /// kept, so they alone can exceed it.
    pub max_model_bytes: usize,
    /// Rollout plans by model name (the manifest's `name`).
    pub plans: BTreeMap<String, PlanConfig>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            watch: true,
            watch_interval: "10s".into(),
            check_interval: "5s".into(),
            keep_previous: "30m".into(),
            max_model_bytes: 512 * 1024 * 1024,
            plans: BTreeMap::new(),
        }
    }
}

/// One model's rollout plan as written in the config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Start this plan by itself when a new version passes validation;
    /// otherwise a rollout starts through the admin API.
    #[serde(default = "default_true")]
    pub auto_start: bool,
    /// The steps, in order; the last one is `promote`.
    pub steps: Vec<StepConfig>,
    /// Thresholds checked while any step runs; an absent threshold is not checked.
    #[serde(default)]
    pub gates: GatesConfig,
    /// Consecutive failed checks of one gate that are tolerated; the next
    /// failure rolls back (Argo Rollouts' `failureLimit`, counted per gate
    /// and consecutively). 0: the first failed check rolls back.
    #[serde(default)]
    pub failure_limit: u32,
}

fn default_true() -> bool {
    true
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The candidate scores `percent` of entities (default all) next to the
    /// primary; its predictions go to `predictions-shadow` only.
    Shadow,
    /// The candidate serves `percent` of entities.
    Canary,
    /// Holds the previous step's traffic for `duration`, or until `resume`.
    Pause,
    /// The candidate becomes the primary.
    Promote,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Shadow => "shadow",
            StepKind::Canary => "canary",
            StepKind::Pause => "pause",
            StepKind::Promote => "promote",
        }
    }
}

/// One step as written in the config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// `shadow`, `canary`, `pause` or `promote`.
    pub kind: StepKind,
    /// Share of entities (0-100]: required for `canary`, default 100 for `shadow`.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Events the candidate must score in this step before it passes.
    #[serde(default)]
    pub events: Option<u64>,
    /// Time the step must run before it passes (e.g. `10m`); with `events`
    /// too, both must be reached.
    #[serde(default)]
    pub duration: Option<String>,
}

/// Gate thresholds as written in the config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatesConfig {
    /// Candidate events (or shadow pairs) a step needs before its
    /// statistical gates are judged; before that they are `pending`.
    pub min_events: u64,
    /// Score at or above which an event is a positive decision (shadow agreement).
    pub decision_threshold: f64,
    /// The candidate's rejection rate may exceed the primary's on the same
    /// traffic by at most this (0.01 = one point).
    pub max_rejection_rate: Option<f64>,
    /// The candidate's p99 scoring latency per event (e.g. `2ms`).
    pub max_latency_p99: Option<String>,
    /// Shadow pairs: mean absolute difference of the two scores.
    pub max_mean_abs_diff: Option<f64>,
    /// Shadow pairs: Spearman rank correlation of the two scores.
    pub min_rank_correlation: Option<f64>,
    /// Shadow pairs: share of events on which both decide alike at `decision_threshold`.
    pub min_agreement: Option<f64>,
    /// Canary: PSI of the candidate's score distribution against the primary's.
    pub max_score_psi: Option<f64>,
    /// Canary: Kolmogorov-Smirnov distance of the two score distributions.
    pub max_score_ks: Option<f64>,
    /// Drift alerts of the candidate against its own reference profile
    /// allowed in a step: alerts firing at any time during the step (0:
    /// any alert fails the gate). Needs drift monitoring on and a
    /// reference profile in the candidate's manifest, else pending.
    pub max_drift_alerts: Option<u32>,
    /// Labelled predictions each version needs before the label gates are judged.
    pub min_labels: u64,
    /// The candidate's AUC may be lower than the primary's by at most this.
    pub max_auc_drop: Option<f64>,
    /// The candidate's log-loss may exceed the primary's by at most this.
    pub max_log_loss_increase: Option<f64>,
}

impl Default for GatesConfig {
    fn default() -> Self {
        GatesConfig {
            min_events: 500,
            decision_threshold: 0.5,
            max_rejection_rate: None,
            max_latency_p99: None,
            max_mean_abs_diff: None,
            min_rank_correlation: None,
            min_agreement: None,
            max_score_psi: None,
            max_score_ks: None,
            max_drift_alerts: None,
            min_labels: 500,
            max_auc_drop: None,
            max_log_loss_increase: None,
        }
    }
}

/// A step of a compiled plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Shadow {
        share: Share,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        events: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    Canary {
        share: Share,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        events: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    Pause {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    Promote,
}

impl Step {
    /// One line for logs and events, e.g. `canary 5% for 10m`.
    pub fn describe(&self) -> String {
        let target = |events: &Option<u64>, duration_ms: &Option<u64>| {
            let mut parts = Vec::new();
            if let Some(n) = events {
                parts.push(format!("{n} events"));
            }
            if let Some(ms) = duration_ms {
                parts.push(format!("for {}", human_duration(*ms)));
            }
            parts.join(" and ")
        };
        match self {
            Step::Shadow {
                share,
                events,
                duration_ms,
            } => format!(
                "shadow {}% {}",
                share.percent(),
                target(events, duration_ms)
            ),
            Step::Canary {
                share,
                events,
                duration_ms,
            } => format!(
                "canary {}% {}",
                share.percent(),
                target(events, duration_ms)
            ),
            Step::Pause {
                duration_ms: Some(ms),
            } => format!("pause for {}", human_duration(*ms)),
            Step::Pause { duration_ms: None } => "pause until resumed".into(),
            Step::Promote => "promote".into(),
        }
    }
}

/// `600000` → `10m`, `1500` → `1500ms`: the largest unit that divides.
pub fn human_duration(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A plan ready to run: what a rollout carries in its durable state, so
/// that it finishes with the plan it started with whatever the config of
/// the instance that drives it next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPlan {
    pub steps: Vec<Step>,
    /// Validated thresholds.
    pub gates: GatesConfig,
    pub failure_limit: u32,
}

impl LifecycleConfig {
    /// Every problem of the section, each starting with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, value) in [
            ("lifecycle.watch_interval", &self.watch_interval),
            ("lifecycle.check_interval", &self.check_interval),
            ("lifecycle.keep_previous", &self.keep_previous),
        ] {
            if let Err(e) = parse_window(value) {
                p.push(format!("{key}: {e}"));
            }
        }
        for (name, plan) in &self.plans {
            plan.problems(&format!("lifecycle.plans.{name}"), &mut p);
        }
        p
    }

    /// The plan of a model, compiled; `None` when the config has none.
    pub fn plan(&self, model: &str) -> Option<Result<RolloutPlan, Vec<String>>> {
        self.plans
            .get(model)
            .map(|plan| plan.compile(&format!("lifecycle.plans.{model}")))
    }

    /// `watch_interval` in milliseconds (validated by [`Self::problems`]).
    pub fn watch_interval_ms(&self) -> u64 {
        positive_ms(&self.watch_interval).unwrap_or(10_000)
    }

    /// `check_interval` in milliseconds (validated by [`Self::problems`]).
    pub fn check_interval_ms(&self) -> u64 {
        positive_ms(&self.check_interval).unwrap_or(5_000)
    }

    /// `keep_previous` in milliseconds (validated by [`Self::problems`]).
    pub fn keep_previous_ms(&self) -> u64 {
        positive_ms(&self.keep_previous).unwrap_or(1_800_000)
    }
}

fn positive_ms(s: &str) -> Option<u64> {
    parse_window(s).ok().and_then(|ms| u64::try_from(ms).ok())
}

impl PlanConfig {
    /// The compiled plan, or every problem, each prefixed with `key`.
    pub fn compile(&self, key: &str) -> Result<RolloutPlan, Vec<String>> {
        let mut p = Vec::new();
        let plan = self.build(key, &mut p);
        if p.is_empty() {
            Ok(plan)
        } else {
            Err(p)
        }
    }

    fn problems(&self, key: &str, p: &mut Vec<String>) {
        self.build(key, p);
    }

    /// Compiles, collecting problems; the plan is meaningful only when none were found.
    fn build(&self, key: &str, p: &mut Vec<String>) -> RolloutPlan {
        if self.steps.is_empty() {
            p.push(format!(
                "{key}.steps: a plan needs at least a `promote` step"
            ));
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut canary_share = Share::NONE;
        let mut seen_canary = false;
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("{key}.steps[{i}]");
            let last = i + 1 == self.steps.len();
            let duration_ms = match &step.duration {
                None => None,
                Some(d) => match positive_ms(d) {
                    Some(ms) => Some(ms),
                    None => {
                        let why = parse_window(d)
                            .err()
                            .map_or_else(|| "must be positive".to_owned(), |e| e.to_string());
                        p.push(format!("{at}.duration: {why}"));
                        None
                    }
                },
            };
            if step.events == Some(0) {
                p.push(format!("{at}.events: must be at least 1"));
            }
            let share = match step.percent {
                None => None,
                Some(pc) if pc.is_finite() && pc > 0.0 && pc <= 100.0 => {
                    Some(Share::from_percent(pc))
                }
                Some(pc) => {
                    p.push(format!("{at}.percent: {pc} is outside (0, 100]"));
                    None
                }
            };
            let needs_target = || {
                format!(
                    "{at}: a {} step needs `events` or `duration` to know when it has passed",
                    step.kind.as_str()
                )
            };
            let compiled = match step.kind {
                StepKind::Shadow => {
                    if seen_canary {
                        p.push(format!(
                            "{at}: shadow steps come before canary steps (a shadow would take the canary's traffic back)"
                        ));
                    }
                    if step.events.is_none() && step.duration.is_none() {
                        p.push(needs_target());
                    }
                    Step::Shadow {
                        share: share.unwrap_or(Share::ALL),
                        events: step.events,
                        duration_ms,
                    }
                }
                StepKind::Canary => {
                    seen_canary = true;
                    if step.percent.is_none() {
                        p.push(format!(
                            "{at}.percent: a canary step needs its share of entities"
                        ));
                    }
                    if step.events.is_none() && step.duration.is_none() {
                        p.push(needs_target());
                    }
                    let share = share.unwrap_or(Share::NONE);
                    if share < canary_share {
                        p.push(format!(
                            "{at}.percent: {}% is below the earlier canary step's {}% (entities would flip back to the primary)",
                            share.percent(),
                            canary_share.percent()
                        ));
                    }
                    canary_share = canary_share.max(share);
                    Step::Canary {
                        share,
                        events: step.events,
                        duration_ms,
                    }
                }
                StepKind::Pause => {
                    if step.percent.is_some() || step.events.is_some() {
                        p.push(format!(
                            "{at}: a pause keeps the previous step's traffic and takes only `duration`"
                        ));
                    }
                    Step::Pause { duration_ms }
                }
                StepKind::Promote => {
                    if step.percent.is_some() || step.events.is_some() || step.duration.is_some() {
                        p.push(format!(
                            "{at}: `promote` takes no percent, events or duration"
                        ));
                    }
                    if !last {
                        p.push(format!("{at}: `promote` must be the last step"));
                    }
                    Step::Promote
                }
            };
            steps.push(compiled);
        }
        if !self.steps.is_empty() && !matches!(steps.last(), Some(Step::Promote)) {
            p.push(format!("{key}.steps: the last step must be `promote`"));
        }
        RolloutPlan {
            steps,
            gates: {
                self.gates.problems(&format!("{key}.gates"), p);
                self.gates.clone()
            },
            failure_limit: self.failure_limit,
        }
    }
}

impl GatesConfig {
    /// `max_latency_p99` in microseconds (validated by the plan's problems).
    pub fn max_latency_p99_us(&self) -> Option<f64> {
        self.max_latency_p99
            .as_deref()
            .and_then(|s| parse_latency_us(s).ok())
    }

    fn problems(&self, key: &str, p: &mut Vec<String>) {
        let unit = |name: &str, v: Option<f64>, p: &mut Vec<String>| {
            if let Some(x) = v.filter(|x| !(0.0..=1.0).contains(x)) {
                p.push(format!("{key}.{name}: {x} is outside [0, 1]"));
            }
        };
        let non_negative = |name: &str, v: Option<f64>, p: &mut Vec<String>| {
            if let Some(x) = v.filter(|x| !(x.is_finite() && *x >= 0.0)) {
                p.push(format!("{key}.{name}: {x} must be a finite number ≥ 0"));
            }
        };
        if !self.decision_threshold.is_finite() {
            p.push(format!(
                "{key}.decision_threshold: {} is not a finite number",
                self.decision_threshold
            ));
        }
        if let Some(x) = self.min_rank_correlation {
            if !(-1.0..=1.0).contains(&x) {
                p.push(format!(
                    "{key}.min_rank_correlation: {x} is outside [-1, 1]"
                ));
            }
        }
        if let Some(Err(e)) = self.max_latency_p99.as_deref().map(parse_latency_us) {
            p.push(format!("{key}.max_latency_p99: {e}"));
        }
        if self.min_events == 0 {
            p.push(format!("{key}.min_events: must be at least 1"));
        }
        if self.min_labels == 0 {
            p.push(format!("{key}.min_labels: must be at least 1"));
        }
        unit("max_rejection_rate", self.max_rejection_rate, p);
        unit("min_agreement", self.min_agreement, p);
        unit("max_score_ks", self.max_score_ks, p);
        unit("max_auc_drop", self.max_auc_drop, p);
        non_negative("max_mean_abs_diff", self.max_mean_abs_diff, p);
        non_negative("max_score_psi", self.max_score_psi, p);
        non_negative("max_log_loss_increase", self.max_log_loss_increase, p);
    }
}

/// A latency such as `2ms`, `500us` or `1s`, in microseconds.
fn parse_latency_us(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if let Some(us) = t.strip_suffix("us").or_else(|| t.strip_suffix("µs")) {
        return match us.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n as f64),
            _ => Err(format!(
                "{s:?} is not a positive whole number of microseconds"
            )),
        };
    }
    parse_window(t)
        .map(|ms| ms as f64 * 1_000.0)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LifecycleConfig {
        toml::from_str(text).unwrap()
    }

    const GOOD: &str = r#"
[plans.fraud-mlp]
failure_limit = 1
steps = [
  { kind = "shadow", events = 20000 },
  { kind = "canary", percent = 5, duration = "10m" },
  { kind = "pause" },
  { kind = "canary", percent = 25, events = 50000, duration = "1m" },
  { kind = "promote" },
]
[plans.fraud-mlp.gates]
max_rejection_rate = 0.01
max_latency_p99 = "1500us"
min_agreement = 0.95
max_score_psi = 0.2
max_drift_alerts = 0
"#;

    #[test]
    fn a_good_plan_compiles_to_typed_steps() {
        let config = parse(GOOD);
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        let plan = config.plan("fraud-mlp").unwrap().unwrap();
        assert_eq!(plan.failure_limit, 1);
        assert_eq!(
            plan.steps,
            vec![
                Step::Shadow {
                    share: Share::ALL,
                    events: Some(20_000),
                    duration_ms: None
                },
                Step::Canary {
                    share: Share::from_percent(5.0),
                    events: None,
                    duration_ms: Some(600_000)
                },
                Step::Pause { duration_ms: None },
                Step::Canary {
                    share: Share::from_percent(25.0),
                    events: Some(50_000),
                    duration_ms: Some(60_000)
                },
                Step::Promote,
            ]
        );
        assert_eq!(plan.gates.max_latency_p99_us(), Some(1500.0));
        assert_eq!(plan.gates.max_drift_alerts, Some(0));
        assert_eq!(plan.gates.max_auc_drop, None);
        assert_eq!(plan.steps[1].describe(), "canary 5% for 10m");
        assert!(config.plan("other").is_none());
        // The compiled plan survives the durable state's JSON.
        let json = serde_json::to_string(&plan).unwrap();
        let back: RolloutPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let config = parse(
            r#"
watch_interval = "often"
[plans.m]
steps = [
  { kind = "canary", percent = 25, events = 10 },
  { kind = "shadow" },
  { kind = "canary", percent = 5, duration = "forever" },
  { kind = "promote", percent = 3 },
  { kind = "canary", percent = 150, events = 0 },
]
[plans.m.gates]
min_agreement = 1.5
max_latency_p99 = "fast"
min_rank_correlation = -2
"#,
        );
        let problems = config.problems();
        for want in [
            "lifecycle.watch_interval:",
            "lifecycle.plans.m.steps[1]: shadow steps come before canary steps",
            "lifecycle.plans.m.steps[1]: a shadow step needs `events` or `duration`",
            "lifecycle.plans.m.steps[2].duration:",
            "lifecycle.plans.m.steps[2].percent: 5% is below the earlier canary step's 25%",
            "lifecycle.plans.m.steps[3]: `promote` takes no percent",
            "lifecycle.plans.m.steps[3]: `promote` must be the last step",
            "lifecycle.plans.m.steps[4].percent: 150 is outside (0, 100]",
            "lifecycle.plans.m.steps[4].events: must be at least 1",
            "lifecycle.plans.m.steps: the last step must be `promote`",
            "lifecycle.plans.m.gates.min_agreement: 1.5 is outside [0, 1]",
            "lifecycle.plans.m.gates.max_latency_p99:",
            "lifecycle.plans.m.gates.min_rank_correlation: -2 is outside [-1, 1]",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "{want} missing from {problems:#?}"
            );
        }
        assert!(config.plan("m").unwrap().is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<LifecycleConfig>(
            "[plans.m]\nsteps = [{ kind = \"promote\", percnt = 5 }]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("percnt"), "{err}");
        let err = toml::from_str::<LifecycleConfig>(
            "[plans.m]\nsteps = [{ kind = \"promote\" }]\n[plans.m.gates]\nmax_psi = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_psi"), "{err}");
    }

    #[test]
    fn durations_render_in_their_largest_unit() {
        assert_eq!(human_duration(600_000), "10m");
        assert_eq!(human_duration(1_500), "1500ms");
        assert_eq!(human_duration(7_200_000), "2h");
        assert_eq!(parse_latency_us("2ms"), Ok(2000.0));
        assert_eq!(parse_latency_us("250us"), Ok(250.0));
        assert!(parse_latency_us("0us").is_err());
    }
}
