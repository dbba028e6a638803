//! `driftline demo`: the real service loop on an embedded Kafka cluster.
//!
//! librdkafka's mock cluster stands in for Kafka (no external service). The
//! demo creates the spec's topics on it, starts the same scoring loop as
//! `driftline serve` (consumer group, micro-batches, DLQ, aggregate
//! changelog, at-least-once commits) and the admin HTTP port, and runs a
//! generator thread that produces realistic card-fraud events at a fixed
//! open-loop rate, with one in 500 deliberately broken so the DLQ shows. It
//! prints a summary every second, stops after `duration` or on Ctrl-C, waits
//! until every produced event has a prediction or a DLQ record, and prints
//! totals. The model is built into the binary and the store is filled from
//! the generator's own cards.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::generator::{write_json, FraudGenerator};
use crate::app::{sources, Parts};
use crate::config::Config;
use crate::event::{now_ms, RejectReason};
use crate::features::aggregates::AggregatorConfig;
use crate::features::store::StoreConfig;
use crate::score::{Manifest, Model};
use crate::serve::{ServeOptions, Shared};

/// Model directory of the model built into the binary, for messages.
pub const DEFAULT_MODEL_DIR: &str = "models/fraud-mlp/1";
const EMBEDDED_MANIFEST: &str = include_str!("../../models/fraud-mlp/1/model.toml");
const EMBEDDED_ONNX: &[u8] = include_bytes!("../../models/fraud-mlp/1/model.onnx");

/// One in this many generated events is deliberately broken.
const BROKEN_EVERY: u64 = 500;
const PARTITIONS: i32 = 4;
/// How long the demo waits, after the generator stops, for the loop to catch up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Events the generator may run ahead of the service. The mock cluster keeps
/// a bounded log per partition; beyond it, unread events would be deleted
/// (a real cluster's retention does the same, only later).
const MAX_AHEAD: u64 = 20_000;

/// Demo settings (from the command line).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    /// Target events per second; 0 = as fast as the producer goes.
    pub rate: u64,
    /// Model directory; `None` = the embedded fraud MLP.
    pub model_dir: Option<PathBuf>,
    pub cards: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Admin HTTP address (`/metrics`, `/readyz`, ...).
    pub listen: String,
}

/// Totals of a demo run, also printed at the end.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    pub generated: u64,
    pub scored: u64,
    pub rejected: u64,
    pub rejected_by_reason: Vec<(RejectReason, u64)>,
    pub elapsed: Duration,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
}

fn load_model(dir: Option<&PathBuf>) -> anyhow::Result<Arc<Model>> {
    let model = match dir {
        Some(dir) => Model::load(dir)?,
        None => {
            let dir = std::path::Path::new(DEFAULT_MODEL_DIR);
            let manifest = Manifest::parse(EMBEDDED_MANIFEST, &dir.join("model.toml"))?;
            Model::from_bytes(manifest, EMBEDDED_ONNX, dir)?
        }
    };
    Ok(Arc::new(model))
}

