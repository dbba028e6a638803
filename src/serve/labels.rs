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

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use crate::consumer::context::Reader;
use crate::consumer::follower::{
    self, CaughtUp, Follow, FollowError, MissingTopic, Records, Start,
};
use crate::drift::labels::LabelJoin;
use crate::event::{RejectReason, Rejection};
use crate::source::labels::decode_label;

/// How often a missing topic or failed metadata request is retried.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Bound on one metadata request, so `stop` is noticed while the broker is
/// unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How `topic` is followed: from the end, waiting for it (retrying every
/// `retry_every`) while it does not exist.
pub fn follow(topic: &str, retry_every: Duration) -> Follow {
    Follow {
        topic: topic.to_string(),
        start: Start::End,
        missing: MissingTopic::Retry { every: retry_every },
        timeout: METADATA_TIMEOUT,
        name: "labels",
    }
}

/// Feeds labels into a join.
pub struct Labels {
    join: Arc<LabelJoin>,
    topic: String,
}

impl Labels {
    /// Labels of `topic` into `join`.
    pub fn new(join: Arc<LabelJoin>, topic: &str) -> Self {
        Labels {
            join,
            topic: topic.to_string(),
        }
    }
}

impl Records for Labels {
    fn record(&mut self, m: &BorrowedMessage<'_>) {
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

    /// Following from the end is caught up at once: from now on, predictions
    /// are worth holding for their labels.
    fn caught_up(&mut self, caught_up: CaughtUp) {
        self.join.set_following(true);
        tracing::info!(
            topic = %self.topic,
            partitions = caught_up.partitions,
            "label follower started at the end of the topic; predictions are held for their labels from now on"
        );
    }
}

/// Starts following `topic` into `join` on a thread named `labels`; it runs
/// until `stop` is set.
pub fn spawn(
    consumer: Reader,
    topic: String,
    join: Arc<LabelJoin>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<Result<(), FollowError>>> {
    let labels = Labels::new(join, &topic);
    follower::spawn(consumer, follow(&topic, RETRY_EVERY), stop, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::testing::{producer, reader, wait_for};
    use crate::drift::labels::LabelConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &[u8]) {
        crate::consumer::testing::send(producer, topic, None, value);
    }

    /// Waits for a topic created after it started, then joins labels and
    /// counts bad records by reason.
    #[test]
    fn waits_for_the_topic_then_joins_and_counts_bad_records() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let producer = producer(&brokers);
        let join = Arc::new(LabelJoin::new(&LabelConfig::default()).unwrap());
        join.record([("e1", 0.8, 0)], "1");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = follower::spawn(
            reader(&brokers),
            follow("labels", Duration::from_millis(200)),
            stop.clone(),
            Labels::new(join.clone(), "labels"),
        )
        .unwrap();
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
        let producer = producer(&brokers);
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
