//! Model lifecycle in the running service: loaded versions, the routing
//! table the scoring loop reads, the shared state followed from the
//! compacted models topic, gate checks, rollouts, and the admin commands.
//!
//! One [`Hub`] per service, shared by the scoring loop (routing and gate
//! readings), the lifecycle thread (state topic, registry watcher, checks)
//! and the admin API (`/v1/models` and the commands).
//!
//! Guarantees:
//! - routing is a function of the newest state record applied
//!   ([`ModelState::routing_table`]), swapped atomically between batches; two
//!   instances that applied the same record route every entity alike, and a
//!   restarted instance reads the record back from the compacted topic, so
//!   a rollout resumes where it was;
//! - a version takes traffic only once it passed every check of
//!   [`crate::lifecycle::registry`] on this instance; a version the state
//!   names that this instance cannot load makes `/readyz` answer 503 with
//!   the refusal, and its traffic stays on the primary (never a crash);
//! - automatic progress (checks, auto-started rollouts, the first record,
//!   heals) is written only by the instance owning input partition 0, one
//!   write at a time (the next waits until the previous one was read back);
//!   manual commands are written by the instance the call reached and
//!   re-applied on top of a record that beat them;
//! - gate readings come from this instance's own traffic since the step
//!   started here (the deciding instance judges on its share of partitions);
//! - a rollout whose plan sets `max_drift_alerts` gets a drift monitor of
//!   its candidate ([`CandidateDrift`], started by the scoring loop, which
//!   feeds it without a lock): one per rollout, gone when the rollout ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use serde_json::{json, Value};

use crate::config::Config;
use crate::consumer::context::reader;
use crate::consumer::follower::{
    self, CaughtUp, Follow, FollowError, MissingTopic, Records, Start,
};
use crate::drift::labels::LabelJoin;
use crate::drift::monitor::Plan;
use crate::event::now_ms;
use crate::lifecycle::gates::{
    DriftReadings, GateReadings, LabelMetrics, LabelReadings, Reservoir, ScoreStreams, ShadowPairs,
    VariantReadings,
};
use crate::lifecycle::plan::RolloutPlan;
use crate::lifecycle::registry::{
    Refusal, Registry, ValidatedVersion, ValidationContext, WatchEvent, Watcher,
};
use crate::lifecycle::rollout::{
    self, Command, CommandError, ModelState, Rollout, Settings, Transition,
};
use crate::lifecycle::routing::{Role, Router, RoutingTable};
use crate::lifecycle::state::{
    Applied, Cause, Follower, LifecycleEvent, ModelEventMessage, StateRecord, EVENT_FORMAT,
};
use crate::serve::drift::{CandidateDrift, DriftCounts};
use crate::sink::offsets::Token;
use crate::sink::Sink;
use crate::status::Shared;
use crate::telemetry::metrics;

/// Lifecycle events kept for `/v1/models`.
const HISTORY: usize = 50;

/// Per-batch latency samples kept per variant for the p99 gate.
const LATENCY_SAMPLES: usize = 4096;

/// How long a write may stay unread before the writer judges again.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an admin command waits to read its record back.
const COMMAND_WAIT: Duration = Duration::from_secs(10);

/// A version as this instance knows it.
#[derive(Clone)]
enum Slot {
    Loaded(Arc<ValidatedVersion>),
    Refused {
        reason: &'static str,
        detail: String,
    },
}

/// What the scoring loop measured for one variant since the step started.
#[derive(Debug, Clone)]
struct VariantAcc {
    events: u64,
    rejected: u64,
    /// Scoring time per event of each batch, µs.
    latency_us: Reservoir<f64>,
}

impl VariantAcc {
    fn new(seed: u64) -> Self {
        VariantAcc {
            events: 0,
            rejected: 0,
            latency_us: Reservoir::new(LATENCY_SAMPLES, seed),
        }
    }

    fn readings(&self) -> VariantReadings {
        let mut sample = self.latency_us.items().to_vec();
        sample.sort_by(f64::total_cmp);
        let p99 = (!sample.is_empty()).then(|| {
            let rank = ((sample.len() as f64) * 0.99).ceil() as usize;
            sample[rank.clamp(1, sample.len()) - 1]
        });
        VariantReadings {
            events: self.events,
            rejected: self.rejected,
            latency_p99_us: p99,
        }
    }
}

/// Gate accumulators of the current step.
struct Accum {
    /// (rollout id, step) the numbers belong to.
    step: Option<(String, usize)>,
    primary: VariantAcc,
    candidate: VariantAcc,
    pairs: ShadowPairs,
    streams: ScoreStreams,
    new_candidate_events: u64,
    /// The candidate's drift monitor and its counts when the step started
    /// (zero for a monitor that started within the step).
    drift_base: Option<(Arc<CandidateDrift>, DriftCounts)>,
}

impl Accum {
    fn new(threshold: f64) -> Self {
        Accum {
            step: None,
            primary: VariantAcc::new(1),
            candidate: VariantAcc::new(2),
            pairs: ShadowPairs::new(threshold, 3),
            streams: ScoreStreams::new(4),
            new_candidate_events: 0,
            drift_base: None,
        }
    }

    /// The candidate's drift since the step started, by `monitor`'s
    /// counts against the ones kept when the step started.
    fn drift_since_step(&mut self, monitor: &Arc<CandidateDrift>) -> DriftReadings {
        let counts = monitor.counts();
        let base = match &self.drift_base {
            Some((m, base)) if Arc::ptr_eq(m, monitor) => *base,
            _ => {
                self.drift_base = Some((monitor.clone(), DriftCounts::default()));
                DriftCounts::default()
            }
        };
        DriftReadings {
            alerts: counts.alerts_since(&base),
            evaluations: counts.evaluations.saturating_sub(base.evaluations),
        }
    }
}

/// What one variant did in one batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct VariantBatch {
    pub events: u64,
    pub rejected: u64,
    /// Enrichment and scoring time of the batch.
    pub elapsed: Duration,
}

impl VariantBatch {
    fn record(&self, acc: &mut VariantAcc) {
        acc.events += self.events;
        acc.rejected += self.rejected;
        if self.events > 0 {
            acc.latency_us
                .push(self.elapsed.as_secs_f64() * 1e6 / self.events as f64);
        }
    }
}

