//! `feature-updates` against a real broker: an upsert changes the entity's
//! store row and so its next score, a tombstone deletes the row (the next
//! score uses the manifest defaults), and `/v1/features/{id}` shows each step.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{
    assert_aggregates_match, event_id, event_record, unique, wait_for_event_ids, wait_until,
    Broker, OutRecord, Scorer, Service, TopicReader, TOPICS,
};
use driftline::event::{now_ms, Event, FeatureValue, Features};
use driftline::features::store::Lookup;

const ENTITY: &str = "card-000001";

/// An event of [`ENTITY`] at `ts` (same content every time but the id).
fn event(id: &str, ts: i64) -> Event {
    let mut features = Features::default();
    features.insert("amount", FeatureValue::Number(250.0));
    features.insert(
        "merchant_category",
        FeatureValue::Text("electronics".into()),
    );
    features.insert("channel", FeatureValue::Text("online".into()));
    features.insert("hour", FeatureValue::Number(2.0));
    features.insert("is_international", FeatureValue::Bool(true));
    features.insert("distance_from_home_km", FeatureValue::Number(900.0));
    Event {
        event_id: id.into(),
        entity_id: ENTITY.into(),
        ts_ms: Some(ts),
        features,
    }
}

/// Sends `event` and returns the service's score for it, after checking it
/// against the in-process scorer (which is fed the same events in order).
fn score_both(broker: &Broker, reader: &mut TopicReader, scorer: &mut Scorer, e: &Event) -> f64 {
    let want = f64::from(scorer.score_one(e));
    broker.produce("features", &[event_record(e)]);
    let id = e.event_id.to_string();
    wait_for_event_ids(
        &format!("the prediction of {id}"),
        &mut [&mut *reader],
        &HashSet::from([id.clone()]),
        Duration::from_secs(30),
    );
    let p: Vec<serde_json::Value> = reader
        .records()
        .iter()
        .filter(|r| event_id(r).as_deref() == Some(&id))
        .map(|r| r.json())
        .collect();
    assert_eq!(p.len(), 1, "one prediction for {id}: {p:?}");
    let got = p[0]["score"].as_f64().expect("a numeric score");
    assert!(
        (got - want).abs() <= 1e-6,
        "{id}: service score {got}, in process {want}"
    );
    got
}

/// Checks the `store` part of a `/v1/features` answer against the in-process store.
fn assert_store_matches(step: &str, answer: &serde_json::Value, scorer: &Scorer) {
    let store = scorer.store();
    let mut row = store.new_row();
    let lookup = store.get(ENTITY, now_ms(), &mut row);
    let s = &answer["store"];
    match lookup {
        Lookup::Hit { updated_at_ms } => {
            assert_eq!(s["hit"], true, "{step}: {answer}");
            assert_eq!(
                s["updated_at"].as_i64(),
                Some(updated_at_ms),
                "{step}: {answer}"
            );
        }
        _ => {
            assert_eq!(s["hit"], false, "{step}: {answer}");
            assert!(s["updated_at"].is_null(), "{step}: {answer}");
        }
    }
    for (col, column) in store.schema().columns().iter().enumerate() {
        let name = column.name.as_str();
        let got = &s["features"][name];
        match (lookup, store.value(&row, col)) {
            (Lookup::Hit { .. }, FeatureValue::Number(x)) => {
                let g = got
                    .as_f64()
                    .unwrap_or_else(|| panic!("{step}: {name}: {answer}"));
                assert!(
                    (g - x).abs() <= 1e-9 * x.abs().max(1.0),
                    "{step}: {name} = {g}, want {x}"
                );
            }
            (Lookup::Hit { .. }, FeatureValue::Text(t)) => {
                assert_eq!(got.as_str(), Some(t.as_str()), "{step}: {name}: {answer}")
            }
            _ => assert!(got.is_null(), "{step}: {name} should be missing: {answer}"),
        }
    }
}

