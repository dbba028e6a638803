//! The compacted changelog of streaming-aggregate state, and reading a
//! topic partition to its end.
//!
//! Guarantees: a changelog partition mirrors the input partition of the same
//! number. Each record is keyed by entity id and holds the entity's state
//! together with the input offset of the newest event folded into it, so a
//! restored instance can tell replayed events (already in the state) from
//! new ones. A null value (tombstone) means the entity has no state. A
//! record that cannot be read is skipped and counted, never fatal.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::features::aggregates::EntityState;

/// Errors reading a partition to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{topic}/{partition}: reading the end offset: {source}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("{topic}/{partition}: assigning: {source}")]
    Assign {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("{topic}/{partition}: still short of offset {end} after {waited:?} (at {at})")]
    Timeout {
        topic: String,
        partition: i32,
        end: i64,
        at: i64,
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

/// One changelog value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Input offset of the newest event folded into `state`.
    pub offset: i64,
    pub state: EntityState,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Reads `topic/partition` from its beginning up to its end as of the call,
/// handing every message to `f`. `consumer` must not be subscribed to
/// anything; it is left unassigned. Returns how many messages were read.
pub fn read_to_end<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<usize, ReadError> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|source| ReadError::Watermarks {
            topic: topic.into(),
            partition,
            source,
        })?;
    if high <= low {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|source| ReadError::Assign {
            topic: topic.into(),
            partition,
            source,
        })?;
    consumer.assign(&tpl).map_err(|source| ReadError::Assign {
        topic: topic.into(),
        partition,
        source,
    })?;
    let started = Instant::now();
    let mut read = 0;
    let mut at = low;
    let result = loop {
        if at >= high {
            break Ok(read);
        }
        if started.elapsed() > timeout {
            break Err(ReadError::Timeout {
                topic: topic.into(),
                partition,
                end: high,
                at,
                waited: timeout,
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at = rdkafka::Message::offset(&m) + 1;
                read += 1;
                f(&m);
            }
            // Compaction leaves gaps: the end may have no message of its own.
            Some(Err(KafkaError::PartitionEOF(_))) => break Ok(read),
            Some(Err(source)) => {
                break Err(ReadError::Fetch {
                    topic: topic.into(),
                    partition,
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
    use crate::features::aggregates::{BucketState, RingState};

    #[test]
    fn records_round_trip() {
        let r = Record {
            offset: 41,
            state: EntityState {
                last_ts_ms: 1_763_792_400_123,
                rings: vec![RingState {
                    field: "amount".into(),
                    window_ms: 3_600_000,
                    buckets_per_window: 12,
                    newest_bucket: Some(5),
                    buckets: vec![BucketState {
                        bucket: 5,
                        count: 2,
                        sum: 129.5,
                        min: None,
                        max: Some(100.0),
                    }],
                }],
            },
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(b"{\"offset\":1}").is_err());
    }
}
