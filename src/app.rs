//! Assembly: from a validated [`Config`] to the loaded model, the filled
//! feature store and the aggregator that the scoring loop runs on.
//!
//! Guarantees: [`build`] returns only when the snapshot is fully loaded, so
//! the first event is never scored against a half-filled store. [`check`]
//! (behind `driftline validate`) runs the same steps and collects every
//! problem instead of stopping at the first.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::event::now_ms;
use crate::features::aggregates::{AggregateError, Aggregator, AggregatorConfig};
use crate::features::snapshot::{load_snapshot, SnapshotError, SnapshotOptions};
use crate::features::store::{
    Column, ColumnKind, FeatureStore, StoreConfig, StoreError, StoreSchema,
};
use crate::score::manifest::{InputKind, InputSource, Manifest};
use crate::score::{Model, ModelError};

/// Errors assembling the service.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("feature store: {0}")]
    Store(#[from] StoreError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("aggregates: {0}")]
    Aggregates(#[from] AggregateError),
}

/// The loaded pieces the scoring loop needs.
#[derive(Debug, Clone)]
pub struct Parts {
    pub model: Arc<Model>,
    pub store: Option<Arc<FeatureStore>>,
    pub aggregator: Option<Arc<Aggregator>>,
}

/// The store schema a model needs: one column per store-sourced input.
pub fn store_schema(manifest: &Manifest) -> Result<StoreSchema, StoreError> {
    let columns = manifest
        .inputs
        .iter()
        .filter(|i| i.source == InputSource::Store)
        .map(|i| Column {
            name: i.name.as_str().into(),
            kind: match i.kind {
                InputKind::Categorical => ColumnKind::Categorical,
                InputKind::Numeric | InputKind::Boolean => ColumnKind::Numeric,
            },
        })
        .collect();
    StoreSchema::new(columns)
}

/// Builds the store (empty) and the aggregator for a model.
pub fn sources(
    manifest: &Manifest,
    store: StoreConfig,
    aggregates: AggregatorConfig,
) -> Result<(Option<Arc<FeatureStore>>, Option<Arc<Aggregator>>), AppError> {
    let schema = store_schema(manifest)?;
    let store = (schema.len() > 0).then(|| Arc::new(FeatureStore::new(schema, store)));
    let specs = manifest.aggregate_specs();
    let aggregator = if specs.is_empty() {
        None
    } else {
        Some(Arc::new(Aggregator::new(specs, aggregates)?))
    };
    Ok((store, aggregator))
}

/// Loads the model, fills the store from its snapshot, and builds the aggregator.
pub fn build(config: &Config) -> Result<Parts, AppError> {
    let model = Arc::new(Model::load(&config.model.dir)?);
    let (store, aggregator) = sources(
        model.manifest(),
        StoreConfig {
            shards: config.store.shards,
            max_entities: config.store.max_entities,
            ttl_ms: config.store_ttl_ms(),
        },
        AggregatorConfig {
            buckets: config.aggregates.buckets,
            shards: config.aggregates.shards,
            max_entities: config.aggregates.max_entities,
        },
    )?;
    if let (Some(store), Some(path)) = (&store, &config.store.snapshot) {
        let started = std::time::Instant::now();
        let report = load_snapshot(store, path, &snapshot_options(config))?;
        tracing::info!(
            snapshot = %path.display(),
            rows = report.rows,
            entities = store.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "feature store loaded"
        );
        if !report.missing_columns.is_empty() {
            tracing::warn!(
                snapshot = %path.display(),
                columns = ?report.missing_columns,
                "snapshot lacks store columns the model reads; they fall back to defaults"
            );
        }
    }
    tracing::info!(
        model = model.name(),
        version = model.version(),
        sha256 = %model.manifest().sha256,
        "model loaded"
    );
    Ok(Parts {
        model,
        store,
        aggregator,
    })
}

fn snapshot_options(config: &Config) -> SnapshotOptions {
    SnapshotOptions {
        entity_column: config.store.entity_column.clone(),
        updated_at_column: config.store.updated_at_column.clone(),
        default_updated_at_ms: now_ms(),
        format: config.store.format.as_deref().and_then(|f| f.parse().ok()),
        batch_size: 8192,
    }
}

/// Every problem with the configuration at `path` and what it points at:
/// config keys, the model (manifest, checksum, graph) and the snapshot.
pub fn check(path: &Path) -> Vec<String> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(crate::config::ConfigError::Invalid { problems, .. }) => {
            // Keep going where the rest can still be checked.
            let mut all: Vec<String> = problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect();
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(partial) = toml::from_str::<Config>(&text) {
                    if partial.model.dir.join("model.toml").is_file() {
                        if let Err(e) = Model::load(&partial.model.dir) {
                            all.push(e.to_string());
                        }
                    }
                }
            }
            return all;
        }
        Err(e) => return vec![e.to_string()],
    };
    match build(&config) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}