/// What a batch routed with a candidate contributes to the gates.
#[derive(Debug, Default)]
pub struct BatchReadings<'a> {
    pub primary: VariantBatch,
    pub candidate: VariantBatch,
    /// (primary score, candidate score) of shadowed events.
    pub pairs: &'a [(f32, f32)],
    /// Scores served by the primary and the canary.
    pub primary_scores: &'a [f32],
    pub canary_scores: &'a [f32],
}

/// Where the hub writes.
#[derive(Debug, Clone)]
pub struct HubTopics {
    /// The compacted state topic.
    pub state: String,
    /// `model-events` (`""`: not published).
    pub events: String,
}

/// Why an admin command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("model {model}: version {version} is not loaded on this instance{why}")]
    NotLoaded {
        model: String,
        version: String,
        why: String,
    },
    #[error("model {model} has no rollout plan ([lifecycle.plans.{model}])")]
    NoPlan { model: String },
    #[error("the lifecycle state has not been read yet; try again")]
    NoState,
    #[error("the new state was written but not read back within {0:?}; check /v1/models")]
    NotConfirmed(Duration),
    #[error("writing the lifecycle state: {0}")]
    Write(String),
}

impl HubError {
    /// Stable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::Command(e) => e.code(),
            HubError::NotLoaded { .. } => "not_loaded",
            HubError::NoPlan { .. } => "no_plan",
            HubError::NoState => "no_state",
            HubError::NotConfirmed(_) => "not_confirmed",
            HubError::Write(_) => "write_failed",
        }
    }
}

/// Model bytes of the loaded versions among `versions`.
fn loaded_bytes(versions: &BTreeMap<String, Slot>) -> usize {
    versions
        .values()
        .map(|slot| match slot {
            Slot::Loaded(v) => v.model.onnx_bytes(),
            Slot::Refused { .. } => 0,
        })
        .sum()
}

/// The lifecycle of the served model, shared by loop, thread and admin API.
pub struct Hub {
    model: String,
    /// This instance's writer id.
    me: String,
    /// The version the service was started with.
    configured: String,
    pub router: Router,
    versions: RwLock<BTreeMap<String, Slot>>,
    /// Loaded versions, least recently loaded first: the order spare ones
    /// are released in (`lifecycle.max_model_bytes`).
    load_order: Mutex<Vec<String>>,
    max_model_bytes: usize,
    /// Versions released to stay within `max_model_bytes`.
    released: AtomicU64,
    follower: Mutex<Follower>,
    caught_up: AtomicBool,
    /// Owns input partition 0.
    deciding: AtomicBool,
    accum: Mutex<Accum>,
    history: Mutex<VecDeque<ModelEventMessage>>,
    /// Generation this instance wrote and has not read back yet.
    pending: Mutex<Option<(u64, Instant)>>,
    sink: Arc<Sink>,
    topics: HubTopics,
    settings: Settings,
    plan: Option<RolloutPlan>,
    auto_start: bool,
    registry: Registry,
    context: ValidationContext,
    shared: Arc<Shared>,
    /// Labels joined per version, for the label gates.
    labels: Option<Arc<LabelJoin>>,
    /// `drift.enabled`: candidates get a drift monitor only with it.
    drift_on: bool,
    /// The candidate drift monitor the scoring loop started last: the
    /// running rollout's, or the last one's (stopped; what it found stays
    /// in `/v1/models`).
    candidate_drift: Mutex<Option<Arc<CandidateDrift>>>,
}

