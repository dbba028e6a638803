//! The rollout state machine: pure functions from a model's state, a
//! check's readings or a command, and the time, to the next state and the
//! lifecycle events it caused.
//!
//! ```text
//!            start                 all steps passed
//!   (none) ────────► running ─────────────────────────► promoted ──(keep_previous)──► previous released
//!                    │  ▲  │ gate failed (> failure_limit)      │
//!              pause │  │  └──────────────────► rolled_back ◄───┘ manual rollback while
//!                    ▼  │ resume                   ▲               the old primary is kept
//!                    paused ──── gate failed / manual rollback
//! ```
//!
//! Guarantees:
//!
//! - **No clock, no I/O**: the same state, readings and time give the same
//!   transition, so every instance that applies it agrees, and tests drive
//!   every transition directly.
//! - **A failed gate rolls back within its step**: gates are judged before
//!   step progress at every check, so a step whose target is reached at the
//!   same check as a gate's last tolerated failure does not pass.
//! - Gates are also judged while paused (the candidate still takes
//!   traffic), but a paused step makes no progress and its paused time does
//!   not count towards its duration.
//! - Progress lives in the state ([`Rollout::step_events`], the step's start
//!   time): a restarted or new deciding instance resumes where the state
//!   stood; readings only add what was scored since the previous check.
//! - A rollout runs the plan it started with ([`Rollout::plan`]), whatever
//!   the configuration of the instance that drives it later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gates::{evaluate, GateKind, GateReadings, GateStatus, Verdict};
use super::plan::{RolloutPlan, Step};
use super::routing::{Candidate, Role, RoutingTable, Share};
use super::state::LifecycleEvent;

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Paused,
    RolledBack,
    Promoted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::RolledBack => "rolled_back",
            Status::Promoted => "promoted",
        }
    }

    /// Running or paused: the candidate is loaded and may take traffic.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The old primary, kept loaded for a while after a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub version: String,
    pub keep_until_ms: i64,
}

/// One rollout of a candidate version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Names the rollout in events; its hash salts the routing, so two
    /// rollouts pick different canary entities.
    pub id: String,
    pub candidate: String,
    pub plan: RolloutPlan,
    /// Index into `plan.steps` of the current step (the last one run, once finished).
    pub step: usize,
    pub status: Status,
    pub started_ms: i64,
    pub step_started_ms: i64,
    /// Events the candidate scored in this step (all instances that decided).
    pub step_events: u64,
    /// Paused time within this step, excluded from its duration.
    #[serde(default)]
    pub step_paused_ms: u64,
    /// When the current pause began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at_ms: Option<i64>,
    /// Consecutive failed checks per gate.
    #[serde(default)]
    pub failures: BTreeMap<GateKind, u32>,
    /// Every gate at the last check.
    #[serde(default)]
    pub gates: Vec<GateStatus>,
    /// Why it ended (rolled back or promoted, and by whom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
}

impl Rollout {
    /// The routing salt: the rollout id's XXH3.
    pub fn salt(&self) -> u64 {
        twox_hash::XxHash3_64::oneshot(self.id.as_bytes())
    }

    /// The candidate's live traffic: the current step's, or for a pause the
    /// last traffic step's before it; none once finished.
    pub fn traffic(&self) -> Option<(Role, Share)> {
        if !self.status.is_active() {
            return None;
        }
        // A record read from the state topic is input: never index past the plan.
        let end = self.step.saturating_add(1).min(self.plan.steps.len());
        self.plan.steps[..end]
            .iter()
            .rev()
            .find_map(|step| match step {
                Step::Shadow { share, .. } => Some((Role::Shadow, *share)),
                Step::Canary { share, .. } => Some((Role::Canary, *share)),
                Step::Pause { .. } | Step::Promote => None,
            })
    }

    fn current_step(&self) -> Option<&Step> {
        self.plan.steps.get(self.step)
    }

    /// Time this step has run, pauses excluded.
    fn step_elapsed_ms(&self, now_ms: i64) -> u64 {
        let paused_now = self
            .paused_at_ms
            .map_or(0, |at| now_ms.saturating_sub(at).max(0) as u64);
        let total = now_ms.saturating_sub(self.step_started_ms).max(0) as u64;
        total.saturating_sub(self.step_paused_ms + paused_now)
    }

