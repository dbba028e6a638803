//! `driftline demo`: the whole in-process path on synthetic card-fraud events.
//!
//! A generator thread produces realistic events (with a small share of
//! deliberately broken ones, so rejections show up) at a fixed open-loop rate
//! into a bounded queue; a scoring thread decodes, enriches and scores them in
//! batches; the main thread prints a summary every second. It stops after
//! `duration` or on Ctrl-C, then prints totals. No external service is needed:
//! the model is built into the binary and the store is filled from the
//! generator's own cards.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::generator::{write_json, FraudGenerator};
use crate::app::sources;
use crate::event::{now_ms, RejectReason};
use crate::features::aggregates::AggregatorConfig;
use crate::features::store::StoreConfig;
use crate::pipeline::{BatchOutput, Message, Pipeline};
use crate::score::{Manifest, Model};

/// Model directory of the model built into the binary, for messages.
pub const DEFAULT_MODEL_DIR: &str = "models/fraud-mlp/1";
const EMBEDDED_MANIFEST: &str = include_str!("../../models/fraud-mlp/1/model.toml");
const EMBEDDED_ONNX: &[u8] = include_bytes!("../../models/fraud-mlp/1/model.onnx");

/// One in this many generated events is deliberately broken.
const BROKEN_EVERY: u64 = 500;

/// Demo settings (from the command line).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    /// Target events per second; 0 = unthrottled.
    pub rate: u64,
    /// Model directory; `None` = the embedded fraud MLP.
    pub model_dir: Option<PathBuf>,
    pub cards: usize,
    pub batch_size: usize,
    pub seed: u64,
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
    pub flagged: u64,
}

/// A batch of encoded events with the instant each was produced.
struct Batch {
    payloads: Vec<Vec<u8>>,
    produced: Vec<Instant>,
}

#[derive(Default)]
struct Shared {
    generated: AtomicU64,
    scored: AtomicU64,
    rejected: AtomicU64,
    flagged: AtomicU64,
    reasons: Mutex<Vec<(RejectReason, u64)>>,
    /// Latency from production to score, in microseconds.
    latency: Mutex<Option<Histogram<u64>>>,
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
    let mut pipeline = Pipeline::new(&model, store.clone(), aggregator, 64 * 1024)?;
    println!(
        "driftline demo: model {}/{} ({} inputs), {} cards in the store, target {} events/s for {}s (Ctrl-C stops)",
        model.name(),
        model.version(),
        model.manifest().inputs.len(),
        store.as_ref().map_or(0, |s| s.len()),
        if options.rate == 0 { "unlimited".to_string() } else { options.rate.to_string() },
        options.duration.as_secs()
    );

    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(Arc::clone(&stop));
    let shared = Arc::new(Shared {
        latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).ok()),
        ..Shared::default()
    });
    let (tx, rx) = sync_channel::<Batch>(64);
    let batch_size = options.batch_size.clamp(1, 65_536);
    let started = Instant::now();
    let deadline = started + options.duration;

    let producer = {
        let stop = Arc::clone(&stop);
        let shared = Arc::clone(&shared);
        let rate = options.rate;
        std::thread::Builder::new()
            .name("demo-generator".into())
            .spawn(move || {
                produce(
                    &mut generator,
                    tx,
                    rate,
                    batch_size,
                    deadline,
                    &stop,
                    &shared,
                )
            })?
    };
    let scorer = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("demo-scorer".into())
            .spawn(move || consume(&mut pipeline, rx, &shared))?
    };

    let mut last = (Instant::now(), 0u64);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.0.elapsed() >= Duration::from_secs(1) {
            let scored = shared.scored.load(Ordering::Relaxed);
            let rejected = shared.rejected.load(Ordering::Relaxed);
            let done = scored + rejected;
            let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let (p50, p99) = percentiles(&shared);
            println!(
                "[{:>4.0}s] {:>9.0} events/s | latency p50 {:>6} us p99 {:>6} us | scored {:>9} | rejected (DLQ) {:>5} | flagged as fraud {:>6}",
                started.elapsed().as_secs_f64(),
                rate,
                p50,
                p99,
                scored,
                rejected,
                shared.flagged.load(Ordering::Relaxed),
            );
            last = (Instant::now(), done);
        }
    }
    stop.store(true, Ordering::Relaxed);
    // The generator stops, the queue drains, the scorer finishes what was queued.
    let _ = producer.join();
    let _ = scorer.join();

    let report = report(&shared, started.elapsed());
    print_report(&report);
    Ok(report)
}

