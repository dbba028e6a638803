//! Input rules of issue 15, each reproduced as it was reported:
//!
//! - a JSON array is not an event; a repeated field or feature is refused;
//!   ids with control characters or past the id bound are refused, in the
//!   JSON form, `feature-updates` and Arrow batch rows (points 3 and 6);
//! - `driftline score` reports a line that is not UTF-8 and goes on (point 6);
//! - one event dated ten years ahead no longer freezes its entity's
//!   aggregates: the same burst on two cards scores the same (point 4);
//! - the store refuses a 1.9 MB category value (point 3).
//!
//! Reasons are compared by their stable codes (`RejectReason::code`), the
//! contract of the DLQ header and of `score`'s error lines.

use std::path::Path;

use driftline::app::{build, score_lines, Parts};
use driftline::config::Config;
use driftline::event::{Event, FeatureValue, Features};
use driftline::features::store::{Column, FeatureStore, StoreConfig, StoreSchema};
use driftline::pipeline::{BatchOutput, Message, Pipeline};
use driftline::source::arrow::{decode_arrow_batch, encode_arrow_batch};
use driftline::source::decode::{decode_json, decode_update};

fn code(bytes: &[u8]) -> &'static str {
    match decode_json(bytes, 64 * 1024) {
        Ok(e) => panic!(
            "accepted as an event: {e:?} from {}",
            String::from_utf8_lossy(bytes)
        ),
        Err(r) => {
            assert!(!r.detail.is_empty());
            r.reason.code()
        }
    }
}

