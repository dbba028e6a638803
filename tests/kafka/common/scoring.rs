//! The in-process reference the service is compared with: the same config,
//! model, snapshot and aggregates, driven by `Pipeline` directly.

use std::sync::Arc;

use driftline::app::{build, Parts};
use driftline::config::Config;
use driftline::event::{now_ms, Event, Rejection};
use driftline::features::aggregates::Aggregator;
use driftline::features::store::FeatureStore;
use driftline::pipeline::{BatchOutput, Decoded, Pipeline};
use driftline::score::Model;

use super::repo;

/// `config/driftline.toml` as the service reads it (no environment
/// overrides), with relative paths made absolute from the crate root.
pub fn config() -> Config {
    let path = repo().join("config/driftline.toml");
    let mut config = Config::load_with_env(&path, std::iter::empty())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    if config.model.dir.is_relative() {
        config.model.dir = repo().join(&config.model.dir);
    }
    if let Some(s) = config.store.snapshot.as_mut().filter(|s| s.is_relative()) {
        *s = repo().join(&*s);
    }
    config
}

/// Model, store (snapshot loaded) and aggregator of the config, and a pipeline
/// over them. Events must be fed in the order the service sees them per
/// entity, since the streaming aggregates depend on it.
pub struct Scorer {
    parts: Parts,
    pipeline: Pipeline,
    out: BatchOutput,
    batch_size: usize,
}

impl Scorer {
    pub fn new() -> Scorer {
        let config = config();
        let parts = build(&config).expect("building the in-process scorer");
        let pipeline = Pipeline::new(
            &parts.model,
            parts.store.clone(),
            parts.aggregator.clone(),
            config.pipeline.max_message_bytes,
        )
        .expect("building the in-process pipeline");
        Scorer {
            parts,
            pipeline,
            out: BatchOutput::default(),
            batch_size: config.pipeline.batch_size.max(1),
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.parts.model
    }

    pub fn store(&self) -> &FeatureStore {
        self.parts
            .store
            .as_deref()
            .expect("the model reads the store")
    }

    pub fn aggregator(&self) -> &Aggregator {
        self.parts
            .aggregator
            .as_deref()
            .expect("the model reads aggregates")
    }

    /// Scores `events` in order: one result per event.
    pub fn score(&mut self, events: &[Event]) -> Vec<Result<f32, Rejection>> {
        let mut results: Vec<Option<Result<f32, Rejection>>> = vec![None; events.len()];
        for (c, chunk) in events.chunks(self.batch_size).enumerate() {
            let base = c * self.batch_size;
            let batch = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| Decoded::new(i, e.clone(), None))
                .collect();
            self.out.clear();
            self.pipeline.score_events(batch, now_ms(), &mut self.out);
            for s in &self.out.scored {
                results[base + s.index] = Some(Ok(s.score));
            }
            for r in &self.out.rejected {
                results[base + r.index] = Some(Err(r.rejection.clone()));
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("the pipeline gives every event an outcome"))
            .collect()
    }

    /// Scores one event; panics if it is rejected.
    pub fn score_one(&mut self, event: &Event) -> f32 {
        match self.score(std::slice::from_ref(event)).remove(0) {
            Ok(s) => s,
            Err(r) => panic!("in-process scorer rejected {}: {r}", event.event_id),
        }
    }
}

impl Default for Scorer {
    fn default() -> Self {
        Scorer::new()
    }
}

/// The streaming aggregates of the config, replayed in process.
pub struct AggregateReplay {
    aggregator: Arc<Aggregator>,
}

impl AggregateReplay {
    pub fn new() -> AggregateReplay {
        let parts = build(&config()).expect("building the in-process aggregator");
        AggregateReplay {
            aggregator: parts.aggregator.expect("the model reads aggregates"),
        }
    }

    /// Folds one event in at its `ts`.
    pub fn observe(&self, event: &Event) {
        let ts = event.ts_ms.expect("generated events carry ts");
        self.aggregator
            .observe(&event.entity_id, ts, &event.features);
    }

    /// `(name, value)` of every aggregate of `entity` at `at_ms` (NaN = empty).
    pub fn read(&self, entity: &str, at_ms: i64) -> Vec<(String, f64)> {
        let specs = self.aggregator.specs();
        let mut out = vec![0.0; specs.len()];
        self.aggregator.read(entity, at_ms, &mut out);
        specs
            .iter()
            .zip(out)
            .map(|(s, v)| (s.name.to_string(), v))
            .collect()
    }
}

impl Default for AggregateReplay {
    fn default() -> Self {
        AggregateReplay::new()
    }
}

/// Asserts that the `aggregates` object of a `/v1/features` answer equals
/// `expected` (NaN ↔ null; numbers within 1e-6 relative).
pub fn assert_aggregates_match(
    context: &str,
    answer: &serde_json::Value,
    expected: &[(String, f64)],
) {
    let aggregates = &answer["aggregates"];
    assert!(
        aggregates.is_object(),
        "{context}: no aggregates object in {answer}"
    );
    for (name, want) in expected {
        let got = &aggregates[name.as_str()];
        if want.is_nan() {
            assert!(
                got.is_null(),
                "{context}: aggregate {name} = {got}, expected null (empty window); answer {answer}"
            );
        } else {
            let g = got.as_f64().unwrap_or_else(|| {
                panic!("{context}: aggregate {name} = {got}, expected {want}; answer {answer}")
            });
            assert!(
                (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{context}: aggregate {name} = {g}, expected {want}; answer {answer}"
            );
        }
    }
}
