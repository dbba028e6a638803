//! The records that flow between pipeline stages.
//!
//! Everything a stage hands to the next lives here, so the data path can be read
//! from one file: a decoded [`Event`] goes to enrichment, which produces an
//! encoded model row, which goes to scoring. Feature values keep their JSON
//! kinds (number, text, bool, null) until enrichment decides, per model input,
//! what each must be.

use compact_str::CompactString;

/// One feature value as the producer sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    /// Explicitly missing (`null`); enrichment falls through to the next source.
    Null,
    Bool(bool),
    Number(f64),
    /// Categorical value. Short strings stay inline (no allocation).
    Text(CompactString),
}

impl FeatureValue {
    /// Name of the kind, for error messages ("expected number, got text").
    pub fn kind(&self) -> &'static str {
        match self {
            FeatureValue::Null => "null",
            FeatureValue::Bool(_) => "bool",
            FeatureValue::Number(_) => "number",
            FeatureValue::Text(_) => "text",
        }
    }
}

/// Request-time features of one event, in the order the producer sent them.
///
/// A small vector rather than a map: events carry about ten features, and a
/// linear scan over inline strings beats hashing at that size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features(pub Vec<(CompactString, FeatureValue)>);

impl Features {
    pub fn get(&self, name: &str) -> Option<&FeatureValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn insert(&mut self, name: impl Into<CompactString>, value: FeatureValue) {
        let name = name.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &FeatureValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A decoded feature event (spec: `features` topic).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: CompactString,
    pub entity_id: CompactString,
    /// Event time in epoch milliseconds; `None` when the producer left it out
    /// (the Kafka message timestamp is used then).
    pub ts_ms: Option<i64>,
    pub features: Features,
}

impl Event {
    /// The event as a spec JSON value (for DLQ records of Arrow batch rows,
    /// which have no bytes of their own). JSON has no NaN or infinity, so a
    /// non-finite number is written as the string `"NaN"`, `"inf"` or `"-inf"`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut features = serde_json::Map::with_capacity(self.features.len());
        for (name, value) in self.features.iter() {
            features.insert(name.to_string(), value.to_json());
        }
        let value = serde_json::json!({
            "event_id": self.event_id.as_str(),
            "entity_id": self.entity_id.as_str(),
            "ts": self.ts_ms,
            "features": features,
        });
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

impl FeatureValue {
    /// The value as JSON (non-finite numbers as strings, see [`Event::to_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FeatureValue::Number(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| {
                    let text = if x.is_nan() {
                        "NaN"
                    } else if *x > 0.0 {
                        "inf"
                    } else {
                        "-inf"
                    };
                    serde_json::Value::String(text.into())
                }),
            FeatureValue::Text(t) => serde_json::Value::String(t.to_string()),
            FeatureValue::Bool(b) => serde_json::Value::Bool(*b),
            FeatureValue::Null => serde_json::Value::Null,
        }
    }
}

/// Current wall-clock time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why an input could not be scored: the stable reason codes of the DLQ
/// (`driftline-error` header) and of the `driftline_dlq_events_total{reason}` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not UTF-8 or not valid JSON.
    MalformedJson,
    /// `event_id` / `entity_id` absent or empty.
    MissingField,
    /// A value of the wrong JSON kind (e.g. text where a number is needed).
    WrongType,
    /// NaN or ±infinity.
    NonFinite,
    /// A categorical value outside the model's vocabulary.
    UnknownCategory,
    /// A model input with no value from any source and no default.
    MissingFeature,
    /// `ts` present but neither epoch milliseconds nor RFC 3339.
    InvalidTimestamp,
    /// Message larger than the configured limit.
    Oversize,
    /// A batch message (Arrow IPC) that cannot be read.
    MalformedBatch,
    /// The model itself failed on the batch (not the event's fault, but the
    /// event is still kept rather than dropped).
    ModelError,
    /// `event_id` or `entity_id` longer than `pipeline.max_id_bytes`, or
    /// holding a control character (NUL, newline, ...).
    InvalidId,
    /// A top-level field or a feature named twice in one event: which one
    /// the producer meant is unknowable.
    DuplicateField,
    /// Event time more than `pipeline.max_future_skew` ahead of the wall
    /// clock: accepted, it would freeze the entity's aggregates.
    FutureTimestamp,
    /// Event time more than `pipeline.max_event_age` behind the wall clock.
    StaleTimestamp,
}

impl RejectReason {
    /// Every reason, for metric pre-registration and docs.
    pub const ALL: [RejectReason; 14] = [
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::NonFinite,
        RejectReason::UnknownCategory,
        RejectReason::MissingFeature,
        RejectReason::InvalidTimestamp,
        RejectReason::Oversize,
        RejectReason::MalformedBatch,
        RejectReason::ModelError,
        RejectReason::InvalidId,
        RejectReason::DuplicateField,
        RejectReason::FutureTimestamp,
        RejectReason::StaleTimestamp,
    ];

    /// The stable code, as written in DLQ headers and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::NonFinite => "non_finite",
            RejectReason::UnknownCategory => "unknown_category",
            RejectReason::MissingFeature => "missing_feature",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::Oversize => "oversize",
            RejectReason::MalformedBatch => "malformed_batch",
            RejectReason::ModelError => "model_error",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::StaleTimestamp => "stale_timestamp",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejected input: the reason code plus a detail a human can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}
