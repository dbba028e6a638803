//! Long-lived state against a real broker (issue 15, points 3 and 5): under
//! a stream of distinct, long entity ids the aggregates and the offset
//! marks stay within their byte bounds, evictions are counted, and every
//! evicted entity gets a changelog tombstone, so a restart restores only
//! the entities still held; and a changelog restore that takes several
//! slow fetches outlasts `aggregates.restore_stall_timeout` without
//! failing, because the bound is on progress, not on the total.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::{
    event_record, generate, metric_with, unique, wait_for_event_ids, wait_until, Broker, OutRecord,
    Scorer, Service, START_MS, TOPICS,
};
use driftline::event::Event;
use driftline::serve::changelog::Record as ChangelogRecord;

const READY: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// `driftline_state_bytes`, its limit, and the evictions of `structure`
/// for `reason`, from one metrics page.
struct Usage {
    bytes: f64,
    limit: f64,
    evicted: f64,
}

fn usage(page: &str, structure: &str, reason: &str) -> Usage {
    let of = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("structure", structure)];
        labels.extend_from_slice(extra);
        metric_with(page, name, &labels).unwrap_or(f64::NAN)
    };
    Usage {
        bytes: of("driftline_state_bytes", &[]),
        limit: of("driftline_state_limit_bytes", &[]),
        evicted: of("driftline_evictions_total", &[("reason", reason)]),
    }
}

/// `n` events of distinct entities whose ids are 250 bytes long (the
/// default `pipeline.max_id_bytes` is 256), 10 ms apart: well within the
/// aggregates' windows, so no entity leaves for being idle.
fn distinct_long_ids(seed: u64, n: usize) -> Vec<Event> {
    let (_, mut events) = generate(seed, 500, n);
    for (i, e) in events.iter_mut().enumerate() {
        e.entity_id = format!("{i:08}-{}", "q".repeat(241)).into();
        e.ts_ms = Some(START_MS + 10 * i as i64);
    }
    events
}

/// The newest changelog value per key, once the topic has been quiet.
fn latest_changelog(broker: &Broker, topic: &str) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
    let mut reader = broker.reader(topic, 4);
    reader.wait_quiet(Duration::from_secs(2), Duration::from_secs(30));
    let mut latest = HashMap::new();
    for r in reader.records() {
        if let Some(key) = &r.key {
            latest.insert(key.clone(), r.payload.clone());
        }
    }
    latest
}

