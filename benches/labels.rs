//! The label join on the scoring path and at snapshot time.
//!
//! - `record/256 <ids>`: one scored batch of 256 predictions into a join
//!   that is full (`max_pending` = 1,000,000 held), so every prediction also
//!   evicts the oldest: the steady state of a busy service. Throughput is per
//!   prediction. `short ids` are 13 bytes (`evt-000000001`, stored inline),
//!   `uuid ids` 36 bytes (one allocation each).
//! - `label/256`: 256 labels, each joining a prediction recorded in the same
//!   batch (the follower's per-label cost, lock included).
//! - `snapshot/window 5000`: metrics of one version's full window of 5,000
//!   (copy under the lock, then the AUC sort).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftline::drift::labels::{LabelConfig, LabelJoin};

const BATCH: usize = 256;
const MAX_PENDING: usize = 1_000_000;
/// More ids than the join holds, so a recycled id was evicted long ago and
/// is recorded afresh rather than skipped as a replay.
const POOL: usize = MAX_PENDING + MAX_PENDING / 2;

fn full_join(ids: &[String]) -> LabelJoin {
    let join = LabelJoin::new(&LabelConfig {
        max_pending: MAX_PENDING,
        max_age: "1d".into(),
        ..LabelConfig::default()
    })
    .expect("valid config");
    for chunk in ids[..MAX_PENDING].chunks(BATCH) {
        join.record(chunk.iter().map(|id| (id.as_str(), 0.5, 0)), "1");
    }
    join
}

fn record(c: &mut Criterion, name: &str, ids: &[String]) {
    let join = full_join(ids);
    let mut group = c.benchmark_group("labels");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut at = MAX_PENDING;
    group.bench_function(format!("record/{BATCH} {name}"), |b| {
        b.iter(|| {
            if at + BATCH > ids.len() {
                at = 0;
            }
            let batch = &ids[at..at + BATCH];
            at += BATCH;
            join.record(
                black_box(batch)
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.as_str(), (i % 100) as f32 / 100.0, 0)),
                "1",
            );
        })
    });
    group.finish();
    let c = join.counters();
    assert_eq!(c.held as usize, MAX_PENDING);
    assert_eq!(c.skipped, 0, "no id may be recorded twice while held");
}

fn labels(c: &mut Criterion) {
    let short: Vec<String> = (0..POOL).map(|i| format!("evt-{i:09}")).collect();
    record(c, "short ids", &short);
    let uuid: Vec<String> = (0..POOL as u64)
        .map(|i| {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                h >> 32,
                (h >> 16) & 0xffff,
                h & 0xfff,
                i & 0xfff,
                i
            )
        })
        .collect();
    assert!(uuid.iter().all(|u| u.len() == 36));
    record(c, "uuid ids", &uuid);

    let join = full_join(&short);
    let mut group = c.benchmark_group("labels");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut at = MAX_PENDING;
    group.bench_function(format!("label/{BATCH}"), |b| {
        b.iter_batched(
            || {
                if at + BATCH > short.len() {
                    at = 0;
                }
                let batch = &short[at..at + BATCH];
                at += BATCH;
                join.record(batch.iter().map(|id| (id.as_str(), 0.7, 0)), "1");
                batch
            },
            |batch| {
                for (i, id) in batch.iter().enumerate() {
                    black_box(join.label(id, i % 3 == 0, None));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let join = LabelJoin::new(&LabelConfig::default()).expect("valid config");
    let ids = &short[..5_000];
    join.record(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), ((i * 7919) % 1000) as f32 / 1000.0, 0)),
        "1",
    );
    for (i, id) in ids.iter().enumerate() {
        join.label(id, (i * 7919) % 1000 > 600 || i % 5 == 0, None);
    }
    let mut group = c.benchmark_group("labels");
    group.bench_function("snapshot/window 5000", |b| {
        b.iter(|| black_box(join.snapshot()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = labels
}
criterion_main!(benches);
