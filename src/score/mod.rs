//! Scoring: model directories, manifests, and tract execution on batches.
//!
//! A model directory (`models/<name>/<version>/`) holds `model.toml`
//! ([`manifest::Manifest`]) and the ONNX file it names. [`model::Model`] loads
//! and verifies it once; [`model::Session`] scores any number of rows per call.
//! [`signature`] signs and verifies manifests with Ed25519 keys.

pub mod manifest;
pub mod model;
pub mod signature;
pub mod trees;

pub use manifest::Manifest;
pub use model::{Model, ModelError, Session};