/// Runs the demo to completion.
pub fn run(options: DemoOptions) -> anyhow::Result<DemoReport> {
    let model = load_model(options.model_dir.as_ref())?;
    let (store, aggregator) = sources(
        model.manifest(),
        StoreConfig {
            shards: 16,
            max_entities: options.cards.max(1) * 2,
            ttl_ms: None,
        },
        AggregatorConfig {
            buckets: 12,
            shards: 16,
            max_entities: options.cards.max(1) * 2,
        },
    )?;
    let start_ms = now_ms();
    let mut generator = FraudGenerator::new(options.seed, options.cards.max(1), start_ms);
    if let Some(store) = &store {
        for (entity, features) in generator.cards() {
            store.upsert(entity, &features, start_ms)?;
        }
    }
    let parts = Parts {
        model: model.clone(),
        store: store.clone(),
        aggregator,
    };

    let cluster = MockCluster::new(1)?;
    let mut config = Config::default();
    config.model.dir = PathBuf::from(DEFAULT_MODEL_DIR);
    config.kafka.brokers = cluster.bootstrap_servers();
    config.kafka.group_id = "driftline-demo".into();
    config.pipeline.batch_size = options.batch_size.clamp(1, 65_536);
    config.admin.listen = options.listen.clone();
    let t = &config.kafka.topics;
    for (topic, partitions) in [
        (t.features.as_str(), PARTITIONS),
        (t.feature_updates.as_str(), 1),
        (t.predictions.as_str(), PARTITIONS),
        (t.dlq.as_str(), 1),
        (config.changelog_topic().as_str(), PARTITIONS),
    ] {
        cluster.create_topic(topic, partitions, 1)?;
    }

    let metrics = crate::telemetry::metrics::install()?;
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let state = crate::admin::AdminState {
        shared: shared.clone(),
        metrics,
        parts: parts.clone(),
        // The demo has no state-changing endpoints worth exposing.
        token: None,
    };
    let http = start_runtime(&config.admin.listen, state, Arc::clone(&interrupted));

    println!(
        "driftline demo: model {}/{} ({} inputs), {} cards in the store, embedded Kafka at {} ({} partitions), target {} events/s for {}s (Ctrl-C stops)",
        model.name(),
        model.version(),
        model.manifest().inputs.len(),
        store.as_ref().map_or(0, |s| s.len()),
        config.kafka.brokers,
        PARTITIONS,
        if options.rate == 0 { "unlimited".to_string() } else { options.rate.to_string() },
        options.duration.as_secs()
    );
    if let Some((addr, _)) = &http {
        println!("metrics: http://{addr}/metrics  readiness: http://{addr}/readyz");
    }

    let service = {
        let (config, stop, shared) = (config.clone(), stop.clone(), shared.clone());
        std::thread::Builder::new()
            .name("scoring-loop".into())
            .spawn(move || crate::serve::run(&config, parts, ServeOptions { stop, shared }))?
    };
    let generated = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let producer = {
        let (generated, interrupted, shared) =
            (generated.clone(), interrupted.clone(), shared.clone());
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("linger.ms", "2")
            .create()?;
        let topic = config.kafka.topics.features.clone();
        let rate = options.rate;
        std::thread::Builder::new()
            .name("demo-generator".into())
            .spawn(move || {
                let pace = Pace {
                    rate,
                    deadline,
                    stop: &interrupted,
                    shared: &shared,
                };
                produce(&mut generator, &producer, &topic, &pace, &generated);
                let _ = producer.flush(Duration::from_secs(10));
            })?
    };

    let mut last = (Instant::now(), 0u64);
    while Instant::now() < deadline && !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if service.is_finished() {
            break;
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let done = finished(&shared);
            let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let (p50, p99) = shared.stats.take_latencies().map_or((0, 0), |h| {
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
            });
            println!(
                "[{:>4.0}s] {:>9.0} events/s | latency p50 {:>6} us p99 {:>6} us | predictions {:>9} | DLQ {:>5} | {}",
                started.elapsed().as_secs_f64(),
                rate,
                p50,
                p99,
                shared.stats.predicted.load(Ordering::Relaxed),
                shared.stats.dlq.load(Ordering::Relaxed),
                match shared.ready() {
                    Ok(()) => "ready",
                    Err("no partitions assigned") => "joining the consumer group",
                    Err(why) => why,
                }
            );
            last = (Instant::now(), done);
        }
    }
    let _ = producer.join();
    // Let the loop catch up with everything produced, then stop it cleanly.
    let produced = generated.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while finished(&shared) < produced
        && drain_started.elapsed() < DRAIN_TIMEOUT
        && !service.is_finished()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let served = service
        .join()
        .map_err(|_| anyhow::anyhow!("the scoring loop panicked"))?;
    if let Some((_, stop_http)) = http {
        let _ = stop_http.send(());
    }
    served?;

    let (p50, p99, max) = shared.stats.total_latencies().map_or((0, 0, 0), |h| {
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    });
    let report = DemoReport {
        generated: produced,
        scored: shared.stats.predicted.load(Ordering::Relaxed),
        rejected: shared.stats.dlq.load(Ordering::Relaxed),
        rejected_by_reason: shared.stats.dlq_by_reason(),
        elapsed,
        latency_p50_us: p50,
        latency_p99_us: p99,
        latency_max_us: max,
    };
    print_report(&report);
    drop(cluster);
    Ok(report)
}

fn finished(shared: &Shared) -> u64 {
    shared.stats.predicted.load(Ordering::Relaxed) + shared.stats.dlq.load(Ordering::Relaxed)
}

