//! The whole in-process path on one core: JSON bytes → decode → enrich → score,
//! per batch, for both fraud models. Throughput is events per second.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

use driftline::pipeline::{BatchOutput, Message, Pipeline};
use driftline::source::decode::decode_json;

mod common;

fn pipeline(c: &mut Criterion) {
    for (dir, name, batches) in [
        (
            "models/fraud-mlp/1",
            "fraud-mlp-1",
            &[1usize, 16, 64, 256][..],
        ),
        ("models/fraud-rf/1", "fraud-rf-1", &[1usize, 64, 256][..]),
    ] {
        let f = common::fraud(dir, 10_000, 200_000);
        let mut pipeline =
            Pipeline::new(&f.model, f.store.clone(), f.aggregator.clone(), 64 * 1024)
                .expect("pipeline");
        let mut out = BatchOutput::default();
        let mut group = c.benchmark_group(format!("pipeline/{name}"));
        group.measurement_time(Duration::from_secs(4));
        for &batch in batches {
            let mut offset = 0usize;
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
                b.iter(|| {
                    if offset + batch > f.json.len() {
                        offset = 0;
                    }
                    let messages: Vec<Message<'_>> = f.json[offset..offset + batch]
                        .iter()
                        .map(|p| Message {
                            payload: p,
                            timestamp_ms: None,
                        })
                        .collect();
                    // The clock at the batch's newest event, as in a live
                    // stream: none of it is dated ahead (pipeline.max_future_skew).
                    let now = f.events[offset + batch - 1]
                        .ts_ms
                        .unwrap_or(common::START_MS);
                    offset += batch;
                    pipeline.process(&messages, now, &mut out);
                    assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
                    out.scored.len()
                })
            });
        }
        group.finish();
    }
    // Decoding alone, to show where the path's time goes.
    let f = common::fraud("models/fraud-mlp/1", 1_000, 10_000);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    group.bench_function("json/event", |b| {
        b.iter(|| {
            let e = decode_json(&f.json[i % f.json.len()], 64 * 1024).expect("valid");
            i += 1;
            e
        })
    });
    // Baseline in the same run: a bare generic JSON parse, the least any
    // consumer does per event. README quotes the path as a multiple of it,
    // which holds across machines better than absolute times.
    let mut i = 0usize;
    group.bench_function("baseline_serde_json_value/event", |b| {
        b.iter(|| {
            let v: serde_json::Value =
                serde_json::from_slice(&f.json[i % f.json.len()]).expect("valid");
            i += 1;
            v
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
