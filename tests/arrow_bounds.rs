//! Arrow IPC batch messages are bounded by what they decode to, not only by
//! their size (issue 15, point 2): the reported message, 100k rows whose
//! dictionary-encoded ids are 2 KB each, is well under 1 MB on the wire and
//! 400 MB decoded. Its refusal must come before the expansion is
//! allocated, which this binary measures with a counting allocator (its own
//! binary, so no other test's allocations are counted; the tests in it take
//! turns).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, DictionaryArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{Int16Type, Int32Type};
use arrow::ipc::writer::StreamWriter;
use driftline::source::arrow::decode_arrow_batch;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only read by the tests.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time: the counters are process-wide.
static TURN: Mutex<()> = Mutex::new(());

/// Bytes allocated at the peak of `f`, above what was live before it.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

fn ipc(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    w.into_inner().unwrap()
}

const MIB: usize = 1 << 20;
const ROWS: usize = 100_000;

/// The report's message: `ROWS` rows whose ids come from dictionaries of
/// 16 values of 2 KB each (about 660 KB on the wire, 400 MB decoded).
fn dictionary_bomb() -> Vec<u8> {
    let values = |prefix: &str| -> Vec<String> {
        (0..16)
            .map(|i| format!("{prefix}-{i:02}-{}", "x".repeat(2040)))
            .collect()
    };
    let (events, entities) = (values("evt"), values("card"));
    let event: DictionaryArray<Int32Type> =
        (0..ROWS).map(|i| Some(events[i % 16].as_str())).collect();
    let entity: DictionaryArray<Int16Type> =
        (0..ROWS).map(|i| Some(entities[i % 16].as_str())).collect();
    ipc(vec![
        ("event_id", Arc::new(event) as ArrayRef),
        ("entity_id", Arc::new(entity) as ArrayRef),
    ])
}

#[test]
fn a_dictionary_bomb_is_refused_before_its_expansion_is_allocated() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = dictionary_bomb();
    assert!(
        bytes.len() < MIB,
        "the message is small: {} bytes",
        bytes.len()
    );
    let (result, peak) = peak_during(|| decode_arrow_batch(&bytes, 16 * MIB));
    let code = match &result {
        Ok(rows) => format!("accepted ({} rows)", rows.len()),
        Err(r) => r.reason.code().to_string(),
    };
    drop(result);
    println!(
        "a {}-byte message: {code}, {peak} bytes allocated at the peak",
        bytes.len()
    );
    assert_eq!(code, "oversize");
    // Reading the message costs about its size; the 400 MB expansion is
    // never allocated.
    assert!(
        peak < 8 * MIB,
        "decoding allocated {} MiB at its peak",
        peak / MIB
    );
}

#[test]
fn rows_past_the_bound_are_refused_from_the_metadata() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let rows = 100_001;
    let bytes = ipc(vec![
        (
            "event_id",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("{i}")),
            )) as ArrayRef,
        ),
        (
            "entity_id",
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "c"))) as ArrayRef,
        ),
    ]);
    let (result, peak) = peak_during(|| decode_arrow_batch(&bytes, 16 * MIB));
    let err = match result {
        Ok(rows) => panic!("{} rows accepted past the row bound", rows.len()),
        Err(err) => err,
    };
    assert_eq!(err.reason.code(), "oversize");
    assert!(err.detail.contains("max_batch_rows"), "{}", err.detail);
    assert!(peak < MIB, "nothing was decoded: {peak} bytes at the peak");
}

#[test]
fn a_large_ordinary_batch_still_decodes() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let rows = 50_000;
    let bytes = ipc(vec![
        (
            "event_id",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("evt-{i:08}")),
            )) as ArrayRef,
        ),
        (
            "entity_id",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("card-{:06}", i % 2000)),
            )) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))) as ArrayRef,
        ),
    ]);
    let decoded = decode_arrow_batch(&bytes, 16 * MIB).expect("an ordinary batch");
    assert_eq!(decoded.len(), rows);
    assert!(decoded.iter().all(|r| r.is_ok()));
}
