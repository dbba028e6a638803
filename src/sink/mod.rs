//! Kafka out: predictions, dead-letter records and changelog records.
//!
//! Guarantees: sends never wait for the broker one by one. Records go to a
//! [`ThreadedProducer`] whose own thread serves delivery reports, and each
//! report is handed to the [`offsets::Tracker`], which decides what input
//! offsets may be committed. A full local queue makes [`Sink::send`] wait
//! (back-pressure), never drop. Record layouts follow the spec: predictions
//! are keyed by entity id and carry the model version in a header; DLQ
//! records keep the input's key and value bytes untouched and explain
//! themselves in `driftline-*` headers.
//!
//! A DLQ record always fits what the producer accepts: its value (and, if
//! it must be, its key) is cut to `message.max.bytes` less its headers and
//! framing, and `driftline-original-size` / `driftline-original-sha256`
//! say what the original was. A delivery that fails for a transient
//! reason (the broker unreachable past `message.timeout.ms`) is kept and
//! sent again by [`Sink::resend`], which the loop calls while it holds
//! consumption paused; a record the broker refuses for good (too large,
//! unknown or deleted topic, not authorised, invalid) follows
//! `sink.on_permanent_failure`: `halt` fails the tracker with a message
//! naming the record, `skip` counts it and lets its input offset be
//! committed.

pub mod offsets;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::config::OnPermanentFailure;
use crate::event::Rejection;
use crate::score::model::sha256_hex;
use crate::telemetry::metrics;
use offsets::{Token, Tracker};

/// DLQ header names (spec: `features-dlq`).
pub const HEADER_ERROR: &str = "driftline-error";
pub const HEADER_DETAIL: &str = "driftline-detail";
pub const HEADER_SOURCE_TOPIC: &str = "driftline-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "driftline-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "driftline-source-offset";
/// Row of an Arrow batch message the DLQ record stands for.
pub const HEADER_SOURCE_ROW: &str = "driftline-source-row";
/// Length in bytes of the input's value (the DLQ value may be cut).
pub const HEADER_ORIGINAL_SIZE: &str = "driftline-original-size";
/// Hex SHA-256 of the input's whole value.
pub const HEADER_ORIGINAL_SHA256: &str = "driftline-original-sha256";
/// Length of the input's key, only when the DLQ key had to be cut.
pub const HEADER_ORIGINAL_KEY_SIZE: &str = "driftline-original-key-size";

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Room left for the record's framing (length fields, attributes,
/// timestamps, header counts) on top of key, value and header bytes; the
/// Kafka record format needs well under this.
const RECORD_OVERHEAD: usize = 512;
/// Longest `driftline-detail` header.
const MAX_DETAIL_BYTES: usize = 1024;
/// Longest DLQ key kept when a key alone would not leave room for a value.
const MAX_DLQ_KEY_BYTES: usize = 4096;
/// Prediction header carrying the model version.
pub const HEADER_MODEL_VERSION: &str = "driftline-model-version";
pub const HEADER_MODEL: &str = "driftline-model";

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("creating the producer: {0}")]
    Create(#[source] KafkaError),
    #[error("sending to {topic}: {source}")]
    Send {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// An output record whose delivery failed for a transient reason, kept to
/// be sent again.
struct Retry {
    message: OwnedMessage,
    token: Token,
}

/// What rides with a record to its delivery report.
#[derive(Debug)]
pub struct Opaque {
    token: Token,
    /// Sent again by [`Sink::resend`].
    resent: bool,
}

/// Producer context: routes delivery reports to the offset tracker, keeps
/// transient failures for [`Sink::resend`] and applies the permanent-failure
/// policy.
pub struct SinkContext {
    tracker: Arc<Tracker>,
    policy: OnPermanentFailure,
    retries: Mutex<Vec<Retry>>,
    /// Re-sent records not yet reported.
    resent_in_flight: AtomicUsize,
}

/// Why the broker refuses a record for good, as a metric label; `None`
/// for failures that another attempt can get past (timeouts, transport,
/// leader changes, a broker down).
pub fn permanent_reason(e: &KafkaError) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code()? {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
            Some("message_too_large")
        }
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::InvalidTopic => {
            Some("unknown_topic")
        }
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => Some("not_authorized"),
        C::InvalidMessage
        | C::InvalidRecord
        | C::PolicyViolation
        | C::UnsupportedForMessageFormat => Some("invalid_record"),
        _ => None,
    }
}

