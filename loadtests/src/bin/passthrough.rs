//! `passthrough`: the load tests' baseline, a bare consume → produce loop.
//!
//! It forwards every record of the input topic unchanged (same key, same
//! value) to the output topic, with the client settings and the loop shape
//! of `driftline serve` and nothing else: a consumer group with manual
//! commits and `auto.offset.reset=earliest`; micro-batches of at most 256
//! records or 5 ms; a threaded, idempotent producer with `linger.ms=5`;
//! offsets committed every second, each only once every record up to it is
//! acknowledged by the broker (at least once). No decoding, enrichment or
//! scoring: what it achieves is what the broker and the client allow, the
//! ceiling driftline is compared against. librdkafka properties given with
//! `--consumer-property` / `--producer-property` apply first, exactly as
//! driftline applies its `[kafka.client]`, `[kafka.consumer]` and
//! `[kafka.producer]` tables (the load test passes the same ones).
//!
//! Prints `ready` on stdout once it owns partitions. SIGINT/SIGTERM: stop
//! polling, forward what was polled, flush, commit synchronously, leave the
//! group, exit 0. A delivery that fails for good stops it with exit code 1
//! without committing past that record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::Parser;
use loadtest::acks::AckTracker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// The same bounds as driftline's defaults (`pipeline.batch_size`, `pipeline.max_batch_wait`).
const BATCH_SIZE: usize = 256;
const BATCH_WAIT: Duration = Duration::from_millis(5);
/// driftline's default `kafka.commit_interval` and `kafka.flush_timeout`.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Forwards a topic to another unchanged (the load-test baseline).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Bootstrap servers.
    #[arg(long, default_value = "localhost:9092")]
    brokers: String,
    /// Consumer group.
    #[arg(long, default_value = "passthrough")]
    group_id: String,
    /// Topic to read.
    #[arg(long, default_value = "features")]
    input: String,
    /// Topic to write.
    #[arg(long, default_value = "predictions")]
    output: String,
    /// librdkafka property for the consumer, `key=value` (repeatable), as
    /// driftline's `[kafka.client]` + `[kafka.consumer]`.
    #[arg(long = "consumer-property", value_parser = property)]
    consumer_properties: Vec<(String, String)>,
    /// librdkafka property for the producer, `key=value` (repeatable), as
    /// driftline's `[kafka.client]` + `[kafka.producer]`.
    #[arg(long = "producer-property", value_parser = property)]
    producer_properties: Vec<(String, String)>,
}

fn property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// Properties first (so they can tune anything), then what the loop must
/// control, as driftline builds its clients.
fn client_config(properties: &[(String, String)], brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", brokers);
    c
}

fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The tracker stays consistent across a panic elsewhere (each call
    // completes its update); keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Delivery reports go to the tracker.
struct ProduceContext {
    tracker: Arc<Mutex<AckTracker>>,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    /// Input (partition, offset) of the forwarded record.
    type DeliveryOpaque = Box<(i32, i64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, source: Self::DeliveryOpaque) {
        let (partition, offset) = *source;
        match result {
            Ok(_) => lock(&self.tracker).acked(partition, offset),
            Err((e, _)) => lock(&self.tracker).failed(partition, offset, &e.to_string()),
        }
    }
}

/// The forwarding state, reachable from the rebalance callbacks (which run
/// inside `poll` and must drain before partitions go).
struct Forwarder {
    producer: ThreadedProducer<ProduceContext>,
    tracker: Arc<Mutex<AckTracker>>,
    input: String,
    output: String,
    batch: Vec<OwnedMessage>,
    batch_started: Option<Instant>,
    forwarded: u64,
}

impl Forwarder {
    fn push(&mut self, m: OwnedMessage) -> anyhow::Result<()> {
        self.batch_started.get_or_insert_with(Instant::now);
        self.batch.push(m);
        if self.batch.len() >= BATCH_SIZE {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Hands the batch to the producer (waits while its queue is full).
    fn send_batch(&mut self) -> anyhow::Result<()> {
        for m in self.batch.drain(..) {
            // Tracked before sending: the acknowledgement can come at once.
            lock(&self.tracker).forwarded(m.partition(), m.offset());
            let mut record =
                BaseRecord::with_opaque_to(&self.output, Box::new((m.partition(), m.offset())));
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(anyhow!("sending to {}: {e}", self.output)),
                }
            }
            self.forwarded += 1;
        }
        self.batch_started = None;
        Ok(())
    }

    /// Commits what is acknowledged.
    fn commit(&self, consumer: &BaseConsumer<Context>, mode: CommitMode) {
        let commits = lock(&self.tracker).take_commits();
        if commits.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in commits {
            if tpl
                .add_partition_offset(&self.input, p, Offset::Offset(next))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            eprintln!("passthrough: commit failed: {e}");
        }
    }

    /// Sends what is batched, waits for every acknowledgement, commits.
    fn drain(&mut self, consumer: &BaseConsumer<Context>) {
        if let Err(e) = self.send_batch() {
            eprintln!("passthrough: {e}; the batch is re-read after restart");
        }
        if let Err(e) = self.producer.flush(FLUSH_TIMEOUT) {
            eprintln!("passthrough: flush: {e}");
        }
        self.commit(consumer, CommitMode::Sync);
    }
}

struct Context {
    forwarder: Mutex<Forwarder>,
    ready: AtomicBool,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut f = lock(&self.forwarder);
            f.drain(consumer);
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            lock(&f.tracker).remove(&partitions);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if tpl.count() > 0 && !self.ready.swap(true, Ordering::Relaxed) {
                // The load test waits for this line before it produces.
                println!("ready");
                eprintln!("passthrough: {} partition(s) assigned", tpl.count());
            }
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("passthrough: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;

    let tracker = Arc::new(Mutex::new(AckTracker::new()));
    let mut producer_config = client_config(&args.producer_properties, &args.brokers);
    // driftline's producer defaults, unless configured otherwise.
    set_default(&mut producer_config, "enable.idempotence", "true");
    set_default(&mut producer_config, "linger.ms", "5");
    let producer: ThreadedProducer<ProduceContext> = producer_config
        .create_with_context(ProduceContext {
            tracker: tracker.clone(),
        })
        .context("creating the producer")?;
    let context = Context {
        forwarder: Mutex::new(Forwarder {
            producer,
            tracker: tracker.clone(),
            input: args.input.clone(),
            output: args.output.clone(),
            batch: Vec::with_capacity(BATCH_SIZE),
            batch_started: None,
            forwarded: 0,
        }),
        ready: AtomicBool::new(false),
    };
    let mut consumer_config = client_config(&args.consumer_properties, &args.brokers);
    consumer_config
        .set("group.id", &args.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    set_default(&mut consumer_config, "auto.offset.reset", "earliest");
    // driftline reads consumer lag from these; same client cost here.
    set_default(&mut consumer_config, "statistics.interval.ms", "5000");
    let consumer: BaseConsumer<Context> = consumer_config
        .create_with_context(context)
        .context("creating the consumer")?;
    consumer
        .subscribe(&[&args.input])
        .with_context(|| format!("subscribing to {}", args.input))?;
    eprintln!(
        "passthrough: {} -> {} on {} (group {})",
        args.input, args.output, args.brokers, args.group_id
    );

    let result = poll_loop(&consumer, &stop, &tracker);

    // Shutdown: forward what was polled, flush, commit, leave.
    let forwarded = {
        let mut f = lock(&consumer.context().forwarder);
        f.drain(&consumer);
        f.forwarded
    };
    consumer.unsubscribe();
    drop(consumer);
    eprintln!("passthrough: stopped after forwarding {forwarded} record(s)");
    result
}

fn poll_loop(
    consumer: &BaseConsumer<Context>,
    stop: &AtomicBool,
    tracker: &Mutex<AckTracker>,
) -> anyhow::Result<()> {
    let context = consumer.context();
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let timeout = match lock(&context.forwarder).batch_started {
            Some(first) => BATCH_WAIT.saturating_sub(first.elapsed()),
            None => Duration::from_millis(50),
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => lock(&context.forwarder).push(m.detach())?,
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => eprintln!("passthrough: consumer error: {e}"),
        }
        let mut f = lock(&context.forwarder);
        if f.batch_started
            .is_some_and(|first| first.elapsed() >= BATCH_WAIT)
        {
            f.send_batch()?;
        }
        if last_commit.elapsed() >= COMMIT_EVERY {
            last_commit = Instant::now();
            f.commit(consumer, CommitMode::Async);
            if let Some(failure) = lock(tracker).failure() {
                return Err(anyhow!("a delivery failed for good ({failure})"));
            }
        }
    }
    Ok(())
}

/// Sets `stop` on SIGINT or SIGTERM (driftline's own signal future, on a
/// small runtime thread).
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let which = runtime.block_on(driftline::shutdown::signal());
            eprintln!("passthrough: {which}, stopping");
            stop.store(true, Ordering::Relaxed);
        })
        .context("starting the signal thread")?;
    Ok(())
}
