//! Decoding what comes in: bytes of the `features`, `feature-updates` and
//! `labels` topics become events, updates and labels, or a typed rejection.
//!
//! Guarantees: no decoder panics on input, and none imports Kafka, HTTP or
//! telemetry types: records arrive as bytes ([`crate::consumer`] reads
//! them).

pub mod arrow;
pub mod decode;
pub mod labels;