/// Runs the async side of the demo on one runtime thread: the signal
/// watcher (sets `interrupted`) and the admin port. A taken port is only a
/// warning (the demo runs without HTTP then). Returns the bound address and
/// the sender that stops HTTP.
fn start_runtime(
    listen: &str,
    state: crate::admin::AdminState,
    interrupted: Arc<AtomicBool>,
) -> Option<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let listen = listen.to_string();
    let spawned = std::thread::Builder::new()
        .name("demo-runtime".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ = addr_tx.send(None);
                return;
            };
            rt.block_on(async move {
                tokio::spawn(async move {
                    let _ = crate::shutdown::signal().await;
                    interrupted.store(true, Ordering::Relaxed);
                });
                let stopped = async {
                    let _ = stop_rx.await;
                };
                match crate::admin::bind(&listen, state, stopped).await {
                    Ok((addr, server)) => {
                        let _ = addr_tx.send(Some(addr));
                        if let Err(e) = server.await {
                            tracing::warn!(error = %e, "admin server stopped");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "demo runs without its admin port");
                        let _ = addr_tx.send(None);
                        // Keep watching for Ctrl-C until the demo ends.
                        std::future::pending::<()>().await;
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no runtime thread: no admin port, Ctrl-C kills the demo");
        return None;
    }
    addr_rx
        .recv_timeout(Duration::from_secs(5))
        .ok()
        .flatten()
        .map(|addr| (addr, stop_tx))
}

/// When the generator may send.
struct Pace<'a> {
    rate: u64,
    deadline: Instant,
    stop: &'a AtomicBool,
    shared: &'a Shared,
}

fn produce(
    generator: &mut FraudGenerator,
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    pace: &Pace<'_>,
    generated: &AtomicU64,
) {
    let (rate, deadline, stop) = (pace.rate, pace.deadline, pace.stop);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut buf = Vec::with_capacity(512);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Open loop: the schedule is fixed by the rate, not by how fast the
        // service answers, so a slow service shows up as latency, not as a lower rate.
        if rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(5)));
                continue;
            }
        }
        if sent.saturating_sub(finished(pace.shared)) > MAX_AHEAD {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let event = generator.next_event().event;
        buf.clear();
        sent += 1;
        if sent.is_multiple_of(BROKEN_EVERY) {
            broken_event(sent / BROKEN_EVERY, &event.event_id, &mut buf);
        } else {
            write_json(&event, &mut buf);
        }
        let record = BaseRecord::to(topic)
            .key(event.entity_id.as_bytes())
            .payload(&buf[..]);
        // A full local queue makes the open loop fall behind rather than drop.
        match crate::sink::send_waiting(producer, record, Some(stop)) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "the demo generator cannot produce");
                return;
            }
        }
        generated.fetch_add(1, Ordering::Relaxed);
    }
}

/// The kinds of bad input a real producer sends, in rotation.
fn broken_event(n: u64, event_id: &str, out: &mut Vec<u8>) {
    let text = match n % 5 {
        0 => format!(
            r#"{{"event_id": "{event_id}", "entity_id": "card-000001", "features": {{"amount": 12.5"#
        ),
        1 => r#"{"entity_id": "card-000001", "features": {"amount": 12.5}}"#.to_string(),
        2 => format!(
            r#"{{"event_id": "{event_id}", "entity_id": "card-000001", "features": {{"amount": "twelve", "merchant_category": "grocery", "channel": "chip", "hour": 3, "is_international": false, "distance_from_home_km": 1.0}}}}"#
        ),
        3 => format!(
            r#"{{"event_id": "{event_id}", "entity_id": "card-000001", "features": {{"amount": 12.5, "merchant_category": "casino", "channel": "chip", "hour": 3, "is_international": false, "distance_from_home_km": 1.0}}}}"#
        ),
        _ => format!(
            r#"{{"event_id": "{event_id}", "entity_id": "card-000001", "features": {{"amount": 12.5, "merchant_category": "grocery", "channel": "chip", "hour": 3, "is_international": false}}}}"#
        ),
    };
    out.extend_from_slice(text.as_bytes());
}

fn print_report(r: &DemoReport) {
    let done = r.scored + r.rejected;
    println!();
    println!("--- driftline demo summary ---");
    println!(
        "events: {} generated, {} scored, {} rejected ({} lost) in {:.1}s = {:.0} events/s",
        r.generated,
        r.scored,
        r.rejected,
        r.generated.saturating_sub(done),
        r.elapsed.as_secs_f64(),
        done as f64 / r.elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "latency (received -> prediction sent): p50 {} us, p99 {} us, max {} us",
        r.latency_p50_us, r.latency_p99_us, r.latency_max_us
    );
    if !r.rejected_by_reason.is_empty() {
        let reasons: Vec<String> = r
            .rejected_by_reason
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!("rejected by reason (DLQ): {}", reasons.join(", "));
    }
}
