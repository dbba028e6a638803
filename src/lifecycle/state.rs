//! Durable shared state: the record every instance follows, and the
//! `model-events` messages.
//!
//! # The state record (topic `driftline-models`, compacted, key = model name)
//!
//! ```json
//! {"format": 1, "model": "fraud-mlp", "generation": 12, "writer": "host-a/4711",
//!  "updated_ms": 1764686400000, "cause": "check",
//!  "state": {"primary": "1",
//!            "previous": {"version": "0", "keep_until_ms": ...},      // optional
//!            "rollout": {"id": "fraud-mlp-2-1764686000000", "candidate": "2",
//!                        "plan": {"steps": [...], "gates": {...}, "failure_limit": 0},
//!                        "step": 1, "status": "running", "started_ms": ..., "step_started_ms": ...,
//!                        "step_events": 12000, "step_paused_ms": 0, "failures": {"agreement": 1},
//!                        "gates": [{"gate": "agreement", "verdict": "pass", "value": 0.98,
//!                                   "threshold": 0.95, "bound": "at_least", "samples": 9000}]}}}
//! ```
//!
//! `format` is [`STATE_FORMAT`]; a reader refuses a record of another format
//! rather than misread it. The routing of an instance is a function of the
//! record alone ([`super::rollout::ModelState::routing_table`]), so two
//! instances holding the same record route every entity alike.
//!
//! # Who writes, and how writes are ordered
//!
//! - **Automatic progress** (gate checks, step changes, rollouts started for a
//!   new version) is written only by the *deciding instance*: the one that
//!   owns partition 0 of the input topic. Consumer-group assignment makes it
//!   unique at any time, and it moves with a rebalance; its successor reads
//!   the record and carries on from it.
//! - **Manual commands** (promote, rollback, pause, resume) are written by
//!   whichever instance the admin call reached.
//! - Every write is [`StateRecord::next`] of the newest record its writer
//!   has applied: `generation + 1`, its own `writer` id. A reader applies a
//!   record when `(generation, writer)` is greater than its current one
//!   ([`StateRecord::supersedes`]), so readers that see the same records in
//!   any order end on the same one, and two writes from the same generation
//!   are settled by the writer id, the same way everywhere.
//! - A writer whose record loses learns it when it reads its own record
//!   back ([`Applied::LostTie`] or [`Applied::Stale`] with `mine`): a
//!   manual command is re-applied on top of the winner; the deciding
//!   instance simply judges again at its next check.
//! - Compaction keeps the *last* record of a key, which is not always the
//!   greatest one after a tie. The deciding instance therefore republishes
//!   the winner as a new generation whenever it reads a record that lost
//!   ([`Follower::needs_heal`]), so the log ends on the state everyone holds
//!   and a restarted instance reading the compacted topic converges to it.
//!
//! # `model-events` messages (key = model name)
//!
//! One [`ModelEventMessage`] per lifecycle step: the envelope fields plus
//! the event's `kind` and its own fields, e.g.
//!
//! ```json
//! {"format": 1, "model": "fraud-mlp", "ts": 1764686400000, "instance": "host-a/4711",
//!  "generation": 13, "rollout_id": "fraud-mlp-3-1764686000000",
//!  "kind": "gate_failed", "version": "3", "step": 0, "gate": "agreement",
//!  "value": 0.021, "threshold": 0.95, "consecutive": 1}
//! ```
//!
//! `kind` is one of `loaded`, `refused`, `rollout_started`, `shadow_started`,
//! `canary_started`, `step_passed`, `gate_failed`, `rolled_back`,
//! `promoted`, `paused`, `resumed`, `previous_released` ([`LifecycleEvent`]).

use serde::{Deserialize, Serialize};

use super::gates::GateKind;
use super::rollout::ModelState;

/// Version of the state record's layout.
pub const STATE_FORMAT: u32 = 1;

