//! The `feature-updates` follower: keeps the online store current.
//!
//! Guarantees: every instance reads every partition of the topic from the
//! beginning (it is compacted, so this replays the newest record per entity
//! after the snapshot) and reports itself caught up once it has read every
//! partition to where it ended at start ([`crate::consumer::follower`]);
//! scoring waits for that. A value upserts the entity's columns unless the
//! store already holds a newer row (an update older than the snapshot does
//! not roll it back); a tombstone deletes the entity. A record that cannot
//! be applied goes to the DLQ with its reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use crate::consumer::follower::{CaughtUp, Follow, MissingTopic, Records, Start};
use crate::event::{now_ms, RejectReason, Rejection};
use crate::features::store::{FeatureStore, Lookup, Row};
use crate::sink::offsets::Token;
use crate::sink::{Sink, Source};
use crate::source::decode::decode_update;
use crate::status::Shared;
use crate::telemetry::metrics;

/// How `topic` is followed: from the beginning, and a missing topic is an
/// error (the store would silently miss every change); `timeout` bounds
/// each metadata request.
pub fn follow(topic: &str, timeout: Duration) -> Follow {
    Follow {
        topic: topic.to_string(),
        start: Start::Beginning,
        missing: MissingTopic::Fail,
        timeout,
        name: "feature-updates",
    }
}

/// Applies the records of `topic` to `store`.
pub struct Updates {
    store: Arc<FeatureStore>,
    sink: Arc<Sink>,
    topic: String,
    dlq: String,
    max_message_bytes: usize,
    /// `store_ready` is set here once caught up.
    shared: Arc<Shared>,
    /// Reused for every lookup.
    row: Row,
}

impl Updates {
    /// Applies to `store`; rejected records go to `dlq` through `sink`.
    pub fn new(
        store: Arc<FeatureStore>,
        sink: Arc<Sink>,
        topic: String,
        dlq: String,
        max_message_bytes: usize,
        shared: Arc<Shared>,
    ) -> Self {
        let row = store.new_row();
        Updates {
            store,
            sink,
            topic,
            dlq,
            max_message_bytes,
            shared,
            row,
        }
    }
}

impl Records for Updates {
    fn record(&mut self, m: &BorrowedMessage<'_>) {
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
            Some(bytes) => decode_update(bytes, m.key(), self.max_message_bytes).and_then(|u| {
                let ts = u.ts_ms.or(m.timestamp().to_millis()).unwrap_or(now);
                if let Lookup::Hit { updated_at_ms } =
                    self.store.get(&u.entity_id, now, &mut self.row)
                {
                    if updated_at_ms > ts {
                        metrics::feature_update("stale");
                        return Ok(());
                    }
                }
                self.store
                    .upsert(&u.entity_id, &u.features, ts)
                    .map(|_| metrics::feature_update("upsert"))
                    .map_err(|e| Rejection::new(RejectReason::WrongType, e.to_string()))
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

    fn caught_up(&mut self, caught_up: CaughtUp) {
        self.shared.store_ready.store(true, Ordering::Release);
        tracing::info!(
            topic = %self.topic,
            entities = self.store.len(),
            elapsed_ms = caught_up.elapsed.as_millis() as u64,
            "feature updates caught up"
        );
    }
}
