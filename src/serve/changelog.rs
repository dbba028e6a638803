//! The compacted changelog of streaming-aggregate state: its records, and
//! the topic itself (created on start when missing). Restoring reads its
//! partitions with [`crate::consumer::follower::read_to_end`].
//!
//! Guarantees: a changelog partition mirrors the input partition of the same
//! number. Each record is keyed by entity id and holds the entity's state
//! together with the input offset of the newest event folded into it, so a
//! restored instance can tell replayed events (already in the state) from
//! new ones. A null value (tombstone) means the entity has no state. A
//! record that cannot be read is skipped and counted, never fatal.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::consumer::config::client_config;
use crate::consumer::context::reader;
use crate::features::aggregates::EntityState;

/// Errors making sure the changelog topic is there.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("{topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// One changelog value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Input offset of the newest event folded into `state`.
    pub offset: i64,
    pub state: EntityState,
}

impl Record {
    /// The record as a changelog value.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A changelog value as a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Creates the compacted changelog topic when missing, with as many
/// partitions as the input topic (partition p holds input partition p's
/// state); fails when it exists with fewer.
pub fn ensure_topic(
    config: &Config,
    features: &str,
    changelog: &str,
    timeout: Duration,
) -> Result<(), ChangelogError> {
    let topic_err = |topic: &str, reason: String| ChangelogError::Topic {
        topic: topic.to_string(),
        reason,
    };
    let probe = reader(config).map_err(ChangelogError::Client)?;
    let md = probe
        .fetch_metadata(None, timeout)
        .map_err(ChangelogError::Client)?;
    let count = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
    };
    let inputs = count(features)
        .ok_or_else(|| topic_err(features, "no such topic (create it first)".into()))?;
    match count(changelog) {
        Some(n) if n >= inputs => return Ok(()),
        Some(n) => {
            return Err(topic_err(
                changelog,
                format!(
                    "has {n} partitions but {features} has {inputs}; state of the extra partitions would have nowhere to go"
                ),
            ))
        }
        None => {}
    }
    create_compacted(config, changelog, inputs as i32, timeout)
}

/// Creates a compacted topic of `partitions` partitions unless it exists.
pub fn ensure_compacted(
    config: &Config,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), ChangelogError> {
    let probe = reader(config).map_err(ChangelogError::Client)?;
    match crate::consumer::follower::topic_partitions(&probe, topic, timeout) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => create_compacted(config, topic, partitions, timeout),
        Err(e) => Err(ChangelogError::Client(e)),
    }
}

/// Creates a compacted topic of `partitions` partitions (one that exists
/// already is fine).
fn create_compacted(
    config: &Config,
    changelog: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), ChangelogError> {
    let topic_err = |topic: &str, reason: String| ChangelogError::Topic {
        topic: topic.to_string(),
        reason,
    };
    let admin: AdminClient<DefaultClientContext> = client_config(config, &Default::default())
        .create()
        .map_err(ChangelogError::Client)?;
    let topic = NewTopic::new(changelog, partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| topic_err(changelog, format!("starting the admin runtime: {e}")))?;
    let results = runtime
        .block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(timeout)),
        ))
        .map_err(ChangelogError::Client)?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = %changelog, partitions, "compacted topic created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(topic_err(&name, format!("creating the topic: {code}")))
            }
        }
    }
    Ok(())
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