fn produce(
    generator: &mut FraudGenerator,
    tx: SyncSender<Batch>,
    rate: u64,
    batch_size: usize,
    deadline: Instant,
    stop: &AtomicBool,
    shared: &Shared,
) {
    let started = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Open loop: the schedule is fixed by the rate, not by how fast the
        // scorer answers, so a slow scorer shows up as latency, not as a lower rate.
        if rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(5)));
                continue;
            }
        }
        let mut batch = Batch {
            payloads: Vec::with_capacity(batch_size),
            produced: Vec::with_capacity(batch_size),
        };
        for _ in 0..batch_size {
            let generated = generator.next_event();
            let mut buf = Vec::with_capacity(256);
            sent += 1;
            if sent.is_multiple_of(BROKEN_EVERY) {
                broken_event(sent / BROKEN_EVERY, &generated.event.event_id, &mut buf);
            } else {
                write_json(&generated.event, &mut buf);
            }
            batch.payloads.push(buf);
            batch.produced.push(Instant::now());
        }
        shared
            .generated
            .fetch_add(batch_size as u64, Ordering::Relaxed);
        let mut pending = batch;
        loop {
            match tx.try_send(pending) {
                Ok(()) => break,
                Err(TrySendError::Full(b)) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    pending = b;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
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

fn consume(pipeline: &mut Pipeline, rx: Receiver<Batch>, shared: &Shared) {
    let mut out = BatchOutput::default();
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
    let mut reasons: Vec<(RejectReason, u64)> = Vec::new();
    while let Ok(batch) = rx.recv() {
        let messages: Vec<Message<'_>> = batch
            .payloads
            .iter()
            .map(|p| Message {
                payload: p,
                timestamp_ms: None,
            })
            .collect();
        pipeline.process(&messages, now_ms(), &mut out);
        let done = Instant::now();
        if let Some(h) = local.as_mut() {
            for produced in &batch.produced {
                let us = done.duration_since(*produced).as_micros() as u64;
                let _ = h.record(us.max(1));
            }
        }
        let flagged = out.scored.iter().filter(|s| s.score >= 0.5).count() as u64;
        for r in &out.rejected {
            match reasons.iter_mut().find(|(k, _)| *k == r.rejection.reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((r.rejection.reason, 1)),
            }
        }
        shared
            .scored
            .fetch_add(out.scored.len() as u64, Ordering::Relaxed);
        shared
            .rejected
            .fetch_add(out.rejected.len() as u64, Ordering::Relaxed);
        shared.flagged.fetch_add(flagged, Ordering::Relaxed);
        // Publish once per batch; the printer reads a consistent copy.
        if let (Ok(mut global), Some(h)) = (shared.latency.lock(), local.as_mut()) {
            if let Some(g) = global.as_mut() {
                let _ = g.add(&*h);
            }
            h.reset();
        }
        if let Ok(mut global) = shared.reasons.lock() {
            global.clone_from(&reasons);
        }
    }
}

fn percentiles(shared: &Shared) -> (u64, u64) {
    match shared.latency.lock() {
        Ok(h) => h.as_ref().map_or((0, 0), |h| {
            (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
        }),
        Err(_) => (0, 0),
    }
}

fn report(shared: &Shared, elapsed: Duration) -> DemoReport {
    let (p50, p99, max) = match shared.latency.lock() {
        Ok(h) => h.as_ref().map_or((0, 0, 0), |h| {
            (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
        }),
        Err(_) => (0, 0, 0),
    };
    DemoReport {
        generated: shared.generated.load(Ordering::Relaxed),
        scored: shared.scored.load(Ordering::Relaxed),
        rejected: shared.rejected.load(Ordering::Relaxed),
        rejected_by_reason: shared.reasons.lock().map(|r| r.clone()).unwrap_or_default(),
        elapsed,
        latency_p50_us: p50,
        latency_p99_us: p99,
        latency_max_us: max,
        flagged: shared.flagged.load(Ordering::Relaxed),
    }
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
        "latency (produced -> scored): p50 {} us, p99 {} us, max {} us",
        r.latency_p50_us, r.latency_p99_us, r.latency_max_us
    );
    println!("flagged as fraud (score >= 0.5): {}", r.flagged);
    if !r.rejected_by_reason.is_empty() {
        let reasons: Vec<String> = r
            .rejected_by_reason
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!("rejected by reason (DLQ): {}", reasons.join(", "));
    }
}

/// Sets `stop` on Ctrl-C (SIGINT) or SIGTERM.
fn watch_ctrl_c(stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ = crate::shutdown::signal().await;
            });
            stop.store(true, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for ctrl-c; the demo stops at its deadline");
    }
}
