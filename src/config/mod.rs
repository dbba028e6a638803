//! Service configuration: one TOML file, overridable by environment variables.
//!
//! Every key in the file can be set from the environment as
//! `DRIFTLINE_<SECTION>__<KEY>` (double underscore between levels), e.g.
//! `DRIFTLINE_PIPELINE__BATCH_SIZE=128`; the environment wins over the file.
//! Unknown keys are errors (a typo must not silently fall back to a default).
//! [`Config::problems`] checks the whole configuration and returns every
//! problem at once, each naming the file and the key. Durations are kept as
//! written and read through accessors that fail naming the key
//! ([`BadDuration`]): a bad duration is an error, never a fallback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::duration::{self, DurationError};
use crate::tabular::Format;
pub use crate::telemetry::LogFormat;

/// Environment prefix for overrides.
pub const ENV_PREFIX: &str = "DRIFTLINE_";

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: no such config file")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<figment::Error>,
    },
    #[error("{path}: {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A duration setting that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {source}")]
pub struct BadDuration {
    /// The setting, e.g. `kafka.commit_interval`.
    pub key: &'static str,
    pub source: DurationError,
}

/// Parses the duration setting `key`.
fn setting(key: &'static str, value: &str) -> Result<Duration, BadDuration> {
    duration::parse(value).map_err(|source| BadDuration { key, source })
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model to serve.
    pub model: ModelConfig,
    /// The online feature store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Streaming aggregates over the events themselves.
    #[serde(default)]
    pub aggregates: AggregatesConfig,
    /// Batching and input limits of the scoring loop.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Kafka: brokers, consumer group, topics and client properties (`serve`).
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The admin HTTP port (`/metrics`, `/healthz`, `/readyz`, `/v1/...`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Drift monitoring: windows, thresholds, hysteresis.
    #[serde(default)]
    pub drift: crate::drift::monitor::DriftConfig,
    /// The label join and the `performance` alert thresholds.
    #[serde(default)]
    pub labels: crate::drift::labels::LabelConfig,
    /// Model versions, rollout plans and their gates.
    #[serde(default)]
    pub lifecycle: crate::lifecycle::plan::LifecycleConfig,
}

/// Kafka settings of `serve`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`bootstrap.servers`), comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group of the `features` consumer; also names the internal
    /// changelog topic, so two deployments never share state.
    pub group_id: String,
    /// How often input offsets whose outputs are acknowledged are committed
    /// (e.g. `1s`); also how often aggregate state is checkpointed. Bounds the
    /// duplicates a crash can cause.
    pub commit_interval: String,
    /// How long shutdown and partition hand-over wait for outstanding
    /// deliveries before giving up (without committing them).
    pub flush_timeout: String,
    /// Topic names.
    pub topics: TopicsConfig,
    /// librdkafka properties for every client (e.g. `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`), passed through unchanged.
    /// From the environment, `_` stands for `.`:
    /// `DRIFTLINE_KAFKA__CLIENT__SECURITY_PROTOCOL=SASL_SSL`.
    pub client: std::collections::BTreeMap<String, PropertyValue>,
    /// librdkafka properties for the consumers only (override `client`).
    pub consumer: std::collections::BTreeMap<String, PropertyValue>,
    /// librdkafka properties for the producer only (override `client`).
    pub producer: std::collections::BTreeMap<String, PropertyValue>,
}

impl KafkaConfig {
    /// `commit_interval`.
    pub fn commit_interval(&self) -> Result<Duration, BadDuration> {
        setting("kafka.commit_interval", &self.commit_interval)
    }

    /// `flush_timeout`.
    pub fn flush_timeout(&self) -> Result<Duration, BadDuration> {
        setting("kafka.flush_timeout", &self.flush_timeout)
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "driftline".into(),
            commit_interval: "1s".into(),
            flush_timeout: "30s".into(),
            topics: TopicsConfig::default(),
            client: Default::default(),
            consumer: Default::default(),
            producer: Default::default(),
        }
    }
}