/// The `event_id` of an output or input JSON value, for error messages.
fn event_id_of(payload: Option<&[u8]>) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: Option<String>,
    }
    payload
        .and_then(|p| serde_json::from_slice::<Id>(p).ok())
        .and_then(|id| id.event_id)
        .unwrap_or_else(|| "unknown".into())
}

impl SinkContext {
    /// Applies the policy to a record refused for good.
    fn refused(
        &self,
        topic: &str,
        partition: i32,
        token: Token,
        reason: &'static str,
        error: &KafkaError,
        payload: Option<&[u8]>,
    ) {
        let event_id = event_id_of(payload);
        let input = match token {
            Token::Input { partition, offset } => {
                format!("the output of input partition {partition} offset {offset} (event_id {event_id})")
            }
            Token::Checkpoint { partition, .. } => {
                format!("a changelog record of input partition {partition}")
            }
            Token::Detached => format!("a record (event_id {event_id})"),
        };
        match self.policy {
            OnPermanentFailure::Halt => {
                metrics::produce_failure(reason, "halt");
                let place = if partition >= 0 {
                    format!("{topic} [{partition}]")
                } else {
                    topic.to_string()
                };
                let message = format!(
                    "{place} refused {input} for good ({reason}: {error}); \
                     sink.on_permanent_failure = \"halt\": stopping without committing past it \
                     (a restart meets the same record and stops with this message; \
                     \"skip\" counts such records and goes on)"
                );
                tracing::error!(%topic, partition, ?token, %event_id, reason, error = %error, "output refused for good; halting");
                self.tracker.fail(token, message);
            }
            OnPermanentFailure::Skip => {
                metrics::produce_failure(reason, "skip");
                tracing::warn!(%topic, partition, ?token, %event_id, reason, error = %error,
                    "output refused for good; skipped (sink.on_permanent_failure = \"skip\")");
                self.tracker.ack(token);
            }
        }
    }
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Opaque>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let Opaque { token, resent } = *opaque;
        if resent {
            self.resent_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        match result {
            Ok(message) => {
                // A broker that answers a produce as a duplicate of an
                // earlier one acks it with no offset; if it was not really
                // a duplicate, the record is gone. Say so: it is rare and
                // explains a missing output.
                if rdkafka::Message::offset(message) < 0 {
                    tracing::warn!(
                        topic = rdkafka::Message::topic(message),
                        partition = rdkafka::Message::partition(message),
                        ?token,
                        "delivered without an offset (acknowledged as a duplicate)"
                    );
                }
                tracing::trace!(
                    topic = rdkafka::Message::topic(message),
                    partition = rdkafka::Message::partition(message),
                    offset = rdkafka::Message::offset(message),
                    ?token,
                    "delivered"
                );
                self.tracker.ack(token)
            }
            Err((e, message)) => match permanent_reason(e) {
                Some(reason) => self.refused(
                    rdkafka::Message::topic(message),
                    rdkafka::Message::partition(message),
                    token,
                    reason,
                    e,
                    rdkafka::Message::payload(message),
                ),
                None => {
                    tracing::warn!(
                        error = %e,
                        topic = rdkafka::Message::topic(message),
                        ?token,
                        "delivery failed; kept to be sent again (its input offset is not committed)"
                    );
                    self.retries.lock().push(Retry {
                        message: message.detach(),
                        token,
                    });
                }
            },
        }
    }
}

/// Enqueues `record` on a threaded producer, waiting while librdkafka's local
/// queue is full (the producer's own thread drains it): back-pressure, never
/// a drop. Gives up only on another error, or when `stop` is set while
/// waiting (`Ok(false)`).
pub fn send_waiting<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<bool, KafkaError>
where
    C: ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                    return Ok(false);
                }
                record = back;
                std::thread::sleep(Duration::from_micros(500));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Where one input came from, for DLQ headers.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Row within an Arrow batch message.
    pub row: Option<usize>,
}

