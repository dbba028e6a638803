//! Assembly: from a validated [`Config`] to the loaded model, the filled
//! feature store and the aggregator that the scoring loop runs on; and the
//! offline commands that run on the same pieces ([`score_lines`],
//! [`profile`], [`report`]).
//!
//! Guarantees: [`build`] returns only when the snapshot is fully loaded, so
//! the first event is never scored against a half-filled store. [`check`]
//! (behind `driftline validate`) runs the same steps and collects every
//! problem instead of stopping at the first. The model's inputs reach drift
//! monitoring only as [`Watched`] columns ([`watched_columns`]).

pub mod profile;
pub mod report;
pub mod score_lines;

pub use score_lines::{score_lines, LinesSummary};

use std::path::Path;
use std::sync::Arc;

use crate::config::{BadDuration, Config};
use crate::drift::columns::{self, Watched};
use crate::drift::monitor::{MonitorError, Plan};
use crate::drift::profile::Profile;
use crate::event::now_ms;
use crate::features::aggregates::{AggregateError, Aggregator, AggregatorConfig};
use crate::features::snapshot::{load_snapshot, SnapshotError, SnapshotOptions};
use crate::features::store::{
    Column, ColumnKind, FeatureStore, StoreConfig, StoreError, StoreSchema,
};
use crate::score::manifest::{Encoding, InputKind, InputSource, Manifest};
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
    #[error("drift monitoring: {0}")]
    Drift(#[from] MonitorError),
    #[error(transparent)]
    Config(#[from] BadDuration),
}

/// The loaded pieces the scoring loop needs.
#[derive(Debug, Clone)]
pub struct Parts {
    pub model: Arc<Model>,
    pub store: Option<Arc<FeatureStore>>,
    pub aggregator: Option<Arc<Aggregator>>,
    /// Drift monitoring against the reference profile, when there is one
    /// and `drift.enabled`.
    pub drift: Option<Arc<Plan>>,
}

/// The reference profile to use: `drift.reference`, else the manifest's
/// `reference` (relative to the model directory), else none.
pub fn reference_path(config: &Config, manifest: &Manifest) -> Option<std::path::PathBuf> {
    config.drift.reference.clone().or_else(|| {
        manifest
            .reference
            .as_ref()
            .map(|r| config.model.dir.join(r))
    })
}

/// The columns drift watches on a model: every input, in manifest order,
/// with its slot in the encoded row.
pub fn watched_columns(manifest: &Manifest) -> Watched {
    let mut watched = Watched::new(&manifest.name, &manifest.version);
    for input in &manifest.inputs {
        let (kind, encoding) = match input.kind {
            InputKind::Numeric => (columns::ColumnKind::Numeric, columns::Encoding::Value),
            InputKind::Boolean => (columns::ColumnKind::Boolean, columns::Encoding::Value),
            InputKind::Categorical => {
                let vocabulary = input.vocabulary.clone();
                let encoding = match input.encoding {
                    Some(Encoding::Ordinal) => columns::Encoding::Ordinal(vocabulary),
                    // Manifests name an encoding for every categorical;
                    // one-hot is what the enricher does without one.
                    Some(Encoding::OneHot) | None => columns::Encoding::OneHot(vocabulary),
                };
                (columns::ColumnKind::Categorical, encoding)
            }
        };
        let name = input.name.as_str();
        match input.source {
            InputSource::Event => {
                watched.push_from(name, kind, encoding, columns::ValueSource::Event)
            }
            InputSource::Store => {
                watched.push_from(name, kind, encoding, columns::ValueSource::Store)
            }
            InputSource::Aggregate => {
                // A manifest that loaded has a valid window.
                let history = input
                    .aggregate
                    .as_ref()
                    .and_then(|a| crate::duration::parse_ms(&a.window).ok())
                    .unwrap_or(0);
                watched.push_aggregate(name, kind, encoding, history)
            }
        }
    }
    watched
}

/// The drift plan of a model, when monitoring is on and a profile exists.
pub fn drift_plan(config: &Config, manifest: &Manifest) -> Result<Option<Plan>, MonitorError> {
    if !config.drift.enabled {
        return Ok(None);
    }
    let Some(path) = reference_path(config, manifest) else {
        return Ok(None);
    };
    // The manifest's hash vouches for its own reference only, not for a
    // `drift.reference` the config points elsewhere.
    let expected = match config.drift.reference {
        None => manifest.reference_sha256.as_deref(),
        Some(_) => None,
    };
    let profile = Profile::load_verified(&path, expected)?;
    Ok(Some(Plan::new(
        &watched_columns(manifest),
        profile,
        &path,
        config.drift.clone(),
    )?))
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

/// The feature sources a model reads: the store if it has store inputs, the
/// aggregator if it has aggregate inputs.
pub type Sources = (Option<Arc<FeatureStore>>, Option<Arc<Aggregator>>);

/// Builds the store (empty) and the aggregator for a model.
pub fn sources(
    manifest: &Manifest,
    store: StoreConfig,
    aggregates: AggregatorConfig,
) -> Result<Sources, AppError> {
    let schema = store_schema(manifest)?;
    let store = (!schema.is_empty()).then(|| Arc::new(FeatureStore::new(schema, store)));
    let specs = manifest.aggregate_specs();
    let aggregator = if specs.is_empty() {
        None
    } else {
        Some(Arc::new(Aggregator::new(specs, aggregates)?))
    };
    Ok((store, aggregator))
}

/// The store settings of a config (clamped, so `check` can use an invalid
/// one); the TTL is parsed by the caller, which reports a bad one.
fn store_config(config: &Config, ttl_ms: Option<i64>) -> StoreConfig {
    StoreConfig {
        shards: config.store.shards.clamp(1, 1024),
        max_entities: config.store.max_entities.max(1),
        ttl_ms,
        max_category_bytes: config.store.max_category_bytes.max(1),
        max_categories: config.store.max_categories.max(1),
        max_dictionary_bytes: config.store.max_dictionary_bytes.max(1),
        max_bytes: config.store.max_bytes.max(1),
    }
}

/// The aggregator settings of a config (clamped, as [`store_config`]).
fn aggregator_config(config: &Config) -> AggregatorConfig {
    AggregatorConfig {
        buckets: config.aggregates.buckets.clamp(1, 1024),
        shards: config.aggregates.shards.clamp(1, 1024),
        max_entities: config.aggregates.max_entities.max(1),
        max_bytes: config.aggregates.max_bytes.max(1),
    }
}

/// Loads the model, fills the store from its snapshot, and builds the aggregator.
pub fn build(config: &Config) -> Result<Parts, AppError> {
    let model = Arc::new(Model::load(&config.model.dir)?);
    let (store, aggregator) = sources(
        model.manifest(),
        store_config(config, config.store.ttl_ms()?),
        aggregator_config(config),
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
    let drift = drift_plan(config, model.manifest())?.map(Arc::new);
    match &drift {
        Some(plan) => tracing::info!(
            reference = %plan.profile().id,
            window = ?plan.config().window,
            window_events = plan.config().window_events,
            sub_windows = plan.config().sub_windows,
            "drift monitoring on"
        ),
        None => {
            tracing::info!("drift monitoring off (no reference profile, or drift.enabled = false)")
        }
    }
    Ok(Parts {
        model,
        store,
        aggregator,
        drift,
    })
}

fn snapshot_options(config: &Config) -> SnapshotOptions {
    SnapshotOptions {
        entity_column: config.store.entity_column.clone(),
        updated_at_column: config.store.updated_at_column.clone(),
        default_updated_at_ms: now_ms(),
        // Validated by `Config::problems`; `None` falls back to the
        // extension, which `load_snapshot` checks in turn.
        format: config.store.format.as_deref().and_then(|f| f.parse().ok()),
        batch_size: 8192,
    }
}

/// Every problem with the configuration at `path` and what it points at:
/// config keys, the model (manifest, checksum, graph), its reference
/// profile and the snapshot (every row). Each part is checked even when
/// another failed.
///
/// `env` holds the `DRIFTLINE_*` overrides (the process environment, plus
/// command-line flags last so they win).
pub fn check(path: &Path, env: &[(String, String)]) -> Vec<String> {
    let config = match Config::merge(path, env.iter().cloned()) {
        Ok(c) => c,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems: Vec<String> = config
        .problems()
        .into_iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect();
    let manifest_path = config.model.dir.join("model.toml");
    if !manifest_path.is_file() {
        return problems; // already reported as model.dir
    }
    let manifest = match Manifest::load(&manifest_path) {
        Ok(m) => m,
        Err(e) => {
            problems.push(e.to_string());
            return problems;
        }
    };
    if let Err(e) = Model::from_manifest(manifest.clone(), &config.model.dir) {
        problems.push(e.to_string());
    }
    // The reference profile must cover the model's inputs, and per-feature
    // drift settings must name them.
    if config.drift.enabled {
        if let Err(e) = drift_plan(&config, &manifest) {
            problems.push(e.to_string());
        }
        config
            .drift
            .check_features(&watched_columns(&manifest), &mut problems);
    }
    // A bad TTL is among `problems` already; the store is still checked.
    let ttl_ms = config.store.ttl_ms().unwrap_or_default();
    match sources(
        &manifest,
        store_config(&config, ttl_ms),
        aggregator_config(&config),
    ) {
        Err(e) => problems.push(e.to_string()),
        Ok((Some(store), _)) => {
            if let Some(snapshot) = config.store.snapshot.as_ref().filter(|p| p.is_file()) {
                if let Err(e) = load_snapshot(&store, snapshot, &snapshot_options(&config)) {
                    problems.push(format!("snapshot: {e}"));
                }
            }
        }
        Ok((None, _)) => {}
    }
    problems
}
