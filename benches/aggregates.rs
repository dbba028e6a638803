//! `read_then_observe` for the three fraud aggregates (count amount 1h, mean and
//! max amount 24h) with advancing event time.
//!
//! The headline case is 100k entities visited in scattered order: the state
//! (~60 MB) does not fit in cache, so each call pays for memory. The 10k case
//! fits in L3 and the hot-entity case isolates the computation itself.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use driftline::event::{FeatureValue, Features};
use driftline::features::aggregates::{AggFn, AggregateSpec, Aggregator, AggregatorConfig};

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

fn set_amount(f: &mut Features, x: f64) {
    f.insert("amount", FeatureValue::Number(x));
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

/// An aggregator holding `entities` cards with a few hours of history each;
/// returns it with the event time reached.
fn filled(entities: usize) -> (Aggregator, i64) {
    let specs = vec![
        spec("txn_count_1h", AggFn::Count, HOUR_MS),
        spec("amount_mean_24h", AggFn::Mean, 24 * HOUR_MS),
        spec("amount_max_24h", AggFn::Max, 24 * HOUR_MS),
    ];
    let agg = Aggregator::new(specs, AggregatorConfig::default()).expect("valid specs");
    let mut features = event_features();
    let mut buf = *b"card-000000";
    // Eight events per card, 5000 s apart in total event time across all cards.
    let step = 5_000_000 / entities as i64;
    let mut ts = START_MS;
    for round in 0..8 {
        for i in 0..entities {
            set_amount(&mut features, ((i * 31 + round * 7) % 500) as f64);
            agg.observe(card_id(&mut buf, i), ts, &features);
            ts += step;
        }
    }
    (agg, ts)
}

fn read_then_observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregates/read_then_observe/3 specs");
    let mut out = [0.0f64; 3];
    let mut buf = *b"card-000000";
    let mut features = event_features();
    for entities in [100_000usize, 10_000] {
        let (agg, mut ts) = filled(entities);
        let step = (5_000_000 / entities as i64).max(1);
        // A prime stride visits every entity in scattered order, as a busy stream would.
        let mut i = 0usize;
        group.bench_function(format!("{}k entities", entities / 1000), |b| {
            b.iter(|| {
                i = (i + 7_919) % entities;
                ts += step;
                set_amount(&mut features, (i % 500) as f64);
                let id = card_id(&mut buf, i);
                agg.read_then_observe(black_box(id), ts, &features, &mut out);
                black_box(&out);
            })
        });
        if entities == 100_000 {
            let st = agg.stats();
            eprintln!(
                "entities={} late_events={} bytes_per_entity≈{}",
                st.entities,
                st.late_events,
                agg.bytes_per_entity()
            );
        }
    }
    let (agg, mut ts) = filled(1_000);
    group.bench_function("hot entity", |b| {
        b.iter(|| {
            ts += 50;
            agg.read_then_observe(black_box("card-000000"), ts, &features, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = read_then_observe
}
criterion_main!(benches);
