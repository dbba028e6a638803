//! Logging set-up and the Prometheus metric names.
//!
//! Guarantees: a leaf module; it imports nothing from the rest of the crate,
//! so every stage can use it and it can never pull a stage's types in.
//! Values are published by the code that produces them (the scoring loop,
//! the drift wiring in `serve::drift`), through the names and handles
//! defined in [`metrics`].

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

pub mod metrics;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