/// Scores distinct long ids with the given bounds, then checks the bounds,
/// the eviction counts, the changelog and a restart's restore. Returns the
/// final metrics page of the first instance.
fn distinct_ids_under(aggregates_max: usize, marks_max: usize) -> String {
    let broker = Broker::start();
    broker.create_topics(&TOPICS);
    let group = unique("state");
    let env = [
        // One shard, so the whole bound is one shard's share.
        ("DRIFTLINE_AGGREGATES__SHARDS", "1".to_string()),
        (
            "DRIFTLINE_AGGREGATES__MAX_BYTES",
            aggregates_max.to_string(),
        ),
        (
            "DRIFTLINE_AGGREGATES__MAX_MARK_BYTES",
            marks_max.to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut service = Service::start_with(&broker, &group, &env);
    service.wait_ready(READY);

    let events = distinct_long_ids(31, 6_000);
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let records: Vec<OutRecord> = events.iter().map(event_record).collect();
    broker.produce("features", &records);
    let mut predictions = broker.reader("predictions", 4);
    wait_for_event_ids(
        "a prediction of every event",
        &mut [&mut predictions],
        &ids,
        Duration::from_secs(120),
    );

    // Upkeep runs every commit interval (200 ms here): the gauges have
    // settled once two reads half a second apart agree.
    let changelog = format!("{group}-aggregates-changelog");
    let settled = |page: &str| {
        (
            metric_with(page, "driftline_aggregate_entities", &[]),
            metric_with(
                page,
                "driftline_state_bytes",
                &[("structure", "offset_marks")],
            ),
        )
    };
    let mut last = settled(&service.metrics());
    let page = wait_until(
        "the state gauges to settle",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(500));
            let page = service.metrics();
            let now = settled(&page);
            let same = now == last && now.0.is_some();
            last = now;
            same.then_some(page)
        },
    );
    let aggregates = usage(&page, "aggregates", "bytes");
    let marks = usage(&page, "offset_marks", "bytes");
    let followed = usage(&page, "offset_marks", "entity_evicted").evicted;
    let entities = metric_with(&page, "driftline_aggregate_entities", &[]).unwrap_or(0.0);
    assert_eq!(aggregates.limit, aggregates_max as f64);
    assert_eq!(marks.limit, marks_max as f64);
    assert!(
        aggregates.bytes > 0.0 && aggregates.bytes <= aggregates.limit,
        "aggregates: {} of {} bytes",
        aggregates.bytes,
        aggregates.limit
    );
    assert!(
        marks.bytes > 0.0 && marks.bytes <= marks.limit,
        "offset marks: {} of {} bytes",
        marks.bytes,
        marks.limit
    );
    assert!(
        entities > 0.0 && entities < events.len() as f64,
        "{entities} entities held of {}",
        events.len()
    );
    // The other structures report too, each within its bound.
    for structure in ["feature_store", "drift_windows", "lifecycle_models"] {
        let u = usage(&page, structure, "bytes");
        assert!(
            u.bytes > 0.0 && u.bytes <= u.limit,
            "{structure}: {} of {} bytes",
            u.bytes,
            u.limit
        );
    }
    // Marks follow the aggregates: about one per entity held, not one per
    // entity ever seen (a 250-byte id makes a mark of about 570 bytes).
    assert!(
        marks.bytes <= entities * 600.0,
        "{} bytes of marks for {entities} entities",
        marks.bytes
    );
    // Every entity that left is counted once, as one reason or another.
    let left = events.len() as f64 - entities;
    let counted = aggregates.evicted
        + usage(&page, "aggregates", "capacity").evicted
        + usage(&page, "aggregates", "idle").evicted
        + marks.evicted;
    assert!(
        counted >= left,
        "{left} entities left, {counted} evictions counted"
    );
    assert!(
        followed + marks.evicted >= left,
        "{left} left, {followed} + {} marks dropped",
        marks.evicted
    );

    // The changelog ends with a live record for exactly the entities held
    // and a tombstone for every one that left.
    let latest = wait_until(
        "the changelog to match the aggregates",
        Duration::from_secs(30),
        || {
            let latest = latest_changelog(&broker, &changelog);
            let live = latest.values().filter(|v| v.is_some()).count();
            (live as f64 == entities).then_some(latest)
        },
    );
    let tombstones = latest.values().filter(|v| v.is_none()).count();
    assert_eq!(
        latest.len(),
        events.len(),
        "every entity has a changelog record"
    );
    assert_eq!(
        tombstones as f64, left,
        "every evicted entity is tombstoned"
    );

    // A restart restores the entities held, not the ones evicted.
    let status = service.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean shutdown: {status:?}");
    let mut again = Service::start_with(&broker, &group, &env);
    again.wait_ready(READY);
    let restored = metric_with(
        &again.metrics(),
        "driftline_aggregate_restored_entities_total",
        &[],
    );
    assert_eq!(restored, Some(entities), "restored after the restart");
    page
}

#[test]
fn aggregates_at_their_byte_bound_evict_and_tombstone_what_leaves() {
    // 1 MiB of aggregates holds about 1,500 of these entities; the marks'
    // bound is far enough that only the aggregates' binds.
    let page = distinct_ids_under(MIB, 8 * MIB);
    let evicted = usage(&page, "aggregates", "bytes").evicted;
    assert!(evicted > 3_000.0, "{evicted} evicted for bytes");
    assert_eq!(usage(&page, "offset_marks", "bytes").evicted, 0.0);
}