/// Version of the `model-events` message layout.
pub const EVENT_FORMAT: u32 = 1;

/// Errors reading a record or message.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("model state record (key {key:?}): {source}")]
    Parse {
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "model state record (key {key:?}): format {found}, this build reads format {STATE_FORMAT}"
    )]
    Format { key: String, found: u32 },
    #[error("model state record (key {key:?}) is for model {found:?}")]
    WrongModel { key: String, found: String },
}

/// One lifecycle step of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// A version passed validation and is loaded.
    Loaded {
        version: String,
        sha256: String,
        /// Id of the key whose signature was verified, when keys are configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_by: Option<String>,
    },
    /// A version failed validation; serving goes on without it.
    Refused {
        version: String,
        /// Stable reason code ([`super::registry::Refusal::code`]).
        reason: String,
        detail: String,
    },
    /// A rollout began (its id is the message's `rollout_id`).
    RolloutStarted {
        version: String,
        /// The plan's steps, described.
        steps: Vec<String>,
    },
    ShadowStarted {
        version: String,
        step: usize,
        percent: f64,
    },
    CanaryStarted {
        version: String,
        step: usize,
        percent: f64,
    },
    StepPassed {
        version: String,
        step: usize,
        description: String,
        /// Candidate events the step counted.
        events: u64,
    },
    GateFailed {
        version: String,
        step: usize,
        gate: GateKind,
        value: Option<f64>,
        threshold: f64,
        /// Consecutive failed checks of this gate, this one included.
        consecutive: u32,
    },
    RolledBack {
        /// The version taken out of traffic.
        version: String,
        /// The step it failed in (none when a promotion is undone).
        step: Option<usize>,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate: Option<GateKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<f64>,
        /// Who asked, for a manual rollback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Promoted {
        version: String,
        previous: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Paused {
        version: String,
        step: usize,
        by: String,
    },
    Resumed {
        version: String,
        step: usize,
        by: String,
    },
    /// The old primary kept after a promotion is unloaded.
    PreviousReleased { version: String },
}

impl LifecycleEvent {
    /// The `kind` value (metric label, log field).
    pub fn kind(&self) -> &'static str {
        match self {
            LifecycleEvent::Loaded { .. } => "loaded",
            LifecycleEvent::Refused { .. } => "refused",
            LifecycleEvent::RolloutStarted { .. } => "rollout_started",
            LifecycleEvent::ShadowStarted { .. } => "shadow_started",
            LifecycleEvent::CanaryStarted { .. } => "canary_started",
            LifecycleEvent::StepPassed { .. } => "step_passed",
            LifecycleEvent::GateFailed { .. } => "gate_failed",
            LifecycleEvent::RolledBack { .. } => "rolled_back",
            LifecycleEvent::Promoted { .. } => "promoted",
            LifecycleEvent::Paused { .. } => "paused",
            LifecycleEvent::Resumed { .. } => "resumed",
            LifecycleEvent::PreviousReleased { .. } => "previous_released",
        }
    }

    /// One line for people (the demo and the log).
    pub fn describe(&self) -> String {
        match self {
            LifecycleEvent::Loaded {
                version, signed_by, ..
            } => match signed_by {
                Some(key) => format!("version {version} loaded (signed by {key})"),
                None => format!("version {version} loaded"),
            },
            LifecycleEvent::Refused {
                version,
                reason,
                detail,
            } => {
                format!("version {version} refused ({reason}): {detail}")
            }
            LifecycleEvent::RolloutStarted { version, steps, .. } => {
                format!(
                    "rollout of version {version} started: {}",
                    steps.join(" → ")
                )
            }
            LifecycleEvent::ShadowStarted {
                version, percent, ..
            } => {
                format!("version {version} in shadow on {percent}% of entities")
            }
            LifecycleEvent::CanaryStarted {
                version, percent, ..
            } => {
                format!("version {version} canary on {percent}% of entities")
            }
            LifecycleEvent::StepPassed {
                version,
                step,
                description,
                events,
            } => {
                format!("version {version} passed step {step} ({description}, {events} events)")
            }
            LifecycleEvent::GateFailed {
                version,
                gate,
                value,
                threshold,
                consecutive,
                ..
            } => {
                format!(
                    "version {version}: gate {} failed: {} against {threshold} ({consecutive} in a row)",
                    gate.as_str(),
                    value.map_or("-".to_owned(), |v| format!("{v:.4}"))
                )
            }
            LifecycleEvent::RolledBack {
                version, reason, ..
            } => {
                format!("version {version} rolled back: {reason}")
            }
            LifecycleEvent::Promoted {
                version, previous, ..
            } => {
                format!(
                    "version {version} promoted to primary (version {previous} kept for rollback)"
                )
            }
            LifecycleEvent::Paused { version, by, .. } => {
                format!("rollout of version {version} paused by {by}")
            }
            LifecycleEvent::Resumed { version, by, .. } => {
                format!("rollout of version {version} resumed by {by}")
            }
            LifecycleEvent::PreviousReleased { version } => format!("version {version} unloaded"),
        }
    }
}

