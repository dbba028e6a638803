//! Bad input against a real broker: every message that cannot be scored lands
//! in `features-dlq` with its reason code, its original key and value bytes
//! and its source coordinates, and the service keeps scoring what follows.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::{
    event_id, event_record, generate, metric_sum, unique, wait_for_event_ids, Broker, OutRecord,
    Record, Scorer, Service, TOPICS,
};
use driftline::event::{Event, FeatureValue};
use driftline::source::arrow::{decode_arrow_batch, encode_arrow_batch, ARROW_CONTENT_TYPE};
use driftline::source::decode::decode_json;

const MAX_MESSAGE_BYTES: usize = 65_536;

/// One bad input and the reason code it must get.
struct Case {
    name: &'static str,
    code: &'static str,
    record: OutRecord,
}

/// A well-formed event (`dlq-<n>`) of `card-000001`, as a JSON object to break.
fn good_json(n: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": format!("dlq-{n}"),
        "entity_id": "card-000001",
        "ts": crate::common::START_MS + 60_000,
        "features": {
            "amount": 42.5, "merchant_category": "grocery", "channel": "chip",
            "hour": 0, "is_international": false, "distance_from_home_km": 3.0
        }
    })
}

fn json_case(
    name: &'static str,
    code: &'static str,
    n: usize,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Case {
    let mut v = good_json(n);
    edit(&mut v);
    Case {
        name,
        code,
        record: OutRecord::new("card-000001", serde_json::to_vec(&v).unwrap()),
    }
}

fn raw_case(name: &'static str, code: &'static str, record: OutRecord) -> Case {
    Case { name, code, record }
}

/// `amount` given as raw JSON text (serde_json cannot write `1e999`).
fn with_raw_amount(n: usize, amount: &str) -> Vec<u8> {
    let v = good_json(n);
    let text = serde_json::to_string(&v).unwrap();
    text.replace("\"amount\":42.5", &format!("\"amount\":{amount}"))
        .into_bytes()
}

fn arrow_record(bytes: Vec<u8>) -> OutRecord {
    OutRecord::new("arrow-batch", bytes).header("content-type", ARROW_CONTENT_TYPE)
}

/// An Arrow IPC stream of `events`, cut inside a message (not between two
/// messages, which the IPC spec allows), checked to be unreadable here.
fn truncated_arrow(events: &[Event]) -> Vec<u8> {
    let full = encode_arrow_batch(events).expect("encoding an Arrow batch");
    assert!(decode_arrow_batch(&full, MAX_MESSAGE_BYTES).is_ok());
    (full.len() / 2..full.len())
        .map(|cut| full[..cut].to_vec())
        .find(|cut| decode_arrow_batch(cut, MAX_MESSAGE_BYTES).is_err())
        .expect("some cut of the stream is unreadable")
}

fn corpus(good: &[Event]) -> Vec<Case> {
    let mut cases = vec![
        raw_case(
            "bad JSON (binary key)",
            "malformed_json",
            OutRecord::new(
                b"\x00\xffkey".to_vec(),
                br#"{"event_id": "dlq-1", "entity_id": "#.to_vec(),
            ),
        ),
        raw_case(
            "invalid UTF-8 (no key)",
            "malformed_json",
            OutRecord::unkeyed(
                b"{\"event_id\":\"dlq-2\",\"entity_id\":\"card-\xff\xfe\"}".to_vec(),
            ),
        ),
        json_case("missing event_id", "missing_field", 3, |v| {
            v.as_object_mut().unwrap().remove("event_id");
        }),
        json_case("amount is an object", "wrong_type", 4, |v| {
            v["features"]["amount"] = serde_json::json!({"value": 42.5});
        }),
        raw_case(
            "amount 1e999",
            "non_finite",
            OutRecord::new("card-000001", with_raw_amount(5, "1e999")),
        ),
        json_case("amount \"NaN\"", "non_finite", 6, |v| {
            v["features"]["amount"] = "NaN".into();
        }),
        json_case("unknown merchant_category", "unknown_category", 7, |v| {
            v["features"]["merchant_category"] = "spaceships".into();
        }),
        json_case("amount absent (no default)", "missing_feature", 8, |v| {
            v["features"].as_object_mut().unwrap().remove("amount");
        }),
        json_case("ts not a timestamp", "invalid_timestamp", 9, |v| {
            v["ts"] = "yesterday".into();
        }),
        json_case("oversize", "oversize", 10, |v| {
            v["features"]["note"] = "x".repeat(MAX_MESSAGE_BYTES + 100).into();
        }),
        raw_case(
            "truncated Arrow IPC stream",
            "malformed_batch",
            arrow_record(truncated_arrow(&good[..3])),
        ),
    ];
    // Every JSON case is what it claims to be for the in-process pipeline too.
    let mut scorer = Scorer::new();
    for c in &mut cases {
        if c.record.headers.is_empty() {
            let payload = c.record.payload.as_deref().unwrap();
            let code = match decode_json(payload, MAX_MESSAGE_BYTES) {
                Err(r) => r.reason.code(),
                Ok(e) => match scorer.score(&[e]).remove(0) {
                    Err(r) => r.reason.code(),
                    Ok(s) => panic!("corpus case {:?} scores {s} in process", c.name),
                },
            };
            assert_eq!(code, c.code, "corpus case {:?} in process", c.name);
        }
    }
    cases
}

/// `features-dlq` records by (source topic, partition, offset).
fn by_source(dlq: &[Record]) -> HashMap<(String, i32, i64), &Record> {
    let mut out = HashMap::new();
    for r in dlq {
        let key = (
            r.header("driftline-source-topic")
                .unwrap_or_else(|| panic!("DLQ record without source topic: {r:?}"))
                .to_owned(),
            r.header("driftline-source-partition")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("DLQ record without source partition: {r:?}")),
            r.header("driftline-source-offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or_else(|| panic!("DLQ record without source offset: {r:?}")),
        );
        // A row of an Arrow batch shares its message's coordinates.
        if r.header("driftline-source-row").is_none() {
            assert!(
                out.insert(key.clone(), r).is_none(),
                "two DLQ records for {key:?}"
            );
        }
    }
    out
}

#[test]
fn bad_input_goes_to_the_dlq_byte_for_byte_and_scoring_goes_on() {
    let broker = Broker::start();
    broker.create_topics(&TOPICS);
    let (_, good) = generate(3, 500, 60);
    let cases = corpus(&good);

    // An Arrow batch with one bad row (NaN amount) between two good ones.
    let mut rows: Vec<Event> = good[50..53].to_vec();
    rows[1]
        .features
        .insert("amount", FeatureValue::Number(f64::NAN));
    let bad_row_id = rows[1].event_id.to_string();
    let mixed = arrow_record(encode_arrow_batch(&rows).expect("encoding an Arrow batch"));

    let mut service = Service::start(&broker, &unique("dlq"));
    service.wait_ready(Duration::from_secs(60));

    let mut features: Vec<OutRecord> = cases.iter().map(|c| c.record.clone()).collect();
    features.push(mixed);
    // Good events after the bad ones: still scored.
    features.extend(good[..50].iter().map(event_record));
    let at = broker.produce("features", &features);
    let bad_update = OutRecord::new(
        "card-000002",
        "{\"entity_id\": \"card-000002\", \"features\": ",
    );
    let update_at = broker.produce("feature-updates", std::slice::from_ref(&bad_update))[0];

    // Every good event (the 50 JSON ones and the two good Arrow rows) is scored.
    let mut predictions = broker.reader("predictions", 4);
    let mut scored: HashSet<String> = good[..50].iter().map(|e| e.event_id.to_string()).collect();
    scored.insert(rows[0].event_id.to_string());
    scored.insert(rows[2].event_id.to_string());
    wait_for_event_ids(
        "predictions of the good events",
        &mut [&mut predictions],
        &scored,
        Duration::from_secs(60),
    );

    // One DLQ record per bad message, the bad Arrow row, and the bad update.
    let expected_dlq = cases.len() + 2;
    let mut dlq_reader = broker.reader("features-dlq", 1);
    dlq_reader.wait_count(expected_dlq, Duration::from_secs(60));
    dlq_reader.wait_quiet(Duration::from_millis(500), Duration::from_secs(30));
    let dlq = dlq_reader.records();
    assert_eq!(dlq.len(), expected_dlq, "DLQ: {dlq:#?}");
    let sources = by_source(dlq);

    for (case, &(partition, offset)) in cases.iter().zip(&at) {
        let r = sources
            .get(&("features".to_owned(), partition, offset))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no DLQ record for features/{partition}/{offset}",
                    case.name
                )
            });
        assert_eq!(
            r.header("driftline-error"),
            Some(case.code),
            "{}",
            case.name
        );
        assert!(
            r.header("driftline-detail").is_some_and(|d| !d.is_empty()),
            "{}: no detail in {:?}",
            case.name,
            r.headers
        );
        assert_eq!(r.key, case.record.key, "{}: key bytes", case.name);
        assert!(
            r.payload == case.record.payload,
            "{}: value bytes differ ({} vs {} bytes)",
            case.name,
            r.payload.as_ref().map_or(0, Vec::len),
            case.record.payload.as_ref().map_or(0, Vec::len),
        );
    }

    // The bad row of the Arrow batch: rendered as JSON, with its row number.
    let (mixed_partition, mixed_offset) = at[cases.len()];
    let row = dlq
        .iter()
        .find(|r| r.header("driftline-source-row").is_some())
        .unwrap_or_else(|| panic!("no DLQ record for the bad Arrow row: {dlq:#?}"));
    assert_eq!(row.header("driftline-source-row"), Some("1"));
    assert_eq!(row.header("driftline-error"), Some("non_finite"));
    assert_eq!(row.header("driftline-source-topic"), Some("features"));
    assert_eq!(
        row.header("driftline-source-partition"),
        Some(mixed_partition.to_string().as_str())
    );
    assert_eq!(
        row.header("driftline-source-offset"),
        Some(mixed_offset.to_string().as_str())
    );
    assert_eq!(event_id(row).as_deref(), Some(bad_row_id.as_str()));

    // The malformed feature update.
    let r = sources
        .get(&("feature-updates".to_owned(), update_at.0, update_at.1))
        .unwrap_or_else(|| panic!("no DLQ record for the bad update: {dlq:#?}"));
    assert_eq!(r.header("driftline-error"), Some("malformed_json"));
    assert_eq!(r.key, bad_update.key);
    assert_eq!(r.payload, bad_update.payload);

    // Nothing bad was scored, and nothing good went to the DLQ.
    let bad_ids: HashSet<String> = (1..=cases.len())
        .map(|n| format!("dlq-{n}"))
        .chain([bad_row_id])
        .collect();
    predictions.wait_quiet(Duration::from_millis(300), Duration::from_secs(30));
    for p in predictions.records() {
        let id = event_id(p).expect("predictions carry event ids");
        assert!(!bad_ids.contains(&id), "{id} was scored: {:?}", p.json());
    }
    assert_eq!(
        predictions.records().len(),
        scored.len(),
        "one prediction each"
    );
    for r in dlq {
        if let Some(id) = event_id(r) {
            assert!(!scored.contains(&id), "good event {id} went to the DLQ");
        }
    }

    service.assert_running();
    assert_eq!(service.http_get("/healthz").0, 200);
    let metrics = service.metrics();
    let counted = metric_sum(&metrics, "driftline_dlq_events_total").unwrap_or(0.0);
    assert!(
        counted >= (cases.len() + 1) as f64,
        "driftline_dlq_events_total = {counted}:\n{metrics}"
    );
    assert_eq!(service.terminate(Duration::from_secs(30)).code(), Some(0));
}
