//! Reference profiles (`reference.json`): parsing, then the drift plan a
//! valid one makes with the bundled fraud model's manifest (sketch images
//! decoded, reference distributions prepared), an empty window on it and
//! one evaluation.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use driftline::drift::monitor::{DriftConfig, Evaluator, Plan, RecorderStats};
use driftline::drift::profile::Profile;
use driftline::score::Manifest;
use libfuzzer_sys::fuzz_target;

const MANIFEST: &str = include_str!("../../models/fraud-mlp/1/model.toml");

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/reference.json");
    let Ok(profile) = Profile::parse(data, path) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(MANIFEST, Path::new("models/fraud-mlp/1/model.toml")) else {
        return;
    };
    let config = DriftConfig {
        sub_windows: 1,
        min_samples: 1,
        ..DriftConfig::default()
    };
    let Ok(plan) = Plan::new(&manifest, profile, path, config) else {
        return;
    };
    let plan = Arc::new(plan);
    let window = plan.empty_window(0);
    let mut evaluator = Evaluator::new(
        plan,
        Arc::new(RecorderStats::default()),
        Default::default(),
        Box::new(|_, _, _| {}),
    );
    let _ = evaluator.push(window);
});