    /// Whether the current step's target (events and duration) is reached.
    fn step_done(&self, now_ms: i64) -> bool {
        let (events, duration_ms) = match self.current_step() {
            Some(Step::Shadow {
                events,
                duration_ms,
                ..
            })
            | Some(Step::Canary {
                events,
                duration_ms,
                ..
            }) => (*events, *duration_ms),
            // A pause without a duration waits for `resume`.
            Some(Step::Pause { duration_ms: None }) => return false,
            Some(Step::Pause { duration_ms }) => (None, *duration_ms),
            Some(Step::Promote) | None => return true,
        };
        events.is_none_or(|n| self.step_events >= n)
            && duration_ms.is_none_or(|d| self.step_elapsed_ms(now_ms) >= d)
    }
}

/// The lifecycle state of one model: what every instance follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    pub primary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// The current or last rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// A state change and what it caused.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: ModelState,
    pub events: Vec<LifecycleEvent>,
}

impl Transition {
    /// Whether the state differs from `before` (and so must be written).
    pub fn changed(&self, before: &ModelState) -> bool {
        self.state != *before
    }
}

/// A manual command from the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The candidate becomes primary now, skipping the remaining steps.
    Promote,
    /// Candidate traffic to zero; after a promotion, while the old primary
    /// is kept, the old primary comes back.
    Rollback,
    /// Freeze step progress (traffic and gates go on).
    Pause,
    /// Continue a paused rollout, or pass a `pause` step that waits for it.
    Resume,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Promote => "promote",
            Command::Rollback => "rollback",
            Command::Pause => "pause",
            Command::Resume => "resume",
        }
    }
}

/// Why a command or a start was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("model {model}: no rollout is running")]
    NoRollout { model: String },
    #[error("model {model}: rollout {rollout} of version {version} is still {status}; roll it back or promote it first")]
    RolloutActive {
        model: String,
        rollout: String,
        version: String,
        status: &'static str,
    },
    #[error("model {model}: version {version} is already the primary")]
    AlreadyPrimary { model: String, version: String },
    #[error(
        "model {model}: nothing to roll back (no rollout running and no previous primary kept)"
    )]
    NothingToRollBack { model: String },
}

impl CommandError {
    /// Stable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::NoRollout { .. } => "no_rollout",
            CommandError::RolloutActive { .. } => "rollout_active",
            CommandError::AlreadyPrimary { .. } => "already_primary",
            CommandError::NothingToRollBack { .. } => "nothing_to_roll_back",
        }
    }
}

/// The machine's fixed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub model: String,
    /// How long the old primary is kept after a promotion.
    pub keep_previous_ms: u64,
}

impl ModelState {
    /// A model served by `primary` alone.
    pub fn new(primary: &str) -> Self {
        ModelState {
            primary: primary.to_owned(),
            previous: None,
            rollout: None,
        }
    }

    /// The running or paused rollout.
    pub fn active(&self) -> Option<&Rollout> {
        self.rollout.as_ref().filter(|r| r.status.is_active())
    }

    /// The routing table this state implies; `generation` is recorded in it.
    pub fn routing_table(&self, model: &str, generation: u64) -> RoutingTable {
        let candidate = self.active().and_then(|r| {
            r.traffic().map(|(role, share)| {
                (
                    Candidate {
                        version: r.candidate.as_str().into(),
                        role,
                        share,
                    },
                    r.salt(),
                )
            })
        });
        match candidate {
            Some((c, salt)) => RoutingTable::new(model, &self.primary, Some(c), salt, generation),
            None => RoutingTable::new(model, &self.primary, None, 0, generation),
        }
    }

    /// Versions that must stay loaded: primary, active candidate, kept previous.
    pub fn loaded_versions(&self) -> Vec<&str> {
        let mut v = vec![self.primary.as_str()];
        if let Some(r) = self.active() {
            v.push(&r.candidate);
        }
        if let Some(p) = &self.previous {
            v.push(&p.version);
        }
        v
    }
}

