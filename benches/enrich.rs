//! Enrichment alone: event → encoded row (store lookup, aggregates, encoding) for the fraud MLP's 14 inputs.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

use driftline::enrich::{Enricher, Scratch};

mod common;

fn enrich(c: &mut Criterion) {
    let f = common::fraud("models/fraud-mlp/1", 10_000, 100_000);
    let enricher =
        Enricher::new(f.model.manifest(), f.store.clone(), f.aggregator.clone()).expect("enricher");
    let mut scratch = Scratch::default();
    let mut row = vec![0f32; enricher.width()];
    let mut group = c.benchmark_group("enrich");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("fraud-mlp-1/event", |b| {
        b.iter(|| {
            let e = &f.events[i % f.events.len()];
            i += 1;
            let ts = e.ts_ms.unwrap_or(common::START_MS);
            enricher
                .enrich(e, ts, ts, &mut scratch, &mut row)
                .expect("valid event")
        })
    });
    group.finish();
}

criterion_group!(benches, enrich);
criterion_main!(benches);