/// The producer of every output topic.
pub struct Sink {
    producer: ThreadedProducer<SinkContext>,
    tracker: Arc<Tracker>,
    /// The producer's `message.max.bytes`: no DLQ record is larger.
    max_message_bytes: usize,
}

impl Sink {
    /// Creates the producer. `config` already holds the bootstrap servers and
    /// pass-through properties; idempotence (ordered, duplicate-free retries,
    /// so per-entity order survives broker hiccups) is on unless configured off.
    /// `policy` says what a record refused for good does.
    pub fn new(
        mut config: ClientConfig,
        tracker: Arc<Tracker>,
        policy: OnPermanentFailure,
    ) -> Result<Self, SinkError> {
        for (key, value) in [("enable.idempotence", "true"), ("linger.ms", "5")] {
            if config.get(key).is_none() {
                config.set(key, value);
            }
        }
        let max_message_bytes = config
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        let producer = config
            .create_with_context(SinkContext {
                tracker: tracker.clone(),
                policy,
                retries: Mutex::new(Vec::new()),
                resent_in_flight: AtomicUsize::new(0),
            })
            .map_err(SinkError::Create)?;
        Ok(Sink {
            producer,
            tracker,
            max_message_bytes,
        })
    }

    /// Sends again every record whose delivery failed for a transient
    /// reason; returns how many. Waits while the local queue is full.
    pub fn resend(&self) -> Result<usize, SinkError> {
        let retries = std::mem::take(&mut *self.producer.context().retries.lock());
        let n = retries.len();
        for Retry { message, token } in retries {
            use rdkafka::Message as _;
            let topic = message.topic();
            let mut record = BaseRecord::with_opaque_to(
                topic,
                Box::new(Opaque {
                    token,
                    resent: true,
                }),
            )
            .partition(message.partition());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            if let Some(headers) = message.headers() {
                record = record.headers(headers.clone());
            }
            self.producer
                .context()
                .resent_in_flight
                .fetch_add(1, Ordering::AcqRel);
            if let Err(source) = send_waiting(&self.producer, record, None) {
                self.producer
                    .context()
                    .resent_in_flight
                    .fetch_sub(1, Ordering::AcqRel);
                return Err(SinkError::Send {
                    topic: topic.to_string(),
                    source,
                });
            }
        }
        if n > 0 {
            metrics::produce_retries(n as u64);
        }
        Ok(n)
    }

    /// Records waiting to be sent again, or sent again and not yet
    /// delivered: while there are any, consumption stays paused.
    pub fn retrying(&self) -> usize {
        let context = self.producer.context();
        context.retries.lock().len() + context.resent_in_flight.load(Ordering::Acquire)
    }

    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Enqueues one record; waits while the local queue is full.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        token: Token,
    ) -> Result<(), SinkError> {
        let mut record = BaseRecord::with_opaque_to(
            topic,
            Box::new(Opaque {
                token,
                resent: false,
            }),
        );
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        match send_waiting(&self.producer, record, None) {
            Ok(_) => Ok(()),
            // Refused before it left (librdkafka checks the size locally):
            // the same policy as a refusal by the broker.
            Err(e) => match permanent_reason(&e) {
                Some(reason) => {
                    self.producer.context().refused(
                        topic,
                        partition.unwrap_or(-1),
                        token,
                        reason,
                        &e,
                        payload,
                    );
                    Ok(())
                }
                None => Err(SinkError::Send {
                    topic: topic.to_string(),
                    source: e,
                }),
            },
        }
    }

    /// Sends an input that cannot be scored to the DLQ: `value` is the
    /// original bytes (or, for one row of a batch, the row as JSON).
    pub fn send_dlq(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        rejection: &Rejection,
        source: Source<'_>,
        token: Token,
    ) -> Result<(), SinkError> {
        let record = DlqRecord::new(key, value, rejection, source, self.max_message_bytes);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(header(name, value));
        }
        self.send(topic, None, record.key, record.value, Some(headers), token)
    }

    /// Waits until every enqueued record is acknowledged or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Records not yet acknowledged by the broker.
    pub fn queued(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

/// A DLQ record cut to fit: key, value and headers, borrowing the input.
#[derive(Debug)]
pub struct DlqRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'static str, String)>,
}

