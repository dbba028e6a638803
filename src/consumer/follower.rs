//! Following whole topics: every partition, outside any consumer group.
//!
//! Every instance of the service reads some topics in full rather than a
//! share of them: `feature-updates` (the store's changes, from the
//! beginning), `labels` (from the end) and, on each assignment, its
//! changelog partitions (from the beginning to their end, [`read_to_end`]).
//! [`run`] is the one poll loop for the followed topics:
//!
//! 1. wait for the topic's metadata ([`MissingTopic`]: fail at once, or
//!    retry until the topic appears);
//! 2. assign every partition at [`Start::Beginning`] or [`Start::End`];
//! 3. poll until `stop`, handing each record to [`Records::record`];
//! 4. call [`Records::caught_up`] once every partition has been read to
//!    where it ended when following began (at once from the end, or when
//!    the topic was empty), and keep following.
//!
//! That fits a compacted topic read as a table (read from the beginning,
//! wait for caught-up, keep applying changes) as well as a stream read from
//! now on.
//!
//! Guarantees: the end of a partition is librdkafka's end-of-partition
//! event, not the end offset from `fetch_watermarks`: Tansu answers that
//! with the last batch's base offset plus one, which would stop a read
//! short of the last batch's other records (the watermarks only tell which
//! partitions are empty). No offsets are committed; `stop` is noticed
//! within one poll ([`POLL`]). A record error is logged and reading goes on;
//! only metadata, watermark and assignment failures stop a follower.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::context::Reader;

/// How long one poll waits: also how soon `stop` is noticed.
pub const POLL: Duration = Duration::from_millis(100);

/// Errors that stop a follower or a read.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{topic}: reading metadata: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{topic}: no such topic")]
    NoTopic { topic: String },
    #[error("{topic}/{partition}: reading the end offset: {source}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("{topic}: assigning partitions: {source}")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{topic}/{partition}: end not reached after {waited:?}")]
    Timeout {
        topic: String,
        partition: i32,
        waited: Duration,
    },
    #[error("{topic}/{partition}: {source}")]
    Fetch {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
}

/// Where a follower starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record kept: a compacted topic read as a table.
    Beginning,
    /// The next record produced: a stream whose past is of no use.
    End,
}

/// What a follower does while its topic does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingTopic {
    /// Fail with [`FollowError::NoTopic`]: the service cannot run without it.
    Fail,
    /// Warn once, then retry every `every` until the topic appears or
    /// `stop` is set: an optional topic that may be created later.
    Retry { every: Duration },
}

/// A topic to follow.
#[derive(Debug, Clone)]
pub struct Follow {
    pub topic: String,
    pub start: Start,
    pub missing: MissingTopic,
    /// Bound on one metadata or watermark request.
    pub timeout: Duration,
    /// Names the follower in logs, and its thread.
    pub name: &'static str,
}

/// The end of catching up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// Partitions followed.
    pub partitions: usize,
    /// Since the partitions were assigned.
    pub elapsed: Duration,
}

/// What a follower feeds.
pub trait Records {
    /// One record, in partition order.
    fn record(&mut self, message: &BorrowedMessage<'_>);

    /// Every partition has been read up to where it ended when following
    /// began; called once.
    fn caught_up(&mut self, caught_up: CaughtUp);
}

/// The partitions of `topic` per the broker's metadata; `None` when the
/// topic does not exist (or has no partitions).
pub fn topic_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>, KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    Ok((!partitions.is_empty()).then_some(partitions))
}

/// Follows `follow.topic` into `records` until `stop` (see the module docs).
pub fn run(
    consumer: &Reader,
    follow: &Follow,
    stop: &AtomicBool,
    records: &mut impl Records,
) -> Result<(), FollowError> {
    let Some(partitions) = wait_for_partitions(consumer, follow, stop)? else {
        return Ok(());
    };
    let topic = follow.topic.as_str();
    let (mut ends, offset) = match follow.start {
        Start::Beginning => (
            Ends::start(consumer, topic, &partitions, follow.timeout, EofRule::Any)?,
            Offset::Beginning,
        ),
        Start::End => (Ends::default(), Offset::End),
    };
    assign(consumer, topic, &partitions, offset)?;
    let started = Instant::now();
    let mut caught_up = false;
    while !stop.load(Ordering::Relaxed) {
        if !caught_up && ends.is_empty() {
            caught_up = true;
            records.caught_up(CaughtUp {
                partitions: partitions.len(),
                elapsed: started.elapsed(),
            });
        }
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                ends.record(m.partition());
                records.record(&m);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => ends.eof(p),
            Some(Err(e)) => {
                tracing::warn!(topic, follower = follow.name, error = %e, "follower consumer error")
            }
            None => {}
        }
    }
    Ok(())
}

