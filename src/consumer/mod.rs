//! Kafka in: client settings, the scoring loop's consumer-group context,
//! batch buffering, and the follower that reads whole topics.
//!
//! - [`config`]: client settings of every client driftline makes (the
//!   pass-through `kafka.client`/`kafka.consumer`/`kafka.producer`
//!   properties first, then what driftline must control);
//! - [`context`]: the consumer-group context that hands rebalances to the
//!   loop, and the context of partition readers;
//! - [`batch`]: polled records copied out of librdkafka's buffers into one
//!   micro-batch;
//! - [`follower`]: one follower for the topics every instance reads whole
//!   (`feature-updates`, `labels`, the aggregate changelog's restore):
//!   metadata wait, assignment at the beginning or the end, the poll loop,
//!   and the "caught up" signal.
//!
//! Guarantees: offsets are never committed automatically (the group's
//! offsets move only when the loop commits what its outputs' deliveries
//! allow, `enable.auto.commit` and `enable.auto.offset.store` are off and
//! cannot be configured back on); readers are not group members and commit
//! nothing. Decoding is not here: records leave as bytes, for `source`.

pub mod batch;
pub mod config;
pub mod context;
pub mod follower;

#[cfg(test)]
pub(crate) mod testing;
