//! Online store on a 1,000,000-entity × 10-feature table: `get` alone, `get`
//! while a second reader and a paced writer run, and `upsert` of an existing entity.
//!
//! Keys are visited in a scrambled order so reads miss the CPU cache the way a
//! stream of card ids does. Prints the store's memory once before measuring.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use driftline::event::{FeatureValue, Features};
use driftline::features::store::{Column, FeatureStore, Lookup, Row, StoreConfig, StoreSchema};

const ENTITIES: u64 = 1_000_000;
const FEATURES: usize = 10;

/// Writes `card-NNNNNNN` (1-based, like the fixtures) into `buf`.
fn card_id(buf: &mut [u8; 12], mut i: u64) -> &str {
    buf[..5].copy_from_slice(b"card-");
    for d in buf[5..].iter_mut().rev() {
        *d = b'0' + (i % 10) as u8;
        i /= 10;
    }
    std::str::from_utf8(buf).expect("ascii")
}

/// A cheap scrambled walk over `1..=ENTITIES`.
struct Walk(u64);

impl Walk {
    fn next(&mut self) -> u64 {
        // xorshift64: full period, no allocation, a few cycles.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % ENTITIES + 1
    }
}

fn features(x: f64) -> Features {
    Features(
        (0..FEATURES)
            .map(|j| (format!("f{j}").into(), FeatureValue::Number(x + j as f64)))
            .collect(),
    )
}

fn set_all(f: &mut Features, x: f64) {
    for (j, (_, v)) in f.0.iter_mut().enumerate() {
        *v = FeatureValue::Number(x + j as f64);
    }
}

fn build() -> FeatureStore {
    let schema = StoreSchema::new(
        (0..FEATURES)
            .map(|j| Column::numeric(format!("f{j}")))
            .collect(),
    )
    .expect("valid schema");
    let cfg = StoreConfig {
        max_entities: 2 * ENTITIES as usize,
        ..StoreConfig::default()
    };
    let store = FeatureStore::new(schema, cfg);
    let mut f = features(0.0);
    let mut buf = [0u8; 12];
    for i in 1..=ENTITIES {
        set_all(&mut f, i as f64);
        store
            .upsert(card_id(&mut buf, i), &f, i as i64)
            .expect("valid row");
    }
    let st = store.stats();
    println!(
        "store: {} entities x {FEATURES} numeric features, approx heap {} bytes ({:.1} MB, {:.1} bytes/entity)",
        st.entities,
        st.approx_heap_bytes,
        st.approx_heap_bytes as f64 / 1e6,
        st.approx_heap_bytes as f64 / st.entities as f64,
    );
    store
}

fn store_benches(c: &mut Criterion) {
    let store = build();
    let mut buf = [0u8; 12];
    let mut row = Row::new();

    let mut walk = Walk(0x9e37_79b9_7f4a_7c15);
    c.bench_function("store/get_hit_1m", |b| {
        b.iter(|| {
            let key = card_id(&mut buf, walk.next());
            let hit = store.get(black_box(key), 0, &mut row);
            debug_assert!(matches!(hit, Lookup::Hit { .. }));
            black_box(store.number(&row, 3))
        })
    });

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The second reader.
        s.spawn(|| {
            let mut buf = [0u8; 12];
            let mut row = Row::new();
            let mut walk = Walk(0x2545_f491_4f6c_dd1d);
            while !stop.load(Relaxed) {
                for _ in 0..256 {
                    black_box(store.get(card_id(&mut buf, walk.next()), 0, &mut row));
                }
            }
        });
        // The writer, paced (64 upserts per millisecond at most): reads far
        // outnumber writes in service, and on a 2-core machine an unpaced
        // writer would mostly measure time-slicing, not lock contention.
        s.spawn(|| {
            let mut buf = [0u8; 12];
            let mut f = features(0.0);
            let mut walk = Walk(0x1234_5678_9abc_def1);
            let mut t = ENTITIES as i64;
            while !stop.load(Relaxed) {
                for _ in 0..64 {
                    t += 1;
                    set_all(&mut f, t as f64);
                    let _ = black_box(store.upsert(card_id(&mut buf, walk.next()), &f, t));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        c.bench_function("store/get_hit_1m_2_readers_1_writer", |b| {
            b.iter(|| {
                let key = card_id(&mut buf, walk.next());
                black_box(store.get(black_box(key), 0, &mut row));
                black_box(store.number(&row, 3))
            })
        });
        stop.store(true, Relaxed);
    });

    let mut f = features(0.0);
    let mut t = 2 * ENTITIES as i64;
    c.bench_function("store/upsert_existing_10_features", |b| {
        b.iter(|| {
            t += 1;
            set_all(&mut f, t as f64);
            let key = card_id(&mut buf, walk.next());
            black_box(store.upsert(black_box(key), &f, t)).expect("valid row")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = store_benches
}
criterion_main!(benches);