/// Starts [`run`] on a thread named after the follower.
pub fn spawn<R: Records + Send + 'static>(
    consumer: Reader,
    follow: Follow,
    stop: Arc<AtomicBool>,
    mut records: R,
) -> std::io::Result<JoinHandle<Result<(), FollowError>>> {
    std::thread::Builder::new()
        .name(follow.name.into())
        .spawn(move || run(&consumer, &follow, &stop, &mut records))
}

/// The topic's partitions once it exists; `None` if `stop` came first.
fn wait_for_partitions(
    consumer: &Reader,
    follow: &Follow,
    stop: &AtomicBool,
) -> Result<Option<Vec<i32>>, FollowError> {
    let topic = follow.topic.as_str();
    let every = match follow.missing {
        MissingTopic::Fail => {
            let partitions =
                topic_partitions(consumer, topic, follow.timeout).map_err(|source| {
                    FollowError::Metadata {
                        topic: topic.into(),
                        source,
                    }
                })?;
            return match partitions {
                Some(p) => Ok(Some(p)),
                None => Err(FollowError::NoTopic {
                    topic: topic.into(),
                }),
            };
        }
        MissingTopic::Retry { every } => every,
    };
    let mut warned = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let reason = match topic_partitions(consumer, topic, follow.timeout) {
            Ok(Some(partitions)) => {
                if warned {
                    tracing::info!(topic, follower = follow.name, "topic found");
                }
                return Ok(Some(partitions));
            }
            Ok(None) => "no such topic".to_string(),
            Err(e) => format!("reading metadata: {e}"),
        };
        // Once at warn: the topic is optional and may be created later;
        // repeating the warning every few seconds would only be noise.
        if warned {
            tracing::debug!(topic, follower = follow.name, %reason, "topic still not available");
        } else {
            tracing::warn!(
                topic,
                follower = follow.name,
                %reason,
                retry_s = every.as_secs_f64(),
                "topic not available; what it feeds waits for it"
            );
            warned = true;
        }
        let until = Instant::now() + every;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            std::thread::sleep(POLL.min(every));
        }
    }
}

/// Assigns `partitions` of `topic`, each at `offset`.
fn assign<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    offset: Offset,
) -> Result<(), FollowError> {
    let assign_err = |source| FollowError::Assign {
        topic: topic.into(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, offset)
            .map_err(assign_err)?;
    }
    consumer.assign(&tpl).map_err(assign_err)
}

/// When an end-of-partition event closes a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum EofRule {
    /// Any: the reader is fresh, so every event is about this read.
    #[default]
    Any,
    /// Only after a record of the partition was read: a reader assigned
    /// again and again (the changelog restorer) may get an event left over
    /// from an earlier read first.
    AfterARecord,
}

/// The partitions still to be read to their end.
#[derive(Debug, Default)]
struct Ends {
    /// (partition, read a record of it yet)
    open: Vec<(i32, bool)>,
    rule: EofRule,
}

impl Ends {
    /// The partitions of `partitions` that hold records (per the
    /// watermarks: empty ones have no end to reach).
    fn start<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partitions: &[i32],
        timeout: Duration,
        rule: EofRule,
    ) -> Result<Self, FollowError> {
        let mut open = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|source| FollowError::Watermarks {
                    topic: topic.into(),
                    partition,
                    source,
                })?;
            if high > low {
                open.push((partition, false));
            }
        }
        Ok(Ends { open, rule })
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The partitions still open.
    fn partitions(&self) -> Vec<i32> {
        self.open.iter().map(|&(p, _)| p).collect()
    }

    /// One still open, to name in errors.
    fn first(&self) -> i32 {
        self.open.first().map_or(-1, |&(p, _)| p)
    }

    fn record(&mut self, partition: i32) {
        if let Some(o) = self.open.iter_mut().find(|o| o.0 == partition) {
            o.1 = true;
        }
    }

    fn eof(&mut self, partition: i32) {
        let rule = self.rule;
        self.open
            .retain(|&(p, read)| !(p == partition && (read || rule == EofRule::Any)));
    }
}

