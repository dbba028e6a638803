//! The `labels` follower: feeds ground truth into the [`LabelJoin`].
//!
//! Guarantees:
//! - it reads every partition of the topic, starting at the END as it is when
//!   the follower starts: the join holds only predictions this process made,
//!   so labels already on the topic (for predictions made before it started)
//!   could not join anyway, and replaying them would only inflate `unmatched`;
//! - it never stops the service: a topic that does not exist yet, or metadata
//!   that cannot be read, is logged once as a warning and retried every
//!   [`RETRY_EVERY`] until it appears or `stop` is set;
//! - a record that cannot be read is counted by reason
//!   ([`LabelJoin::count_rejected`]) and logged at debug level with its
//!   partition and offset. There is no DLQ for labels: they feed monitoring,
//!   not outputs, a bad one only means one prediction goes unjudged, and the
//!   `features` DLQ holds inputs that could not be scored, which these are
//!   not;
//! - no offsets are committed (a restart begins at the end again), and it
//!   stops within one poll (100 ms) of `stop` being set.
//!
//! Partitions added to the topic while it runs are read from the next
//! start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::drift::labels::LabelJoin;
use crate::event::{RejectReason, Rejection};
use crate::serve::Reader;
use crate::source::labels::decode_label;

/// How often a missing topic or failed metadata request is retried.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Bound on one metadata request, so `stop` is noticed while the broker is
/// unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one poll waits: also how soon `stop` is noticed.
const POLL: Duration = Duration::from_millis(100);

/// Errors that stop the follower (a missing topic is not one: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{topic}: assigning partitions: {source}")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Follows `topic` into `join`.
pub struct Follower {
    /// A partition reader (no group membership; see `serve::reader`).
    pub consumer: Reader,
    pub topic: String,
    pub join: Arc<LabelJoin>,
    /// Pause between metadata attempts while the topic is missing.
    pub retry_every: Duration,
}

