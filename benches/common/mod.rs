//! Shared set-up for the benches: the committed fraud models, a store filled
//! with the generator's cards, and a pool of realistic JSON events.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use driftline::app::sources;
use driftline::demo::generator::{write_json, FraudGenerator};
use driftline::event::Event;
use driftline::features::aggregates::{Aggregator, AggregatorConfig};
use driftline::features::store::{FeatureStore, StoreConfig};
use driftline::score::Model;

pub const START_MS: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub fn model(dir: &str) -> Arc<Model> {
    Arc::new(Model::load(&repo(dir)).expect("committed model loads"))
}

pub struct Fraud {
    pub model: Arc<Model>,
    pub store: Option<Arc<FeatureStore>>,
    pub aggregator: Option<Arc<Aggregator>>,
    pub events: Vec<Event>,
    pub json: Vec<Vec<u8>>,
}

/// The model with a store of `cards` entities and `n` generated events.
pub fn fraud(dir: &str, cards: usize, n: usize) -> Fraud {
    let model = model(dir);
    let (store, aggregator) = sources(
        model.manifest(),
        StoreConfig {
            shards: 16,
            max_entities: cards * 2,
            ttl_ms: None,
            ..StoreConfig::default()
        },
        AggregatorConfig {
            buckets: 12,
            shards: 16,
            max_entities: cards * 2,
            ..AggregatorConfig::default()
        },
    )
    .expect("sources");
    let mut generator = FraudGenerator::new(42, cards, START_MS);
    if let Some(store) = &store {
        for (entity, features) in generator.cards() {
            store.upsert(entity, &features, START_MS).expect("upsert");
        }
    }
    let events: Vec<Event> = (0..n).map(|_| generator.next_event().event).collect();
    let json = events
        .iter()
        .map(|e| {
            let mut buf = Vec::new();
            write_json(e, &mut buf);
            buf
        })
        .collect();
    Fraud {
        model,
        store,
        aggregator,
        events,
        json,
    }
}

/// Encoded input rows recorded by the model script (onnxruntime's inputs).
pub fn fixture_rows(name: &str) -> (usize, Vec<f32>) {
    let text = std::fs::read_to_string(repo(&format!("tests/fixtures/scores/{name}.jsonl")))
        .expect("fixture file");
    let mut width = 0;
    let mut rows = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture json");
        let input = v["input"].as_array().expect("input array");
        width = input.len();
        rows.extend(input.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32));
    }
    (width, rows)
}
