//! Routing between model versions: the cost per event of deciding where an
//! event goes (one version, a canary, a shadow), and of routing and scoring
//! a 64-event batch each way, so that the price of a shadow (a second model
//! call over the shadowed events) and of a canary (two smaller calls) shows
//! beside the single version's.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use driftline::lifecycle::routing::{Candidate, Role, RoutingTable, Share, Split};

mod common;

const ENTITIES: usize = 1024;
const BATCH: usize = 64;

fn tables() -> [(&'static str, RoutingTable); 3] {
    let candidate = |role, percent| {
        Some(Candidate {
            version: "2".into(),
            role,
            share: Share::from_percent(percent),
        })
    };
    [
        ("one_version", RoutingTable::primary_only("fraud-mlp", "1")),
        (
            "canary_10pct",
            RoutingTable::new("fraud-mlp", "1", candidate(Role::Canary, 10.0), 0x5eed, 1),
        ),
        (
            "shadow_100pct",
            RoutingTable::new("fraud-mlp", "1", candidate(Role::Shadow, 100.0), 0x5eed, 1),
        ),
    ]
}

/// Per-event cost of `route` over realistic entity ids.
fn route(c: &mut Criterion) {
    let ids: Vec<String> = (0..ENTITIES)
        .map(|i| format!("card-{:06}", i * 7 + 1))
        .collect();
    let mut group = c.benchmark_group("routing/route");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(ENTITIES as u64));
    for (name, table) in tables() {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut candidate = 0usize;
                for id in &ids {
                    candidate += usize::from(black_box(&table).route(id).shadowed());
                }
                candidate
            })
        });
    }
    group.finish();
}

/// Route and score one batch: the primary scores what it serves, the
/// candidate what the canary serves or the shadow mirrors.
fn route_and_score(c: &mut Criterion) {
    let primary = common::model("models/fraud-mlp/1");
    let candidate = common::model("models/fraud-mlp/2");
    let (width, rows) = common::fixture_rows("fraud-mlp-2");
    let rows = &rows[..BATCH * width];
    let ids: Vec<String> = (0..BATCH)
        .map(|i| format!("card-{:06}", i * 31 + 5))
        .collect();
    let mut primary_session = primary.session().expect("session");
    let mut candidate_session = candidate.session().expect("session");
    let mut group = c.benchmark_group("routing/batch64");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, table) in tables() {
        let mut split = Split::default();
        let (mut primary_rows, mut candidate_rows) = (Vec::new(), Vec::new());
        let (mut primary_out, mut candidate_out) = (Vec::new(), Vec::new());
        group.bench_function(name, |b| {
            b.iter(|| {
                table.split(ids.iter().map(String::as_str), &mut split);
                primary_rows.clear();
                candidate_rows.clear();
                for &i in &split.primary {
                    primary_rows.extend_from_slice(&rows[i * width..(i + 1) * width]);
                }
                for &i in split.canary.iter().chain(&split.shadow) {
                    candidate_rows.extend_from_slice(&rows[i * width..(i + 1) * width]);
                }
                primary_out.clear();
                candidate_out.clear();
                primary_session
                    .score(&primary_rows, &mut primary_out)
                    .expect("score");
                candidate_session
                    .score(&candidate_rows, &mut candidate_out)
                    .expect("score");
                primary_out.len() + candidate_out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, route, route_and_score);
criterion_main!(benches);
