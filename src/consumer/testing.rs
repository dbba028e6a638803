//! Helpers of the unit tests that run against librdkafka's mock cluster.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::context::{Reader, ReaderContext};

/// A partition reader of `brokers`, set up as the service's readers are.
pub fn reader(brokers: &str) -> Reader {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "unit-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .create_with_context(ReaderContext)
        .expect("a reader of the mock cluster")
}

/// A producer to `brokers`.
pub fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a producer to the mock cluster")
}

/// Sends `value` to `topic` (to `partition`, if given) and waits for it.
pub fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: Option<i32>,
    value: &[u8],
) {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(value);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer
        .send(record)
        .map_err(|(e, _)| e)
        .expect("sending to the mock cluster");
    producer
        .flush(Duration::from_secs(5))
        .expect("flushing to the mock cluster");
}

/// Polls `done` every 20 ms; panics naming `what` after 20 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