/// Starts a rollout of `candidate` with `plan`. `rollout_id` must be unique
/// per rollout (e.g. `<model>-<version>-<epoch ms>`).
pub fn start(
    settings: &Settings,
    state: &ModelState,
    candidate: &str,
    plan: RolloutPlan,
    rollout_id: &str,
    now_ms: i64,
) -> Result<Transition, CommandError> {
    if let Some(r) = state.active() {
        return Err(CommandError::RolloutActive {
            model: settings.model.clone(),
            rollout: r.id.clone(),
            version: r.candidate.clone(),
            status: r.status.as_str(),
        });
    }
    if candidate == state.primary {
        return Err(CommandError::AlreadyPrimary {
            model: settings.model.clone(),
            version: candidate.to_owned(),
        });
    }
    let mut next = state.clone();
    let mut events = Vec::new();
    // Rolling back a promotion is only meaningful until the next rollout.
    if let Some(previous) = next.previous.take() {
        events.push(LifecycleEvent::PreviousReleased {
            version: previous.version,
        });
    }
    events.push(LifecycleEvent::RolloutStarted {
        version: candidate.to_owned(),
        steps: plan.steps.iter().map(Step::describe).collect(),
    });
    let rollout = Rollout {
        id: rollout_id.to_owned(),
        candidate: candidate.to_owned(),
        plan,
        step: 0,
        status: Status::Running,
        started_ms: now_ms,
        step_started_ms: now_ms,
        step_events: 0,
        step_paused_ms: 0,
        paused_at_ms: None,
        failures: BTreeMap::new(),
        gates: Vec::new(),
        reason: None,
        finished_ms: None,
    };
    next.rollout = Some(rollout);
    enter_step(settings, &mut next, now_ms, &mut events);
    Ok(Transition {
        state: next,
        events,
    })
}

/// One periodic check: releases an expired previous primary, judges the
/// gates, and advances the step when its target is reached.
pub fn check(
    settings: &Settings,
    state: &ModelState,
    readings: &GateReadings,
    now_ms: i64,
) -> Transition {
    let mut next = state.clone();
    let mut events = Vec::new();
    if next
        .previous
        .as_ref()
        .is_some_and(|p| now_ms >= p.keep_until_ms)
    {
        if let Some(p) = next.previous.take() {
            events.push(LifecycleEvent::PreviousReleased { version: p.version });
        }
    }
    let Some(rollout) = next.rollout.as_mut().filter(|r| r.status.is_active()) else {
        return Transition {
            state: next,
            events,
        };
    };
    let role = rollout.traffic().map(|(role, _)| role);
    let statuses = evaluate(&rollout.plan.gates, role, readings);
    let mut failed: Option<GateStatus> = None;
    for s in &statuses {
        let count = rollout.failures.entry(s.gate).or_insert(0);
        match s.verdict {
            Verdict::Pass => *count = 0,
            Verdict::Pending => {}
            Verdict::Fail => {
                *count += 1;
                events.push(LifecycleEvent::GateFailed {
                    version: rollout.candidate.clone(),
                    step: rollout.step,
                    gate: s.gate,
                    value: s.value,
                    threshold: s.threshold,
                    consecutive: *count,
                });
                if *count > rollout.plan.failure_limit && failed.is_none() {
                    failed = Some(s.clone());
                }
            }
        }
    }
    rollout.failures.retain(|_, n| *n > 0);
    rollout.gates = statuses;
    if let Some(gate) = failed {
        let reason = format!(
            "gate {} failed: {} {} {} ({} check(s) in a row)",
            gate.gate.as_str(),
            gate.value.map_or("-".into(), |v| format!("{v:.6}")),
            match gate.bound {
                super::gates::Bound::AtMost => "above the maximum",
                super::gates::Bound::AtLeast => "below the minimum",
            },
            gate.threshold,
            rollout.failures.get(&gate.gate).copied().unwrap_or(1)
        );
        events.push(LifecycleEvent::RolledBack {
            version: rollout.candidate.clone(),
            step: Some(rollout.step),
            reason: reason.clone(),
            gate: Some(gate.gate),
            value: gate.value,
            threshold: Some(gate.threshold),
            by: None,
        });
        rollout.status = Status::RolledBack;
        rollout.reason = Some(reason);
        rollout.finished_ms = Some(now_ms);
        rollout.paused_at_ms = None;
        return Transition {
            state: next,
            events,
        };
    }
    if rollout.status == Status::Running {
        if role.is_some() {
            rollout.step_events = rollout
                .step_events
                .saturating_add(readings.new_candidate_events);
        }
        if rollout.step_done(now_ms) {
            pass_step(settings, &mut next, now_ms, &mut events);
        }
    }
    Transition {
        state: next,
        events,
    }
}

