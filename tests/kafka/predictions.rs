//! `driftline serve` against a real broker: every event of a generated
//! stream gets exactly one prediction, with the score the in-process
//! pipeline gives for the same rows in the same per-entity order.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{
    event_record, generate, metric_sum, predictions_by_event, unique, Broker, OutRecord, Scorer,
    Service, TOPICS,
};

const EVENTS: usize = 10_000;

#[test]
fn every_event_gets_one_prediction_equal_to_the_in_process_score() {
    let broker = Broker::start();
    broker.create_topics(&TOPICS);
    let (_, events) = generate(7, 2_000, EVENTS);
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), EVENTS);

    // The reference: same config, events in generation order. Keyed by
    // entity, all events of one entity share a partition, so the service
    // sees each entity's events in this order too.
    let mut scorer = Scorer::new();
    let expected = scorer.score(&events);
    let version = scorer.model().version().to_owned();
    let model_name = scorer.model().name().to_owned();

    let mut service = Service::start(&broker, &unique("predictions"));
    service.wait_ready(Duration::from_secs(60));
    let records: Vec<OutRecord> = events.iter().map(event_record).collect();
    broker.produce("features", &records);

    let mut reader = broker.reader("predictions", 4);
    reader.wait_count(EVENTS, Duration::from_secs(180));
    // Anything extra (a duplicate) would come right behind.
    reader.wait_quiet(Duration::from_millis(500), Duration::from_secs(30));
    let predictions = reader.records();
    let by_id = predictions_by_event(predictions);
    let unknown: Vec<&String> = by_id
        .keys()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "predictions for unknown events: {unknown:?}"
    );
    let repeated: Vec<(&String, usize)> = by_id
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(id, v)| (id, v.len()))
        .take(5)
        .collect();
    assert!(
        repeated.is_empty(),
        "duplicate predictions, e.g. {repeated:?}"
    );
    assert_eq!(predictions.len(), EVENTS);

    for r in predictions {
        assert_eq!(
            r.header("driftline-model-version"),
            Some(version.as_str()),
            "headers {:?}",
            r.headers
        );
    }
    let mut worst = 0.0f64;
    for (event, want) in events.iter().zip(&expected) {
        let want = match want {
            Ok(s) => f64::from(*s),
            Err(r) => panic!("in-process scorer rejected {}: {r}", event.event_id),
        };
        let p = &by_id[event.event_id.as_str()][0];
        let ctx = || format!("{}: {p}", event.event_id);
        assert_eq!(p["entity_id"], event.entity_id.as_str(), "{}", ctx());
        assert_eq!(p["ts"].as_i64(), event.ts_ms, "{}", ctx());
        assert_eq!(p["model"], model_name.as_str(), "{}", ctx());
        assert_eq!(p["model_version"], version.as_str(), "{}", ctx());
        assert_eq!(p["variant"], "primary", "{}", ctx());
        assert!(p["latency_us"].is_u64(), "{}", ctx());
        let got = p["score"].as_f64().unwrap_or_else(|| panic!("{}", ctx()));
        let diff = (got - want).abs();
        worst = worst.max(diff);
        assert!(diff <= 1e-6, "{}: score {got}, in process {want}", ctx());
    }
    // Keys are the entity ids.
    let by_key = predictions
        .iter()
        .all(|r| r.key_str() == r.json()["entity_id"].as_str());
    assert!(by_key, "every prediction is keyed by its entity id");
    println!("{EVENTS} predictions, largest score difference {worst:e}");

    assert_eq!(service.http_get("/healthz").0, 200);
    let metrics = service.metrics();
    assert!(metrics.contains("driftline_"), "{metrics}");
    assert!(
        metric_sum(&metrics, "driftline_assigned_partitions").is_some_and(|n| n == 4.0),
        "one instance owns all 4 partitions:\n{metrics}"
    );
    let status = service.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
}