#[test]
fn a_json_array_is_not_an_event() {
    assert_eq!(
        code(br#"["evt-1", "card-42", 1763792400123, {"amount": 129.5}]"#),
        "wrong_type"
    );
    assert_eq!(code(br#""evt-1""#), "wrong_type");
    assert_eq!(code(b"null"), "wrong_type");
}

#[test]
fn repeated_fields_and_features_are_duplicate_field() {
    for text in [
        r#"{"event_id":"a","event_id":"b","entity_id":"c"}"#,
        r#"{"event_id":"a","entity_id":"c","entity_id":"c"}"#,
        r#"{"event_id":"a","entity_id":"c","ts":1,"ts":2}"#,
        r#"{"event_id":"a","entity_id":"c","features":{},"features":{"x":1}}"#,
        r#"{"event_id":"a","entity_id":"c","features":{"amount":1,"amount":900}}"#,
        // The same key written two ways is the same key once unescaped.
        r#"{"event_id":"a","entity_id":"c","features":{"amount":1,"amo\u0075nt":900}}"#,
    ] {
        assert_eq!(code(text.as_bytes()), "duplicate_field", "{text}");
    }
    // Past the linear scan: the repeat is found among many features too,
    // and many distinct features are not mistaken for repeats.
    let many: Vec<String> = (0..100).map(|i| format!(r#""f{i}":{i}"#)).collect();
    let distinct = format!(
        r#"{{"event_id":"a","entity_id":"c","features":{{{}}}}}"#,
        many.join(",")
    );
    let event = decode_json(distinct.as_bytes(), 64 * 1024).expect("100 distinct features");
    assert_eq!(event.features.len(), 100);
    let repeated = format!(
        r#"{{"event_id":"a","entity_id":"c","features":{{{},"f7":0}}}}"#,
        many.join(",")
    );
    assert_eq!(code(repeated.as_bytes()), "duplicate_field");
    // Unknown top-level fields are read past, repeated or not.
    let e = decode_json(
        br#"{"event_id":"a","entity_id":"c","extra":1,"extra":2}"#,
        1024,
    )
    .expect("unknown fields are ignored");
    assert_eq!(e.entity_id, "c");
}

#[test]
fn ids_with_control_characters_or_past_the_bound_are_invalid_id() {
    for text in [
        r#"{"event_id":"a","entity_id":"card\u0000-42"}"#,
        r#"{"event_id":"evt\n1","entity_id":"card-42"}"#,
        r#"{"event_id":"a","entity_id":"card-42\u007f"}"#,
        r#"{"event_id":"a","entity_id":"card-\u0085"}"#,
    ] {
        assert_eq!(code(text.as_bytes()), "invalid_id", "{text}");
    }
    let at_bound = "x".repeat(256);
    let past = "x".repeat(257);
    let event = |entity: &str| format!(r#"{{"event_id":"a","entity_id":"{entity}"}}"#);
    assert!(decode_json(event(&at_bound).as_bytes(), 64 * 1024).is_ok());
    assert_eq!(code(event(&past).as_bytes()), "invalid_id");
    // The 64 KiB id of the report.
    let huge = "x".repeat(60 * 1024);
    assert_eq!(code(event(&huge).as_bytes()), "invalid_id");

    // feature-updates: the id used, from the value or the key.
    let update = decode_update(br#"{"features":{}}"#, Some(past.as_bytes()), 64 * 1024);
    assert_eq!(update.unwrap_err().reason.code(), "invalid_id");
    let update = decode_update(
        format!(r#"{{"entity_id":"{past}","features":{{}}}}"#).as_bytes(),
        None,
        64 * 1024,
    );
    assert_eq!(update.unwrap_err().reason.code(), "invalid_id");

    // Arrow batch rows: the bad rows alone.
    let row = |entity: &str| Event {
        event_id: "e".into(),
        entity_id: entity.into(),
        ts_ms: None,
        features: Features::default(),
    };
    let bytes =
        encode_arrow_batch(&[row("card-1"), row("card\0-2"), row(&past), row(&at_bound)]).unwrap();
    let rows = decode_arrow_batch(&bytes, 16 << 20).expect("a readable batch");
    let codes: Vec<&str> = rows
        .iter()
        .map(|r| {
            r.as_ref()
                .map_or_else(|(rej, _)| rej.reason.code(), |_| "ok")
        })
        .collect();
    assert_eq!(codes, ["ok", "invalid_id", "invalid_id", "ok"]);
}

/// `config/driftline.toml` with the repository's paths made absolute.
fn config() -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::load_with_env(&root.join("config/driftline.toml"), Vec::new())
        .expect("the documented config");
    config.model.dir = root.join(&config.model.dir);
    config.store.snapshot = config.store.snapshot.map(|s| root.join(s));
    config
}

fn pipeline() -> (Parts, Pipeline) {
    let config = config();
    let parts = build(&config).expect("model, store and aggregator");
    let pipeline = Pipeline::new(
        &parts.model,
        parts.store.clone(),
        parts.aggregator.clone(),
        config.pipeline.max_message_bytes,
    )
    .expect("a pipeline");
    (parts, pipeline)
}

#[test]
fn score_reports_a_line_that_is_not_utf8_and_goes_on() {
    let (_parts, mut pipeline) = pipeline();
    let good = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","entity_id":"card-000001","ts":1763792400123,"features":{{"amount":12.5,"merchant_category":"grocery","channel":"chip","hour":10,"is_international":false,"distance_from_home_km":3.0}}}}"#
        )
    };
    let mut input = Vec::new();
    input.extend_from_slice(good("e1").as_bytes());
    input.extend_from_slice(b"\n{\"event_id\":\"e2\",\"entity_id\":\"caf\xe9\"}\n\n");
    input.extend_from_slice(good("e3").as_bytes());
    input.extend_from_slice(b"\r\n");
    // A line past max_message_bytes is read no further than the limit.
    input.extend_from_slice(&vec![b'x'; 200_000]);
    input.extend_from_slice(b"\n");
    let mut out = Vec::new();
    let summary = score_lines(&mut pipeline, &input[..], &mut out, 256)
        .expect("score_lines reports bad lines instead of failing");
    assert_eq!((summary.scored, summary.rejected), (2, 2));
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("the output is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["event_id"], "e1");
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"], "malformed_json");
    let detail = lines[1]["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("invalid UTF-8"), "{detail}");
    assert_eq!(lines[2]["event_id"], "e3", "the line after the bad one");
    assert_eq!(lines[3]["line"], 5);
    assert_eq!(lines[3]["error"], "oversize");
    assert_eq!(
        lines[3]["detail"],
        "line is 200000 bytes, the limit is 65536"
    );
}

#[test]
fn a_far_future_event_does_not_freeze_its_entitys_aggregates() {
    let (parts, mut pipeline) = pipeline();
    const MIN: i64 = 60_000;
    let now = 1_795_000_000_000; // 2026-11-18T08:26:40Z
    let ten_years = 10 * 365 * 24 * 60 * MIN;
    let event = |id: String, entity: &str, ts: i64, amount: f64| {
        format!(
            r#"{{"event_id":"{id}","entity_id":"{entity}","ts":{ts},"features":{{"amount":{amount},"merchant_category":"electronics","channel":"online","hour":2,"is_international":true,"distance_from_home_km":900.0}}}}"#
        )
    };
    let mut out = BatchOutput::default();
    // Card A's first event is dated ten years ahead.
    let future = event("future".into(), "burst-a", now + ten_years, 40.0);
    pipeline.process(
        &[Message {
            payload: future.as_bytes(),
            timestamp_ms: None,
        }],
        now,
        &mut out,
    );
    assert_eq!(out.scored.len(), 0, "the far-future event is not scored");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].rejection.reason.code(), "future_timestamp");
    assert!(
        out.rejected[0].rejection.detail.contains("max_future_skew"),
        "{}",
        out.rejected[0].rejection.detail
    );

    // Then the same burst of five high-risk transactions on both cards.
    let mut scores = |entity: &str| -> Vec<f32> {
        (0..5)
            .map(|i| {
                let e = event(
                    format!("{entity}-{i}"),
                    entity,
                    now + i * MIN,
                    900.0 + 100.0 * i as f64,
                );
                pipeline.process(
                    &[Message {
                        payload: e.as_bytes(),
                        timestamp_ms: None,
                    }],
                    now + i * MIN,
                    &mut out,
                );
                assert_eq!(out.rejected.len(), 0, "{:?}", out.rejected);
                out.scored[0].score
            })
            .collect()
    };
    let a = scores("burst-a");
    let b = scores("burst-b");
    assert_eq!(a, b, "card A (after a far-future event) and card B");
    assert!(
        b.windows(2).all(|w| w[1] > w[0]),
        "the burst's scores climb: {b:?}"
    );
    let aggregator = parts
        .aggregator
        .as_deref()
        .expect("the model reads aggregates");
    assert_eq!(
        aggregator.stats().late_events,
        0,
        "no event of the burst was dropped as late"
    );
}

#[test]
fn the_store_refuses_a_category_of_1_9_mb() {
    let schema = StoreSchema::new(vec![
        Column::numeric("credit_limit"),
        Column::categorical("card_tier"),
    ])
    .unwrap();
    let store = FeatureStore::new(schema, StoreConfig::default());
    let mut features = Features::default();
    features.insert("credit_limit", FeatureValue::Number(900.0));
    features.insert(
        "card_tier",
        FeatureValue::Text("g".repeat(1_900_000).as_str().into()),
    );
    let err = store
        .upsert("card-1", &features, 5)
        .expect_err("a 1.9 MB category is refused");
    assert!(err.to_string().contains("card_tier"), "{err}");
    assert!(store.is_empty(), "a refused upsert changes nothing");
    let approx = store.stats().approx_heap_bytes;
    assert!(approx < 1_000_000, "the value was not kept: {approx} bytes");
}