impl Hub {
    /// A hub serving `primary` (validated at start) until the state topic
    /// says otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        primary: ValidatedVersion,
        registry: Registry,
        context: ValidationContext,
        sink: Arc<Sink>,
        topics: HubTopics,
        shared: Arc<Shared>,
    ) -> Self {
        let model = registry.name().to_owned();
        let (plan, auto_start) = match config.lifecycle.plan(&model) {
            Some(Ok(plan)) => (
                Some(plan),
                config
                    .lifecycle
                    .plans
                    .get(&model)
                    .is_some_and(|p| p.auto_start),
            ),
            // Config validation reports a bad plan before start.
            _ => (None, false),
        };
        let threshold = config
            .lifecycle
            .plans
            .get(&model)
            .map_or(0.5, |p| p.gates.decision_threshold);
        let configured = primary.version.clone();
        let primary_version = configured.clone();
        metrics::lifecycle_model(&model, Refusal::CODES);
        metrics::rollout(&model, None, None);
        let me = instance_id();
        let mut versions = BTreeMap::new();
        versions.insert(configured.clone(), Slot::Loaded(Arc::new(primary)));
        Hub {
            router: Router::new(RoutingTable::primary_only(&model, &configured)),
            settings: Settings {
                model: model.clone(),
                keep_previous_ms: config.lifecycle.keep_previous_ms(),
            },
            follower: Mutex::new(Follower::new(&me)),
            model,
            me,
            configured,
            versions: RwLock::new(versions),
            load_order: Mutex::new(vec![primary_version]),
            max_model_bytes: config.lifecycle.max_model_bytes,
            released: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            deciding: AtomicBool::new(false),
            accum: Mutex::new(Accum::new(threshold)),
            history: Mutex::new(VecDeque::new()),
            pending: Mutex::new(None),
            sink,
            topics,
            plan,
            auto_start,
            registry,
            context,
            shared,
            labels: None,
            drift_on: config.drift.enabled,
            candidate_drift: Mutex::new(None),
        }
    }

    /// Feeds the label gates from `join` (predictions are recorded there
    /// under the version that served them).
    pub fn with_labels(mut self, join: Option<Arc<LabelJoin>>) -> Self {
        self.labels = join;
        self
    }

    /// Both versions' rolling label metrics, when labels are joined.
    fn label_readings(&self, primary: &str, candidate: &str) -> Option<LabelReadings> {
        let snapshot = self.labels.as_ref()?.snapshot();
        let of = |version: &str| {
            snapshot
                .iter()
                .find(|v| v.model_version == version)
                .map(|v| LabelMetrics {
                    labels: v.metrics.count as u64,
                    auc: v.metrics.roc_auc,
                    log_loss: v.metrics.log_loss,
                })
                .unwrap_or_default()
        };
        Some(LabelReadings {
            candidate: of(candidate),
            primary: of(primary),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Bytes of the loaded versions' models ([`Model::onnx_bytes`]), the
    /// bound, and how many versions were released to keep it.
    ///
    /// [`Model::onnx_bytes`]: crate::score::Model::onnx_bytes
    pub fn model_bytes(&self) -> (usize, usize, u64) {
        (
            loaded_bytes(&self.versions.read()),
            self.max_model_bytes,
            self.released.load(Ordering::Relaxed),
        )
    }

    /// Releases loaded versions the state does not name, least recently
    /// loaded first, while the loaded models exceed `max_model_bytes`; the
    /// configured version and the ones the state names stay (a version the
    /// state names later is loaded again, see `missing_versions`), and so
    /// does `keep` (a version just loaded for a rollout about to start).
    fn release_spare(&self, keep: Option<&str>) {
        let named: Vec<String> = self
            .current_state()
            .map(|s| s.loaded_versions().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut order = self.load_order.lock();
        let mut versions = self.versions.write();
        let mut total = loaded_bytes(&versions);
        let mut i = 0;
        while total > self.max_model_bytes && i < order.len() {
            let v = &order[i];
            if *v == self.configured || named.contains(v) || keep == Some(v.as_str()) {
                i += 1;
                continue;
            }
            let v = order.remove(i);
            if let Some(Slot::Loaded(l)) = versions.remove(&v) {
                total -= l.model.onnx_bytes();
                self.released.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    model = %self.model, version = %v, bytes = l.model.onnx_bytes(),
                    max = self.max_model_bytes,
                    "model version released (not named by the lifecycle state; lifecycle.max_model_bytes)"
                );
            }
        }
    }

    /// This instance's writer id.
    pub fn instance(&self) -> &str {
        &self.me
    }

    /// The state topic has been read to its end once: routing follows the
    /// group's state, not the configured primary.
    pub fn state_read(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// The model of a loaded version.
    pub fn loaded(&self, version: &str) -> Option<Arc<ValidatedVersion>> {
        match self.versions.read().get(version) {
            Some(Slot::Loaded(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Called by the scoring loop on every assignment change.
    pub fn set_deciding(&self, owns_partition_0: bool) {
        self.deciding.store(owns_partition_0, Ordering::Release);
    }

    /// Adds one routed batch to the gate accumulators (one short lock).
    pub fn record_batch(&self, b: &BatchReadings<'_>) {
        let mut acc = self.accum.lock();
        b.primary.record(&mut acc.primary);
        b.candidate.record(&mut acc.candidate);
        acc.new_candidate_events += b.candidate.events;
        for &(p, c) in b.pairs {
            acc.pairs.observe(p, c);
        }
        for &s in b.primary_scores {
            acc.streams.observe_primary(s);
        }
        for &s in b.canary_scores {
            acc.streams.observe_candidate(s);
        }
    }

    /// The drift plan of `version` (built from its own reference profile)
    /// when the active rollout routed with `salt` has it as candidate and
    /// its plan sets `max_drift_alerts`; the scoring loop starts the
    /// candidate's monitor with it.
    pub fn candidate_drift_plan(&self, version: &str, salt: u64) -> Option<Arc<Plan>> {
        let state = self.current_state()?;
        let rollout = state.active()?;
        let wanted = rollout.candidate == version
            && rollout.salt() == salt
            && rollout.plan.gates.max_drift_alerts.is_some();
        if !wanted || !self.drift_on {
            return None;
        }
        self.loaded(version)?.drift.clone()
    }

    /// The scoring loop started a candidate's drift monitor.
    pub fn set_candidate_drift(&self, monitor: Option<Arc<CandidateDrift>>) {
        *self.candidate_drift.lock() = monitor;
    }

    /// The candidate drift monitor of `rollout`, if it runs here.
    fn candidate_drift_of(&self, rollout: &Rollout) -> Option<Arc<CandidateDrift>> {
        self.candidate_drift
            .lock()
            .as_ref()
            .filter(|m| m.version() == rollout.candidate && m.salt() == rollout.salt())
            .cloned()
    }

    /// The candidate drift monitor's [`CandidateDrift::usage`].
    pub fn candidate_drift_usage(&self) -> (usize, usize, u64) {
        self.candidate_drift
            .lock()
            .as_ref()
            .map_or((0, 0, 0), |m| m.usage())
    }

    /// Why `rollout`'s candidate has no drift monitor here.
    fn candidate_drift_missing(&self, rollout: &Rollout) -> String {
        let v = &rollout.candidate;
        if !self.drift_on {
            return "drift monitoring is off (drift.enabled = false)".into();
        }
        match self.loaded(v) {
            None => format!("version {v} is not loaded on this instance"),
            Some(l) if l.reference.is_none() => format!(
                "version {v} has no reference profile (`reference` in its model.toml, built by `driftline profile`)"
            ),
            Some(l) if l.drift.is_none() => {
                format!("version {v} has no drift plan on this instance")
            }
            Some(_) => format!(
                "the drift monitor of version {v} starts with the first event it scores on this instance"
            ),
        }
    }

    /// Validates `version` from the registry and keeps the outcome; the
    /// `loaded`/`refused` event is published.
    pub fn load(&self, version: &str) -> Result<Arc<ValidatedVersion>, HubError> {
        let started = Instant::now();
        let outcome = self.registry.validate(version, &self.context);
        let (event, result) = match outcome {
            Ok(v) => {
                let v = Arc::new(v);
                self.versions
                    .write()
                    .insert(version.to_owned(), Slot::Loaded(v.clone()));
                {
                    let mut order = self.load_order.lock();
                    order.retain(|o| o != version);
                    order.push(version.to_owned());
                }
                self.release_spare(Some(version));
                tracing::info!(
                    model = %self.model, version, elapsed_ms = started.elapsed().as_millis() as u64,
                    signed_by = ?v.signed_by, "model version loaded"
                );
                let event = LifecycleEvent::Loaded {
                    version: version.to_owned(),
                    sha256: v.manifest_sha256.clone(),
                    signed_by: v.signed_by.clone(),
                };
                (event, Ok(v))
            }
            Err(refusal) => {
                let reason = refusal.code();
                let detail = refusal.to_string();
                tracing::warn!(model = %self.model, version, reason, %detail, "model version refused");
                metrics::lifecycle_refusal(&self.model, reason);
                self.versions.write().insert(
                    version.to_owned(),
                    Slot::Refused {
                        reason,
                        detail: detail.clone(),
                    },
                );
                let err = HubError::NotLoaded {
                    model: self.model.clone(),
                    version: version.to_owned(),
                    why: format!(": refused ({reason}): {detail}"),
                };
                let event = LifecycleEvent::Refused {
                    version: version.to_owned(),
                    reason: reason.to_owned(),
                    detail,
                };
                (event, Err(err))
            }
        };
        self.publish(0, None, vec![event]);
        self.check_ready();
        result
    }

    /// Takes a record read from the state topic.
    fn apply(&self, record: StateRecord) {
        let generation = record.generation;
        let applied = self.follower.lock().apply(record);
        match applied {
            Applied::Accepted => {
                let state = self.current_state();
                if let Some(state) = state {
                    let table = state.routing_table(&self.model, generation);
                    let candidate = table.candidate().map(|c| {
                        let role = match c.role {
                            Role::Shadow => "shadow",
                            Role::Canary => "canary",
                        };
                        (role, c.share.percent() / 100.0)
                    });
                    let step = state.active().map(|r| r.step);
                    metrics::rollout(&self.model, candidate, step);
                    tracing::info!(
                        model = %self.model, generation, primary = table.primary(),
                        candidate = ?table.candidate(), "routing table swapped"
                    );
                    self.router.swap(table);
                }
                // A promotion or rollback can leave versions no longer named.
                self.release_spare(None);
            }
            Applied::Stale { mine } | Applied::LostTie { mine } => {
                if mine {
                    tracing::info!(model = %self.model, generation, "own lifecycle record lost to a newer one");
                }
            }
        }
        let mut pending = self.pending.lock();
        if pending.is_some_and(|(g, _)| generation >= g) {
            *pending = None;
        }
        drop(pending);
        self.check_ready();
    }

    fn current_state(&self) -> Option<ModelState> {
        self.follower.lock().current().map(|r| r.state.clone())
    }

    fn current_record(&self) -> Option<StateRecord> {
        self.follower.lock().current().cloned()
    }

    /// `/readyz` fails while a version the state names is not loaded here.
    fn check_ready(&self) {
        let Some(state) = self.current_state() else {
            *self.shared.blocked.write() = None;
            return;
        };
        let versions = self.versions.read();
        let problem = state.loaded_versions().into_iter().find_map(|v| {
            match versions.get(v) {
                Some(Slot::Loaded(_)) => None,
                Some(Slot::Refused { reason, detail }) => Some(format!(
                    "model {} version {v} named by the lifecycle state is refused here ({reason}): {detail}",
                    self.model
                )),
                None => Some(format!(
                    "model {} version {v} named by the lifecycle state is not loaded here yet",
                    self.model
                )),
            }
        });
        *self.shared.blocked.write() = problem;
    }

    /// Versions the state names that were never tried here.
    fn missing_versions(&self) -> Vec<String> {
        let Some(state) = self.current_state() else {
            return Vec::new();
        };
        let versions = self.versions.read();
        state
            .loaded_versions()
            .into_iter()
            .filter(|v| !versions.contains_key(*v))
            .map(str::to_owned)
            .collect()
    }

    /// Writes `next` as the successor of `base`, and publishes what it
    /// caused. Returns the record written.
    fn write(
        &self,
        base: Option<&StateRecord>,
        state: ModelState,
        cause: Cause,
        events: Vec<LifecycleEvent>,
    ) -> Result<StateRecord, HubError> {
        let now = now_ms();
        let record = match base {
            Some(b) => b.next(state, &self.me, cause, now),
            None => StateRecord::initial(&self.model, state, &self.me, now),
        };
        let generation = record.generation;
        let rollout_id = record.state.rollout.as_ref().map(|r| r.id.clone());
        self.sink
            .send(
                &self.topics.state,
                Some(0),
                Some(self.model.as_bytes()),
                Some(&record.to_json()),
                None,
                Token::Detached,
            )
            .map_err(|e| HubError::Write(e.to_string()))?;
        *self.pending.lock() = Some((generation, Instant::now()));
        self.publish(generation, rollout_id, events);
        Ok(record)
    }

    /// Sends events to `model-events`, logs and counts them, keeps them
    /// for `/v1/models`.
    fn publish(&self, generation: u64, rollout_id: Option<String>, events: Vec<LifecycleEvent>) {
        for event in events {
            let message = ModelEventMessage {
                format: EVENT_FORMAT,
                model: self.model.clone(),
                ts: now_ms(),
                instance: self.me.clone(),
                generation,
                rollout_id: rollout_id.clone(),
                event,
            };
            tracing::info!(
                model = %self.model, kind = message.event.kind(), generation,
                "lifecycle: {}", message.event.describe()
            );
            metrics::lifecycle_event(&self.model, message.event.kind());
            if !self.topics.events.is_empty() {
                if let Err(e) = self.sink.send(
                    &self.topics.events,
                    None,
                    Some(self.model.as_bytes()),
                    Some(&message.to_json()),
                    None,
                    Token::Detached,
                ) {
                    tracing::warn!(error = %e, "model event not published");
                }
            }
            let mut history = self.history.lock();
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(message);
        }
    }

    /// One turn of the deciding instance: the first record, heals,
    /// expired previous primaries, gate checks and step progress.
    fn decide(&self) {
        if !self.deciding.load(Ordering::Acquire) || !self.caught_up.load(Ordering::Acquire) {
            return;
        }
        {
            let mut pending = self.pending.lock();
            match *pending {
                Some((_, at)) if at.elapsed() < WRITE_TIMEOUT => return,
                Some((generation, _)) => {
                    tracing::warn!(
                        generation,
                        "own lifecycle record not read back; judging again"
                    );
                    *pending = None;
                }
                None => {}
            }
        }
        let Some(current) = self.current_record() else {
            let state = ModelState::new(&self.configured);
            if let Err(e) = self.write(None, state, Cause::Init, Vec::new()) {
                tracing::warn!(error = %e, "first lifecycle record not written");
            }
            return;
        };
        let heal = {
            let f = self.follower.lock();
            f.needs_heal().then(|| f.heal_record(now_ms())).flatten()
        };
        if let Some(record) = heal {
            if let Err(e) = self.write(Some(&current), record.state, Cause::Heal, Vec::new()) {
                tracing::warn!(error = %e, "lifecycle heal not written");
            }
            return;
        }
        // A candidate this instance could not load is judged on no traffic:
        // its steps wait (the scoring loop keeps its traffic on the primary).
        let readings = self.readings(&current.state);
        let transition = rollout::check(&self.settings, &current.state, &readings, now_ms());
        if transition.changed(&current.state) {
            self.commit(&current, transition, Cause::Check);
        }
    }

    fn commit(&self, base: &StateRecord, t: Transition, cause: Cause) {
        if let Err(e) = self.write(Some(base), t.state, cause, t.events) {
            tracing::warn!(error = %e, "lifecycle record not written");
        }
    }

    /// The gate readings of the current step; resets the accumulators when
    /// the step changed, and the step's progress after every read.
    fn readings(&self, state: &ModelState) -> GateReadings {
        let key = state.active().map(|r| (r.id.clone(), r.step));
        let drift_gate = state
            .active()
            .filter(|r| r.plan.gates.max_drift_alerts.is_some());
        let monitor = drift_gate.and_then(|r| self.candidate_drift_of(r));
        let mut acc = self.accum.lock();
        if acc.step != key {
            acc.step = key;
            acc.primary = VariantAcc::new(1);
            acc.candidate = VariantAcc::new(2);
            acc.pairs.reset();
            acc.streams.reset();
            acc.new_candidate_events = 0;
            acc.drift_base = monitor.as_ref().map(|m| (m.clone(), m.counts()));
        }
        let candidate_drift = monitor.as_ref().map(|m| acc.drift_since_step(m));
        let candidate_drift_missing = match (drift_gate, &monitor) {
            (Some(r), None) => Some(self.candidate_drift_missing(r)),
            _ => None,
        };
        let role = state
            .active()
            .and_then(|r| r.traffic())
            .map(|(role, _)| role);
        let labels = state
            .active()
            .and_then(|r| self.label_readings(&state.primary, &r.candidate));
        GateReadings {
            new_candidate_events: std::mem::take(&mut acc.new_candidate_events),
            candidate: acc.candidate.readings(),
            primary: acc.primary.readings(),
            shadow: (role == Some(Role::Shadow))
                .then(|| acc.pairs.summary())
                .flatten(),
            canary: (role == Some(Role::Canary))
                .then(|| acc.streams.summary())
                .flatten(),
            candidate_drift,
            candidate_drift_missing,
            labels,
        }
    }

    /// A version passed validation: start the plan when it says so.
    fn maybe_auto_start(&self, version: &str) {
        if !self.auto_start || !self.deciding.load(Ordering::Acquire) {
            return;
        }
        match self.start(version) {
            Ok(_) => {}
            Err(HubError::Command(e)) => {
                tracing::info!(version, reason = %e, "new version not rolled out automatically")
            }
            Err(e) => tracing::warn!(version, error = %e, "automatic rollout not started"),
        }
    }

    /// Starts the plan for `version`, loading it first when it is not
    /// loaded (a version already on disk at start, or refused before and
    /// fixed since).
    pub fn start(&self, version: &str) -> Result<Value, HubError> {
        if self.loaded(version).is_none() {
            self.load(version)?;
        }
        let plan = self.plan.clone().ok_or_else(|| HubError::NoPlan {
            model: self.model.clone(),
        })?;
        let id = format!("{}-{version}-{}", self.model, now_ms());
        self.change(Cause::Start, |settings, state, now| {
            rollout::start(settings, state, version, plan.clone(), &id, now)
        })
    }

    /// A manual command.
    pub fn command(&self, cmd: Command) -> Result<Value, HubError> {
        let by = format!("admin@{}", self.me);
        self.change(Cause::Command, |settings, state, now| {
            rollout::command(settings, state, cmd, &by, now)
        })
    }

    /// Applies `f` to the current state, writes it, and waits to read it
    /// back; when another record won meanwhile, `f` is applied again on
    /// top of the winner (a few times at most).
    fn change(
        &self,
        cause: Cause,
        f: impl Fn(&Settings, &ModelState, i64) -> Result<Transition, CommandError>,
    ) -> Result<Value, HubError> {
        for _ in 0..3 {
            if !self.state_read() {
                return Err(HubError::NoState);
            }
            // No record yet (a new group): the command starts from the
            // configured primary, as the deciding instance's first record would.
            let base = self.current_record();
            let state = base
                .as_ref()
                .map_or_else(|| ModelState::new(&self.configured), |b| b.state.clone());
            let t = f(&self.settings, &state, now_ms())?;
            let written = self.write(base.as_ref(), t.state, cause, t.events)?;
            let waited = Instant::now();
            loop {
                if let Some(current) = self.current_record() {
                    if current.generation >= written.generation {
                        // This instance's own checks write with the same
                        // writer id: the record itself must be the one kept.
                        if current == written {
                            return Ok(self.describe());
                        }
                        break;
                    }
                }
                if waited.elapsed() > COMMAND_WAIT {
                    return Err(HubError::NotConfirmed(COMMAND_WAIT));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(HubError::NotConfirmed(COMMAND_WAIT))
    }

    /// `GET /v1/models`.
    pub fn describe(&self) -> Value {
        let record = self.current_record();
        let table = self.router.current();
        let versions: Vec<Value> = self
            .versions
            .read()
            .iter()
            .map(|(v, slot)| {
                let role = if v == table.primary() {
                    Some("primary")
                } else {
                    table
                        .candidate()
                        .filter(|c| &*c.version == v)
                        .map(|c| match c.role {
                            Role::Shadow => "shadow",
                            Role::Canary => "canary",
                        })
                };
                match slot {
                    Slot::Loaded(l) => json!({
                        "version": v,
                        "status": "loaded",
                        "role": role,
                        "sha256": l.model.manifest().sha256,
                        "manifest_sha256": l.manifest_sha256,
                        "signed_by": l.signed_by,
                        "dir": l.dir.display().to_string(),
                    }),
                    Slot::Refused { reason, detail } => json!({
                        "version": v,
                        "status": "refused",
                        "role": role,
                        "reason": reason,
                        "detail": detail,
                    }),
                }
            })
            .collect();
        let traffic = match table.candidate() {
            Some(c) => {
                let share = c.share.percent();
                let (primary, candidate) = match c.role {
                    Role::Canary => (100.0 - share, share),
                    Role::Shadow => (100.0, share),
                };
                json!({"primary": {"version": table.primary(), "percent": primary},
                       "candidate": {"version": &*c.version, "role": c.role, "percent": candidate}})
            }
            None => {
                json!({"primary": {"version": table.primary(), "percent": 100.0}, "candidate": null})
            }
        };
        let rollout = record
            .as_ref()
            .and_then(|r| r.state.rollout.as_ref())
            .map(|r| {
                let drift = self.candidate_drift_of(r).map(|m| {
                    // Counted by the deciding instance's checks only.
                    let mut acc = self.accum.lock();
                    let in_step = (acc.step == Some((r.id.clone(), r.step)))
                        .then(|| acc.drift_since_step(&m).alerts);
                    drop(acc);
                    m.describe(in_step)
                });
                json!({
                    "id": r.id,
                    "candidate": r.candidate,
                    "status": r.status.as_str(),
                    "step": r.step,
                    "steps": r.plan.steps.iter().map(|s| s.describe()).collect::<Vec<_>>(),
                    "current_step": r.plan.steps.get(r.step).map(|s| s.describe()),
                    "step_events": r.step_events,
                    "started_ms": r.started_ms,
                    "step_started_ms": r.step_started_ms,
                    "gates": r.gates,
                    "candidate_drift": drift,
                    "failures": r.failures,
                    "reason": r.reason,
                    "finished_ms": r.finished_ms,
                })
            });
        json!({
            "models": [{
                "name": self.model,
                "primary": table.primary(),
                "generation": table.generation(),
                "instance": self.me,
                "deciding": self.deciding.load(Ordering::Acquire),
                "state_read": self.caught_up.load(Ordering::Acquire),
                "versions": versions,
                "traffic": traffic,
                "rollout": rollout,
                "previous": record.as_ref().and_then(|r| r.state.previous.clone()),
                "plan": self.plan.as_ref().map(|p| json!({
                    "auto_start": self.auto_start,
                    "steps": p.steps.iter().map(|s| s.describe()).collect::<Vec<_>>(),
                    "failure_limit": p.failure_limit,
                })),
                "history": self.history.lock().iter().rev().collect::<Vec<_>>(),
            }]
        })
    }
}

/// This process's writer id: host and pid, unique in a group at any time.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "driftline".into());
    format!("{host}/{}", std::process::id())
}

/// Feeds the state topic into the hub.
struct StateRecords {
    hub: Arc<Hub>,
}

impl Records for StateRecords {
    fn record(&mut self, m: &BorrowedMessage<'_>) {
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        // The topic may hold other models' records (several services sharing a group is not
        // supported, but a stray record must not stop this one).
        if key != self.hub.model {
            return;
        }
        let Some(payload) = m.payload() else {
            return;
        };
        match StateRecord::from_json(key, payload) {
            Ok(record) => self.hub.apply(record),
            Err(e) => {
                tracing::warn!(error = %e, offset = m.offset(), "lifecycle state record skipped")
            }
        }
    }

    fn caught_up(&mut self, c: CaughtUp) {
        tracing::info!(
            elapsed_ms = c.elapsed.as_millis() as u64,
            "lifecycle state read"
        );
        self.hub.caught_up.store(true, Ordering::Release);
    }
}

/// Errors starting the lifecycle threads.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("starting the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The lifecycle's threads. Both run until the service stops; one that
/// ends before is a failure of the service (see [`Threads::ended`]).
pub struct Threads {
    follower: Option<JoinHandle<Result<(), FollowError>>>,
    control: Option<JoinHandle<()>>,
}

impl Threads {
    /// Why a thread ended, once one has (it is joined then, and reported
    /// once): the state follower's error, or a panic of either.
    pub fn ended(&mut self) -> Option<String> {
        if let Some(h) = self.follower.take_if(|h| h.is_finished()) {
            return Some(match h.join() {
                Ok(Ok(())) => "the lifecycle state follower ended".to_string(),
                Ok(Err(e)) => format!("the lifecycle state follower stopped: {e}"),
                Err(_) => "the lifecycle state follower panicked".to_string(),
            });
        }
        if let Some(h) = self.control.take_if(|h| h.is_finished()) {
            return Some(match h.join() {
                Ok(()) => "the lifecycle thread ended".to_string(),
                Err(_) => "the lifecycle thread panicked".to_string(),
            });
        }
        None
    }

    /// Waits for both threads (after `stop` was set).
    pub fn join(self) {
        if let Some(Ok(Err(e))) = self.follower.map(JoinHandle::join) {
            tracing::warn!(error = %e, "lifecycle state follower stopped with an error");
        }
        if let Some(Err(_)) = self.control.map(JoinHandle::join) {
            tracing::error!("the lifecycle thread panicked");
        }
    }
}

/// Starts following the state topic and the lifecycle thread (registry
/// watcher, missing versions, decisions).
pub fn spawn(
    config: &Config,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> Result<Threads, StartError> {
    let consumer = reader(config).map_err(StartError::Client)?;
    let follow = Follow {
        topic: hub.topics.state.clone(),
        start: Start::Beginning,
        missing: MissingTopic::Retry {
            every: Duration::from_secs(1),
        },
        timeout,
        name: "lifecycle-state",
    };
    let follower = follower::spawn(
        consumer,
        follow,
        stop.clone(),
        StateRecords { hub: hub.clone() },
    )
    .map_err(|source| StartError::Thread {
        what: "lifecycle state follower",
        source,
    })?;
    let watch = config.lifecycle.watch;
    let watch_every = Duration::from_millis(config.lifecycle.watch_interval_ms());
    let check_every = Duration::from_millis(config.lifecycle.check_interval_ms());
    let mut watcher = Watcher::new(Registry::new(hub.registry.root(), hub.registry.name()));
    if watch {
        if let Err(e) = watcher.prime() {
            tracing::warn!(error = %e, "model registry scan failed");
        }
    }
    let control = std::thread::Builder::new()
        .name("lifecycle".into())
        .spawn(move || {
            control(
                &hub,
                watch.then_some(watcher),
                watch_every,
                check_every,
                &stop,
            )
        })
        .map_err(|source| StartError::Thread {
            what: "lifecycle",
            source,
        })?;
    Ok(Threads {
        follower: Some(follower),
        control: Some(control),
    })
}

fn control(
    hub: &Hub,
    mut watcher: Option<Watcher>,
    watch_every: Duration,
    check_every: Duration,
    stop: &AtomicBool,
) {
    let tick = Duration::from_millis(50);
    let mut last_watch = Instant::now();
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        for version in hub.missing_versions() {
            tracing::info!(version, "loading a version the lifecycle state names");
            let _ = hub.load(&version);
        }
        if let Some(w) = watcher
            .as_mut()
            .filter(|_| last_watch.elapsed() >= watch_every)
        {
            last_watch = Instant::now();
            match w.poll() {
                Ok(changes) => {
                    for change in changes {
                        on_change(hub, change);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "model registry scan failed"),
            }
        }
        // The first record and heals are written as soon as possible;
        // gates are judged every check interval.
        let first = hub.caught_up.load(Ordering::Acquire) && hub.current_record().is_none();
        if first || last_check.elapsed() >= check_every {
            last_check = Instant::now();
            hub.decide();
        }
    }
}

fn on_change(hub: &Hub, change: WatchEvent) {
    match change {
        WatchEvent::Added { version, .. } | WatchEvent::Changed { version, .. } => {
            if hub.load(&version).is_ok() {
                hub.maybe_auto_start(&version);
            }
        }
        WatchEvent::Removed { version } => {
            tracing::info!(
                version,
                "model version directory removed; it stays loaded while in use"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::lifecycle::gates::{evaluate, GateKind, Verdict};
    use crate::lifecycle::plan::{PlanConfig, StepConfig, StepKind};

    /// A hub serving version 1 of the fraud-mlp registry at `root`, with
    /// its state topic on a broker that is never reached.
    fn hub(config: &Config, root: &Path) -> Hub {
        let registry = Registry::new(root, "fraud-mlp");
        let manifest = crate::score::Manifest::load(&registry.root().join("1/model.toml")).unwrap();
        let context = ValidationContext {
            trusted_keys: crate::score::signature::TrustedKeys::load(&[]).unwrap(),
            serving: crate::lifecycle::registry::ServingContract::of_manifest(&manifest),
            drift: Some(config.drift.clone()),
        };
        let primary = registry.validate("1", &context).unwrap();
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", "127.0.0.1:1");
        let sink = Sink::new(
            client,
            Arc::new(crate::sink::offsets::Tracker::new()),
            crate::config::OnPermanentFailure::Halt,
        )
        .unwrap();
        Hub::new(
            config,
            primary,
            registry,
            context,
            Arc::new(sink),
            HubTopics {
                state: "models".into(),
                events: String::new(),
            },
            Arc::new(Shared::default()),
        )
    }

    fn committed_models() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud-mlp")
    }

    #[test]
    fn spare_versions_are_released_past_max_model_bytes() {
        let mut config = Config::default();
        let one = hub(&config, &committed_models()).model_bytes().0;
        // Room for two models of about version 1's size, not three.
        let max = 2 * one + 1024;
        config.lifecycle.max_model_bytes = max;
        let hub = hub(&config, &committed_models());
        assert_eq!(hub.model_bytes(), (one, max, 0));
        hub.load("2").unwrap();
        hub.load("3").unwrap();
        // Version 2 went: the state names nothing, version 1 is the
        // configured one and version 3 was just loaded.
        assert!(hub.loaded("2").is_none());
        assert!(hub.loaded("1").is_some() && hub.loaded("3").is_some());
        let (bytes, limit, released) = hub.model_bytes();
        assert_eq!((limit, released), (max, 1));
        assert!(bytes <= max, "{bytes} > {max}");
        // Loaded again on demand.
        hub.load("2").unwrap();
        assert!(hub.loaded("2").is_some() && hub.loaded("3").is_none());
        assert_eq!(hub.model_bytes().2, 2);
    }

    /// A running rollout of `version` (a long shadow step) whose plan
    /// allows no candidate drift alert, applied to `hub`.
    fn rollout_of(hub: &Hub, version: &str) -> ModelState {
        let plan = PlanConfig {
            auto_start: false,
            steps: vec![
                StepConfig {
                    kind: StepKind::Shadow,
                    percent: None,
                    events: Some(1_000_000),
                    duration: None,
                },
                StepConfig {
                    kind: StepKind::Promote,
                    percent: None,
                    events: None,
                    duration: None,
                },
            ],
            gates: crate::lifecycle::plan::GatesConfig {
                max_drift_alerts: Some(0),
                ..Default::default()
            },
            failure_limit: 0,
        }
        .compile("t")
        .unwrap();
        // One id (so one routing salt) per rollout.
        let generation = hub.current_record().map_or(0, |r| r.generation);
        let id = format!("fraud-mlp-{version}-{generation}");
        let state = rollout::start(&hub.settings, &ModelState::new("1"), version, plan, &id, 1)
            .unwrap()
            .state;
        // As if read back from the state topic.
        let record = match hub.current_record() {
            Some(base) => base.next(state.clone(), "test", Cause::Command, 1),
            None => StateRecord::initial("fraud-mlp", state.clone(), "test", 1),
        };
        hub.apply(record);
        assert_eq!(hub.current_state().as_ref(), Some(&state));
        state
    }

    fn drift_gate(state: &ModelState, r: &GateReadings) -> crate::lifecycle::gates::GateStatus {
        let rollout = state.active().unwrap();
        let role = rollout.traffic().map(|(role, _)| role);
        evaluate(&rollout.plan.gates, role, r)
            .into_iter()
            .find(|g| g.gate == GateKind::DriftAlerts)
            .unwrap()
    }

    #[test]
    fn the_drift_gate_counts_the_candidates_own_alerts_and_says_why_it_waits() {
        // Versions 1 and 2 as committed, and 5: version 2 without a
        // reference profile.
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("fraud-mlp");
        for v in ["1", "2"] {
            let dir = root.join(v);
            std::fs::create_dir_all(&dir).unwrap();
            for f in ["model.toml", "model.onnx", "reference.json"] {
                std::fs::copy(committed_models().join(v).join(f), dir.join(f)).unwrap();
            }
        }
        let five = root.join("5");
        std::fs::create_dir_all(&five).unwrap();
        std::fs::copy(root.join("2/model.onnx"), five.join("model.onnx")).unwrap();
        let manifest: String = std::fs::read_to_string(root.join("2/model.toml"))
            .unwrap()
            .replace("version = \"2\"", "version = \"5\"")
            .lines()
            .filter(|l| !l.starts_with("reference"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(five.join("model.toml"), manifest).unwrap();

        let mut config = Config::default();
        config.drift.window_events = 1_000;
        config.drift.sub_windows = 1;
        config.drift.min_samples = 500;
        config.drift.fire_after = 1;
        config.drift.warmup_events = 0;
        let mut hub = hub(&config, &root);
        hub.load("2").unwrap();
        hub.load("5").unwrap();

        let state = rollout_of(&hub, "5");
        let r = hub.readings(&state);
        assert_eq!(r.candidate_drift, None);
        let gate = drift_gate(&state, &r);
        assert_eq!(gate.verdict, Verdict::Pending);
        assert!(
            gate.reason
                .as_deref()
                .is_some_and(|w| w.contains("version 5 has no reference profile")),
            "{gate:?}"
        );
        let salt = state.active().unwrap().salt();
        assert!(hub.candidate_drift_plan("5", salt).is_none());

        let state = rollout_of(&hub, "2");
        let salt = state.active().unwrap().salt();
        assert!(
            hub.candidate_drift_plan("2", salt ^ 1).is_none(),
            "another rollout's"
        );
        hub.drift_on = false;
        assert!(hub.candidate_drift_plan("2", salt).is_none());
        let r = hub.readings(&state);
        assert_eq!(
            r.candidate_drift_missing.as_deref(),
            Some("drift monitoring is off (drift.enabled = false)")
        );
        hub.drift_on = true;
        let r = hub.readings(&state);
        assert!(
            r.candidate_drift_missing
                .as_deref()
                .is_some_and(|w| w.contains("starts with the first event")),
            "{r:?}"
        );

        // Version 2's reference was profiled on the shifted week: rows of
        // zeros are far from it, so its first window fires alerts.
        let plan = hub.candidate_drift_plan("2", salt).unwrap();
        let (mut recorder, monitor) = CandidateDrift::start("2", salt, plan).unwrap();
        hub.set_candidate_drift(Some(monitor.clone()));
        let r = hub.readings(&state);
        assert_eq!(
            r.candidate_drift,
            Some(DriftReadings {
                alerts: 0,
                evaluations: 0
            })
        );
        assert_eq!(drift_gate(&state, &r).verdict, Verdict::Pending);
        let row = vec![0.0f32; 512];
        let missing = vec![false; 64];
        for i in 0..1_000 {
            recorder.observe(&row, &missing, 0.0, 1_795_000_000_000 + i, "card-1");
        }
        let waited = Instant::now();
        while monitor.counts().evaluations == 0 {
            assert!(waited.elapsed() < Duration::from_secs(60), "no evaluation");
            std::thread::sleep(Duration::from_millis(10));
        }
        let counts = monitor.counts();
        assert!(counts.fired > 0 && counts.firing > 0, "{counts:?}");
        let r = hub.readings(&state);
        let reading = r.candidate_drift.unwrap();
        assert_eq!(reading.evaluations, 1);
        assert_eq!(u64::from(reading.alerts), counts.fired);
        let gate = drift_gate(&state, &r);
        assert_eq!((gate.verdict, gate.samples), (Verdict::Fail, 1));
        let shown = hub.describe()["models"][0]["rollout"]["candidate_drift"].clone();
        assert_eq!(shown["version"], "2", "{shown}");
        assert_eq!(shown["evaluations"], 1, "{shown}");
        assert_eq!(shown["alerts_in_step"], counts.fired, "{shown}");
        assert!(
            shown["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["state"] == "firing")),
            "{shown}"
        );

        // The next step starts from the alerts still firing, with no
        // window judged yet.
        let mut next = state.clone();
        if let Some(r) = next.rollout.as_mut() {
            r.step = 1;
        }
        let r = hub.readings(&next);
        assert_eq!(
            r.candidate_drift,
            Some(DriftReadings {
                alerts: counts.firing,
                evaluations: 0
            })
        );
        // The rollout ended: the loop drops the recorder, the evaluator
        // ends, and what it found stays shown.
        drop(recorder);
        let waited = Instant::now();
        while monitor.running() {
            assert!(waited.elapsed() < Duration::from_secs(60), "still running");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(monitor.usage().1, 0, "no bound once stopped");
        let shown = hub.describe()["models"][0]["rollout"]["candidate_drift"].clone();
        assert_eq!(shown["running"], false, "{shown}");
        assert_eq!(shown["evaluations"], 1, "{shown}");
        // Another rollout does not read it.
        let other = rollout_of(&hub, "2");
        let r = hub.readings(&other);
        assert_eq!(r.candidate_drift, None);
        assert!(r.candidate_drift_missing.is_some());
    }

    #[test]
    fn variant_readings_count_and_take_the_p99_of_per_event_times() {
        let mut acc = VariantAcc::new(7);
        // 100 batches of 10 events: 1..=100 µs per event.
        for us in 1..=100u64 {
            VariantBatch {
                events: 10,
                rejected: u64::from(us % 10 == 0),
                elapsed: Duration::from_micros(us * 10),
            }
            .record(&mut acc);
        }
        VariantBatch::default().record(&mut acc);
        let r = acc.readings();
        assert_eq!((r.events, r.rejected), (1000, 10));
        let p99 = r.latency_p99_us.unwrap();
        assert!((p99 - 99.0).abs() < 1e-9, "{p99}");
        assert_eq!(VariantAcc::new(1).readings().latency_p99_us, None);
    }

    #[test]
    fn hub_errors_have_stable_codes() {
        let e = HubError::NotLoaded {
            model: "m".into(),
            version: "2".into(),
            why: String::new(),
        };
        assert_eq!(e.code(), "not_loaded");
        assert_eq!(HubError::NoState.code(), "no_state");
        let e: HubError = CommandError::NoRollout { model: "m".into() }.into();
        assert_eq!(e.code(), "no_rollout");
    }
}
