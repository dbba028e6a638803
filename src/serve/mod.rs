//! `driftline serve`: the Kafka loop.
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

pub mod changelog;
pub mod drift;
mod labels;
mod updates;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;

use crate::drift::monitor::DriftStatus;
use rdkafka::{ClientContext, TopicPartitionList};

use hdrhistogram::Histogram;

use crate::app::Parts;
use crate::config::{librdkafka_property, BadDuration, Config, PropertyValue};
use crate::event::RejectReason;
use crate::pipeline::{Pipeline, PipelineError};
use crate::sink::offsets::Tracker;
use crate::sink::{Sink, SinkError};
use crate::telemetry::metrics;
use worker::{Limits, Topics, Worker, WorkerError, WorkerParts};

/// Errors of the service loop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("{topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error(transparent)]
    Config(#[from] BadDuration),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("feature updates: {0}")]
    Updates(#[from] updates::UpdatesError),
    #[error("feature updates did not catch up within {0:?}")]
    UpdatesTimeout(Duration),
}

/// Counters the demo prints and the admin API reads.
#[derive(Debug, Default)]
pub struct LoopStats {
    pub predicted: AtomicU64,
    pub dlq: AtomicU64,
    dlq_by_reason: [AtomicU64; RejectReason::ALL.len()],
    /// Receive-to-send latency of predictions in microseconds: since the
    /// last [`take_latencies`](Self::take_latencies), and in total.
    latency_us: Mutex<Option<(Histogram<u64>, Histogram<u64>)>>,
}

fn new_histogram() -> Option<Histogram<u64>> {
    // 1 µs .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).ok()
}

impl LoopStats {
    fn record(&self, predicted: u64, latencies_us: &[u64]) {
        self.predicted.fetch_add(predicted, Ordering::Relaxed);
        let mut guard = self.latency_us.lock();
        if guard.is_none() {
            *guard = new_histogram().zip(new_histogram());
        }
        if let Some((window, total)) = guard.as_mut() {
            for &l in latencies_us {
                window.saturating_record(l.max(1));
                total.saturating_record(l.max(1));
            }
        }
    }

    fn record_dlq(&self, reason: RejectReason) {
        self.dlq.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.dlq_by_reason[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// DLQ records so far, by reason (reasons with none left out).
    pub fn dlq_by_reason(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.dlq_by_reason)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Latencies since the last call (`None` before the first prediction).
    pub fn take_latencies(&self) -> Option<Histogram<u64>> {
        let mut guard = self.latency_us.lock();
        let (window, _) = guard.as_mut()?;
        Some(std::mem::replace(window, new_histogram()?))
    }

    /// Every latency recorded so far (`None` before the first prediction).
    pub fn total_latencies(&self) -> Option<Histogram<u64>> {
        self.latency_us
            .lock()
            .as_ref()
            .map(|(_, total)| total.clone())
    }
}

/// State shared by the loop, the admin API and the demo.
#[derive(Debug, Default)]
pub struct Shared {
    pub model_loaded: AtomicBool,
    /// Snapshot loaded and `feature-updates` caught up.
    pub store_ready: AtomicBool,
    /// Input partitions owned.
    pub assigned: AtomicUsize,
    /// The loop is running (cleared when it stops, for `/healthz`).
    pub running: AtomicBool,
    pub stats: LoopStats,
    /// The drift evaluator's latest status (`GET /v1/drift`); its
    /// `reference` is empty while drift monitoring is off.
    pub drift: Arc<parking_lot::RwLock<DriftStatus>>,
}

impl Shared {
    /// Ready to score: model loaded, store caught up, partitions assigned.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.model_loaded.load(Ordering::Acquire) {
            return Err("model not loaded");
        }
        if !self.store_ready.load(Ordering::Acquire) {
            return Err("feature store not caught up");
        }
        if !self.running.load(Ordering::Acquire) {
            return Err("scoring loop not running");
        }
        if self.assigned.load(Ordering::Acquire) == 0 {
            return Err("no partitions assigned");
        }
        Ok(())
    }
}

/// Consumer context of the scoring loop: rebalances go to the worker.
pub struct LoopContext {
    worker: Mutex<Worker>,
    features: String,
    fatal: Mutex<Option<WorkerError>>,
}

impl ClientContext for LoopContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.features) {
            for (p, part) in &topic.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    metrics::consumer_lag(&self.features, *p, part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = self.partitions(tpl);
            self.worker.lock().revoke(consumer, &partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions(tpl);
                let committed = self.committed(consumer, tpl);
                if let Err(e) = self.worker.lock().assign(&partitions, &committed) {
                    // Scoring without the restored state would be wrong:
                    // stop, and let the group hand the partitions on.
                    tracing::error!(error = %e, "restoring aggregate state failed");
                    *self.fatal.lock() = Some(e);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl LoopContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.features)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// The group's committed offsets of newly assigned partitions (those
    /// without one are left out), so the worker can tell whether the first
    /// records it gets start where the previous owner stopped. Best effort:
    /// on failure nothing is checked, and scoring goes on.
    fn committed(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> std::collections::HashMap<i32, i64> {
        match consumer.committed_offsets(tpl.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed
                .elements_for_topic(&self.features)
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "committed offsets of the assigned partitions unknown; skipped input offsets at the start go unnoticed");
                Default::default()
            }
        }
    }
}

/// How long an assignment waits for the group's committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// Client settings: pass-through properties first (so they can tune
/// anything), then what driftline must control.
fn client_config(
    config: &Config,
    specific: &std::collections::BTreeMap<String, PropertyValue>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (key, value) in config.kafka.client.iter().chain(specific) {
        c.set(librdkafka_property(key), value.to_string());
    }
    c.set("bootstrap.servers", &config.kafka.brokers);
    c
}

fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// The scoring loop's consumer settings.
fn loop_consumer_config(config: &Config) -> ClientConfig {
    let mut c = client_config(config, &config.kafka.consumer);
    c.set("group.id", &config.kafka.group_id);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    // A new group starts at the beginning: nothing already on the topic is skipped.
    set_default(&mut c, "auto.offset.reset", "earliest");
    set_default(&mut c, "statistics.interval.ms", "5000");
    c
}

/// A consumer that only reads assigned partitions (no group membership).
fn reader_config(config: &Config) -> ClientConfig {
    let mut c = client_config(config, &config.kafka.consumer);
    c.set("group.id", format!("{}-reader", config.kafka.group_id));
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "earliest");
    // Readers wait on the end of a partition (restore, catch-up, live
    // updates): answer within 50 ms rather than librdkafka's 500.
    set_default(&mut c, "fetch.wait.max.ms", "50");
    c
}