/// A manual command by `by` (e.g. the admin API caller's instance).
pub fn command(
    settings: &Settings,
    state: &ModelState,
    cmd: Command,
    by: &str,
    now_ms: i64,
) -> Result<Transition, CommandError> {
    let mut next = state.clone();
    let mut events = Vec::new();
    let model = || settings.model.clone();
    match cmd {
        Command::Rollback => {
            if let Some(r) = next.rollout.as_mut().filter(|r| r.status.is_active()) {
                let reason = format!("manual rollback by {by}");
                events.push(LifecycleEvent::RolledBack {
                    version: r.candidate.clone(),
                    step: Some(r.step),
                    reason: reason.clone(),
                    gate: None,
                    value: None,
                    threshold: None,
                    by: Some(by.to_owned()),
                });
                r.status = Status::RolledBack;
                r.reason = Some(reason);
                r.finished_ms = Some(now_ms);
                r.paused_at_ms = None;
            } else if let Some(previous) = next.previous.take() {
                // Undo the promotion: the old primary is still loaded.
                let demoted = std::mem::replace(&mut next.primary, previous.version.clone());
                let reason = format!(
                    "manual rollback by {by}: version {} is primary again",
                    previous.version
                );
                events.push(LifecycleEvent::RolledBack {
                    version: demoted,
                    step: None,
                    reason: reason.clone(),
                    gate: None,
                    value: None,
                    threshold: None,
                    by: Some(by.to_owned()),
                });
                if let Some(r) = next.rollout.as_mut() {
                    r.status = Status::RolledBack;
                    r.reason = Some(reason);
                    r.finished_ms = Some(now_ms);
                }
            } else {
                return Err(CommandError::NothingToRollBack { model: model() });
            }
        }
        Command::Promote => {
            let r = next
                .rollout
                .as_mut()
                .filter(|r| r.status.is_active())
                .ok_or_else(|| CommandError::NoRollout { model: model() })?;
            r.step = r.plan.steps.len().saturating_sub(1);
            promote(settings, &mut next, now_ms, &mut events, Some(by));
        }
        Command::Pause => {
            let r = next
                .rollout
                .as_mut()
                .filter(|r| r.status.is_active())
                .ok_or_else(|| CommandError::NoRollout { model: model() })?;
            if r.status == Status::Running {
                r.status = Status::Paused;
                r.paused_at_ms = Some(now_ms);
                events.push(LifecycleEvent::Paused {
                    version: r.candidate.clone(),
                    step: r.step,
                    by: by.to_owned(),
                });
            }
        }
        Command::Resume => {
            let r = next
                .rollout
                .as_mut()
                .filter(|r| r.status.is_active())
                .ok_or_else(|| CommandError::NoRollout { model: model() })?;
            if r.status == Status::Paused {
                if let Some(at) = r.paused_at_ms.take() {
                    r.step_paused_ms += now_ms.saturating_sub(at).max(0) as u64;
                }
                r.status = Status::Running;
                events.push(LifecycleEvent::Resumed {
                    version: r.candidate.clone(),
                    step: r.step,
                    by: by.to_owned(),
                });
            } else if matches!(r.current_step(), Some(Step::Pause { duration_ms: None })) {
                events.push(LifecycleEvent::Resumed {
                    version: r.candidate.clone(),
                    step: r.step,
                    by: by.to_owned(),
                });
                pass_step(settings, &mut next, now_ms, &mut events);
            }
        }
    }
    Ok(Transition {
        state: next,
        events,
    })
}

/// Marks the current step passed and enters the next one.
fn pass_step(
    settings: &Settings,
    state: &mut ModelState,
    now_ms: i64,
    events: &mut Vec<LifecycleEvent>,
) {
    let Some(r) = state.rollout.as_mut() else {
        return;
    };
    events.push(LifecycleEvent::StepPassed {
        version: r.candidate.clone(),
        step: r.step,
        description: r.current_step().map_or_else(String::new, Step::describe),
        events: r.step_events,
    });
    r.step += 1;
    r.step_started_ms = now_ms;
    r.step_events = 0;
    r.step_paused_ms = 0;
    r.failures.clear();
    enter_step(settings, state, now_ms, events);
}