/// Starts a [`Follower`] of `topic` on a thread named `labels`; it runs until
/// `stop` is set.
pub fn spawn(
    consumer: Reader,
    topic: String,
    join: Arc<LabelJoin>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<Result<(), LabelsError>>> {
    let follower = Follower {
        consumer,
        topic,
        join,
        retry_every: RETRY_EVERY,
    };
    std::thread::Builder::new()
        .name("labels".into())
        .spawn(move || follower.run(&stop))
}

impl Follower {
    /// Waits for the topic, assigns its partitions at their end, and feeds
    /// every label to the join until `stop`.
    pub fn run(self, stop: &AtomicBool) -> Result<(), LabelsError> {
        let Some(partitions) = self.wait_for_partitions(stop) else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::End)
                .map_err(|source| LabelsError::Assign {
                    topic: self.topic.clone(),
                    source,
                })?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|source| LabelsError::Assign {
                topic: self.topic.clone(),
                source,
            })?;
        self.join.set_following(true);
        tracing::info!(
            topic = %self.topic,
            partitions = partitions.len(),
            "label follower started at the end of the topic; predictions are held for their labels from now on"
        );
        while !stop.load(Ordering::Relaxed) {
            match self.consumer.poll(POLL) {
                Some(Ok(m)) => self.apply(&m),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "labels consumer error")
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The topic's partitions once it exists; `None` if `stop` came first.
    fn wait_for_partitions(&self, stop: &AtomicBool) -> Option<Vec<i32>> {
        let mut warned = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let reason = match self
                .consumer
                .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
            {
                Ok(md) => {
                    let partitions: Vec<i32> = md
                        .topics()
                        .iter()
                        .filter(|t| t.name() == self.topic && t.error().is_none())
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect();
                    if !partitions.is_empty() {
                        if warned {
                            tracing::info!(topic = %self.topic, "labels topic found");
                        }
                        return Some(partitions);
                    }
                    "no such topic".to_string()
                }
                Err(e) => format!("reading metadata: {e}"),
            };
            // Once at warn: the topic is optional and may be created later;
            // repeating the warning every few seconds would only be noise.
            if warned {
                tracing::debug!(topic = %self.topic, %reason, "labels topic still not available");
            } else {
                tracing::warn!(
                    topic = %self.topic,
                    %reason,
                    retry_s = self.retry_every.as_secs_f64(),
                    "labels topic not available; performance metrics wait for it"
                );
                warned = true;
            }
            let until = Instant::now() + self.retry_every;
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(POLL.min(self.retry_every));
            }
        }
    }

    fn apply(&self, m: &BorrowedMessage<'_>) {
        let decoded = match m.payload() {
            Some(bytes) => decode_label(bytes),
            None => Err(Rejection::new(
                RejectReason::MissingField,
                "a label record needs a value (got a tombstone)",
            )),
        };
        match decoded {
            Ok(label) => {
                self.join.label(&label.event_id, label.label, label.ts_ms);
            }
            Err(rejection) => {
                self.join.count_rejected(rejection.reason);
                tracing::debug!(
                    topic = %self.topic,
                    partition = m.partition(),
                    offset = m.offset(),
                    reason = rejection.reason.code(),
                    detail = %rejection.detail,
                    "label record rejected"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::labels::LabelConfig;
    use crate::serve::ReaderContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    fn reader(brokers: &str) -> Reader {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "labels-test")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(ReaderContext)
            .unwrap()
    }

    fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &[u8]) {
        producer
            .send(BaseRecord::<(), [u8]>::to(topic).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(5)).unwrap();
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a topic created after it started, then joins labels and
    /// counts bad records by reason.
    #[test]
    fn waits_for_the_topic_then_joins_and_counts_bad_records() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let join = Arc::new(LabelJoin::new(&LabelConfig::default()).unwrap());
        join.record([("e1", 0.8, 0)], "1");
        let stop = Arc::new(AtomicBool::new(false));
        let follower = Follower {
            consumer: reader(&brokers),
            topic: "labels".into(),
            join: join.clone(),
            retry_every: Duration::from_millis(200),
        };
        let handle = {
            let stop = stop.clone();
            std::thread::spawn(move || follower.run(&stop))
        };
        std::thread::sleep(Duration::from_millis(500));
        assert!(!join.following(), "no topic yet: predictions are not held");
        cluster.create_topic("labels", 2, 1).unwrap();
        wait_for("the follower to read the topic", || join.following());
        // Records sent before the follower has assigned are skipped (it
        // starts at the end), so send until each kind has been read.
        wait_for("a label and two bad records", || {
            send(&producer, "labels", br#"{"event_id":"e1","label":true}"#);
            send(&producer, "labels", br#"{"event_id":"e1","label":7}"#);
            send(&producer, "labels", b"not json");
            join.counters().matched == 1 && join.rejected().len() == 2
        });
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        let reasons: Vec<RejectReason> = join.rejected().iter().map(|r| r.0).collect();
        assert_eq!(
            reasons,
            vec![RejectReason::MalformedJson, RejectReason::WrongType]
        );
        assert_eq!(join.counters().unmatched, 0);
    }

    /// Labels already on the topic when the follower starts are skipped.
    #[test]
    fn labels_before_start_are_not_read() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic("labels", 1, 1).unwrap();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let join = Arc::new(LabelJoin::new(&LabelConfig::default()).unwrap());
        join.record([("before", 0.9, 0), ("after", 0.1, 0)], "1");
        for _ in 0..50 {
            send(&producer, "labels", br#"{"event_id":"before","label":1}"#);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn(
            reader(&brokers),
            "labels".into(),
            join.clone(),
            stop.clone(),
        )
        .unwrap();
        wait_for("the label of `after`", || {
            send(&producer, "labels", br#"{"event_id":"after","label":0}"#);
            join.counters().matched >= 1
        });
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        let c = join.counters();
        // Only `after` joined: none of the 50 earlier labels of `before` was read.
        assert_eq!((c.matched, c.pending), (1, 1), "{c:?}");
        assert_eq!(c.unmatched, 0, "{c:?}");
    }

    #[test]
    fn stops_while_waiting_for_a_missing_topic() {
        let cluster = MockCluster::new(1).unwrap();
        let join = Arc::new(LabelJoin::new(&LabelConfig::default()).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn(
            reader(&cluster.bootstrap_servers()),
            "nowhere".into(),
            join.clone(),
            stop.clone(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!join.following());
        let asked = Instant::now();
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "{:?}",
            asked.elapsed()
        );
    }
}
