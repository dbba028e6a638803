//! `read_then_observe` for the three fraud aggregates (count amount 1h, mean and
//! max amount 24h) over 100k entities with advancing event time.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use driftline::event::{FeatureValue, Features};
use driftline::features::aggregates::{AggFn, AggregateSpec, Aggregator, AggregatorConfig};

const ENTITIES: usize = 100_000;
const START_MS: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
const HOUR_MS: i64 = 3_600_000;

fn spec(name: &str, function: AggFn, window_ms: i64) -> AggregateSpec {
    AggregateSpec {
        name: name.into(),
        field: "amount".into(),
        function,
        window_ms,
    }
}

/// An event shaped like the generator's: the aggregated field among others.
fn event_features() -> Features {
    let mut f = Features::default();
    f.insert("merchant_category", FeatureValue::Text("grocery".into()));
    f.insert("channel", FeatureValue::Text("pos".into()));
    f.insert("is_international", FeatureValue::Bool(false));
    f.insert("distance_from_home_km", FeatureValue::Number(3.2));
    f.insert("amount", FeatureValue::Number(42.5));
    f
}

/// Writes `card-NNNNNN` into `buf`: the id of a just-decoded event is in cache,
/// unlike an entry of a 100k-element table of ids.
fn card_id(buf: &mut [u8; 11], mut i: usize) -> &str {
    for d in buf[5..].iter_mut().rev() {
        *d = b'0' + (i % 10) as u8;
        i /= 10;
    }
    std::str::from_utf8(buf).expect("ascii")
}

fn set_amount(f: &mut Features, x: f64) {
    f.insert("amount", FeatureValue::Number(x));
}

fn read_then_observe(c: &mut Criterion) {
    let specs = vec![
        spec("txn_count_1h", AggFn::Count, HOUR_MS),
        spec("amount_mean_24h", AggFn::Mean, 24 * HOUR_MS),
        spec("amount_max_24h", AggFn::Max, 24 * HOUR_MS),
    ];
    let agg = Aggregator::new(specs, AggregatorConfig::default()).expect("valid specs");
    let ids: Vec<String> = (0..ENTITIES).map(|i| format!("card-{i:06}")).collect();
    let mut features = event_features();
    // History for every entity, spread over several buckets of both rings.
    let mut ts = START_MS;
    for round in 0..8 {
        for (i, id) in ids.iter().enumerate() {
            set_amount(&mut features, ((i * 31 + round * 7) % 500) as f64);
            agg.observe(id, ts, &features);
            ts += 50;
        }
    }
    let mut out = [0.0f64; 3];
    let mut buf = *b"card-000000";

    let mut group = c.benchmark_group("aggregates");
    // A prime stride visits all entities in scattered order, as a busy stream would.
    let mut i = 0usize;
    group.bench_function("read_then_observe/3 specs/100k entities", |b| {
        b.iter(|| {
            i = (i + 7_919) % ENTITIES;
            ts += 3;
            set_amount(&mut features, (i % 500) as f64);
            let id = card_id(&mut buf, i);
            agg.read_then_observe(black_box(id), ts, &features, &mut out);
            black_box(&out);
        })
    });
    // One entity, always in cache: the cost of the computation itself.
    group.bench_function("read_then_observe/3 specs/hot entity", |b| {
        b.iter(|| {
            ts += 3;
            agg.read_then_observe(black_box("card-000000"), ts, &features, &mut out);
            black_box(&out);
        })
    });
    group.finish();
    let st = agg.stats();
    eprintln!(
        "entities={} late={} bytes/entity≈{}",
        st.entities,
        st.late_events,
        agg.bytes_per_entity()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = read_then_observe
}
criterion_main!(benches);