#[test]
fn updates_and_tombstones_change_the_next_score() {
    let broker = Broker::start();
    broker.create_topics(&TOPICS);
    let mut scorer = Scorer::new();
    let mut row = scorer.store().new_row();
    assert!(
        matches!(
            scorer.store().get(ENTITY, now_ms(), &mut row),
            Lookup::Hit { .. }
        ),
        "{ENTITY} is in the snapshot"
    );
    let tier_col = scorer.store().schema().index_of("card_tier").unwrap();
    let new_tier = match scorer.store().value(&row, tier_col) {
        FeatureValue::Text(t) if t == "platinum" => "gold",
        _ => "platinum",
    };

    let mut service = Service::start(&broker, &unique("updates"));
    service.wait_ready(Duration::from_secs(60));
    let mut reader = broker.reader("predictions", 4);
    let ts = now_ms();
    let view = |service: &Service| service.features(ENTITY, Some(ts));

    // 1. The snapshot row.
    let answer = view(&service);
    assert_store_matches("snapshot", &answer, &scorer);
    assert_eq!(answer["entity_id"], ENTITY);
    assert_eq!(answer["at"].as_i64(), Some(ts));
    let first = score_both(&broker, &mut reader, &mut scorer, &event("fu-1", ts));
    let answer = view(&service);
    assert_eq!(answer["owned"], true, "{answer}");
    let aggregates = |scorer: &Scorer| {
        let agg = scorer.aggregator();
        let mut out = vec![0.0; agg.specs().len()];
        agg.read(ENTITY, ts, &mut out);
        agg.specs()
            .iter()
            .zip(out)
            .map(|(s, v)| (s.name.to_string(), v))
            .collect::<Vec<_>>()
    };
    assert_aggregates_match("after fu-1", &answer, &aggregates(&scorer));

    // 2. An upsert: a brand-new account with chargebacks and another tier.
    let updated_at = now_ms();
    let update = serde_json::json!({
        "entity_id": ENTITY,
        "ts": updated_at,
        "features": {"chargebacks_1y": 5.0, "account_age_days": 1.0, "card_tier": new_tier},
    });
    let mut changes = Features::default();
    changes.insert("chargebacks_1y", FeatureValue::Number(5.0));
    changes.insert("account_age_days", FeatureValue::Number(1.0));
    changes.insert("card_tier", FeatureValue::Text(new_tier.into()));
    scorer
        .store()
        .upsert(ENTITY, &changes, updated_at)
        .expect("in-process upsert");
    broker.produce(
        "feature-updates",
        &[OutRecord::new(ENTITY, serde_json::to_vec(&update).unwrap())],
    );
    let answer = wait_until(
        "the update in /v1/features",
        Duration::from_secs(30),
        || {
            let a = view(&service);
            (a["store"]["features"]["chargebacks_1y"].as_f64() == Some(5.0)).then_some(a)
        },
    );
    assert_store_matches("after the update", &answer, &scorer);
    let second = score_both(&broker, &mut reader, &mut scorer, &event("fu-2", ts));
    assert!(
        (second - first).abs() > 1e-4,
        "the update changes the score ({first} -> {second})"
    );

    // 3. A tombstone: the row is gone, the next score uses the defaults.
    assert!(scorer.store().delete(ENTITY));
    broker.produce("feature-updates", &[OutRecord::tombstone(ENTITY)]);
    let answer = wait_until(
        "the tombstone in /v1/features",
        Duration::from_secs(30),
        || {
            let a = view(&service);
            (a["store"]["hit"] == false).then_some(a)
        },
    );
    assert_store_matches("after the tombstone", &answer, &scorer);
    let third = score_both(&broker, &mut reader, &mut scorer, &event("fu-3", ts));
    let answer = view(&service);
    assert_aggregates_match("after fu-3", &answer, &aggregates(&scorer));
    assert_eq!(
        answer["aggregates"]["txn_count_1h"].as_f64(),
        Some(3.0),
        "{answer}"
    );
    println!("scores: snapshot {first}, updated {second}, deleted {third}");

    reader.wait_quiet(Duration::from_millis(300), Duration::from_secs(10));
    assert_eq!(reader.records().len(), 3, "one prediction per event");
    assert_eq!(service.terminate(Duration::from_secs(30)).code(), Some(0));
}
