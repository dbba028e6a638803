//! Assembly: from a validated [`Config`] to the loaded model, the filled
//! feature store and the aggregator that the scoring loop runs on.
//!
//! Guarantees: [`build`] returns only when the snapshot is fully loaded, so
//! the first event is never scored against a half-filled store. [`check`]
//! (behind `driftline validate`) runs the same steps and collects every
//! problem instead of stopping at the first.

use std::path::Path;
use std::sync::Arc;

use crate::drift::monitor::{MonitorError, Plan};
use crate::drift::profile::Profile;

use crate::config::Config;
use crate::event::{now_ms, RejectReason};
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
    #[error("drift monitoring: {0}")]
    Drift(#[from] MonitorError),
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

/// The drift plan of a model, when monitoring is on and a profile exists.
pub fn drift_plan(config: &Config, manifest: &Manifest) -> Result<Option<Plan>, MonitorError> {
    if !config.drift.enabled {
        return Ok(None);
    }
    let Some(path) = reference_path(config, manifest) else {
        return Ok(None);
    };
    let profile = Profile::load(&path)?;
    Ok(Some(Plan::new(
        manifest,
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

/// The store settings of a config (clamped, so `check` can use an invalid one).
fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        shards: config.store.shards.clamp(1, 1024),
        max_entities: config.store.max_entities.max(1),
        ttl_ms: config.store_ttl_ms(),
        max_category_bytes: config.store.max_category_bytes.max(1),
        max_categories: config.store.max_categories.max(1),
        max_dictionary_bytes: config.store.max_dictionary_bytes.max(1),
    }
}

/// The aggregator settings of a config (clamped, as [`store_config`]).
fn aggregator_config(config: &Config) -> AggregatorConfig {
    AggregatorConfig {
        buckets: config.aggregates.buckets.clamp(1, 1024),
        shards: config.aggregates.shards.clamp(1, 1024),
        max_entities: config.aggregates.max_entities.max(1),
    }
}

/// Loads the model, fills the store from its snapshot, and builds the aggregator.
pub fn build(config: &Config) -> Result<Parts, AppError> {
    let model = Arc::new(Model::load(&config.model.dir)?);
    let (store, aggregator) = sources(
        model.manifest(),
        store_config(config),
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
        config.drift.check_features(&manifest, &mut problems);
    }
    match sources(&manifest, store_config(&config), aggregator_config(&config)) {
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

/// Totals of a [`score_lines`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinesSummary {
    pub scored: usize,
    pub rejected: usize,
}

/// Scores JSON events read one per line and writes one JSON line per event,
/// in input order: a prediction (spec format), or `{"line", "error", "detail"}`
/// for an event that cannot be scored. Blank lines are skipped.
///
/// Lines are bytes, not text: a line that is not UTF-8 is that line's
/// `malformed_json` error (detail `invalid UTF-8 ...`), and the lines after
/// it are still scored. A line longer than `pipeline.max_message_bytes` is
/// read no further than the limit (so one huge line cannot exhaust memory)
/// and reported as `oversize` with its full length.
pub fn score_lines(
    pipeline: &mut crate::pipeline::Pipeline,
    mut input: impl std::io::BufRead,
    mut out: impl std::io::Write,
    batch_size: usize,
) -> std::io::Result<LinesSummary> {
    use crate::pipeline::{BatchOutput, Message};
    let max_bytes = pipeline.input_limits().max_message_bytes;
    let mut summary = LinesSummary::default();
    let mut batch = BatchOutput::default();
    let mut pending: Vec<Line> = Vec::with_capacity(batch_size);
    let mut flush =
        |pending: &mut Vec<Line>, out: &mut dyn std::io::Write| -> std::io::Result<()> {
            let messages: Vec<Message<'_>> = pending
                .iter()
                .map(|line| Message {
                    payload: &line.bytes,
                    timestamp_ms: None,
                })
                .collect();
            pipeline.process(&messages, now_ms(), &mut batch);
            let model = pipeline.model();
            let mut lines: Vec<(usize, String)> = Vec::with_capacity(pending.len());
            for s in &batch.scored {
                let prediction = serde_json::json!({
                    "event_id": s.event.event_id.as_str(),
                    "entity_id": s.event.entity_id.as_str(),
                    "ts": s.ts_ms,
                    "model": model.name(),
                    "model_version": model.version(),
                    "variant": "primary",
                    "score": s.score,
                });
                lines.push((s.index, prediction.to_string()));
            }
            for r in &batch.rejected {
                let line = &pending[r.index];
                let detail = match r.rejection.reason {
                    RejectReason::Oversize if line.length > line.bytes.len() => {
                        format!("line is {} bytes, the limit is {max_bytes}", line.length)
                    }
                    _ => r.rejection.detail.clone(),
                };
                let error = serde_json::json!({
                    "line": line.number,
                    "error": r.rejection.reason.code(),
                    "detail": detail,
                });
                lines.push((r.index, error.to_string()));
            }
            summary.scored += batch.scored.len();
            summary.rejected += batch.rejected.len();
            lines.sort_unstable_by_key(|(i, _)| *i);
            for (_, line) in lines {
                writeln!(out, "{line}")?;
            }
            pending.clear();
            Ok(())
        };
    let mut number = 0;
    loop {
        // Past the limit a line is oversize whatever follows: one byte more
        // than the limit is enough for the decoder to say so.
        let keep = if max_bytes == 0 {
            usize::MAX
        } else {
            max_bytes + 1
        };
        let mut bytes = Vec::new();
        let Some(length) = read_line(&mut input, &mut bytes, keep)? else {
            break;
        };
        number += 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        pending.push(Line {
            number,
            bytes,
            length,
        });
        if pending.len() >= batch_size.max(1) {
            flush(&mut pending, &mut out)?;
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut out)?;
    }
    out.flush()?;
    Ok(summary)
}

/// One input line of [`score_lines`].
struct Line {
    /// 1-based line number.
    number: usize,
    /// The line without its end of line, cut at the read limit.
    bytes: Vec<u8>,
    /// Its full length.
    length: usize,
}

/// Reads one line into `buf` (without `\n` or `\r\n`), keeping at most
/// `keep` bytes and skipping the rest; returns the line's full length, or
/// `None` at the end of the input.
fn read_line(
    input: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<Option<usize>> {
    let mut length = 0usize;
    let mut any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len();
        let used = done.unwrap_or(part.len());
        input.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') && length == buf.len() {
        buf.pop();
        length -= 1;
    }
    Ok(Some(length))
}
