//! `driftline serve`: the Kafka loop, and the service around it.
//!
//! [`start`] assembles the service that both `driftline serve` and
//! `driftline demo` run: the admin HTTP port on a runtime thread named
//! `admin`, the scoring loop on a thread named `scoring`. The returned
//! [`Service`] stops in the spec's order: stop consuming, drain, flush,
//! commit, then stop HTTP (so probes see the drain).
//!
//! Guarantees (spec, "Delivery guarantees"):
//! - at least once: an input offset is committed only after every output it
//!   produced is acknowledged by the broker (and, with streaming aggregates,
//!   after the changelog checkpoint covering it); a crash re-reads from the
//!   last commit, so duplicates are bounded by one commit interval;
//! - per-partition order: one thread polls and scores in order, and the
//!   idempotent producer keeps each output partition in send order;
//! - partitions move cleanly: revoked ones are drained, checkpointed,
//!   flushed and committed before they go; assigned ones restore their
//!   aggregate state before their first record;
//! - the snapshot and the `feature-updates` topic are loaded before the
//!   first event is scored;
//! - shutdown (the `stop` flag) stops consuming, scores what was polled,
//!   checkpoints, flushes the producer, commits, and leaves the group.
//!
//! The rdkafka poll loop runs on a plain thread, apart from async code, as
//! rebalance callbacks run inside `poll` and must be able to drain the batch.
//! Kafka-in itself (client settings, the group context, batches, the
//! followers) is [`crate::consumer`]; this module is the loop.

pub mod changelog;
pub mod drift;
mod labels;
pub mod lifecycle;
mod updates;
pub mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;

use crate::admin::{AdminError, AdminState};
use crate::app::Parts;
use crate::config::{BadDuration, Config};
use crate::consumer::config::{group_config, producer_config};
use crate::consumer::context::{reader, GroupContext};
use crate::consumer::follower::{self, FollowError};
use crate::drift::labels::LabelJoin;
use crate::lifecycle::registry::{
    Refusal, Registry, ServingContract, ValidatedVersion, ValidationContext,
};
use crate::pipeline::{Pipeline, PipelineError};
use crate::score::signature::{SignatureError, TrustedKeys};
use crate::sink::offsets::Tracker;
use crate::sink::{Sink, SinkError};
use crate::status::Shared;
use crate::telemetry::metrics::{self, MetricsError};
use changelog::ChangelogError;
use worker::{Limits, Topics, Worker, WorkerError, WorkerParts};

/// Errors of the service.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("{topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error(transparent)]
    Config(#[from] BadDuration),
    #[error(transparent)]
    Changelog(#[from] ChangelogError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("feature updates: {0}")]
    Updates(#[source] FollowError),
    #[error("feature updates did not catch up within {0:?}")]
    UpdatesTimeout(Duration),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("starting the {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the scoring loop panicked")]
    Panicked,
    #[error("model.trusted_keys: {0}")]
    Keys(#[from] SignatureError),
    #[error("the configured model version is refused ({code}): {refusal}")]
    Refused {
        code: &'static str,
        refusal: Box<Refusal>,
    },
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::StartError),
}

/// The model lifecycle, once the loop has built it (the admin API starts
/// before).
pub type HubSlot = Arc<OnceLock<Arc<lifecycle::Hub>>>;

/// Whether the service may run without its admin port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPort {
    /// A port that cannot be bound fails the start (`driftline serve`:
    /// probes and scrapes depend on it).
    Required,
    /// A port that cannot be bound is a warning (the demo runs without).
    BestEffort,
}

/// How the service is started.
pub struct ServeOptions {
    /// Set to stop the loop (signal handler, demo timer).
    pub stop: Arc<AtomicBool>,
    pub shared: Arc<Shared>,
    pub admin: AdminPort,
}

/// A running service: the admin port and the scoring loop.
pub struct Service {
    runtime: tokio::runtime::Runtime,
    admin_addr: Option<SocketAddr>,
    server: Option<tokio::task::JoinHandle<Result<(), AdminError>>>,
    stop_http: Option<tokio::sync::oneshot::Sender<()>>,
    scoring: JoinHandle<Result<(), ServeError>>,
    /// Resolves when the scoring thread ends, however it ends.
    finished: Option<tokio::sync::oneshot::Receiver<()>>,
    stop: Arc<AtomicBool>,
}

