//! The `feature-updates` follower: keeps the online store current.
//!
//! Guarantees: every instance reads every partition of the topic from the
//! beginning (it is compacted, so this replays the newest record per entity
//! after the snapshot) and reports itself caught up once it has reached the
//! end offsets it saw at start; scoring waits for that. A value upserts the
//! entity's columns unless the store already holds a newer row (an update
//! older than the snapshot does not roll it back); a tombstone deletes the
//! entity. A record that cannot be applied goes to the DLQ with its reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::event::{now_ms, RejectReason, Rejection};
use crate::features::store::{FeatureStore, Lookup, Row, StoreError};
use crate::pipeline::InputLimits;
use crate::serve::Reader;
use crate::sink::offsets::Token;
use crate::sink::{Sink, Source};
use crate::source::decode::decode_update_with;
use crate::telemetry::metrics;

/// Errors starting the follower.
#[derive(Debug, thiserror::Error)]
pub enum UpdatesError {
    #[error("{topic}: reading metadata: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{topic}: no such topic")]
    NoTopic { topic: String },
    #[error("{topic}: assigning partitions: {source}")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Follows `topic` into `store`.
pub struct Follower {
    pub consumer: Reader,
    pub store: Arc<FeatureStore>,
    pub sink: Arc<Sink>,
    pub topic: String,
    pub dlq: String,
    /// Size and id rules of `[pipeline]`, and its future-skew bound: an
    /// update dated years ahead would make every later update of the
    /// entity look stale. The event-age bound does not apply: a compacted
    /// topic holds old records by design.
    pub limits: InputLimits,
}

impl Follower {
    /// Runs until `stop`; sets `caught_up` once the start-time end offsets
    /// are reached.
    pub fn run(
        self,
        caught_up: &AtomicBool,
        stop: &AtomicBool,
        timeout: Duration,
    ) -> Result<(), UpdatesError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|source| UpdatesError::Metadata {
                topic: self.topic.clone(),
                source,
            })?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(UpdatesError::NoTopic {
                topic: self.topic.clone(),
            });
        }
        // Caught up = every non-empty partition read to its end (the
        // end-of-partition event; see `changelog::read_to_end` on why not
        // the end offset).
        let mut behind: Vec<i32> = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, timeout)
                .map_err(|source| UpdatesError::Metadata {
                    topic: self.topic.clone(),
                    source,
                })?;
            if high > low {
                behind.push(p);
            }
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)
                .map_err(|source| UpdatesError::Assign {
                    topic: self.topic.clone(),
                    source,
                })?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|source| UpdatesError::Assign {
                topic: self.topic.clone(),
                source,
            })?;
        let started = Instant::now();
        if behind.is_empty() {
            caught_up.store(true, Ordering::Release);
        }
        let mut row = self.store.new_row();
        while !stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => self.apply(&m, &mut row),
                Some(Err(KafkaError::PartitionEOF(p))) => behind.retain(|&bp| bp != p),
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "feature-updates consumer error")
                }
                None => {}
            }
            if !behind.is_empty() || caught_up.load(Ordering::Relaxed) {
                continue;
            }
            caught_up.store(true, Ordering::Release);
            tracing::info!(
                topic = %self.topic,
                entities = self.store.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "feature updates caught up"
            );
        }
        Ok(())
    }

    fn apply(&self, m: &BorrowedMessage<'_>, row: &mut Row) {
        let now = now_ms();
        let result = match m.payload() {
            None => match m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                Some(entity) => {
                    self.store.delete(entity);
                    metrics::feature_update("delete");
                    Ok(())
                }
                None => Err(Rejection::new(
                    RejectReason::MissingField,
                    "tombstone without a UTF-8 entity id key",
                )),
            },
            Some(bytes) => decode_update_with(bytes, m.key(), self.limits.decode()).and_then(|u| {
                let ts = u.ts_ms.or(m.timestamp().to_millis()).unwrap_or(now);
                let future_only = InputLimits {
                    max_event_age_ms: None,
                    ..self.limits
                };
                future_only.check_time(ts, now, u.ts_ms.is_some())?;
                if let Lookup::Hit { updated_at_ms } = self.store.get(&u.entity_id, now, row) {
                    if updated_at_ms > ts {
                        metrics::feature_update("stale");
                        return Ok(());
                    }
                }
                self.store
                    .upsert(&u.entity_id, &u.features, ts)
                    .map(|_| metrics::feature_update("upsert"))
                    .map_err(|e| {
                        let reason = match e {
                            StoreError::CategoryTooLong { .. }
                            | StoreError::DictionaryFull { .. } => RejectReason::Oversize,
                            _ => RejectReason::WrongType,
                        };
                        Rejection::new(reason, e.to_string())
                    })
            }),
        };
        if let Err(rejection) = result {
            metrics::feature_update("rejected");
            tracing::debug!(reason = rejection.reason.code(), detail = %rejection.detail, "feature update rejected");
            let sent = self.sink.send_dlq(
                &self.dlq,
                m.key(),
                m.payload(),
                &rejection,
                Source {
                    topic: &self.topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    row: None,
                },
                Token::Detached,
            );
            if let Err(e) = sent {
                tracing::error!(error = %e, "could not send a rejected feature update to the DLQ");
            }
        }
    }
}
