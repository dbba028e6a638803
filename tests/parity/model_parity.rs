//! Golden tests: tract (through driftline's encoding and scoring) against the
//! onnxruntime outputs recorded by `scripts/make_models.py`, for every fixture row.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use driftline::app::sources;
use driftline::enrich::{Enricher, Scratch};
use driftline::event::{Event, FeatureValue, Features};
use driftline::features::aggregates::AggregatorConfig;
use driftline::features::store::StoreConfig;
use driftline::score::{Model, ModelError};

const TOLERANCE: f32 = 1e-5;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

struct Row {
    event: Event,
    input: Vec<f32>,
    probabilities: Vec<f32>,
    score: f32,
}

fn fixture(name: &str) -> Vec<Row> {
    let path = repo(&format!("tests/fixtures/scores/{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut features = Features::default();
            for (k, x) in v["features"].as_object().unwrap() {
                let value = match x {
                    serde_json::Value::Bool(b) => FeatureValue::Bool(*b),
                    serde_json::Value::Number(n) => FeatureValue::Number(n.as_f64().unwrap()),
                    serde_json::Value::String(s) => FeatureValue::Text(s.as_str().into()),
                    serde_json::Value::Null => FeatureValue::Null,
                    other => panic!("unexpected fixture value {other}"),
                };
                features.insert(k.as_str(), value);
            }
            let floats = |key: &str| -> Vec<f32> {
                v[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            };
            Row {
                event: Event {
                    event_id: v["event_id"].as_str().unwrap().into(),
                    entity_id: v["entity_id"].as_str().unwrap().into(),
                    ts_ms: None,
                    features,
                },
                input: floats("input"),
                probabilities: floats("probabilities"),
                score: v["score"].as_f64().unwrap() as f32,
            }
        })
        .collect()
}

fn parity(dir: &str, fixture_name: &str) {
    parity_with(dir, fixture_name, 1000);
}

/// [`parity`] for a fixture of at least `min_rows` rows.
fn parity_with(dir: &str, fixture_name: &str, min_rows: usize) {
    let model = Arc::new(Model::load(&repo(dir)).unwrap());
    let rows = fixture(fixture_name);
    assert!(
        rows.len() >= min_rows,
        "{fixture_name}: only {} rows",
        rows.len()
    );
    let (store, aggregator) = sources(
        model.manifest(),
        StoreConfig::default(),
        AggregatorConfig::default(),
    )
    .unwrap();
    let enricher = Enricher::new(model.manifest(), store, aggregator).unwrap();
    let width = enricher.width();
    assert_eq!(width, model.width());

    // 1. driftline's encoding of the raw features equals the script's encoding, exactly.
    let mut scratch = Scratch::default();
    let mut encoded = vec![0f32; rows.len() * width];
    for (i, row) in rows.iter().enumerate() {
        // Fixture rows are independent: a fresh entity per row keeps the
        // aggregator from carrying history between them (an empty window then
        // encodes as the default, as in the script).
        let mut event = row.event.clone();
        event.entity_id = format!("fixture-row-{i}").into();
        enricher
            .enrich(
                &event,
                0,
                0,
                &mut scratch,
                &mut encoded[i * width..(i + 1) * width],
            )
            .unwrap_or_else(|e| panic!("row {i} ({}): {e}", row.event.event_id));
        assert_eq!(
            &encoded[i * width..(i + 1) * width],
            row.input.as_slice(),
            "row {i} ({}) encodes differently",
            row.event.event_id
        );
    }

    // 2. tract's scores match onnxruntime's, as one big batch and row by row.
    let mut session = model.session().unwrap();
    let mut batch_scores = Vec::new();
    session.score(&encoded, &mut batch_scores).unwrap();
    assert_eq!(batch_scores.len(), rows.len());
    let mut worst = 0f32;
    for (i, (row, got)) in rows.iter().zip(&batch_scores).enumerate() {
        let diff = (got - row.score).abs();
        worst = worst.max(diff);
        assert!(
            diff <= TOLERANCE,
            "{fixture_name} row {i}: tract {got} vs onnxruntime {} (diff {diff})",
            row.score
        );
        assert!((row.probabilities[1] - row.score).abs() <= f32::EPSILON);
    }
    for (i, row) in rows.iter().enumerate().step_by(97) {
        let mut single = Vec::new();
        session.score(&row.input, &mut single).unwrap();
        assert_eq!(single.len(), 1);
        assert!(
            (single[0] - batch_scores[i]).abs() <= TOLERANCE,
            "row {i}: batch of one gives {} but the big batch gave {}",
            single[0],
            batch_scores[i]
        );
    }
    eprintln!(
        "{fixture_name}: {} rows, worst |tract - onnxruntime| = {worst:e}",
        rows.len()
    );
}

#[test]
fn mlp_matches_onnxruntime() {
    parity("models/fraud-mlp/1", "fraud-mlp-1");
}

#[test]
fn random_forest_matches_onnxruntime() {
    parity("models/fraud-rf/1", "fraud-rf-1");
}

#[test]
fn lifecycle_versions_of_the_mlp_match_onnxruntime() {
    // 2: retrained on the demo's shift; 3: deliberately bad (1 - P); 4:
    // deliberately slow, scoring exactly as 2 (it shares 2's fixture).
    for (dir, fixture) in [
        ("models/fraud-mlp/2", "fraud-mlp-2"),
        ("models/fraud-mlp/3", "fraud-mlp-3"),
        ("models/fraud-mlp/4", "fraud-mlp-2"),
    ] {
        parity_with(dir, fixture, 600);
    }
}

#[test]
fn the_bad_version_scores_one_minus_the_good_one() {
    let good = fixture("fraud-mlp-2");
    let bad = fixture("fraud-mlp-3");
    assert_eq!(good.len(), bad.len());
    for (g, b) in good.iter().zip(&bad) {
        assert_eq!(g.event.event_id, b.event.event_id);
        assert!(
            (g.score + b.score - 1.0).abs() <= 1e-6,
            "{} + {}",
            g.score,
            b.score
        );
    }
}

/// A copy of a committed model directory whose files a test may damage.
fn copy_model(dir: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["model.toml", "model.onnx"] {
        std::fs::copy(repo(dir).join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

#[test]
fn a_changed_model_file_is_refused_by_checksum() {
    let tmp = copy_model("models/fraud-mlp/1");
    let path = tmp.path().join("model.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let err = Model::load(tmp.path()).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.onnx") && msg.contains("sha256 mismatch"),
        "{msg}"
    );
}

#[test]
fn a_manifest_that_does_not_fit_the_graph_is_refused_at_load() {
    // One input fewer than the graph expects.
    let tmp = copy_model("models/fraud-mlp/1");
    let path = tmp.path().join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.rfind("[[inputs]]").unwrap();
    std::fs::write(&path, &text[..cut]).unwrap();
    let err = Model::load(tmp.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the manifest's inputs encode 25 floats per row, the graph's input takes 26"),
        "{err}"
    );

    // A score column past the end of the output.
    let tmp = copy_model("models/fraud-mlp/1");
    let path = tmp.path().join("model.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("index = 1", "index = 5");
    std::fs::write(&path, text).unwrap();
    let err = Model::load(tmp.path()).unwrap_err();
    assert!(
        err.to_string().contains("score.index 5 is out of range"),
        "{err}"
    );

    // An output name the graph does not have.
    let tmp = copy_model("models/fraud-mlp/1");
    let path = tmp.path().join("model.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("output = \"probabilities\"", "output = \"probs\"");
    std::fs::write(&path, text).unwrap();
    let err = Model::load(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("\"probs\""), "{err}");
}

#[test]
fn a_file_that_is_not_onnx_is_a_clear_error() {
    let tmp = copy_model("models/fraud-mlp/1");
    let garbage = b"this is not a protobuf".to_vec();
    std::fs::write(tmp.path().join("model.onnx"), &garbage).unwrap();
    let path = tmp.path().join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with("sha256"))
        .unwrap()
        .to_owned();
    let new = format!(
        "sha256 = \"{}\"",
        driftline::score::model::sha256_hex(&garbage)
    );
    std::fs::write(&path, text.replace(&old, &new)).unwrap();
    let err = Model::load(tmp.path()).unwrap_err();
    assert!(
        err.to_string().contains("tract cannot load the model"),
        "{err}"
    );
}
