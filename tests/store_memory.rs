//! Live heap of the online store at its design size: 1,000,000 entities × 10 numeric features.
//!
//! A counting global allocator measures what the store really holds (not what
//! it thinks it holds), so this catches regressions in row layout, key storage
//! or index sizing. The budget is 200 MB; the design aims for about 120 MB.
//! Run in release (`cargo test --test store_memory --release`): in debug it is
//! slow but still correct.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use driftline::event::{FeatureValue, Features};
use driftline::features::store::{Column, FeatureStore, Lookup, Row, StoreConfig, StoreSchema};

/// Tracks live heap bytes on top of the system allocator.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            LIVE.fetch_add(new_size, Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ENTITIES: usize = 1_000_000;
const FEATURES: usize = 10;
const BUDGET_BYTES: usize = 200 * 1000 * 1000;

#[test]
fn one_million_entities_fit_the_budget() {
    let names: Vec<String> = (0..FEATURES).map(|i| format!("f{i}")).collect();
    let schema =
        StoreSchema::new(names.iter().map(|n| Column::numeric(n.as_str())).collect()).unwrap();
    // The upsert input is reused, so only the store's own allocations stay live.
    let mut features = Features(
        names
            .iter()
            .map(|n| (n.as_str().into(), FeatureValue::Number(0.0)))
            .collect(),
    );
    let mut key = String::with_capacity(32);

    let before = LIVE.load(Relaxed);
    // The cap is enforced per shard, and shards never fill evenly: with the
    // cap at exactly 1M a few shards would start evicting ~0.1% early.
    let cfg = StoreConfig {
        max_entities: ENTITIES + ENTITIES / 10,
        ..StoreConfig::default()
    };
    let store = FeatureStore::new(schema, cfg);
    for i in 1..=ENTITIES {
        for (j, (_, v)) in features.0.iter_mut().enumerate() {
            *v = FeatureValue::Number((i * FEATURES + j) as f64);
        }
        key.clear();
        use std::fmt::Write;
        write!(key, "card-{i:07}").unwrap();
        store.upsert(&key, &features, i as i64).unwrap();
    }
    let live = LIVE.load(Relaxed) - before;
    let stats = store.stats();

    println!(
        "store_memory: {ENTITIES} entities x {FEATURES} numeric features: live heap {live} bytes ({:.1} MB, {:.1} bytes/entity); stats() approx {} bytes ({:.1} bytes/entity)",
        live as f64 / 1e6,
        live as f64 / ENTITIES as f64,
        stats.approx_heap_bytes,
        stats.approx_heap_bytes as f64 / ENTITIES as f64,
    );

    assert_eq!(store.len(), ENTITIES);
    assert_eq!(
        stats.evicted_capacity, 0,
        "the default cap holds the design size"
    );
    let mut row = Row::new();
    assert_eq!(
        store.get("card-0123456", 0, &mut row),
        Lookup::Hit {
            updated_at_ms: 123_456
        }
    );
    assert_eq!(store.number(&row, 3), Some((123_456 * FEATURES + 3) as f32));
    assert!(
        live <= BUDGET_BYTES,
        "live heap {live} bytes exceeds {BUDGET_BYTES}"
    );
    // The store's own estimate should track reality (it is what operators see).
    let ratio = stats.approx_heap_bytes as f64 / live as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "stats() approx {} vs measured {live}",
        stats.approx_heap_bytes
    );
}