/// A `model-events` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEventMessage {
    pub format: u32,
    pub model: String,
    /// When it happened, epoch ms.
    pub ts: i64,
    /// The instance that made it happen.
    pub instance: String,
    /// The state generation it led to (0 for load/refuse, which change no state).
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    #[serde(flatten)]
    pub event: LifecycleEvent,
}

impl ModelEventMessage {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The first record of a model (its configured primary).
    Init,
    /// A rollout started.
    Start,
    /// A periodic check by the deciding instance.
    Check,
    /// A manual command.
    Command,
    /// The deciding instance republished the winner of a tie.
    Heal,
}

/// The record kept per model in the compacted state topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub format: u32,
    pub model: String,
    pub generation: u64,
    /// The writing instance's id (stable for its lifetime, unique in the group).
    pub writer: String,
    pub updated_ms: i64,
    pub cause: Cause,
    pub state: ModelState,
}

impl StateRecord {
    /// The first record of a model.
    pub fn initial(model: &str, state: ModelState, writer: &str, now_ms: i64) -> Self {
        StateRecord {
            format: STATE_FORMAT,
            model: model.to_owned(),
            generation: 1,
            writer: writer.to_owned(),
            updated_ms: now_ms,
            cause: Cause::Init,
            state,
        }
    }

    /// The record that replaces this one with `state`.
    pub fn next(&self, state: ModelState, writer: &str, cause: Cause, now_ms: i64) -> Self {
        StateRecord {
            format: STATE_FORMAT,
            model: self.model.clone(),
            generation: self.generation + 1,
            writer: writer.to_owned(),
            updated_ms: now_ms,
            cause,
            state,
        }
    }

    /// Whether this record wins over `other`: greater `(generation, writer)`.
    pub fn supersedes(&self, other: &StateRecord) -> bool {
        (self.generation, self.writer.as_str()) > (other.generation, other.writer.as_str())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record read under `key` (the model name), checking the format first.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Self, StateError> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let parse = |source| StateError::Parse {
            key: key.to_owned(),
            source,
        };
        let version: Version = serde_json::from_slice(bytes).map_err(parse)?;
        if version.format != STATE_FORMAT {
            return Err(StateError::Format {
                key: key.to_owned(),
                found: version.format,
            });
        }
        let record: StateRecord = serde_json::from_slice(bytes).map_err(parse)?;
        if record.model != key {
            return Err(StateError::WrongModel {
                key: key.to_owned(),
                found: record.model,
            });
        }
        Ok(record)
    }
}

