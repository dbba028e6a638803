//! Model manifests (`model.toml`): parsing and validation, then what start-up
//! builds from a valid one without the ONNX file: the store schema and the
//! streaming aggregator (window parsing, ring layout).
#![no_main]

use std::path::Path;

use driftline::features::aggregates::{Aggregator, AggregatorConfig};
use driftline::score::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(text, Path::new("fuzz/model.toml")) else {
        return;
    };
    let _ = driftline::app::store_schema(&manifest);
    let specs = manifest.aggregate_specs();
    if !specs.is_empty() {
        let _ = Aggregator::new(specs, AggregatorConfig::default());
    }
});