impl<'a> DlqRecord<'a> {
    /// The DLQ record of an input, no larger than `max_bytes` in all.
    pub fn new(
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        rejection: &Rejection,
        source: Source<'_>,
        max_bytes: usize,
    ) -> Self {
        let mut headers: Vec<(&'static str, String)> = vec![
            (HEADER_ERROR, rejection.reason.code().to_string()),
            (
                HEADER_DETAIL,
                cut_str(&rejection.detail, MAX_DETAIL_BYTES).to_string(),
            ),
            (HEADER_SOURCE_TOPIC, source.topic.to_string()),
            (HEADER_SOURCE_PARTITION, source.partition.to_string()),
            (HEADER_SOURCE_OFFSET, source.offset.to_string()),
        ];
        if let Some(row) = source.row {
            headers.push((HEADER_SOURCE_ROW, row.to_string()));
        }
        if let Some(v) = value {
            headers.push((HEADER_ORIGINAL_SIZE, v.len().to_string()));
            headers.push((HEADER_ORIGINAL_SHA256, sha256_hex(v)));
        }
        let mut key = key;
        let framing = |headers: &[(&str, String)]| {
            RECORD_OVERHEAD
                + headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 8)
                    .sum::<usize>()
        };
        if let Some(k) = key {
            // A key that leaves no room for half the budget is cut too.
            if k.len() + framing(&headers) > max_bytes / 2 {
                headers.push((HEADER_ORIGINAL_KEY_SIZE, k.len().to_string()));
                key = Some(&k[..k.len().min(MAX_DLQ_KEY_BYTES)]);
            }
        }
        let budget = max_bytes
            .saturating_sub(framing(&headers))
            .saturating_sub(key.map_or(0, <[u8]>::len));
        let value = value.map(|v| &v[..v.len().min(budget)]);
        DlqRecord {
            key,
            value,
            headers,
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Headers of a prediction.
pub fn prediction_headers(model: &str, version: &str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(header(HEADER_MODEL, model))
        .insert(header(HEADER_MODEL_VERSION, version))
}

/// One prediction (spec: `predictions`).
#[derive(Debug, Clone, Copy)]
pub struct Prediction<'a> {
    pub event_id: &'a str,
    pub entity_id: &'a str,
    pub ts_ms: i64,
    pub model: &'a str,
    pub version: &'a str,
    /// `primary`, `canary` or `shadow`.
    pub variant: &'a str,
    pub score: f32,
    pub latency_us: u64,
}

impl Prediction<'_> {
    /// Writes the JSON value into `out` (cleared first).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        out.clear();
        // Strings go through serde_json for escaping; a non-finite score
        // (a broken model) becomes null rather than invalid JSON. Writes
        // into a Vec cannot fail.
        let _ = out.write_all(b"{\"event_id\":");
        let _ = serde_json::to_writer(&mut *out, self.event_id);
        let _ = out.write_all(b",\"entity_id\":");
        let _ = serde_json::to_writer(&mut *out, self.entity_id);
        let _ = write!(out, ",\"ts\":{},\"model\":", self.ts_ms);
        let _ = serde_json::to_writer(&mut *out, self.model);
        let _ = out.write_all(b",\"model_version\":");
        let _ = serde_json::to_writer(&mut *out, self.version);
        let _ = out.write_all(b",\"variant\":");
        let _ = serde_json::to_writer(&mut *out, self.variant);
        let _ = out.write_all(b",\"score\":");
        let _ = serde_json::to_writer(&mut *out, &self.score);
        let _ = write!(out, ",\"latency_us\":{}}}", self.latency_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RejectReason;

    fn source() -> Source<'static> {
        Source {
            topic: "features",
            partition: 2,
            offset: 41,
            row: None,
        }
    }