/// Reads `partitions` of `topic` from their beginning to their end, all at
/// once, handing every message to `f`. `consumer` must be configured with
/// `enable.partition.eof` and not be subscribed to anything; it is left
/// unassigned. Returns how many messages were read.
pub fn read_to_end<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<usize, FollowError> {
    let mut ends = Ends::start(consumer, topic, partitions, timeout, EofRule::AfterARecord)?;
    if ends.is_empty() {
        return Ok(0);
    }
    assign(consumer, topic, &ends.partitions(), Offset::Beginning)?;
    let started = Instant::now();
    let mut read = 0;
    let result = loop {
        if ends.is_empty() {
            break Ok(read);
        }
        if started.elapsed() > timeout {
            break Err(FollowError::Timeout {
                topic: topic.into(),
                partition: ends.first(),
                waited: timeout,
            });
        }
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                read += 1;
                f(&m);
                ends.record(m.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => ends.eof(p),
            Some(Err(source)) => {
                break Err(FollowError::Fetch {
                    topic: topic.into(),
                    partition: ends.first(),
                    source,
                })
            }
            None => {}
        }
    };
    let _ = consumer.unassign();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::testing::{producer, reader, send, wait_for};
    use rdkafka::mocking::MockCluster;

    /// Values read and when the follower said it had caught up (as the
    /// number of values read by then).
    #[derive(Default)]
    struct Seen {
        values: Vec<String>,
        caught_up_after: Option<usize>,
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<parking_lot::Mutex<Seen>>);

    impl Records for Shared {
        fn record(&mut self, m: &BorrowedMessage<'_>) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            self.0.lock().values.push(value);
        }

        fn caught_up(&mut self, caught_up: CaughtUp) {
            assert_eq!(caught_up.partitions, 3);
            let mut seen = self.0.lock();
            assert!(seen.caught_up_after.is_none(), "caught up twice");
            seen.caught_up_after = Some(seen.values.len());
        }
    }

    /// A compacted topic read as a table: the records present at the start
    /// are read before "caught up", later ones after it, and the follower
    /// keeps following until stopped.
    #[test]
    fn from_the_beginning_it_catches_up_then_keeps_following() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic("table", 3, 1).unwrap();
        let producer = producer(&brokers);
        for (p, v) in [(0, "a"), (0, "b"), (2, "c")] {
            send(&producer, "table", Some(p), v.as_bytes());
        }
        let seen = Shared::default();
        let stop = Arc::new(AtomicBool::new(false));
        let follow = Follow {
            topic: "table".into(),
            start: Start::Beginning,
            missing: MissingTopic::Fail,
            timeout: Duration::from_secs(5),
            name: "test-follower",
        };
        let handle = spawn(reader(&brokers), follow, stop.clone(), seen.clone()).unwrap();
        wait_for("catching up", || seen.0.lock().caught_up_after.is_some());
        assert_eq!(seen.0.lock().caught_up_after, Some(3));
        send(&producer, "table", Some(1), b"d");
        wait_for("the record after catching up", || {
            seen.0.lock().values.len() == 4
        });
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        let mut values = seen.0.lock().values.clone();
        values.sort();
        assert_eq!(values, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_missing_topic_fails_or_waits_as_asked() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let stop = AtomicBool::new(false);
        let mut follow = Follow {
            topic: "nowhere".into(),
            start: Start::End,
            missing: MissingTopic::Fail,
            timeout: Duration::from_secs(5),
            name: "test-follower",
        };
        let err = run(&reader(&brokers), &follow, &stop, &mut Shared::default()).unwrap_err();
        assert!(matches!(err, FollowError::NoTopic { .. }), "{err}");
        // Waiting, it returns once stopped.
        follow.missing = MissingTopic::Retry {
            every: Duration::from_millis(50),
        };
        stop.store(true, Ordering::Relaxed);
        run(&reader(&brokers), &follow, &stop, &mut Shared::default()).unwrap();
    }

    #[test]
    fn read_to_end_reads_every_record_of_the_partitions_asked_for() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic("log", 3, 1).unwrap();
        let producer = producer(&brokers);
        for (p, v) in [(0, "a"), (1, "b"), (1, "c"), (2, "not asked for")] {
            send(&producer, "log", Some(p), v.as_bytes());
        }
        let consumer = reader(&brokers);
        // Twice with one consumer, as the restorer reads on every assignment.
        for _ in 0..2 {
            let mut values = Vec::new();
            let read = read_to_end(&consumer, "log", &[0, 1], Duration::from_secs(10), |m| {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            })
            .unwrap();
            values.sort();
            assert_eq!(
                (read, values),
                (3, vec!["a".into(), "b".into(), "c".into()])
            );
        }
        cluster.create_topic("empty", 2, 1).unwrap();
        let read = read_to_end(&consumer, "empty", &[0, 1], Duration::from_secs(10), |_| {
            panic!("nothing to read")
        })
        .unwrap();
        assert_eq!(read, 0);
    }
}