/// Context of the partition readers (changelog restore, feature updates):
/// they ask for end-of-partition events, which are not errors to log.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A partition reader.
pub type Reader = BaseConsumer<ReaderContext>;

fn reader(config: &Config) -> Result<Reader, ServeError> {
    reader_config(config)
        .create_with_context(ReaderContext)
        .map_err(ServeError::Client)
}

/// How the loop is started.
pub struct ServeOptions {
    /// Set to stop the loop (signal handler, demo timer).
    pub stop: Arc<AtomicBool>,
    pub shared: Arc<Shared>,
}

/// Runs the service until `options.stop` is set; blocks the calling thread.
/// `parts` were built from `config` (the snapshot is already loaded).
pub fn run(config: &Config, parts: Parts, options: ServeOptions) -> Result<(), ServeError> {
    let ServeOptions { stop, shared } = options;
    let flush_timeout = config.kafka.flush_timeout()?;
    let commit_every = config.kafka.commit_interval()?;
    let max_wait = config.pipeline.max_batch_wait()?;
    let topics = Topics {
        features: config.kafka.topics.features.clone(),
        predictions: config.kafka.topics.predictions.clone(),
        dlq: config.kafka.topics.dlq.clone(),
        changelog: config.changelog_topic(),
    };
    let model = &parts.model;
    metrics::model_info(model.name(), model.version(), &model.manifest().sha256);
    shared.model_loaded.store(true, Ordering::Release);

    if parts.aggregator.is_some() {
        ensure_changelog(config, &topics, flush_timeout)?;
    }

    let tracker = Arc::new(Tracker::new());
    let sink = Arc::new(Sink::new(
        client_config(config, &config.kafka.producer),
        tracker,
    )?);

    // Feature updates: caught up before the first event is scored.
    let updates = match (&parts.store, config.kafka.topics.feature_updates.trim()) {
        (Some(store), topic) if !topic.is_empty() => {
            let follower = updates::Follower {
                consumer: reader(config)?,
                store: store.clone(),
                sink: sink.clone(),
                topic: topic.to_string(),
                dlq: topics.dlq.clone(),
                max_message_bytes: config.pipeline.max_message_bytes,
            };
            let (stop, shared) = (stop.clone(), shared.clone());
            let handle = std::thread::Builder::new()
                .name("feature-updates".into())
                .spawn(move || follower.run(&shared.store_ready, &stop, flush_timeout))
                .map_err(|e| ServeError::Topic {
                    topic: topic.to_string(),
                    reason: format!("starting the follower thread: {e}"),
                })?;
            Some(handle)
        }
        _ => {
            shared.store_ready.store(true, Ordering::Release);
            None
        }
    };
    let mut updates = updates;
    let waited = Instant::now();
    while !shared.store_ready.load(Ordering::Acquire) {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(h) = updates.take_if(|h| h.is_finished()) {
            return Err(match h.join() {
                Ok(Err(e)) => e.into(),
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

    let mut pipeline = Pipeline::new(
        &parts.model,
        parts.store.clone(),
        parts.aggregator.clone(),
        config.pipeline.max_message_bytes,
    )?;
    // Labels are joined only to judge performance, which the drift
    // evaluator does: no drift monitoring, no label join.
    let labels_topic = config.kafka.topics.labels.trim();
    let label_join = match (&parts.drift, labels_topic.is_empty()) {
        (Some(_), false) => Some(Arc::new(
            crate::drift::labels::LabelJoin::new(&config.labels).map_err(|e| {
                ServeError::Topic {
                    topic: labels_topic.to_string(),
                    reason: e.to_string(),
                }
            })?,
        )),
        _ => None,
    };
    let labels_follower = match &label_join {
        Some(join) => Some(
            labels::spawn(
                reader(config)?,
                labels_topic.to_string(),
                join.clone(),
                stop.clone(),
            )
            .map_err(|e| ServeError::Topic {
                topic: labels_topic.to_string(),
                reason: format!("starting the label follower: {e}"),
            })?,
        ),
        None => None,
    };
    let evaluator = match &parts.drift {
        Some(plan) => {
            let topics = drift::DriftTopics {
                alerts: existing_topic(config, &config.kafka.topics.drift_alerts, flush_timeout)?,
                retrain: existing_topic(
                    config,
                    &config.kafka.topics.retrain_requests,
                    flush_timeout,
                )?,
            };
            let performance = label_join
                .as_ref()
                .map(|join| drift::performance_source(join.clone(), config.labels.clone()));
            let handle = drift::start(
                plan.clone(),
                &mut pipeline,
                sink.clone(),
                topics,
                &shared,
                performance,
            )
            .map_err(|e| ServeError::Topic {
                topic: config.kafka.topics.drift_alerts.clone(),
                reason: format!("starting the drift evaluator: {e}"),
            })?;
            Some(handle)
        }
        None => None,
    };
    let worker = Worker::new(WorkerParts {
        pipeline,
        sink: sink.clone(),
        topics: topics.clone(),
        limits: Limits {
            batch_size: config.pipeline.batch_size,
            max_message_bytes: config.pipeline.max_message_bytes,
            max_batch_bytes: config.pipeline.max_batch_bytes,
            flush_timeout,
        },
        aggregator: parts.aggregator.clone(),
        store: parts.store.clone(),
        restorer: reader(config)?,
        shared: shared.clone(),
        labels: label_join.clone(),
    });
    let context = LoopContext {
        worker: Mutex::new(worker),
        features: topics.features.clone(),
        fatal: Mutex::new(None),
    };
    let consumer: BaseConsumer<LoopContext> = loop_consumer_config(config)
        .create_with_context(context)
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

    let result = poll_loop(&consumer, &stop, max_wait, commit_every);

    // Shutdown: score what was polled, checkpoint, flush, commit, leave.
    {
        let mut worker = consumer.context().worker.lock();
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
    if let Some(h) = updates {
        if let Ok(Err(e)) = h.join() {
            tracing::warn!(error = %e, "feature-updates follower stopped with an error");
        }
    }
    if let Some(h) = labels_follower {
        if let Ok(Err(e)) = h.join() {
            tracing::warn!(error = %e, "label follower stopped with an error");
        }
    }
    tracing::info!(
        predictions = shared.stats.predicted.load(Ordering::Relaxed),
        dlq = shared.stats.dlq.load(Ordering::Relaxed),
        "scoring loop stopped"
    );
    result
}

fn poll_loop(
    consumer: &BaseConsumer<LoopContext>,
    stop: &AtomicBool,
    max_wait: Duration,
    commit_every: Duration,
) -> Result<(), ServeError> {
    let context = consumer.context();
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(e) = context.fatal.lock().take() {
            return Err(e.into());
        }
        let timeout = match context.worker.lock().batch_started() {
            Some(first) => max_wait.saturating_sub(first.elapsed()),
            None => Duration::from_millis(50),
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => context.worker.lock().push(&m)?,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
        let mut worker = context.worker.lock();
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

/// `topic` if it exists, else "" with a warning: publishing to a missing
/// topic would only fail after librdkafka's metadata wait and hold up every
/// flush (shutdown, hand-over) meanwhile. Empty stays empty (turned off).
fn existing_topic(config: &Config, topic: &str, timeout: Duration) -> Result<String, ServeError> {
    let topic = topic.trim();
    if topic.is_empty() {
        return Ok(String::new());
    }
    let probe = reader(config)?;
    let md = probe
        .fetch_metadata(Some(topic), timeout)
        .map_err(ServeError::Client)?;
    let exists = md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if exists {
        Ok(topic.to_string())
    } else {
        tracing::warn!(
            topic,
            "output topic does not exist; drift outputs for it are not published (create it, or set its name to \"\" to silence this)"
        );
        Ok(String::new())
    }
}

/// Creates the compacted changelog topic when missing, with as many
/// partitions as the input topic (partition p holds input partition p's state).
fn ensure_changelog(config: &Config, topics: &Topics, timeout: Duration) -> Result<(), ServeError> {
    let probe = reader(config)?;
    let md = probe
        .fetch_metadata(None, timeout)
        .map_err(ServeError::Client)?;
    let count = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
    };
    let inputs = count(&topics.features).ok_or_else(|| ServeError::Topic {
        topic: topics.features.clone(),
        reason: "no such topic (create it first)".into(),
    })?;
    match count(&topics.changelog) {
        Some(n) if n >= inputs => return Ok(()),
        Some(n) => {
            return Err(ServeError::Topic {
                topic: topics.changelog.clone(),
                reason: format!(
                    "has {n} partitions but {} has {inputs}; state of the extra partitions would have nowhere to go",
                    topics.features
                ),
            })
        }
        None => {}
    }
    let admin: AdminClient<DefaultClientContext> = client_config(config, &Default::default())
        .create()
        .map_err(ServeError::Client)?;
    let topic = NewTopic::new(
        &topics.changelog,
        inputs as i32,
        TopicReplication::Fixed(-1),
    )
    .set("cleanup.policy", "compact");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Topic {
            topic: topics.changelog.clone(),
            reason: format!("starting the admin runtime: {e}"),
        })?;
    let results = runtime
        .block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(timeout)),
        ))
        .map_err(ServeError::Client)?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = %topics.changelog, partitions = inputs, "changelog topic created")
            }
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ServeError::Topic {
                    topic: name,
                    reason: format!("creating the changelog topic: {code}"),
                })
            }
        }
    }
    Ok(())
}
