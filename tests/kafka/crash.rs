//! At-least-once against a real broker: the service is SIGKILLed at random
//! moments while events stream in, and restarted each time; in the end every
//! event has a prediction or a DLQ record. Duplicates are counted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::common::{
    event_id, event_record, explain_missing, generate, try_wait_for_event_ids, unique, Broker,
    OutRecord, Service, TOPICS,
};

const EVENTS: usize = 30_000;
/// Sent in chunks of this many every [`CHUNK_EVERY`]: about 20 s in all.
const CHUNK: usize = 150;
const CHUNK_EVERY: Duration = Duration::from_millis(100);
const MIN_KILLS: usize = 5;
const READY: Duration = Duration::from_secs(90);
/// A short consumer session, so that a killed member leaves the group soon.
const SESSION: [(&str, &str); 2] = [
    ("DRIFTLINE_KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "3000"),
    ("DRIFTLINE_KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS", "1000"),
];
/// Tansu 0.6.0 quirk: if a new member joins while a killed member is still
/// within its session and the dead one is made leader of the new generation,
/// its expiry during the join completes the generation with no assignment at
/// all, and the survivor then heartbeats happily with no partitions for good.
/// (Kafka restarts the rebalance instead.) So a restart waits until the
/// killed member's session has certainly expired.
const SESSION_EXPIRY: Duration = Duration::from_millis(3_500);

#[test]
fn sigkill_at_random_moments_loses_no_event() {
    let broker = Broker::start();
    broker.create_topics(&TOPICS);
    let (_, events) = generate(21, 3_000, EVENTS);
    let records: Vec<OutRecord> = events.iter().map(event_record).collect();
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let group = unique("crash");
    let mut rng = SmallRng::seed_from_u64(0xC4A5);

    // Every instance is kept until the end, so a failure prints all logs.
    let mut instances: Vec<Service> = vec![Service::start_with(&broker, &group, &SESSION)];
    instances[0].wait_ready(READY);

    let sent = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (kills, at) = std::thread::scope(|s| {
        let producing = s.spawn(|| {
            let producer = broker.unbatched_producer();
            let mut at = Vec::with_capacity(EVENTS);
            for chunk in records.chunks(CHUNK) {
                let next = Instant::now() + CHUNK_EVERY;
                at.extend(producer.send("features", chunk));
                sent.fetch_add(chunk.len(), Ordering::Relaxed);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            done.store(true, Ordering::Relaxed);
            at
        });
        let mut kills = 0;
        while kills < MIN_KILLS || !done.load(Ordering::Relaxed) {
            // Up for a random while (a ready instance is consuming), then SIGKILL.
            let up = Duration::from_millis(rng.random_range(200..2_500));
            let until = Instant::now() + up;
            let current = instances.last_mut().expect("an instance");
            while Instant::now() < until {
                current.assert_running();
                std::thread::sleep(Duration::from_millis(20));
            }
            current.kill();
            kills += 1;
            println!(
                "kill {kills} at {:.1} s after {up:?} up; {} of {EVENTS} events sent",
                started.elapsed().as_secs_f64(),
                sent.load(Ordering::Relaxed)
            );
            std::thread::sleep(SESSION_EXPIRY);
            let mut next = Service::start_with(&broker, &group, &SESSION);
            next.wait_ready(READY);
            instances.push(next);
        }
        (kills, producing.join().expect("the producer thread"))
    });
    // (partition, offset) of every event, for the diagnosis of a loss.
    let positions: HashMap<String, (i32, i64)> = events
        .iter()
        .map(|e| e.event_id.to_string())
        .zip(at)
        .collect();

    // The last instance runs until every event is accounted for and the
    // output has gone quiet.
    let mut predictions = broker.reader("predictions", 4);
    let mut dlq = broker.reader("features-dlq", 1);
    if let Err(missing) = try_wait_for_event_ids(
        &mut [&mut predictions, &mut dlq],
        &ids,
        Duration::from_secs(180),
    ) {
        panic!(
            "events lost after {kills} kills: {}",
            explain_missing(&broker, &group, &missing, &positions)
        );
    }
    predictions.wait_quiet(Duration::from_secs(2), Duration::from_secs(60));
    dlq.poll(Duration::from_millis(200));

    let mut per_id: HashMap<String, usize> = HashMap::with_capacity(EVENTS);
    for r in predictions.records() {
        let id = event_id(r).unwrap_or_else(|| panic!("prediction without event_id: {r:?}"));
        assert!(ids.contains(&id), "prediction for an unknown event {id}");
        *per_id.entry(id).or_default() += 1;
    }
    let dup: usize = per_id.values().map(|n| n - 1).sum();
    let dead_lettered = dlq.records().len();
    println!(
        "crash test: {EVENTS} events, {kills} kills, {dup} duplicate predictions, {dead_lettered} DLQ records, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= MIN_KILLS);
    assert!(
        dup <= EVENTS,
        "duplicates ({dup}) are bounded by the in-flight window, not a replay of everything"
    );
    let last = instances.last_mut().expect("an instance");
    last.assert_running();
    assert_eq!(last.terminate(Duration::from_secs(30)).code(), Some(0));
}