/// Starts the admin port and the scoring loop; `parts` were built from
/// `config` (the snapshot is already loaded).
pub fn start(config: Config, parts: Parts, options: ServeOptions) -> Result<Service, ServeError> {
    let ServeOptions {
        stop,
        shared,
        admin,
    } = options;
    let metrics = metrics::install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("admin")
        .enable_all()
        .build()
        .map_err(|source| ServeError::Start {
            what: "admin runtime",
            source,
        })?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let hub: HubSlot = Arc::default();
    let state = AdminState {
        shared: shared.clone(),
        metrics,
        parts: parts.clone(),
        token: config.admin.token.as_deref().map(Into::into),
        lifecycle: hub.clone(),
    };
    let bound = runtime.block_on(crate::admin::bind(&config.admin.listen, state, async {
        let _ = http_stopped.await;
    }));
    let (admin_addr, server) = match (bound, admin) {
        (Ok((addr, server)), _) => {
            tracing::info!(%addr, "admin http listening");
            (Some(addr), Some(runtime.spawn(server)))
        }
        (Err(e), AdminPort::BestEffort) => {
            tracing::warn!(error = %e, "running without the admin port");
            (None, None)
        }
        (Err(e), AdminPort::Required) => return Err(e.into()),
    };
    // The loop blocks in rdkafka's poll: a thread of its own, named so that
    // per-thread CPU (top -H, perf, the load test) shows it apart from the
    // admin runtime.
    let (done, finished) = tokio::sync::oneshot::channel();
    let scoring = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("scoring".into())
            .spawn(move || {
                let result = run(&config, parts, &stop, &shared, &hub);
                let _ = done.send(());
                result
            })
            .map_err(|source| ServeError::Start {
                what: "scoring thread",
                source,
            })?
    };
    Ok(Service {
        runtime,
        admin_addr,
        server,
        stop_http: Some(stop_http),
        scoring,
        finished: Some(finished),
        stop,
    })
}

impl Service {
    /// Where the admin port listens (`None`: it could not be bound, and the
    /// port was [`AdminPort::BestEffort`]).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The scoring loop has ended (stopped, failed or panicked).
    pub fn is_finished(&self) -> bool {
        self.scoring.is_finished()
    }

    /// The admin runtime, for other async work of the process (the demo's
    /// signal watcher).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Runs until SIGINT or SIGTERM, or until the loop ends on its own,
    /// then stops (see [`stop`](Self::stop)).
    pub fn run_until_signal(mut self) -> Result<(), ServeError> {
        let finished = self.finished.take();
        let stop = self.stop.clone();
        self.runtime.block_on(async move {
            let finished = async {
                if let Some(finished) = finished {
                    let _ = finished.await;
                }
            };
            tokio::select! {
                signal = crate::shutdown::signal() => {
                    tracing::info!(signal, "shutting down: draining, flushing, committing");
                    stop.store(true, Ordering::Relaxed);
                }
                _ = finished => {}
            }
        });
        self.stop()
    }

    /// Stops the loop (it drains, flushes and commits) and waits for it,
    /// then stops HTTP last, so probes see the drain. Returns how the loop
    /// ended.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.scoring.join();
        if let Some(stop_http) = self.stop_http.take() {
            let _ = stop_http.send(());
        }
        if let Some(server) = self.server.take() {
            if let Ok(Err(e)) = self.runtime.block_on(server) {
                tracing::warn!(error = %e, "admin server stopped");
            }
        }
        result.map_err(|_| ServeError::Panicked)?
    }
}

/// The loop's durations, read once.
struct Timings {
    /// How long shutdown and hand-over wait for deliveries.
    flush_timeout: Duration,
    commit_every: Duration,
    /// Latency budget of a micro-batch.
    max_wait: Duration,
}

impl Timings {
    fn new(config: &Config) -> Result<Self, BadDuration> {
        Ok(Timings {
            flush_timeout: config.kafka.flush_timeout()?,
            commit_every: config.kafka.commit_interval()?,
            max_wait: config.pipeline.max_batch_wait()?,
        })
    }
}

/// The followers' threads, joined at shutdown.
#[derive(Default)]
struct Followers {
    updates: Option<JoinHandle<Result<(), FollowError>>>,
    labels: Option<JoinHandle<Result<(), FollowError>>>,
    lifecycle: Option<lifecycle::Threads>,
}

/// The scoring loop's consumer.
type GroupConsumer = BaseConsumer<GroupContext<Worker>>;