    #[test]
    fn a_dlq_record_fits_the_producer_and_names_the_original() {
        // Issue 15 point 1: a 1.5 MB event, rejected as oversize, must reach
        // the DLQ under librdkafka's 1 MB default.
        let value = vec![b'x'; 1_500_000];
        let rejection = Rejection::new(RejectReason::Oversize, "d".repeat(10_000));
        let r = DlqRecord::new(
            Some(b"card-1"),
            Some(&value),
            &rejection,
            source(),
            DEFAULT_MESSAGE_MAX_BYTES,
        );
        let headers: usize = r.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let total = r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len) + headers;
        assert!(
            total + RECORD_OVERHEAD <= DEFAULT_MESSAGE_MAX_BYTES,
            "{total} bytes"
        );
        let v = r.value.unwrap();
        assert!(v.len() > 900_000, "cut no more than needed: {}", v.len());
        assert_eq!(v, &value[..v.len()], "a prefix of the original");
        let get = |name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(HEADER_ORIGINAL_SIZE).as_deref(), Some("1500000"));
        assert_eq!(get(HEADER_ORIGINAL_SHA256), Some(sha256_hex(&value)));
        assert_eq!(get(HEADER_DETAIL).map(|d| d.len()), Some(MAX_DETAIL_BYTES));
        assert_eq!(get(HEADER_ORIGINAL_KEY_SIZE), None);

        // A small record is untouched; a huge key is cut and says so.
        let small = DlqRecord::new(Some(b"k"), Some(b"{}"), &rejection, source(), 1_000_000);
        assert_eq!(small.value, Some(&b"{}"[..]));
        let key = vec![b'k'; 800_000];
        let big_key = DlqRecord::new(Some(&key), Some(&value), &rejection, source(), 1_000_000);
        assert_eq!(big_key.key.map(<[u8]>::len), Some(MAX_DLQ_KEY_BYTES));
        assert!(big_key
            .headers
            .iter()
            .any(|(n, v)| *n == HEADER_ORIGINAL_KEY_SIZE && v == "800000"));
    }

    #[test]
    fn refusals_for_good_are_told_from_outages() {
        use rdkafka::error::RDKafkaErrorCode as C;
        let delivery = |c| KafkaError::MessageProduction(c);
        assert_eq!(
            permanent_reason(&delivery(C::MessageSizeTooLarge)),
            Some("message_too_large")
        );
        assert_eq!(
            permanent_reason(&delivery(C::UnknownTopicOrPartition)),
            Some("unknown_topic")
        );
        assert_eq!(
            permanent_reason(&delivery(C::TopicAuthorizationFailed)),
            Some("not_authorized")
        );
        for transient in [
            C::MessageTimedOut,
            C::AllBrokersDown,
            C::NotLeaderForPartition,
        ] {
            assert_eq!(
                permanent_reason(&delivery(transient)),
                None,
                "{transient:?}"
            );
        }
        assert_eq!(
            event_id_of(Some(br#"{"event_id":"evt-9","score":1}"#)),
            "evt-9"
        );
        assert_eq!(event_id_of(Some(b"not json")), "unknown");
    }

    #[test]
    fn predictions_are_the_spec_json() {
        let mut buf = Vec::new();
        let p = Prediction {
            event_id: "evt-1",
            entity_id: "card-\"42\"",
            ts_ms: 1763792400123,
            model: "fraud",
            version: "3",
            variant: "primary",
            score: 0.913,
            latency_us: 412,
        };
        p.write_json(&mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["event_id"], "evt-1");
        assert_eq!(v["entity_id"], "card-\"42\"");
        assert_eq!(v["ts"], 1763792400123i64);
        assert_eq!(v["model"], "fraud");
        assert_eq!(v["model_version"], "3");
        assert_eq!(v["variant"], "primary");
        assert_eq!(v["score"].as_f64().unwrap() as f32, 0.913f32);
        assert_eq!(v["latency_us"], 412);
        Prediction {
            variant: "shadow",
            ..p
        }
        .write_json(&mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["variant"], "shadow");
        Prediction {
            score: f32::NAN,
            ..p
        }
        .write_json(&mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(v["score"].is_null());
    }
}