/// A librdkafka property value as written in TOML or the environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropertyValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PropertyValue::Text(s) => f.write_str(s),
            PropertyValue::Integer(n) => write!(f, "{n}"),
            PropertyValue::Float(x) => write!(f, "{x}"),
            PropertyValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Topic names (spec defaults).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Input feature events (JSON or Arrow IPC batches).
    pub features: String,
    /// Store upserts and tombstones; empty = the store is only the snapshot.
    pub feature_updates: String,
    /// One prediction per scored event.
    pub predictions: String,
    /// Every input that could not be scored, with the reason in headers.
    pub dlq: String,
    /// Compacted changelog of streaming-aggregate state; by default
    /// `<group_id>-aggregates-changelog`. Created when missing.
    pub changelog: Option<String>,
    /// One message per drift alert state change; empty = not published.
    pub drift_alerts: String,
    /// One message when an alert stays firing long enough; empty = not published.
    pub retrain_requests: String,
    /// Ground truth joined to predictions by event id; empty = no label join.
    pub labels: String,
    /// Predictions of a candidate version in shadow (never mixed into `predictions`).
    pub predictions_shadow: String,
    /// One message per model lifecycle step (loaded, refused, rollout steps, gates, rollbacks).
    pub model_events: String,
    /// Compacted topic of each model's lifecycle state (primary, rollout),
    /// followed by every instance; by default `<group_id>-models`.
    pub models: Option<String>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            features: "features".into(),
            feature_updates: "feature-updates".into(),
            predictions: "predictions".into(),
            dlq: "features-dlq".into(),
            changelog: None,
            drift_alerts: "drift-alerts".into(),
            retrain_requests: "retrain-requests".into(),
            labels: "labels".into(),
            predictions_shadow: "predictions-shadow".into(),
            model_events: "model-events".into(),
            models: None,
        }
    }
}

/// Admin HTTP settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address of the admin port.
    pub listen: String,
    /// Bearer token required by endpoints that change state (`PUT`/`DELETE
    /// /v1/features/{id}`); unset = those endpoints answer 401. Better set
    /// from the environment (`DRIFTLINE_ADMIN__TOKEN`) than in the file.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "0.0.0.0:9464".into(),
            token: None,
        }
    }
}

/// Which model directory to load.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model directory (`models/<name>/<version>`), holding `model.toml` and the ONNX file.
    pub dir: PathBuf,
    /// Public keys (`.pub` files from `driftline model keygen`, or the
    /// base64 keys themselves) whose signatures are accepted; when set, a
    /// version without a valid signature by one of them is refused. Empty:
    /// signatures are not required.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// Online feature store settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Snapshot loaded before the first event is scored (Parquet, Arrow IPC or CSV).
    pub snapshot: Option<PathBuf>,
    /// Snapshot format; by default taken from the file extension.
    pub format: Option<String>,
    /// Column holding the entity id.
    pub entity_column: String,
    /// Column holding each row's update time (epoch ms); rows without one are stamped with the load time.
    pub updated_at_column: Option<String>,
    /// Rows older than this read as stale and are evicted (e.g. `30d`); unset = never.
    pub ttl: Option<String>,
    /// Cap on entities held; beyond it the least recently updated are evicted.
    pub max_entities: usize,
    /// Lock shards (rounded to a power of two); more shards, less reader/writer contention.
    pub shards: usize,
}

impl StoreConfig {
    /// `ttl` in milliseconds; `None` when unset (rows never go stale).
    pub fn ttl_ms(&self) -> Result<Option<i64>, BadDuration> {
        self.ttl
            .as_deref()
            .map(|ttl| {
                duration::parse_ms(ttl).map_err(|source| BadDuration {
                    key: "store.ttl",
                    source,
                })
            })
            .transpose()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            snapshot: None,
            format: None,
            entity_column: "entity_id".into(),
            updated_at_column: Some("updated_at".into()),
            ttl: None,
            max_entities: 1_000_000,
            shards: 16,
        }
    }
}

