//! Tree-ensemble models through driftline's tract ops vs onnxruntime.
//!
//! For every tree model: ns/event at batch 1/64/256, measured as
//! `scripts/make_tree_models.py` measured onnxruntime (1 thread; median of
//! single `Session::score` calls after 200 warm-up calls, divided by the batch
//! size; rows without NaN), printed next to onnxruntime's recorded ns/event
//! (`tests/fixtures/scores/ort_timing_trees.json`) and the ratio.
//!
//! Each model/batch is also a criterion benchmark (`trees/<model>/<batch>`,
//! throughput in events) for history and regression reports; the table uses
//! the median method because that is how onnxruntime was measured, so the
//! ratio compares like with like. Under `cargo test --all-targets` criterion
//! runs each benchmark once and the table is skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};

use driftline::score::Model;

const MODELS: [(&str, &str); 5] = [
    ("fraud-rf", "fraud-rf-1"),
    ("fraud-gbm", "fraud-gbm-1"),
    ("fraud-lgbm", "fraud-lgbm-1"),
    ("fraud-xgb", "fraud-xgb-1"),
    ("fraud-lgbm-reg", "fraud-lgbm-reg-1"),
];
const BATCHES: [usize; 3] = [1, 64, 256];

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Encoded fixture rows without NaN, row-major.
fn rows(fixture: &str, width: usize) -> Vec<f32> {
    let path = repo(&format!("tests/fixtures/scores/{fixture}.jsonl"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let input = v["input"].as_array().expect("input");
        if input.iter().any(|x| x.is_null()) {
            continue;
        }
        assert_eq!(input.len(), width);
        out.extend(input.iter().map(|x| x.as_f64().expect("number") as f32));
    }
    out
}

fn median_ns_per_event(
    session: &mut driftline::score::Session,
    input: &[f32],
    batch: usize,
) -> f64 {
    let mut out = Vec::with_capacity(batch);
    for _ in 0..200 {
        out.clear();
        session.score(input, &mut out).expect("score");
    }
    let calls = (40_000 / batch).max(300);
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        out.clear();
        let t0 = Instant::now();
        session.score(input, &mut out).expect("score");
        samples.push(t0.elapsed().as_nanos() as f64);
        std::hint::black_box(&out);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2] / batch as f64
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let ort: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/scores/ort_timing_trees.json"))
            .expect("ort timing"),
    )
    .expect("ort timing json");
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut table = Vec::new();
    for (name, fixture) in MODELS {
        let model = Arc::new(Model::load(&repo(&format!("models/{name}/1"))).expect("model loads"));
        let width = model.width();
        let data = rows(fixture, width);
        let mut session = model.session().expect("session");
        let mut group = criterion.benchmark_group(format!("trees/{name}"));
        for batch in BATCHES {
            let input = &data[..batch * width];
            let mut out = Vec::with_capacity(batch);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
                b.iter(|| {
                    out.clear();
                    session.score(input, &mut out).expect("score");
                    out.len()
                })
            });
            if measure {
                let ns = median_ns_per_event(&mut session, input, batch);
                let reference = ort["ns_per_event"][name][batch.to_string()].as_f64();
                table.push((name, batch, ns, reference));
            }
        }
        group.finish();
    }
    criterion.final_summary();
    if measure {
        println!(
            "\n{:<16} {:>6} {:>14} {:>14} {:>8}",
            "model", "batch", "driftline ns", "onnxrt ns", "ratio"
        );
        for (name, batch, ns, reference) in table {
            match reference {
                Some(r) => println!("{name:<16} {batch:>6} {ns:>14.1} {r:>14.1} {:>8.3}", ns / r),
                None => println!("{name:<16} {batch:>6} {ns:>14.1} {:>14} {:>8}", "-", "-"),
            }
        }
    }
}