/// Runs the loop until `stop` is set; blocks the calling thread.
fn run(
    config: &Config,
    parts: Parts,
    stop: &Arc<AtomicBool>,
    shared: &Arc<Shared>,
    hub_slot: &HubSlot,
) -> Result<(), ServeError> {
    let timings = Timings::new(config)?;
    let topics = Topics {
        features: config.kafka.topics.features.clone(),
        predictions: config.kafka.topics.predictions.clone(),
        dlq: config.kafka.topics.dlq.clone(),
        changelog: config.changelog_topic(),
        predictions_shadow: drift::existing_topic(
            config,
            &config.kafka.topics.predictions_shadow,
            timings.flush_timeout,
        )
        .map_err(ServeError::Client)?,
    };
    let model = &parts.model;
    metrics::model_info(model.name(), model.version(), &model.manifest().sha256);
    shared.model_loaded.store(true, Ordering::Release);

    if parts.aggregator.is_some() {
        changelog::ensure_topic(
            config,
            &topics.features,
            &topics.changelog,
            timings.flush_timeout,
        )?;
    }
    let sink = Arc::new(Sink::new(
        producer_config(config),
        Arc::new(Tracker::new()),
    )?);
    let mut followers = Followers {
        updates: start_updates(config, &parts, &sink, stop, shared, timings.flush_timeout)?,
        labels: None,
        lifecycle: None,
    };
    if !wait_for_store(
        config,
        &mut followers.updates,
        stop,
        shared,
        timings.flush_timeout,
    )? {
        return Ok(());
    }

    let mut pipeline = Pipeline::new(
        &parts.model,
        parts.store.clone(),
        parts.aggregator.clone(),
        config.pipeline.max_message_bytes,
    )?;
    let label_join = label_join(config, &parts)?;
    followers.labels = start_labels(config, label_join.as_ref(), stop)?;
    let evaluator = start_drift(
        config,
        &parts,
        &mut pipeline,
        &sink,
        shared,
        label_join.as_ref(),
        timings.flush_timeout,
    )?;
    let hub = start_lifecycle(
        config,
        &parts,
        &sink,
        shared,
        label_join.clone(),
        timings.flush_timeout,
    )?;
    followers.lifecycle = Some(lifecycle::spawn(
        config,
        hub.clone(),
        stop.clone(),
        timings.flush_timeout,
    )?);
    let _ = hub_slot.set(hub.clone());
    // Routing must follow the group's state from the first batch on (a
    // restart in the middle of a rollout keeps every entity on its version).
    let waited = Instant::now();
    while !hub.state_read() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if waited.elapsed() > timings.flush_timeout * 4 {
            return Err(ServeError::Topic {
                topic: config.models_topic(),
                reason: format!(
                    "lifecycle state not read within {:?}",
                    timings.flush_timeout * 4
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let worker = Worker::new(WorkerParts {
        pipeline,
        sink: sink.clone(),
        topics: topics.clone(),
        limits: Limits {
            batch_size: config.pipeline.batch_size,
            max_message_bytes: config.pipeline.max_message_bytes,
            max_batch_bytes: config.pipeline.max_batch_bytes,
            flush_timeout: timings.flush_timeout,
        },
        aggregator: parts.aggregator.clone(),
        store: parts.store.clone(),
        restorer: reader(config).map_err(ServeError::Client)?,
        shared: shared.clone(),
        labels: label_join,
        lifecycle: Some(hub),
    });
    let consumer: GroupConsumer = group_config(config)
        .create_with_context(GroupContext::new(worker, topics.features.clone()))
        .map_err(ServeError::Client)?;
    consumer
        .subscribe(&[&topics.features])
        .map_err(ServeError::Client)?;
    shared.running.store(true, Ordering::Release);
    tracing::info!(
        topic = %topics.features,
        group = %config.kafka.group_id,
        model = model.name(),
        version = model.version(),
        "scoring loop started"
    );

    let result = poll_loop(&consumer, stop, timings.max_wait, timings.commit_every);
    shut_down(
        consumer,
        evaluator,
        &sink,
        timings.flush_timeout,
        followers,
        stop,
        shared,
    );
    result
}

/// The model lifecycle: the served version validated like any other
/// (signatures apply at start too), the state topic created when missing.
fn start_lifecycle(
    config: &Config,
    parts: &Parts,
    sink: &Arc<Sink>,
    shared: &Arc<Shared>,
    labels: Option<Arc<LabelJoin>>,
    timeout: Duration,
) -> Result<Arc<lifecycle::Hub>, ServeError> {
    let model = &parts.model;
    let context = ValidationContext {
        trusted_keys: TrustedKeys::load(&config.model.trusted_keys)?,
        serving: ServingContract::of_sources(parts.store.as_deref(), parts.aggregator.as_deref()),
        drift: Some(config.drift.clone()),
    };
    let registry = Registry::of_model_dir(&config.model.dir, model.name());
    let primary = if config.model.dir.join("model.toml").is_file() {
        registry
            .validate(model.version(), &context)
            .map_err(|r| ServeError::Refused {
                code: r.code(),
                refusal: Box::new(r),
            })?
    } else {
        // A model built into the binary (the demo's) has no directory to
        // check; it is what was loaded.
        ValidatedVersion {
            version: model.version().to_owned(),
            dir: config.model.dir.clone(),
            model: model.clone(),
            manifest_sha256: model.manifest().sha256.clone(),
            signed_by: None,
            reference: None,
            drift: parts.drift.clone(),
        }
    };
    let state_topic = config.models_topic();
    changelog::ensure_compacted(config, &state_topic, 1, timeout)?;
    let topics = lifecycle::HubTopics {
        state: state_topic,
        events: drift::existing_topic(config, &config.kafka.topics.model_events, timeout)
            .map_err(ServeError::Client)?,
    };
    Ok(Arc::new(
        lifecycle::Hub::new(
            config,
            primary,
            registry,
            context,
            sink.clone(),
            topics,
            shared.clone(),
        )
        .with_labels(labels),
    ))
}

/// Starts the `feature-updates` follower when the model reads the store
/// and the topic is set; otherwise the store is ready as it is.
fn start_updates(
    config: &Config,
    parts: &Parts,
    sink: &Arc<Sink>,
    stop: &Arc<AtomicBool>,
    shared: &Arc<Shared>,
    timeout: Duration,
) -> Result<Option<JoinHandle<Result<(), FollowError>>>, ServeError> {
    let topic = config.kafka.topics.feature_updates.trim();
    let Some(store) = parts.store.as_ref().filter(|_| !topic.is_empty()) else {
        shared.store_ready.store(true, Ordering::Release);
        return Ok(None);
    };
    let records = updates::Updates::new(
        store.clone(),
        sink.clone(),
        topic.to_string(),
        config.kafka.topics.dlq.clone(),
        config.pipeline.max_message_bytes,
        shared.clone(),
    );
    let consumer = reader(config).map_err(ServeError::Client)?;
    let handle = follower::spawn(
        consumer,
        updates::follow(topic, timeout),
        stop.clone(),
        records,
    )
    .map_err(|e| ServeError::Topic {
        topic: topic.to_string(),
        reason: format!("starting the follower thread: {e}"),
    })?;
    Ok(Some(handle))
}

/// Waits until the store is caught up: `Ok(true)`, or `Ok(false)` when
/// `stop` came first. The follower ending early, or taking longer than four
/// flush timeouts, is an error.
fn wait_for_store(
    config: &Config,
    updates: &mut Option<JoinHandle<Result<(), FollowError>>>,
    stop: &AtomicBool,
    shared: &Shared,
    flush_timeout: Duration,
) -> Result<bool, ServeError> {
    let waited = Instant::now();
    while !shared.store_ready.load(Ordering::Acquire) {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if let Some(h) = updates.take_if(|h| h.is_finished()) {
            return Err(match h.join() {
                Ok(Err(e)) => ServeError::Updates(e),
                _ => ServeError::Topic {
                    topic: config.kafka.topics.feature_updates.clone(),
                    reason: "the follower stopped before catching up".into(),
                },
            });
        }
        if waited.elapsed() > flush_timeout * 4 {
            return Err(ServeError::UpdatesTimeout(flush_timeout * 4));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(true)
}

/// The label join, when there is a labels topic and drift monitoring to
/// judge performance with: labels are joined only for the evaluator.
fn label_join(config: &Config, parts: &Parts) -> Result<Option<Arc<LabelJoin>>, ServeError> {
    let topic = config.kafka.topics.labels.trim();
    if parts.drift.is_none() || topic.is_empty() {
        return Ok(None);
    }
    let join = LabelJoin::new(&config.labels).map_err(|e| ServeError::Topic {
        topic: topic.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Some(Arc::new(join)))
}

/// Starts the `labels` follower feeding `join`, if there is one.
fn start_labels(
    config: &Config,
    join: Option<&Arc<LabelJoin>>,
    stop: &Arc<AtomicBool>,
) -> Result<Option<JoinHandle<Result<(), FollowError>>>, ServeError> {
    let Some(join) = join else {
        return Ok(None);
    };
    let topic = config.kafka.topics.labels.trim();
    let consumer = reader(config).map_err(ServeError::Client)?;
    let handle =
        labels::spawn(consumer, topic.to_string(), join.clone(), stop.clone()).map_err(|e| {
            ServeError::Topic {
                topic: topic.to_string(),
                reason: format!("starting the label follower: {e}"),
            }
        })?;
    Ok(Some(handle))
}

/// Attaches drift monitoring to `pipeline` and starts its evaluator, when
/// the model has a drift plan.
fn start_drift(
    config: &Config,
    parts: &Parts,
    pipeline: &mut Pipeline,
    sink: &Arc<Sink>,
    shared: &Shared,
    label_join: Option<&Arc<LabelJoin>>,
    timeout: Duration,
) -> Result<Option<JoinHandle<()>>, ServeError> {
    let Some(plan) = &parts.drift else {
        return Ok(None);
    };
    let t = &config.kafka.topics;
    let topics = drift::DriftTopics {
        alerts: drift::existing_topic(config, &t.drift_alerts, timeout)
            .map_err(ServeError::Client)?,
        retrain: drift::existing_topic(config, &t.retrain_requests, timeout)
            .map_err(ServeError::Client)?,
    };
    let performance =
        label_join.map(|join| drift::performance_source(join.clone(), config.labels.clone()));
    let handle = drift::start(
        plan.clone(),
        pipeline,
        sink.clone(),
        topics,
        shared,
        performance,
    )
    .map_err(|e| ServeError::Topic {
        topic: t.drift_alerts.clone(),
        reason: format!("starting the drift evaluator: {e}"),
    })?;
    Ok(Some(handle))
}

/// Polls, batches, scores and commits until `stop` or a fatal error.
fn poll_loop(
    consumer: &GroupConsumer,
    stop: &AtomicBool,
    max_wait: Duration,
    commit_every: Duration,
) -> Result<(), ServeError> {
    let context = consumer.context();
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(e) = context.take_fatal() {
            return Err(e.into());
        }
        let timeout = match context.handler().batch_started() {
            Some(first) => max_wait.saturating_sub(first.elapsed()),
            None => Duration::from_millis(50),
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => context.handler().push(&m)?,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
        let mut worker = context.handler();
        worker.tick();
        if worker
            .batch_started()
            .is_some_and(|first| first.elapsed() >= max_wait)
        {
            worker.process()?;
        }
        if last_commit.elapsed() >= commit_every {
            last_commit = Instant::now();
            worker.checkpoint(None)?;
            worker.commit(consumer, CommitMode::Async, None);
            worker.upkeep();
            if let Some(e) = worker.failure() {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Shutdown: score what was polled, checkpoint, flush, commit, leave the
/// group; then let the evaluator publish what it holds and the followers
/// stop.
fn shut_down(
    consumer: GroupConsumer,
    evaluator: Option<JoinHandle<()>>,
    sink: &Sink,
    flush_timeout: Duration,
    followers: Followers,
    stop: &AtomicBool,
    shared: &Shared,
) {
    {
        let mut worker = consumer.context().handler();
        if let Err(e) = worker.process().and_then(|_| worker.checkpoint(None)) {
            tracing::error!(error = %e, "final batch could not be sent; it is re-read after restart");
        }
        worker.flush();
        worker.commit(&consumer, CommitMode::Sync, None);
    }
    consumer.unsubscribe();
    // Leaving the group runs the revoke callback (nothing left to drain).
    drop(consumer);
    // The pipeline went with the consumer's context, closing the recorder's
    // channel: the evaluator publishes what it holds, then its last outputs
    // are flushed.
    if let Some(h) = evaluator {
        if h.join().is_err() {
            tracing::error!("the drift evaluator panicked");
        }
        if let Err(e) = sink.flush(flush_timeout) {
            tracing::warn!(error = %e, "flushing the last drift alerts timed out");
        }
    }
    stop.store(true, Ordering::Relaxed);
    shared.running.store(false, Ordering::Release);
    if let Some(h) = followers.updates {
        if let Ok(Err(e)) = h.join() {
            tracing::warn!(error = %e, "feature-updates follower stopped with an error");
        }
    }
    if let Some(h) = followers.labels {
        if let Ok(Err(e)) = h.join() {
            tracing::warn!(error = %e, "label follower stopped with an error");
        }
    }
    if let Some(threads) = followers.lifecycle {
        threads.join();
    }
    tracing::info!(
        predictions = shared.stats.predicted.load(Ordering::Relaxed),
        dlq = shared.stats.dlq.load(Ordering::Relaxed),
        "scoring loop stopped"
    );
}
