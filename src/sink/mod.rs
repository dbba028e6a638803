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

pub mod offsets;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::event::Rejection;
use offsets::{Token, Tracker};

/// DLQ header names (spec: `features-dlq`).
pub const HEADER_ERROR: &str = "driftline-error";
pub const HEADER_DETAIL: &str = "driftline-detail";
pub const HEADER_SOURCE_TOPIC: &str = "driftline-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "driftline-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "driftline-source-offset";
/// Row of an Arrow batch message the DLQ record stands for.
pub const HEADER_SOURCE_ROW: &str = "driftline-source-row";
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

/// Producer context: routes delivery reports to the offset tracker.
pub struct SinkContext {
    tracker: Arc<Tracker>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Self::DeliveryOpaque) {
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
                self.tracker.ack(*token)
            }
            Err((e, message)) => {
                tracing::error!(
                    error = %e,
                    topic = rdkafka::Message::topic(message),
                    ?token,
                    "delivery failed for good; its input offset will not be committed"
                );
                self.tracker.fail(*token, e.to_string());
            }
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
}

impl Sink {
    /// Creates the producer. `config` already holds the bootstrap servers and
    /// pass-through properties; idempotence (ordered, duplicate-free retries,
    /// so per-entity order survives broker hiccups) is on unless configured off.
    pub fn new(mut config: ClientConfig, tracker: Arc<Tracker>) -> Result<Self, SinkError> {
        for (key, value) in [("enable.idempotence", "true"), ("linger.ms", "5")] {
            if config.get(key).is_none() {
                config.set(key, value);
            }
        }
        let producer = config
            .create_with_context(SinkContext {
                tracker: tracker.clone(),
            })
            .map_err(SinkError::Create)?;
        Ok(Sink { producer, tracker })
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
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(token));
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
        send_waiting(&self.producer, record, None)
            .map(|_| ())
            .map_err(|source| SinkError::Send {
                topic: topic.to_string(),
                source,
            })
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
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(6)
            .insert(header(HEADER_ERROR, rejection.reason.code()))
            .insert(header(HEADER_DETAIL, &rejection.detail))
            .insert(header(HEADER_SOURCE_TOPIC, source.topic))
            .insert(header(HEADER_SOURCE_PARTITION, &partition))
            .insert(header(HEADER_SOURCE_OFFSET, &offset));
        if let Some(row) = source.row {
            headers = headers.insert(header(HEADER_SOURCE_ROW, &row.to_string()));
        }
        self.send(topic, None, key, value, Some(headers), token)
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