/// What [`Follower::apply`] did with a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// It is the new current state.
    Accepted,
    /// It is older than the current state (written from an earlier
    /// generation); `mine` says whether the follower itself wrote it.
    Stale { mine: bool },
    /// Same generation as the current state, lower writer id: it lost the
    /// tie. `mine` says whether the follower itself wrote it.
    LostTie { mine: bool },
}

/// One instance's view of a model's state, fed with every record read from
/// the state topic in log order.
#[derive(Debug, Clone)]
pub struct Follower {
    me: String,
    current: Option<StateRecord>,
    /// The log's last record lost to the current one: compaction could keep
    /// the loser, so the deciding instance must republish the winner.
    heal: bool,
}

impl Follower {
    /// `me` is this instance's writer id.
    pub fn new(me: &str) -> Self {
        Follower {
            me: me.to_owned(),
            current: None,
            heal: false,
        }
    }

    pub fn current(&self) -> Option<&StateRecord> {
        self.current.as_ref()
    }

    /// Takes a record read from the topic.
    pub fn apply(&mut self, record: StateRecord) -> Applied {
        let applied = match &self.current {
            None => Applied::Accepted,
            Some(current) if record.supersedes(current) => Applied::Accepted,
            Some(current) if record.generation == current.generation && record != *current => {
                Applied::LostTie {
                    mine: record.writer == self.me,
                }
            }
            Some(_) => Applied::Stale {
                mine: record.writer == self.me,
            },
        };
        // Only the log's last record matters for compaction.
        self.heal = matches!(applied, Applied::LostTie { .. } | Applied::Stale { .. })
            && self.current.as_ref().is_some_and(|c| *c != record);
        if applied == Applied::Accepted {
            self.current = Some(record);
        }
        applied
    }

    /// Whether the last record read lost to the current one, so that the
    /// deciding instance should republish the current state
    /// ([`Follower::heal_record`]).
    pub fn needs_heal(&self) -> bool {
        self.heal
    }

