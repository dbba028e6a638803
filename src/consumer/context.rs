//! Consumer contexts: the scoring loop's group membership (rebalances go to
//! a [`Rebalancing`] handler, statistics become lag metrics) and the
//! partition readers'.
//!
//! Guarantees: rebalance callbacks run inside `poll` on the polling thread,
//! so a handler can drain, flush and commit synchronously before revoked
//! partitions go; a failed assignment is kept for the loop to stop on
//! ([`GroupContext::take_fatal`]) rather than scoring without its state.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::config::reader_config;
use crate::config::Config;
use crate::telemetry::metrics;

/// How long an assignment waits for the group's committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// What the group consumer hands its rebalances to.
pub trait Rebalancing: Send + 'static {
    /// Why taking partitions over failed; the loop stops on it.
    type Error: std::fmt::Display + Send;

    /// `partitions` are about to go: finish their work and commit it.
    fn revoke<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partitions: &[i32]);

    /// `partitions` arrived; `committed` holds the group's committed offset
    /// of each that has one.
    fn assign(
        &mut self,
        partitions: &[i32],
        committed: &HashMap<i32, i64>,
    ) -> Result<(), Self::Error>;
}

/// Context of the scoring loop's consumer: rebalances of `topic` go to the
/// handler, which lives here behind a mutex so that the callbacks (run
/// inside `poll`) and the loop share it.
pub struct GroupContext<H: Rebalancing> {
    handler: Mutex<H>,
    topic: String,
    fatal: Mutex<Option<H::Error>>,
}

impl<H: Rebalancing> GroupContext<H> {
    /// A context for the consumer of `topic`.
    pub fn new(handler: H, topic: impl Into<String>) -> Self {
        GroupContext {
            handler: Mutex::new(handler),
            topic: topic.into(),
            fatal: Mutex::new(None),
        }
    }

    /// The handler, locked.
    pub fn handler(&self) -> MutexGuard<'_, H> {
        self.handler.lock()
    }

    /// The error an assignment failed with, if one did since the last call.
    pub fn take_fatal(&self) -> Option<H::Error> {
        self.fatal.lock().take()
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// The group's committed offsets of newly assigned partitions (those
    /// without one are left out), so the handler can tell whether the first
    /// records it gets start where the previous owner stopped. Best effort:
    /// on failure nothing is checked, and scoring goes on.
    fn committed(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> HashMap<i32, i64> {
        match consumer.committed_offsets(tpl.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "committed offsets of the assigned partitions unknown; skipped input offsets at the start go unnoticed");
                Default::default()
            }
        }
    }
}

impl<H: Rebalancing> ClientContext for GroupContext<H> {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (p, part) in &topic.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    metrics::consumer_lag(&self.topic, *p, part.consumer_lag);
                }
            }
        }
    }
}

impl<H: Rebalancing> ConsumerContext for GroupContext<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = self.partitions(tpl);
            self.handler.lock().revoke(consumer, &partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions(tpl);
                let committed = self.committed(consumer, tpl);
                if let Err(e) = self.handler.lock().assign(&partitions, &committed) {
                    // Scoring without the restored state would be wrong:
                    // stop, and let the group hand the partitions on.
                    tracing::error!(error = %e, "restoring aggregate state failed");
                    *self.fatal.lock() = Some(e);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Context of the partition readers (changelog restore, followers): they
/// ask for end-of-partition events, which are not errors to log.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A partition reader: assigned partitions only, no group membership.
pub type Reader = BaseConsumer<ReaderContext>;

/// A new partition reader.
pub fn reader(config: &Config) -> Result<Reader, KafkaError> {
    reader_config(config).create_with_context(ReaderContext)
}
