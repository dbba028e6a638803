//! Model execution alone: tract on pre-encoded rows, batch 1/16/64/256, for the
//! neural network. Tree models have their own bench (`benches/trees.rs`), which
//! also sets them beside onnxruntime.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

mod common;

fn score(c: &mut Criterion) {
    for (dir, fixture) in [("models/fraud-mlp/1", "fraud-mlp-1")] {
        let model = common::model(dir);
        let (width, rows) = common::fixture_rows(fixture);
        assert_eq!(width, model.width());
        let mut session = model.session().expect("session");
        let mut group = c.benchmark_group(format!("score/{fixture}"));
        group.measurement_time(Duration::from_secs(3));
        for batch in [1usize, 16, 64, 256] {
            let input = &rows[..batch * width];
            let mut out = Vec::with_capacity(batch);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
                b.iter(|| {
                    out.clear();
                    session.score(input, &mut out).expect("score");
                    out.len()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, score);
criterion_main!(benches);