#[test]
fn offset_marks_at_their_byte_bound_take_their_entities_out_with_tombstones() {
    // Now the marks bind first: 1 MiB holds fewer marks than 8 MiB holds
    // entities, so the oldest marks go, with their entities' state.
    let page = distinct_ids_under(8 * MIB, MIB);
    let marks = usage(&page, "offset_marks", "bytes").evicted;
    assert!(marks > 1_000.0, "{marks} marks dropped for bytes");
    assert_eq!(usage(&page, "aggregates", "bytes").evicted, 0.0);
}

/// The service's log line of the assignment, and its `elapsed_ms`.
fn restore_ms(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("partitions assigned"))
        .filter_map(|l| {
            let rest = &l[l.find("elapsed_ms=")? + "elapsed_ms=".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
}

#[test]
fn a_slow_changelog_restore_outlasts_the_stall_timeout_while_it_progresses() {
    const ENTITIES: usize = 6_000;
    let stall = Duration::from_secs(2);
    let broker = Broker::start();
    broker.create_topics(&TOPICS);
    let group = unique("restore");
    let changelog = format!("{group}-aggregates-changelog");
    broker.create_topics(&[(changelog.as_str(), 4)]);

    // Real states of the model's aggregates, one per entity, spread over
    // the four partitions as their input partitions would be.
    let scorer = Scorer::new();
    let (_, events) = generate(41, 500, ENTITIES);
    let records: Vec<OutRecord> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let entity = format!("restored-{i:06}");
            let features = e.features.clone();
            scorer
                .aggregator()
                .observe(&entity, e.ts_ms.unwrap_or(START_MS), &features);
            let state = scorer
                .aggregator()
                .export_entity(&entity)
                .expect("the state just observed");
            let value = ChangelogRecord { offset: 0, state }.encode();
            OutRecord::new(entity.into_bytes(), value).partition((i % 4) as i32)
        })
        .collect();
    let bytes: usize = records
        .iter()
        .map(|r| r.payload.as_ref().map_or(0, Vec::len))
        .sum();
    // One record per stored batch: Tansu answers a fetch with whole
    // batches, so small batches make small fetches.
    broker.unbatched_producer().send(&changelog, &records);

    // Small fetches, each answered only after Tansu's fetch wait: the
    // restore takes many of them, each well under the stall timeout.
    let env = [
        ("DRIFTLINE_KAFKA__CONSUMER__FETCH_WAIT_MAX_MS", "400"),
        (
            "DRIFTLINE_KAFKA__CONSUMER__MAX_PARTITION_FETCH_BYTES",
            "16384",
        ),
        ("DRIFTLINE_KAFKA__CONSUMER__FETCH_MAX_BYTES", "65536"),
        // librdkafka wants fetch.max.bytes >= message.max.bytes.
        ("DRIFTLINE_KAFKA__CONSUMER__MESSAGE_MAX_BYTES", "65536"),
        ("DRIFTLINE_AGGREGATES__RESTORE_STALL_TIMEOUT", "2s"),
    ];
    let started = Instant::now();
    let mut service = Service::start_with(&broker, &group, &env);
    service.wait_ready(READY);
    let page = service.metrics();
    assert_eq!(
        metric_with(&page, "driftline_aggregate_restored_entities_total", &[]),
        Some(ENTITIES as f64),
        "every entity restored"
    );
    service.assert_running();
    let took = restore_ms(&service.log_tail(400))
        .unwrap_or_else(|| panic!("no assignment logged:\n{}", service.log_tail(40)));
    println!("restore of {ENTITIES} entities ({bytes} bytes): {took} ms, stall timeout {stall:?}");
    assert!(
        Duration::from_millis(took) > stall * 2,
        "the restore of {ENTITIES} entities ({bytes} bytes) took {took} ms, not longer than the \
         stall timeout of {stall:?}: the test did not make it slow ({:?} to ready)",
        started.elapsed()
    );
}
