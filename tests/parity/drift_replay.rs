//! Issue 13, point 6: the bundled training data replayed in time order
//! through the service's own path (decode → enrich from the store
//! snapshot and the streaming aggregates → score → drift recorder →
//! evaluator), with the default drift configuration and the bundled
//! reference profile, raises no alert: the data a model was profiled on is
//! silent, seasonal columns included (`hour`: judged on its season window).

use std::path::Path;
use std::sync::Arc;

use driftline::config::Config;
use driftline::drift::monitor::{DriftStatus, Evaluator, Output, Recorder, RecorderStats};
use driftline::pipeline::{BatchOutput, Message, Pipeline};

#[test]
fn the_training_data_replayed_in_time_order_raises_no_alert() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("driftline-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config_path = dir.join("driftline.toml");
    std::fs::write(
        &config_path,
        format!(
            "[model]\ndir = {:?}\n[store]\nsnapshot = {:?}\n",
            repo.join("models/fraud-mlp/1"),
            repo.join("data/cards.parquet")
        ),
    )
    .expect("config");
    let config = Config::load(&config_path).expect("config loads");
    let parts = driftline::app::build(&config).expect("model, store, aggregator");
    let plan = parts
        .drift
        .clone()
        .expect("the bundled model has a reference");
    let mut pipeline = Pipeline::new(
        &parts.model,
        parts.store.clone(),
        parts.aggregator.clone(),
        config.pipeline.max_message_bytes,
    )
    .expect("pipeline");
    let stats = Arc::new(RecorderStats::default());
    let (recorder, rx) = Recorder::new(plan.clone(), stats.clone());
    pipeline.set_recorder(recorder);
    let status = Arc::new(parking_lot::RwLock::new(DriftStatus::default()));
    let mut evaluator = Evaluator::new(plan, stats, status.clone(), Box::new(|_, _, _| {}));

    // The training file as events, in time order.
    let text = std::fs::read_to_string(repo.join("data/transactions.csv")).expect("data");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let events = [
        "amount",
        "merchant_category",
        "channel",
        "hour",
        "is_international",
        "distance_from_home_km",
    ];
    let mut rows: Vec<(i64, String)> = lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let cell = |name: &str| {
                header
                    .iter()
                    .position(|h| *h == name)
                    .and_then(|i| cells.get(i).copied())
                    .unwrap_or("")
            };
            let ts: i64 = cell("ts").parse().expect("ts");
            let mut features = serde_json::Map::new();
            for name in events {
                let raw = cell(name);
                let value = match raw {
                    "true" => serde_json::Value::Bool(true),
                    "false" => serde_json::Value::Bool(false),
                    _ => raw
                        .parse::<f64>()
                        .map(serde_json::Value::from)
                        .unwrap_or_else(|_| serde_json::Value::from(raw)),
                };
                features.insert(name.into(), value);
            }
            let event = serde_json::json!({
                "event_id": cell("event_id"),
                "entity_id": cell("entity_id"),
                "ts": ts,
                "features": features,
            });
            (ts, event.to_string())
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    assert!(rows.len() > 40_000, "{} events", rows.len());

    let mut alerts = Vec::new();
    let mut out = BatchOutput::default();
    let mut scored = 0;
    for chunk in rows.chunks(256) {
        let messages: Vec<Message<'_>> = chunk
            .iter()
            .map(|(_, e)| Message {
                payload: e.as_bytes(),
                timestamp_ms: None,
            })
            .collect();
        out.clear();
        pipeline.process(&messages, chunk[chunk.len() - 1].0, &mut out);
        scored += out.scored.len();
        for window in rx.try_iter() {
            alerts.extend(evaluator.push(window).into_iter().filter_map(|o| match o {
                Output::Alert(a) => Some(a),
                Output::Retrain(_) => None,
            }));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(scored > 40_000, "{scored} events scored");
    let status = status.read();
    assert!(
        status.evaluations > 30,
        "{} evaluations",
        status.evaluations
    );
    let hour = status
        .columns
        .iter()
        .find(|c| c.name == "hour")
        .expect("hour");
    assert!(
        hour.skipped.is_none() && !hour.statistics.is_empty(),
        "hour is judged on its season window: {hour:?}"
    );
    let summary: Vec<String> = alerts
        .iter()
        .map(|a| {
            format!(
                "{:?} {} {} {} {}/{} at window {:?}",
                a.state,
                a.kind.as_str(),
                a.feature,
                a.statistic,
                a.value,
                a.threshold,
                a.window
            )
        })
        .collect();
    assert!(
        alerts.is_empty(),
        "the training data raised alerts: {summary:#?}"
    );
}
