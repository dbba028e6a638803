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
use rdkafka::{Message, Offset, TopicPartitionList};
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

/// Reads `partitions` of `topic` from their beginning to their end, all at
/// once, handing every message to `f`. `consumer` must be configured with
/// `enable.partition.eof` and not be subscribed to anything; it is left
/// unassigned. Returns how many messages were read.
///
/// The end is librdkafka's end-of-partition event, not the end offset from
/// `fetch_watermarks`: Tansu answers that with the last batch's base offset
/// plus one, which would stop a read short of the last batch's other records.
/// The watermarks only tell which partitions are empty.
pub fn read_to_end<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<usize, ReadError> {
    // (partition, read one yet)
    let mut open: Vec<(i32, bool)> = Vec::with_capacity(partitions.len());
    let mut tpl = TopicPartitionList::new();
    for &partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|source| ReadError::Watermarks {
                topic: topic.into(),
                partition,
                source,
            })?;
        if high > low {
            open.push((partition, false));
            tpl.add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|source| ReadError::Assign {
                    topic: topic.into(),
                    partition,
                    source,
                })?;
        }
    }
    if open.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl).map_err(|source| ReadError::Assign {
        topic: topic.into(),
        partition: open[0].0,
        source,
    })?;
    let started = Instant::now();
    let mut read = 0;
    let result = loop {
        if open.is_empty() {
            break Ok(read);
        }
        if started.elapsed() > timeout {
            break Err(ReadError::Timeout {
                topic: topic.into(),
                partition: open[0].0,
                waited: timeout,
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                read += 1;
                f(&m);
                if let Some(o) = open.iter_mut().find(|o| o.0 == m.partition()) {
                    o.1 = true;
                }
            }
            // An end-of-partition event before anything of the partition
            // was read is left over from an earlier call.
            Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|o| !(o.0 == p && o.1)),
            Some(Err(source)) => {
                break Err(ReadError::Fetch {
                    topic: topic.into(),
                    partition: open[0].0,
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