/// Streaming aggregate settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatesConfig {
    /// Buckets per window: the window slides in steps of window/buckets.
    pub buckets: u32,
    /// Cap on entities with aggregate state; beyond it the least recently seen are evicted.
    pub max_entities: usize,
    /// Lock shards (rounded to a power of two).
    pub shards: usize,
}

impl Default for AggregatesConfig {
    fn default() -> Self {
        AggregatesConfig {
            buckets: 12,
            max_entities: 1_000_000,
            shards: 16,
        }
    }
}

/// Scoring-loop settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Largest batch scored in one model call.
    pub batch_size: usize,
    /// Messages larger than this go to the DLQ as `oversize`.
    pub max_message_bytes: usize,
    /// Arrow IPC batch messages larger than this go to the DLQ as `oversize`.
    pub max_batch_bytes: usize,
    /// Latency budget of a micro-batch (e.g. `5ms`): a batch is scored when
    /// it is full or this long after its first message, whichever is first.
    pub max_batch_wait: String,
}

impl PipelineConfig {
    /// `max_batch_wait`.
    pub fn max_batch_wait(&self) -> Result<Duration, BadDuration> {
        setting("pipeline.max_batch_wait", &self.max_batch_wait)
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 256,
            max_message_bytes: 64 * 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            max_batch_wait: "5ms".into(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `driftline=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads `path`, applies `DRIFTLINE_*` environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests, and
    /// command-line flags appended as `DRIFTLINE_*` pairs so they win).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config = Self::merge(path, env)?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The file with the overrides applied, parsed but not validated (so
    /// `validate` can go on checking the parts that are fine).
    pub fn merge(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        let mut overrides = figment::value::Dict::new();
        for (key, value) in env {
            // Only nested keys are settings; DRIFTLINE_CONFIG and the like are flags.
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains("__") {
                continue;
            }
            let parsed: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            insert_nested(&mut overrides, &rest.to_ascii_lowercase(), parsed);
        }
        let figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Serialized::defaults(overrides));
        figment.extract().map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Every problem with the configuration, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let manifest = self.model.dir.join("model.toml");
        if self.model.dir.as_os_str().is_empty() {
            p.push("model.dir: required".into());
        } else if !manifest.is_file() {
            p.push(format!(
                "model.dir: {} has no model.toml",
                self.model.dir.display()
            ));
        }
        let s = &self.store;
        if let Some(snapshot) = &s.snapshot {
            if !snapshot.is_file() {
                p.push(format!(
                    "store.snapshot: {} does not exist",
                    snapshot.display()
                ));
            }
            let format = match &s.format {
                Some(f) => f.parse::<Format>().map(|_| ()).map_err(|e| e.to_string()),
                None => Format::from_path(snapshot).map(|_| ()).ok_or_else(|| {
                    format!(
                        "cannot tell the format of {} from its extension; set store.format",
                        snapshot.display()
                    )
                }),
            };
            if let Err(e) = format {
                p.push(format!("store.format: {e}"));
            }
        }
        if s.entity_column.trim().is_empty() {
            p.push("store.entity_column: must not be empty".into());
        }
        if let Err(e) = s.ttl_ms() {
            p.push(e.to_string());
        }
        if s.max_entities == 0 {
            p.push("store.max_entities: must be at least 1".into());
        }
        if !(1..=1024).contains(&s.shards) {
            p.push(format!("store.shards: {} is outside 1..=1024", s.shards));
        }
        let a = &self.aggregates;
        if !(1..=1024).contains(&a.buckets) {
            p.push(format!(
                "aggregates.buckets: {} is outside 1..=1024",
                a.buckets
            ));
        }
        if a.max_entities == 0 {
            p.push("aggregates.max_entities: must be at least 1".into());
        }
        if !(1..=1024).contains(&a.shards) {
            p.push(format!(
                "aggregates.shards: {} is outside 1..=1024",
                a.shards
            ));
        }
        let pl = &self.pipeline;
        if !(1..=65_536).contains(&pl.batch_size) {
            p.push(format!(
                "pipeline.batch_size: {} is outside 1..=65536",
                pl.batch_size
            ));
        }
        if pl.max_message_bytes < 64 {
            p.push(format!(
                "pipeline.max_message_bytes: {} is too small for any event",
                pl.max_message_bytes
            ));
        }
        if let Err(e) = pl.max_batch_wait() {
            p.push(e.to_string());
        }
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            p.push("kafka.brokers: must not be empty".into());
        }
        if k.group_id.trim().is_empty() {
            p.push("kafka.group_id: must not be empty".into());
        }
        for duration in [k.commit_interval(), k.flush_timeout()] {
            if let Err(e) = duration {
                p.push(e.to_string());
            }
        }
        let t = &k.topics;
        for (key, name) in [
            ("kafka.topics.features", &t.features),
            ("kafka.topics.predictions", &t.predictions),
            ("kafka.topics.dlq", &t.dlq),
        ] {
            if name.trim().is_empty() {
                p.push(format!("{key}: must not be empty"));
            }
        }
        if t.features == t.predictions || t.features == t.dlq {
            p.push(format!(
                "kafka.topics: the input topic {:?} is also an output topic",
                t.features
            ));
        }
        for (table, props) in [
            ("kafka.client", &k.client),
            ("kafka.consumer", &k.consumer),
            ("kafka.producer", &k.producer),
        ] {
            for key in props.keys() {
                let property = librdkafka_property(key);
                if MANAGED_PROPERTIES.contains(&property.as_str()) {
                    p.push(format!(
                        "{table}.{key}: set by driftline itself (at-least-once delivery depends on it)"
                    ));
                }
            }
        }
        if self
            .admin
            .token
            .as_deref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            p.push("admin.token: use at least 16 characters".into());
        }
        if self.admin.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "admin.listen: {:?} is not an ip:port address",
                self.admin.listen
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            p.push(format!(
                "log.level: {:?} is not a valid filter",
                self.log.level
            ));
        }
        self.drift.problems(&mut p);
        p.extend(self.lifecycle.problems());
        if let Err(e) = crate::score::signature::TrustedKeys::load(&self.model.trusted_keys) {
            p.push(format!("model.trusted_keys: {e}"));
        }
        p.extend(self.labels.problems());
        if let Some(reference) = &self.drift.reference {
            if !reference.is_file() {
                p.push(format!(
                    "drift.reference: {} does not exist",
                    reference.display()
                ));
            }
        }
        p
    }

    /// The changelog topic of streaming-aggregate state.
    pub fn changelog_topic(&self) -> String {
        match &self.kafka.topics.changelog {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ => format!("{}-aggregates-changelog", self.kafka.group_id),
        }
    }

    /// The compacted topic of model lifecycle state.
    pub fn models_topic(&self) -> String {
        match &self.kafka.topics.models {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ => format!("{}-models", self.kafka.group_id),
        }
    }
}

/// Client properties driftline sets itself: letting a config change them
/// would silently break at-least-once delivery or the consumer group.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];

/// The librdkafka spelling of a pass-through key: the environment cannot
/// carry dots in variable names, and librdkafka names never contain `_`.
pub fn librdkafka_property(key: &str) -> String {
    key.replace('_', ".")
}

/// Puts `value` at the `__`-separated path `key` inside `dict`.
fn insert_nested(dict: &mut figment::value::Dict, key: &str, value: figment::value::Value) {
    use figment::value::{Dict, Value};
    match key.split_once("__") {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn repo(p: &str) -> String {
        format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_documented_default_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/driftline.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // Paths in the file are relative to the repository root.
        let text = text
            .replace("\"models/", &format!("\"{}", repo("models/")))
            .replace("\"data/", &format!("\"{}", repo("data/")));
        let f = write(&text);
        let cfg = Config::load_with_env(f.path(), Vec::new()).unwrap();
        assert!(cfg.model.dir.ends_with("models/fraud-mlp/1"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = write(&format!(
            "[model]\ndir = \"{}\"\n[pipeline]\nbatch_size = 64\n",
            repo("models/fraud-mlp/1")
        ));
        let env = vec![
            (
                "DRIFTLINE_PIPELINE__BATCH_SIZE".to_owned(),
                "128".to_owned(),
            ),
            ("DRIFTLINE_LOG__FORMAT".to_owned(), "json".to_owned()),
            ("DRIFTLINE_CONFIG".to_owned(), "ignored.toml".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let cfg = Config::load_with_env(f.path(), env).unwrap();
        assert_eq!(cfg.pipeline.batch_size, 128);
        assert_eq!(cfg.log.format, LogFormat::Json);
    }

    #[test]
    fn kafka_settings_and_client_properties_come_from_file_and_environment() {
        let f = write(&format!(
            "[model]\ndir = \"{}\"\n[kafka]\nbrokers = \"a:9092\"\n\
             [kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n",
            repo("models/fraud-mlp/1")
        ));
        let env = vec![
            (
                "DRIFTLINE_KAFKA__BROKERS".to_owned(),
                "127.0.0.1:19092".to_owned(),
            ),
            ("DRIFTLINE_KAFKA__GROUP_ID".to_owned(), "g-7".to_owned()),
            (
                "DRIFTLINE_KAFKA__TOPICS__DLQ".to_owned(),
                "bad-events".to_owned(),
            ),
            (
                "DRIFTLINE_KAFKA__CONSUMER__SESSION_TIMEOUT_MS".to_owned(),
                "6000".to_owned(),
            ),
            (
                "DRIFTLINE_KAFKA__CLIENT__SASL_PASSWORD".to_owned(),
                "s3cret".to_owned(),
            ),
        ];
        let cfg = Config::load_with_env(f.path(), env).unwrap();
        assert_eq!(cfg.kafka.brokers, "127.0.0.1:19092");
        assert_eq!(cfg.kafka.group_id, "g-7");
        assert_eq!(cfg.kafka.topics.dlq, "bad-events");
        assert_eq!(cfg.kafka.topics.features, "features");
        assert_eq!(cfg.changelog_topic(), "g-7-aggregates-changelog");
        let props: Vec<(String, String)> = cfg
            .kafka
            .client
            .iter()
            .chain(&cfg.kafka.consumer)
            .map(|(k, v)| (librdkafka_property(k), v.to_string()))
            .collect();
        for want in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.password", "s3cret"),
            ("session.timeout.ms", "6000"),
        ] {
            assert!(
                props.iter().any(|(k, v)| k == want.0 && v == want.1),
                "{want:?} not in {props:?}"
            );
        }
    }

    #[test]
    fn properties_driftline_manages_and_bad_kafka_settings_are_problems() {
        let f = write(&format!(
            "[model]\ndir = \"{}\"\n[kafka]\ngroup_id = \"\"\ncommit_interval = \"soon\"\n\
             [kafka.topics]\npredictions = \"features\"\n\
             [kafka.consumer]\n\"enable.auto.commit\" = true\n[admin]\nlisten = \"nowhere\"\n",
            repo("models/fraud-mlp/1")
        ));
        let err = Config::load_with_env(f.path(), Vec::new()).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        for key in [
            "kafka.group_id",
            "kafka.commit_interval",
            "kafka.topics",
            "kafka.consumer.enable.auto.commit",
            "admin.listen",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let f = write(&format!(
            "[model]\ndir = \"{}\"\n[pipeline]\nbatch_sise = 64\n",
            repo("models/fraud-mlp/1")
        ));
        let err = Config::load_with_env(f.path(), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("batch_sise"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let f = write(
            "[model]\ndir = \"/nonexistent/model\"\n\
             [store]\nsnapshot = \"/nonexistent/cards.xlsx\"\nttl = \"forever\"\nshards = 0\n\
             [pipeline]\nbatch_size = 0\n[log]\nlevel = \"[[[\"\n",
        );
        let err = Config::load_with_env(f.path(), Vec::new()).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        for key in [
            "model.dir",
            "store.snapshot",
            "store.format",
            "store.ttl",
            "store.shards",
            "pipeline.batch_size",
            "log.level",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn lifecycle_settings_and_trusted_keys_are_read_and_checked() {
        let f = write(&format!(
            "[model]\ndir = \"{}\"\ntrusted_keys = [\"/nonexistent/ops.pub\"]\n\
             [lifecycle]\ncheck_interval = \"2s\"\n\
             [lifecycle.plans.fraud-mlp]\nsteps = [{{ kind = \"canary\", percent = 5 }}]\n",
            repo("models/fraud-mlp/1")
        ));
        let err = Config::load_with_env(f.path(), Vec::new()).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        for key in [
            "model.trusted_keys: /nonexistent/ops.pub",
            "lifecycle.plans.fraud-mlp.steps[0]: a canary step needs",
            "lifecycle.plans.fraud-mlp.steps: the last step must be `promote`",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing from {problems:?}"
            );
        }
        let f = write(&format!(
            "[model]\ndir = \"{}\"\n[kafka]\ngroup_id = \"g-2\"\n",
            repo("models/fraud-mlp/1")
        ));
        let cfg = Config::load_with_env(f.path(), Vec::new()).unwrap();
        assert_eq!(cfg.models_topic(), "g-2-models");
        assert_eq!(cfg.kafka.topics.model_events, "model-events");
        assert_eq!(cfg.lifecycle.check_interval_ms(), 5_000);
    }

    #[test]
    fn every_bad_duration_is_a_problem_naming_its_key() {
        let f = write(&format!(
            "[model]\ndir = \"{}\"\n\
             [store]\nttl = \"30 days\"\n\
             [pipeline]\nmax_batch_wait = \"0ms\"\n\
             [kafka]\ncommit_interval = \"1\"\nflush_timeout = \"1.5s\"\n\
             [drift]\nwindow_duration = \"5 minutes\"\n\
             [labels]\nmax_age = \"-1h\"\n",
            repo("models/fraud-mlp/1")
        ));
        let config = Config::merge(f.path(), Vec::new()).unwrap();
        let problems = config.problems();
        for key in [
            "store.ttl",
            "pipeline.max_batch_wait",
            "kafka.commit_interval",
            "kafka.flush_timeout",
            "drift.window_duration",
            "labels.max_age",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(key) && p.contains("invalid duration")),
                "{key} missing from {problems:?}"
            );
        }
        assert_eq!(problems.len(), 6, "{problems:?}");
        // The accessors the service reads them through fail the same way,
        // naming the key, instead of falling back to a default.
        let err = config.kafka.commit_interval().unwrap_err();
        assert_eq!(err.key, "kafka.commit_interval");
        assert!(err
            .to_string()
            .starts_with("kafka.commit_interval: invalid duration `1`"));
        assert_eq!(
            config.kafka.flush_timeout().unwrap_err().key,
            "kafka.flush_timeout"
        );
        assert_eq!(
            config.pipeline.max_batch_wait().unwrap_err().key,
            "pipeline.max_batch_wait"
        );
        assert_eq!(config.store.ttl_ms().unwrap_err().key, "store.ttl");
        assert!(config.drift.sub_window_duration().is_err());
        assert!(config.labels.max_age_ms().is_err());
        assert!(matches!(
            Config::load_with_env(f.path(), Vec::new()),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn good_durations_are_read_as_written() {
        let config = Config::default();
        assert_eq!(config.kafka.commit_interval(), Ok(Duration::from_secs(1)));
        assert_eq!(config.kafka.flush_timeout(), Ok(Duration::from_secs(30)));
        assert_eq!(
            config.pipeline.max_batch_wait(),
            Ok(Duration::from_millis(5))
        );
        assert_eq!(config.store.ttl_ms(), Ok(None));
        let store = StoreConfig {
            ttl: Some("30d".into()),
            ..StoreConfig::default()
        };
        assert_eq!(store.ttl_ms(), Ok(Some(30 * 86_400_000)));
        // 5m over 5 sub-windows.
        assert_eq!(
            config.drift.sub_window_duration(),
            Ok(Duration::from_secs(60))
        );
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load_with_env(Path::new("/nonexistent/driftline.toml"), Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/driftline.toml"));
    }
}