/// Announces the step the rollout just entered; a `promote` step is applied at once.
fn enter_step(
    settings: &Settings,
    state: &mut ModelState,
    now_ms: i64,
    events: &mut Vec<LifecycleEvent>,
) {
    let Some(r) = state.rollout.as_ref() else {
        return;
    };
    match r.current_step() {
        Some(Step::Shadow { share, .. }) => events.push(LifecycleEvent::ShadowStarted {
            version: r.candidate.clone(),
            step: r.step,
            percent: share.percent(),
        }),
        Some(Step::Canary { share, .. }) => events.push(LifecycleEvent::CanaryStarted {
            version: r.candidate.clone(),
            step: r.step,
            percent: share.percent(),
        }),
        Some(Step::Pause { .. }) => {}
        Some(Step::Promote) | None => promote(settings, state, now_ms, events, None),
    }
}

/// The candidate becomes primary; the old primary is kept for `keep_previous_ms`.
fn promote(
    settings: &Settings,
    state: &mut ModelState,
    now_ms: i64,
    events: &mut Vec<LifecycleEvent>,
    by: Option<&str>,
) {
    let Some(r) = state.rollout.as_mut() else {
        return;
    };
    let old = std::mem::replace(&mut state.primary, r.candidate.clone());
    let keep_until_ms =
        now_ms.saturating_add(i64::try_from(settings.keep_previous_ms).unwrap_or(i64::MAX));
    r.status = Status::Promoted;
    r.finished_ms = Some(now_ms);
    r.paused_at_ms = None;
    r.reason = Some(match by {
        Some(by) => format!("promoted manually by {by}"),
        None => "all steps passed".to_owned(),
    });
    events.push(LifecycleEvent::Promoted {
        version: r.candidate.clone(),
        previous: old.clone(),
        by: by.map(str::to_owned),
    });
    state.previous = Some(Previous {
        version: old,
        keep_until_ms,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::gates::{PairSummary, VariantReadings};
    use crate::lifecycle::plan::{GatesConfig, PlanConfig, StepConfig, StepKind};

    const MIN: i64 = 60_000;

    fn settings() -> Settings {
        Settings {
            model: "fraud-mlp".into(),
            keep_previous_ms: 30 * MIN as u64,
        }
    }

    fn step(
        kind: StepKind,
        percent: Option<f64>,
        events: Option<u64>,
        duration: Option<&str>,
    ) -> StepConfig {
        StepConfig {
            kind,
            percent,
            events,
            duration: duration.map(Into::into),
        }
    }

    /// shadow 1000 events → canary 10% for 10m → pause → canary 50% 500 events → promote.
    fn plan(failure_limit: u32) -> RolloutPlan {
        PlanConfig {
            auto_start: true,
            steps: vec![
                step(StepKind::Shadow, None, Some(1000), None),
                step(StepKind::Canary, Some(10.0), None, Some("10m")),
                step(StepKind::Pause, None, None, None),
                step(StepKind::Canary, Some(50.0), Some(500), None),
                step(StepKind::Promote, None, None, None),
            ],
            gates: GatesConfig {
                min_events: 100,
                min_agreement: Some(0.9),
                max_rejection_rate: Some(0.05),
                ..GatesConfig::default()
            },
            failure_limit,
        }
        .compile("t")
        .unwrap()
    }

    fn healthy(new_events: u64) -> GateReadings {
        GateReadings {
            new_candidate_events: new_events,
            candidate: VariantReadings {
                events: 1_000,
                rejected: 0,
                latency_p99_us: Some(100.0),
            },
            primary: VariantReadings {
                events: 1_000,
                rejected: 0,
                latency_p99_us: Some(100.0),
            },
            shadow: Some(PairSummary {
                pairs: 1_000,
                mean_abs_diff: 0.01,
                agreement: 0.99,
                rank_correlation: 0.98,
            }),
            ..GateReadings::default()
        }
    }

    fn inverted() -> GateReadings {
        let mut r = healthy(200);
        r.shadow = Some(PairSummary {
            pairs: 1_000,
            mean_abs_diff: 0.9,
            agreement: 0.02,
            rank_correlation: -0.99,
        });
        r
    }

    fn started(failure_limit: u32) -> ModelState {
        start(
            &settings(),
            &ModelState::new("1"),
            "2",
            plan(failure_limit),
            "r-1",
            0,
        )
        .unwrap()
        .state
    }

    fn kinds(events: &[LifecycleEvent]) -> Vec<&'static str> {
        events.iter().map(LifecycleEvent::kind).collect()
    }

    #[test]
    fn start_enters_the_first_step_and_routes_the_shadow() {
        let t = start(&settings(), &ModelState::new("1"), "2", plan(0), "r-1", 0).unwrap();
        assert_eq!(kinds(&t.events), ["rollout_started", "shadow_started"]);
        let r = t.state.active().unwrap();
        assert_eq!((r.step, r.status), (0, Status::Running));
        assert_eq!(r.traffic(), Some((Role::Shadow, Share::ALL)));
        let table = t.state.routing_table("fraud-mlp", 4);
        assert_eq!(table.candidate().unwrap().role, Role::Shadow);
        assert_eq!(table.generation(), 4);
        assert_eq!(t.state.loaded_versions(), ["1", "2"]);
    }

    #[test]
    fn start_is_refused_while_a_rollout_runs_or_for_the_primary() {
        let s = started(0);
        let err = start(&settings(), &s, "3", plan(0), "r-2", 1).unwrap_err();
        assert_eq!(err.code(), "rollout_active");
        let err = start(&settings(), &ModelState::new("1"), "1", plan(0), "r-2", 1).unwrap_err();
        assert_eq!(err.code(), "already_primary");
    }

    #[test]
    fn a_step_passes_when_its_events_are_reached_and_the_next_one_starts() {
        let s = started(0);
        let t = check(&settings(), &s, &healthy(600), 1_000);
        assert!(t.events.is_empty(), "{:?}", t.events);
        assert_eq!(t.state.active().unwrap().step_events, 600);
        let t = check(&settings(), &t.state, &healthy(400), 2_000);
        assert_eq!(kinds(&t.events), ["step_passed", "canary_started"]);
        let r = t.state.active().unwrap();
        assert_eq!((r.step, r.step_events, r.step_started_ms), (1, 0, 2_000));
        assert_eq!(r.traffic(), Some((Role::Canary, Share::from_percent(10.0))));
    }

    #[test]
    fn a_timed_step_passes_after_its_duration() {
        let s = started(0);
        let s = check(&settings(), &s, &healthy(1000), 0).state;
        let t = check(&settings(), &s, &healthy(5), 10 * MIN - 1);
        assert_eq!(t.state.active().unwrap().step, 1);
        let t = check(&settings(), &t.state, &healthy(5), 10 * MIN);
        assert_eq!(kinds(&t.events), ["step_passed"]);
        // Entered the pause step: the canary's traffic stays.
        let r = t.state.active().unwrap();
        assert_eq!(r.step, 2);
        assert_eq!(r.traffic(), Some((Role::Canary, Share::from_percent(10.0))));
    }

    #[test]
    fn a_pause_step_waits_for_resume_then_all_steps_passed_promotes() {
        let s = started(0);
        let s = check(&settings(), &s, &healthy(1000), 0).state;
        let s = check(&settings(), &s, &healthy(0), 10 * MIN).state;
        // Waits however long it is left.
        let t = check(&settings(), &s, &healthy(10_000), 100 * MIN);
        assert_eq!(t.state.active().unwrap().step, 2);
        let t = command(&settings(), &t.state, Command::Resume, "ops", 101 * MIN).unwrap();
        assert_eq!(
            kinds(&t.events),
            ["resumed", "step_passed", "canary_started"]
        );
        let t = check(&settings(), &t.state, &healthy(500), 102 * MIN);
        assert_eq!(kinds(&t.events), ["step_passed", "promoted"]);
        assert_eq!(t.state.primary, "2");
        let r = t.state.rollout.as_ref().unwrap();
        assert_eq!(r.status, Status::Promoted);
        assert_eq!(r.reason.as_deref(), Some("all steps passed"));
        assert_eq!(
            t.state.previous,
            Some(Previous {
                version: "1".into(),
                keep_until_ms: 102 * MIN + 30 * MIN
            })
        );
        assert!(t.state.routing_table("m", 1).candidate().is_none());
        assert_eq!(t.state.loaded_versions(), ["2", "1"]);
    }

    #[test]
    fn a_failed_gate_rolls_back_within_the_step_it_fails() {
        let s = started(0);
        // Enough events to pass the step at this very check: the gate wins.
        let t = check(
            &settings(),
            &s,
            &GateReadings {
                new_candidate_events: 5_000,
                ..inverted()
            },
            1_000,
        );
        assert_eq!(kinds(&t.events), ["gate_failed", "rolled_back"]);
        let r = t.state.rollout.as_ref().unwrap();
        assert_eq!((r.status, r.step), (Status::RolledBack, 0));
        assert!(
            r.reason
                .as_deref()
                .unwrap()
                .contains("gate agreement failed"),
            "{:?}",
            r.reason
        );
        match &t.events[1] {
            LifecycleEvent::RolledBack {
                gate,
                value,
                threshold,
                step,
                ..
            } => {
                assert_eq!(*gate, Some(GateKind::Agreement));
                assert_eq!(*value, Some(0.02));
                assert_eq!(*threshold, Some(0.9));
                assert_eq!(*step, Some(0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.state.primary, "1");
        assert!(t.state.routing_table("m", 2).candidate().is_none());
        assert_eq!(t.state.loaded_versions(), ["1"]);
        // Nothing more happens to a rolled-back rollout.
        let again = check(&settings(), &t.state, &healthy(1000), 2_000);
        assert!(again.events.is_empty());
    }

    #[test]
    fn the_failure_limit_tolerates_that_many_consecutive_failures() {
        let s = started(2);
        let s1 = check(&settings(), &s, &inverted(), 1);
        assert_eq!(kinds(&s1.events), ["gate_failed"]);
        let s2 = check(&settings(), &s1.state, &inverted(), 2);
        assert_eq!(kinds(&s2.events), ["gate_failed"]);
        // A passing check resets the count.
        let s3 = check(&settings(), &s2.state, &healthy(0), 3);
        assert!(s3.state.active().unwrap().failures.is_empty());
        let mut state = s3.state;
        for _ in 0..2 {
            state = check(&settings(), &state, &inverted(), 4).state;
        }
        assert!(state.active().is_some());
        let t = check(&settings(), &state, &inverted(), 5);
        assert_eq!(kinds(&t.events), ["gate_failed", "rolled_back"]);
        match &t.events[0] {
            LifecycleEvent::GateFailed { consecutive, .. } => assert_eq!(*consecutive, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_gates_neither_fail_nor_block_a_step() {
        let s = started(0);
        let mut r = healthy(1_000);
        r.shadow = None;
        r.candidate.events = 10;
        let t = check(&settings(), &s, &r, 1);
        assert_eq!(kinds(&t.events), ["step_passed", "canary_started"]);
    }

    #[test]
    fn pause_freezes_progress_and_paused_time_does_not_count() {
        let s = started(0);
        let s = check(&settings(), &s, &healthy(1000), 0).state; // canary 10% for 10m from t=0
        let t = command(&settings(), &s, Command::Pause, "ops", MIN).unwrap();
        assert_eq!(kinds(&t.events), ["paused"]);
        let paused = t.state;
        // Pausing twice is harmless.
        assert!(command(&settings(), &paused, Command::Pause, "ops", MIN)
            .unwrap()
            .events
            .is_empty());
        let t = check(&settings(), &paused, &healthy(999), 20 * MIN);
        let r = t.state.active().unwrap();
        assert_eq!((r.status, r.step, r.step_events), (Status::Paused, 1, 0));
        // Gates are still judged while paused.
        let mut rejecting = healthy(0);
        rejecting.candidate.rejected = 500;
        let t2 = check(&settings(), &paused, &rejecting, 20 * MIN);
        assert_eq!(
            t2.state.rollout.as_ref().unwrap().status,
            Status::RolledBack
        );
        let t = command(&settings(), &t.state, Command::Resume, "ops", 21 * MIN).unwrap();
        assert_eq!(kinds(&t.events), ["resumed"]);
        // 1 min ran before the pause; 20 min paused; 9 more minutes needed.
        let t = check(&settings(), &t.state, &healthy(0), 29 * MIN);
        assert_eq!(t.state.active().unwrap().step, 1);
        let t = check(&settings(), &t.state, &healthy(0), 30 * MIN);
        assert_eq!(t.state.active().unwrap().step, 2);
    }

    #[test]
    fn manual_promote_skips_the_remaining_steps() {
        let s = started(0);
        let t = command(&settings(), &s, Command::Promote, "ops@host-b", 5).unwrap();
        assert_eq!(kinds(&t.events), ["promoted"]);
        assert_eq!(t.state.primary, "2");
        let r = t.state.rollout.as_ref().unwrap();
        assert_eq!(r.reason.as_deref(), Some("promoted manually by ops@host-b"));
        let err = command(&settings(), &t.state, Command::Promote, "ops", 6).unwrap_err();
        assert_eq!(err.code(), "no_rollout");
    }

    #[test]
    fn manual_rollback_stops_a_rollout_or_undoes_a_recent_promotion() {
        let s = started(0);
        let t = command(&settings(), &s, Command::Rollback, "ops", 5).unwrap();
        assert_eq!(kinds(&t.events), ["rolled_back"]);
        assert_eq!(t.state.rollout.as_ref().unwrap().status, Status::RolledBack);
        assert_eq!(t.state.primary, "1");

        let promoted = command(&settings(), &s, Command::Promote, "ops", 5)
            .unwrap()
            .state;
        let t = command(&settings(), &promoted, Command::Rollback, "ops", 6).unwrap();
        assert_eq!(kinds(&t.events), ["rolled_back"]);
        assert_eq!(t.state.primary, "1");
        assert_eq!(t.state.previous, None);
        let err = command(&settings(), &t.state, Command::Rollback, "ops", 7).unwrap_err();
        assert_eq!(err.code(), "nothing_to_roll_back");
    }

    #[test]
    fn the_old_primary_is_released_after_keep_previous() {
        let s = started(0);
        let promoted = command(&settings(), &s, Command::Promote, "ops", 0)
            .unwrap()
            .state;
        let t = check(
            &settings(),
            &promoted,
            &GateReadings::default(),
            30 * MIN - 1,
        );
        assert!(t.events.is_empty());
        assert!(t.state.previous.is_some());
        let t = check(&settings(), &promoted, &GateReadings::default(), 30 * MIN);
        assert_eq!(kinds(&t.events), ["previous_released"]);
        assert_eq!(t.state.previous, None);
        assert_eq!(t.state.loaded_versions(), ["2"]);
        // Too late for an instant rollback.
        let err = command(&settings(), &t.state, Command::Rollback, "ops", 30 * MIN).unwrap_err();
        assert_eq!(err.code(), "nothing_to_roll_back");
    }

    #[test]
    fn a_new_rollout_releases_the_kept_previous_primary() {
        let s = started(0);
        let promoted = command(&settings(), &s, Command::Promote, "ops", 0)
            .unwrap()
            .state;
        let t = start(&settings(), &promoted, "3", plan(0), "r-2", 1).unwrap();
        assert_eq!(
            kinds(&t.events),
            ["previous_released", "rollout_started", "shadow_started"]
        );
        assert_eq!(t.state.loaded_versions(), ["2", "3"]);
    }

    #[test]
    fn a_plan_of_only_promote_switches_at_once() {
        let only = PlanConfig {
            auto_start: true,
            steps: vec![step(StepKind::Promote, None, None, None)],
            gates: GatesConfig::default(),
            failure_limit: 0,
        }
        .compile("t")
        .unwrap();
        let t = start(&settings(), &ModelState::new("1"), "2", only, "r", 0).unwrap();
        assert_eq!(kinds(&t.events), ["rollout_started", "promoted"]);
        assert_eq!(t.state.primary, "2");
    }

    #[test]
    fn resume_and_pause_without_a_rollout_are_refused() {
        let s = ModelState::new("1");
        for cmd in [Command::Pause, Command::Resume, Command::Promote] {
            assert_eq!(
                command(&settings(), &s, cmd, "ops", 0).unwrap_err().code(),
                "no_rollout"
            );
        }
    }

    #[test]
    fn progress_counts_only_while_the_candidate_takes_traffic() {
        let mut s = started(0);
        // An empty traffic step cannot exist in a valid plan, but a rollout
        // that finished must not count anything.
        s.rollout.as_mut().unwrap().status = Status::RolledBack;
        let t = check(&settings(), &s, &healthy(10_000), 1);
        assert_eq!(t.state, s);
        assert!(!t.changed(&s));
    }

    #[test]
    fn the_routing_salt_comes_from_the_rollout_id() {
        let a = started(0);
        let b = start(&settings(), &ModelState::new("1"), "2", plan(0), "r-2", 0)
            .unwrap()
            .state;
        let (ta, tb) = (a.routing_table("m", 1), b.routing_table("m", 1));
        assert_ne!(ta.salt(), tb.salt());
        assert_eq!(ta.salt(), a.active().unwrap().salt());
        assert_eq!(ta, started(0).routing_table("m", 1));
    }
}
