//! Shared harness of the real-broker tests (the modules of `tests/kafka/`).
//!
//! - [`broker`]: a Tansu broker per test (free port, memory storage), topic
//!   creation, a producer that waits for every delivery, and a reader that
//!   reads whole topics from the beginning without a consumer group.
//! - [`service`]: the real `driftline serve` binary as a child process, its
//!   admin HTTP API over a raw `TcpStream`, SIGKILL and SIGTERM.
//! - [`scoring`]: the in-process reference (`app::build` + `Pipeline`) that
//!   the service's outputs are compared with.
//!
//! Every wait has a timeout and panics with a message naming what it waited
//! for; brokers and services print the tail of their logs when a test fails.

pub mod broker;
pub mod scoring;
pub mod service;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use broker::{Broker, OutRecord, Record, TopicReader};
pub use scoring::{assert_aggregates_match, AggregateReplay, Scorer};
pub use service::{metric_sum, Service};

use driftline::demo::generator::{write_json, FraudGenerator};
use driftline::event::Event;

/// The crate root: the working directory of every spawned service.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the harness keeps broker and service logs: under the target dir, so
/// that the logs of a failed test can still be read after it.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kafka-tests");
    std::fs::create_dir_all(&base).expect("creating the test scratch dir");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("creating a test scratch dir")
}

/// A loopback port that was free a moment ago (bind port 0, read, drop).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// A name no other test (or earlier run) uses: `prefix-<pid>-<n>-<ms>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let ms = driftline::event::now_ms();
    format!("{prefix}-{}-{n}-{ms}", std::process::id())
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`
/// with "timed out after ...: waiting for {what}".
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of a text file (lossy UTF-8), or a note why not.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Simulated start of the generated streams: 2026-11-01T00:00:00Z.
pub const START_MS: i64 = 1_793_491_200_000;

/// The first `n` events of a seeded [`FraudGenerator`] over `cards` cards.
pub fn generate(seed: u64, cards: usize, n: usize) -> (FraudGenerator, Vec<Event>) {
    let mut g = FraudGenerator::new(seed, cards, START_MS);
    let events = (0..n).map(|_| g.next_event().event).collect();
    (g, events)
}

/// An event as the spec's JSON.
pub fn event_json(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(event, &mut out);
    out
}

/// An event as a `features` record: key = entity id, value = JSON.
pub fn event_record(event: &Event) -> OutRecord {
    OutRecord::new(event.entity_id.as_bytes(), event_json(event))
}

/// Predictions by event id, parsed; panics on a prediction that is not JSON
/// or lacks an `event_id`.
pub fn predictions_by_event(records: &[Record]) -> HashMap<String, Vec<serde_json::Value>> {
    let mut by_id: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for r in records {
        let v = r.json();
        let id = v["event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("prediction without event_id: {v}"))
            .to_owned();
        by_id.entry(id).or_default().push(v);
    }
    by_id
}

/// One `feature-updates` record per card of `gen`, stamped [`START_MS`]:
/// the store then holds the generator's own cards.
pub fn card_updates(gen: &FraudGenerator) -> Vec<OutRecord> {
    gen.cards()
        .map(|(entity, features)| {
            let features: serde_json::Map<String, serde_json::Value> = features
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect();
            let update =
                serde_json::json!({"entity_id": entity, "ts": START_MS, "features": features});
            OutRecord::new(entity, serde_json::to_vec(&update).expect("JSON"))
        })
        .collect()
}

/// Default topics of the service with the partition counts the tests use.
pub const TOPICS: [(&str, i32); 6] = [
    ("features", 4),
    ("feature-updates", 1),
    ("predictions", 4),
    ("features-dlq", 1),
    ("drift-alerts", 1),
    ("retrain-requests", 1),
];

/// The `event_id` of a record whose value is a JSON object (a prediction, or
/// a DLQ record of a JSON event or of an Arrow row); `None` otherwise.
pub fn event_id(record: &Record) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(record.payload.as_deref()?).ok()?;
    v.get("event_id")?.as_str().map(str::to_owned)
}

/// Reads `readers` until every id of `ids` has appeared (as [`event_id`]) in
/// at least one of them; panics after `timeout`, listing a few missing ids.
pub fn wait_for_event_ids(
    what: &str,
    readers: &mut [&mut TopicReader],
    ids: &HashSet<String>,
    timeout: Duration,
) {
    if let Err(missing) = try_wait_for_event_ids(readers, ids, timeout) {
        panic!(
            "timed out after {timeout:?} waiting for {what}: {} of {} event ids seen; missing e.g. {:?}",
            ids.len() - missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

/// As [`wait_for_event_ids`], returning the missing ids (sorted) on timeout.
pub fn try_wait_for_event_ids(
    readers: &mut [&mut TopicReader],
    ids: &HashSet<String>,
    timeout: Duration,
) -> Result<(), Vec<String>> {
    let start = Instant::now();
    let mut seen: HashSet<String> = HashSet::with_capacity(ids.len());
    let mut cursors = vec![0; readers.len()];
    loop {
        for (reader, cursor) in readers.iter().zip(cursors.iter_mut()) {
            for r in &reader.records()[*cursor..] {
                if let Some(id) = event_id(r).filter(|id| ids.contains(id)) {
                    seen.insert(id);
                }
            }
            *cursor = reader.records().len();
        }
        if seen.len() == ids.len() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let mut missing: Vec<String> = ids.difference(&seen).cloned().collect();
            missing.sort();
            return Err(missing);
        }
        for reader in readers.iter_mut() {
            reader.poll(Duration::from_millis(50));
        }
    }
}

/// Why events have no output: where the first missing ones sit in
/// `features` (from the producer's `(partition, offset)` per event id) next
/// to the group's committed offsets.
pub fn explain_missing(
    broker: &Broker,
    group: &str,
    missing: &[String],
    positions: &HashMap<String, (i32, i64)>,
) -> String {
    let committed = broker.committed_offsets(group, "features", 4);
    let mut at: Vec<String> = missing
        .iter()
        .take(20)
        .map(|id| match positions.get(id) {
            Some((p, o)) => format!("{id} at {p}/{o}"),
            None => format!("{id} (position unknown)"),
        })
        .collect();
    if missing.len() > at.len() {
        at.push(format!("... {} more", missing.len() - at.len()));
    }
    // A second, fresh read of the outputs tells a record the broker never
    // kept (or never got) from one the first reader skipped.
    let wanted: HashSet<&str> = missing.iter().map(String::as_str).collect();
    let mut fresh = broker.reader("predictions", 4);
    fresh.wait_quiet(Duration::from_secs(2), Duration::from_secs(30));
    let mut found = Vec::new();
    let mut ends: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
    for r in fresh.records() {
        let end = ends.entry(r.partition).or_insert((0, -1));
        end.0 += 1;
        end.1 = end.1.max(r.offset);
        if let Some(id) = event_id(r).filter(|id| wanted.contains(id.as_str())) {
            found.push(format!("{id} at predictions {}/{}", r.partition, r.offset));
        }
    }
    format!(
        "{} event(s) without output: {}; committed offsets of group {group} on features (per partition): {committed:?}; \
         a fresh read of predictions finds {} of them [{}]; predictions per partition (records, last offset): {ends:?}",
        missing.len(),
        at.join(", "),
        found.len(),
        found.join(", ")
    )
}
