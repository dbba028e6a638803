//! ONNX-ML tree-ensemble attributes: every `TreeEnsembleClassifier` /
//! `TreeEnsembleRegressor` node of an ONNX model is parsed and validated as
//! at load time, and a valid ensemble scores a few rows (NaN included) as it
//! would in the model.
#![no_main]

use driftline::score::trees::{parse_classifier, parse_regressor};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tract_onnx::pb::ModelProto;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = ModelProto::decode(data) else {
        return;
    };
    let Some(graph) = model.graph else {
        return;
    };
    for node in &graph.node {
        let parsed = match node.op_type.as_str() {
            "TreeEnsembleClassifier" => parse_classifier(node),
            "TreeEnsembleRegressor" => parse_regressor(node),
            _ => continue,
        };
        let Ok(ensemble) = parsed else {
            continue;
        };
        let width = ensemble.max_feature().map_or(1, |f| f as usize + 1);
        // Bounded by the input: a feature id of 10^9 would ask for a huge row.
        if width > 4096 {
            continue;
        }
        let values = [0.0f32, -1.5, 2.5, f32::NAN, 1e30, -0.0];
        let rows: Vec<f32> = (0..width * 4).map(|i| values[i % values.len()]).collect();
        let mut scores = vec![0.0f32; 4 * ensemble.n_outputs()];
        let mut labels = vec![0i64; 4];
        let labels = ensemble.is_classifier().then_some(&mut labels[..]);
        let _ = ensemble.eval(&rows, width, &mut scores, labels);
    }
});