    /// The current state as a new generation, written by this instance.
    pub fn heal_record(&self, now_ms: i64) -> Option<StateRecord> {
        let current = self.current.as_ref()?;
        Some(current.next(current.state.clone(), &self.me, Cause::Heal, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::plan::{GatesConfig, PlanConfig, StepConfig, StepKind};
    use crate::lifecycle::rollout::{self, Command, Settings};

    fn settings() -> Settings {
        Settings {
            model: "fraud-mlp".into(),
            keep_previous_ms: 60_000,
        }
    }

    fn running() -> ModelState {
        let plan = PlanConfig {
            auto_start: true,
            steps: vec![
                StepConfig {
                    kind: StepKind::Canary,
                    percent: Some(5.0),
                    events: Some(100),
                    duration: Some("10m".into()),
                },
                StepConfig {
                    kind: StepKind::Promote,
                    percent: None,
                    events: None,
                    duration: None,
                },
            ],
            gates: GatesConfig {
                min_agreement: Some(0.9),
                ..GatesConfig::default()
            },
            failure_limit: 1,
        }
        .compile("t")
        .unwrap();
        rollout::start(
            &settings(),
            &ModelState::new("1"),
            "2",
            plan,
            "fraud-mlp-2-5",
            5,
        )
        .unwrap()
        .state
    }

    fn record(generation: u64, writer: &str, state: ModelState) -> StateRecord {
        StateRecord {
            format: STATE_FORMAT,
            model: "fraud-mlp".into(),
            generation,
            writer: writer.into(),
            updated_ms: 7,
            cause: Cause::Check,
            state,
        }
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let mut state = running();
        state.previous = Some(rollout::Previous {
            version: "0".into(),
            keep_until_ms: 99,
        });
        let r = StateRecord::initial("fraud-mlp", state, "host-a/1", 5);
        let bytes = r.to_json();
        let back = StateRecord::from_json("fraud-mlp", &bytes).unwrap();
        assert_eq!(back, r);
        let text = String::from_utf8(bytes).unwrap();
        for field in [
            "\"format\":1",
            "\"generation\":1",
            "\"status\":\"running\"",
            "\"kind\":\"canary\"",
        ] {
            assert!(text.contains(field), "{field} not in {text}");
        }
    }

    #[test]
    fn records_of_another_format_or_model_are_refused_by_name() {
        let r = StateRecord::initial("fraud-mlp", ModelState::new("1"), "a", 0);
        let mut value: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        value["format"] = 2.into();
        let err = StateRecord::from_json("fraud-mlp", value.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
        let err = StateRecord::from_json("fraud-rf", &r.to_json()).unwrap_err();
        assert!(
            err.to_string().contains("is for model \"fraud-mlp\""),
            "{err}"
        );
        let err = StateRecord::from_json("fraud-mlp", b"{not json").unwrap_err();
        assert!(err.to_string().contains("key \"fraud-mlp\""), "{err}");
    }

    #[test]
    fn generation_then_writer_orders_records() {
        let s = ModelState::new("1");
        let g1 = record(1, "b", s.clone());
        let g2a = record(2, "a", s.clone());
        let g2b = record(2, "b", s.clone());
        assert!(g2a.supersedes(&g1));
        assert!(g2b.supersedes(&g2a));
        assert!(!g2a.supersedes(&g2b));
        assert!(!g1.supersedes(&g2a));
        let next = g2b.next(s, "c", Cause::Command, 9);
        assert_eq!((next.generation, next.writer.as_str()), (3, "c"));
    }

    #[test]
    fn followers_reading_the_same_records_in_any_order_agree() {
        let base = record(1, "a", running());
        // A check by the deciding instance "a" and a manual rollback by "b",
        // both written from generation 1.
        let check = base.next(
            rollout::check(&settings(), &base.state, &Default::default(), 10).state,
            "a",
            Cause::Check,
            10,
        );
        let rollback = base.next(
            rollout::command(&settings(), &base.state, Command::Rollback, "b", 10)
                .unwrap()
                .state,
            "b",
            Cause::Command,
            10,
        );
        let mut x = Follower::new("a");
        let mut y = Follower::new("b");
        for r in [&base, &check, &rollback] {
            x.apply(r.clone());
        }
        for r in [&base, &rollback, &check] {
            y.apply(r.clone());
        }
        assert_eq!(x.current(), y.current());
        assert_eq!(x.current().unwrap().writer, "b");
        // "a" read the winner last: nothing to heal; "b" read the loser last.
        assert!(!x.needs_heal());
        assert!(y.needs_heal());
    }

    #[test]
    fn a_lost_manual_command_is_noticed_and_reapplied_on_the_winner() {
        let base = record(1, "m", running());
        let mut follower = Follower::new("a");
        follower.apply(base.clone());
        let mine = base.next(
            rollout::command(&settings(), &base.state, Command::Pause, "a", 10)
                .unwrap()
                .state,
            "a",
            Cause::Command,
            10,
        );
        let theirs = base.next(base.state.clone(), "z", Cause::Check, 10);
        assert_eq!(follower.apply(theirs.clone()), Applied::Accepted);
        assert_eq!(follower.apply(mine), Applied::LostTie { mine: true });
        let winner = follower.current().unwrap().clone();
        let again = rollout::command(&settings(), &winner.state, Command::Pause, "a", 11).unwrap();
        let retry = winner.next(again.state, "a", Cause::Command, 11);
        assert_eq!(follower.apply(retry), Applied::Accepted);
        let status = follower
            .current()
            .unwrap()
            .state
            .rollout
            .as_ref()
            .unwrap()
            .status;
        assert_eq!(status, rollout::Status::Paused);
    }

    #[test]
    fn healing_makes_a_compacted_log_end_on_the_winner() {
        let base = record(1, "a", running());
        let winner = base.next(base.state.clone(), "z", Cause::Check, 2);
        let mut loser_state = base.state.clone();
        loser_state.primary = "9".into();
        let loser = base.next(loser_state, "b", Cause::Command, 2);
        // Log order: base, winner, loser. Compaction keeps only "loser".
        let mut leader = Follower::new("a");
        for r in [&base, &winner, &loser] {
            leader.apply(r.clone());
        }
        assert!(leader.needs_heal());
        let heal = leader.heal_record(3).unwrap();
        assert_eq!((heal.generation, heal.cause), (3, Cause::Heal));
        assert_eq!(heal.state, winner.state);
        // A restarted instance reads the compacted log: the last record only.
        let mut fresh = Follower::new("c");
        fresh.apply(heal.clone());
        leader.apply(heal);
        assert_eq!(
            fresh.current().unwrap().state,
            leader.current().unwrap().state
        );
        assert!(!leader.needs_heal());
    }

    #[test]
    fn a_repeated_record_is_stale_and_harmless() {
        let base = record(3, "a", ModelState::new("1"));
        let mut f = Follower::new("x");
        assert_eq!(f.apply(base.clone()), Applied::Accepted);
        assert_eq!(f.apply(base.clone()), Applied::Stale { mine: false });
        assert!(!f.needs_heal());
        assert_eq!(
            f.apply(record(2, "x", ModelState::new("7"))),
            Applied::Stale { mine: true }
        );
        assert!(f.needs_heal());
    }

    #[test]
    fn every_event_kind_round_trips_in_a_model_events_message() {
        let events = vec![
            LifecycleEvent::Loaded {
                version: "2".into(),
                sha256: "ab".repeat(32),
                signed_by: Some("3f1c0a9b7d2e4c55".into()),
            },
            LifecycleEvent::Refused {
                version: "4".into(),
                reason: "input_contract".into(),
                detail: "input `x` reads store column `x`, which the store does not have".into(),
            },
            LifecycleEvent::RolloutStarted {
                version: "2".into(),
                steps: vec!["shadow 100% 20000 events".into(), "promote".into()],
            },
            LifecycleEvent::ShadowStarted {
                version: "2".into(),
                step: 0,
                percent: 100.0,
            },
            LifecycleEvent::CanaryStarted {
                version: "2".into(),
                step: 1,
                percent: 5.0,
            },
            LifecycleEvent::StepPassed {
                version: "2".into(),
                step: 0,
                description: "shadow".into(),
                events: 20_000,
            },
            LifecycleEvent::GateFailed {
                version: "3".into(),
                step: 0,
                gate: GateKind::Agreement,
                value: Some(0.021),
                threshold: 0.95,
                consecutive: 1,
            },
            LifecycleEvent::RolledBack {
                version: "3".into(),
                step: Some(0),
                reason: "gate agreement failed".into(),
                gate: Some(GateKind::Agreement),
                value: Some(0.021),
                threshold: Some(0.95),
                by: None,
            },
            LifecycleEvent::Promoted {
                version: "2".into(),
                previous: "1".into(),
                by: None,
            },
            LifecycleEvent::Paused {
                version: "2".into(),
                step: 1,
                by: "ops".into(),
            },
            LifecycleEvent::Resumed {
                version: "2".into(),
                step: 1,
                by: "ops".into(),
            },
            LifecycleEvent::PreviousReleased {
                version: "1".into(),
            },
        ];
        for event in events {
            let message = ModelEventMessage {
                format: EVENT_FORMAT,
                model: "fraud-mlp".into(),
                ts: 1_764_686_400_000,
                instance: "host-a/1".into(),
                generation: 13,
                rollout_id: Some("fraud-mlp-3-1".into()),
                event: event.clone(),
            };
            let bytes = message.to_json();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(value["kind"], event.kind(), "{value}");
            assert_eq!(value["model"], "fraud-mlp");
            let back: ModelEventMessage = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, message);
            assert!(!event.describe().is_empty());
        }
    }
}
