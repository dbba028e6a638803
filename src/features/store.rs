//! The in-memory online feature store: one fixed-width row of model features per entity.
//!
//! Guarantees:
//!
//! - **No global lock on the read path.** Entities are spread over a power-of-two
//!   number of shards ([`shard::shard_of`]); a read takes only its shard's read
//!   lock, and categorical codes are turned back into text through a lock-free
//!   dictionary snapshot. Writers to other shards never block it.
//! - **Rows are read whole.** A [`FeatureStore::get`] copies the row under the
//!   shard lock, so a reader never sees half of a concurrent upsert.
//! - **Upserts are all-or-nothing.** Every value is checked (column type, finite
//!   and representable as `f32`) before the shard is locked; a rejected upsert
//!   changes no row.
//! - **Bounded size, in rows and in bytes.** At most `ceil(max_entities /
//!   shards)` rows and `max_bytes / shards` bytes per shard; inserting past
//!   either evicts the shard's least recently updated rows until the new one
//!   fits (counted apart: `evicted_capacity`, `evicted_bytes`). Shards never
//!   fill exactly evenly, so eviction can begin slightly (≈0.1% at 1M over
//!   16 shards) before `max_entities` rows in total. The bytes are a running
//!   estimate kept on insert and removal ([`row_bytes`]: cells, key, index
//!   bucket, queue entries), never a walk; a row that alone exceeds a
//!   shard's share is refused ([`StoreError::RowTooLarge`]).
//! - **Bounded dictionaries.** A categorical value longer than
//!   [`StoreConfig::max_category_bytes`] is refused ([`StoreError::CategoryTooLong`]),
//!   and a column's dictionary never grows past
//!   [`StoreConfig::max_categories`] entries or
//!   [`StoreConfig::max_dictionary_bytes`] of text: an upsert that would add
//!   a new category to a full dictionary is refused whole
//!   ([`StoreError::DictionaryFull`]), like any other invalid upsert, rather
//!   than stored as something it is not. Known categories keep working.
//!   Dictionaries only grow (codes are stable for the store's lifetime), so
//!   these bounds are what keeps them finite.
//! - **Compact rows.** A cell is 4 bytes (an `f32`, or a `u32` dictionary code
//!   for categorical columns); a row's key (inline up to 24 bytes), update time
//!   and cells are one contiguous record; freed slots are reused. 1M entities
//!   × 10 numeric features hold about 102 bytes per entity, index included
//!   (`tests/store_memory.rs` measures it).
//!
//! Time is whatever the caller says it is (`updated_at_ms`, `now_ms`): the store
//! never reads the clock, which keeps it deterministic under test and replay.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use compact_str::CompactString;
use parking_lot::{Mutex, RwLock};

use crate::event::{FeatureValue, Features};
use crate::features::shard;

/// Cell value of a missing categorical.
const MISSING_CODE: u32 = u32::MAX;
/// Cell value of a missing number: the canonical quiet NaN (any NaN reads as missing).
const MISSING_NUMBER: u32 = 0x7fc0_0000;
/// Table bucket marker; also the reason a shard holds fewer than `u32::MAX` rows.
const EMPTY_SLOT: u32 = u32::MAX;
/// Codes `0..MAX_CATEGORIES` are usable; the last value is the missing sentinel.
const MAX_CATEGORIES: usize = (u32::MAX - 1) as usize;

/// How a column's cells are stored and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// An `f32`; accepts [`FeatureValue::Number`].
    Numeric,
    /// A dictionary code; accepts [`FeatureValue::Text`].
    Categorical,
}

/// One store column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: CompactString,
    pub kind: ColumnKind,
}

impl Column {
    /// A numeric column named `name`.
    pub fn numeric(name: impl Into<CompactString>) -> Self {
        Column {
            name: name.into(),
            kind: ColumnKind::Numeric,
        }
    }

    /// A categorical column named `name`.
    pub fn categorical(name: impl Into<CompactString>) -> Self {
        Column {
            name: name.into(),
            kind: ColumnKind::Categorical,
        }
    }
}

/// The ordered, uniquely named columns of a store; a column's index is its cell position.
#[derive(Debug, Clone)]
pub struct StoreSchema {
    columns: Vec<Column>,
    index: HashMap<CompactString, usize, foldhash::fast::RandomState>,
}

impl StoreSchema {
    /// Builds a schema; empty or duplicate column names are rejected.
    pub fn new(columns: Vec<Column>) -> Result<Self, StoreError> {
        let mut index = HashMap::with_capacity_and_hasher(columns.len(), Default::default());
        for (i, column) in columns.iter().enumerate() {
            if column.name.is_empty() {
                return Err(StoreError::EmptyColumnName { index: i });
            }
            if index.insert(column.name.clone(), i).is_some() {
                return Err(StoreError::DuplicateColumn {
                    column: column.name.clone(),
                });
            }
        }
        Ok(StoreSchema { columns, index })
    }

    /// The columns in cell order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Position of the column named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True when the schema has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// Default of [`StoreConfig::max_category_bytes`].
pub const DEFAULT_MAX_CATEGORY_BYTES: usize = 1024;
/// Default of [`StoreConfig::max_categories`].
pub const DEFAULT_MAX_CATEGORIES: usize = 100_000;
/// Default of [`StoreConfig::max_dictionary_bytes`].
pub const DEFAULT_MAX_DICTIONARY_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`StoreConfig::max_bytes`]: 1M rows of 10 numeric columns
/// and 24-byte ids take about 100 MB, so the entity cap binds first there.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024 * 1024;

/// Sizing and retention of a [`FeatureStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Shard count; rounded to a power of two in `1..=1024`.
    pub shards: usize,
    /// Entity cap, enforced per shard as `ceil(max_entities / shards)` (at least one).
    pub max_entities: usize,
    /// Rows whose update time is older than `now - ttl_ms` read as expired.
    pub ttl_ms: Option<i64>,
    /// Longest categorical value accepted, in bytes.
    pub max_category_bytes: usize,
    /// Most distinct categories one categorical column keeps.
    pub max_categories: usize,
    /// Most text (sum of category lengths) one categorical column keeps.
    pub max_dictionary_bytes: usize,
    /// Bytes of rows (cells, ids, index), enforced per shard as
    /// `max_bytes / shards`; dictionaries are bounded on their own.
    pub max_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            shards: 16,
            max_entities: 1_000_000,
            ttl_ms: None,
            max_category_bytes: DEFAULT_MAX_CATEGORY_BYTES,
            max_categories: DEFAULT_MAX_CATEGORIES,
            max_dictionary_bytes: DEFAULT_MAX_DICTIONARY_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Why the store refused a schema or an upsert.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("duplicate column `{column}` in store schema")]
    DuplicateColumn { column: CompactString },
    #[error("empty name for store column {index}")]
    EmptyColumnName { index: usize },
    #[error("empty entity id")]
    EmptyEntity,
    #[error("entity `{entity}`: column `{column}`: expected {expected}, got {got}")]
    WrongType {
        entity: CompactString,
        column: CompactString,
        expected: &'static str,
        got: &'static str,
    },
    #[error("entity `{entity}`: column `{column}`: non-finite number {value}")]
    NonFinite {
        entity: CompactString,
        column: CompactString,
        value: f64,
    },
    #[error("entity `{entity}`: column `{column}`: number {value:e} does not fit in an f32")]
    OutOfRange {
        entity: CompactString,
        column: CompactString,
        value: f64,
    },
    #[error("entity `{entity}`: no store column at index {index}")]
    NoSuchColumn { entity: CompactString, index: usize },
    #[error(
        "entity `{entity}`: a row of {bytes} bytes (its id is {id_bytes} bytes) is more than a \
         shard's share of store.max_bytes ({max} bytes)"
    )]
    RowTooLarge {
        entity: CompactString,
        id_bytes: usize,
        bytes: usize,
        max: usize,
    },
    #[error(
        "entity `{entity}`: column `{column}`: a category of {bytes} bytes, the limit is {max} (store.max_category_bytes)"
    )]
    CategoryTooLong {
        entity: CompactString,
        column: CompactString,
        bytes: usize,
        max: usize,
    },
    #[error(
        "column `{column}`: the dictionary is full ({categories} categories, {bytes} bytes of text; \
         store.max_categories = {max_categories}, store.max_dictionary_bytes = {max_bytes}): \
         a new category is refused"
    )]
    DictionaryFull {
        column: CompactString,
        categories: usize,
        bytes: usize,
        max_categories: usize,
        max_bytes: usize,
    },
}

/// What an accepted upsert did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpsertOutcome {
    /// The entity was not in the store before.
    pub created: bool,
    /// Entities evicted to stay under the shard's capacity (rows or bytes).
    pub evicted: Vec<CompactString>,
    /// Feature names that are not store columns; they were skipped.
    pub unknown_columns: Vec<CompactString>,
}

/// Result of a [`FeatureStore::get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The row was copied into the caller's [`Row`].
    Hit { updated_at_ms: i64 },
    /// No such entity.
    Miss,
    /// The entity exists but is older than the TTL; the [`Row`] reads as all missing.
    Expired,
}

/// Counters and size of a store, summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entities: usize,
    pub hits: u64,
    pub misses: u64,
    pub expired_reads: u64,
    pub upserts: u64,
    pub deletes: u64,
    /// Rows evicted at `max_entities`.
    pub evicted_capacity: u64,
    /// Rows evicted at `max_bytes`.
    pub evicted_bytes: u64,
    pub evicted_ttl: u64,
    /// The running estimate of the rows' bytes that `max_bytes` bounds
    /// (see [`row_bytes`]).
    pub row_bytes: usize,
    /// Text and entries of the categorical dictionaries (bounded by
    /// `max_dictionary_bytes` per column).
    pub dictionary_bytes: usize,
    /// Heap held by rows, keys, indexes and dictionaries (capacity, not
    /// length; a walk of the dictionaries, for tests and reports).
    pub approx_heap_bytes: usize,
}

/// The store's size and evictions, read without locking a shard
/// ([`FeatureStore::usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub row_bytes: usize,
    pub dictionary_bytes: usize,
    pub evicted_capacity: u64,
    pub evicted_bytes: u64,
    pub evicted_ttl: u64,
}

/// A reusable buffer holding one entity's cells, filled by [`FeatureStore::get`].
///
/// Read it with [`FeatureStore::value`] or [`FeatureStore::number`]. Once sized
/// (by the first `get`, or [`FeatureStore::new_row`]) reuse never allocates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    cells: Vec<u32>,
}

impl Row {
    /// An empty row; the first `get` sizes it.
    pub fn new() -> Self {
        Row::default()
    }

    /// Number of cells (the schema width after a `get`).
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True before the first `get`.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Open-addressing index from key hash to row slot.
///
/// Buckets hold the slot and 32 bits of the key's hash, so most probes that do
/// not match are rejected without touching the key, and growing never rehashes
/// keys. The bucket of a hash is picked by multiply-shift rather than masking,
/// which lets the table be any size.
struct Table {
    buckets: Vec<Bucket>,
    len: usize,
}

#[derive(Clone, Copy)]
struct Bucket {
    slot: u32,
    hash: u32,
}

const EMPTY_BUCKET: Bucket = Bucket {
    slot: EMPTY_SLOT,
    hash: 0,
};

impl Table {
    fn new() -> Self {
        Table {
            buckets: Vec::new(),
            len: 0,
        }
    }

    #[inline]
    fn home(hash: u32, n: usize) -> usize {
        ((u64::from(hash) * n as u64) >> 32) as usize
    }

    /// Bucket index of the entry with `hash` whose slot satisfies `is_key`.
    #[inline]
    fn find(&self, hash: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<usize> {
        let n = self.buckets.len();
        if n == 0 {
            return None;
        }
        let mut i = Self::home(hash, n);
        // Terminates: the load factor keeps at least one bucket empty.
        loop {
            let b = self.buckets[i];
            if b.slot == EMPTY_SLOT {
                return None;
            }
            if b.hash == hash && is_key(b.slot) {
                return Some(i);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    fn insert(&mut self, hash: u32, slot: u32) {
        // 7/8 keeps linear-probe chains short while the index stays ~10 bytes/entity.
        if (self.len + 1) * 8 > self.buckets.len() * 7 {
            self.grow();
        }
        Self::place(&mut self.buckets, Bucket { slot, hash });
        self.len += 1;
    }

    fn place(buckets: &mut [Bucket], b: Bucket) {
        let n = buckets.len();
        let mut i = Self::home(b.hash, n);
        while buckets[i].slot != EMPTY_SLOT {
            i += 1;
            if i == n {
                i = 0;
            }
        }
        buckets[i] = b;
    }

    fn grow(&mut self) {
        // 1.5× rather than 2×: the table is ~15% of a row's memory, and sizes need not be powers of two.
        let n = (self.buckets.len() * 3 / 2).max(16);
        let mut buckets = vec![EMPTY_BUCKET; n];
        for b in self.buckets.iter().filter(|b| b.slot != EMPTY_SLOT) {
            Self::place(&mut buckets, *b);
        }
        self.buckets = buckets;
    }

    /// Removes bucket `i`, shifting later entries of the probe chain back so
    /// lookups never need tombstones.
    fn remove_at(&mut self, i: usize) {
        let n = self.buckets.len();
        let mut hole = i;
        let mut j = i;
        loop {
            j += 1;
            if j == n {
                j = 0;
            }
            let b = self.buckets[j];
            if b.slot == EMPTY_SLOT {
                break;
            }
            let from_home = (j + n - Self::home(b.hash, n)) % n;
            let from_hole = (j + n - hole) % n;
            if from_hole <= from_home {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY_BUCKET;
        self.len -= 1;
    }
}

/// Words of a row before its cells: key tag, 24 key bytes, update time.
const HEAD: usize = 1 + KEY_WORDS + 2;
/// Inline key capacity in words (24 bytes, like `CompactString`).
const KEY_WORDS: usize = 6;
const INLINE_KEY_BYTES: usize = KEY_WORDS * 4;
/// Tag of a row whose key is in `long_keys` (its index is the first key word).
const LONG_KEY: u32 = u32::MAX;
/// Tag of a free slot; live tags are the inline key length (1..=24) or `LONG_KEY`.
const FREE: u32 = 0;

/// Rows of one shard, in one slab so that a lookup touches the index bucket
/// and then a single contiguous record (key, time and cells), which is what
/// bounds read latency once the store outgrows the CPU caches.
///
/// Slot `s` is `rows[s * stride..][..stride]`: `[tag, key × 6, time lo, time hi, cells…]`.
struct Shard {
    table: Table,
    rows: Vec<u32>,
    stride: usize,
    free: Vec<u32>,
    /// Keys longer than 24 bytes; an empty entry is free.
    long_keys: Vec<Box<str>>,
    long_free: Vec<u32>,
    long_key_bytes: usize,
    live: usize,
    /// Sum of [`row_bytes`] of the live rows.
    bytes: usize,
    /// `(updated_at, slot)` min-heap for eviction and expiry. Entries are not
    /// removed when a row changes; an entry counts only while the slot is live
    /// with that exact time. Rebuilt when stale entries outnumber live rows.
    queue: BinaryHeap<QueueEntry>,
}

impl Shard {
    fn new(width: usize) -> Self {
        Shard {
            table: Table::new(),
            rows: Vec::new(),
            stride: HEAD + width,
            free: Vec::new(),
            long_keys: Vec::new(),
            long_free: Vec::new(),
            long_key_bytes: 0,
            live: 0,
            bytes: 0,
            queue: BinaryHeap::new(),
        }
    }

    fn slots(&self) -> usize {
        self.rows.len() / self.stride
    }

    #[inline]
    fn row(&self, slot: u32) -> &[u32] {
        let start = slot as usize * self.stride;
        &self.rows[start..start + self.stride]
    }

    #[inline]
    fn row_mut(&mut self, slot: u32) -> &mut [u32] {
        let start = slot as usize * self.stride;
        &mut self.rows[start..start + self.stride]
    }

    #[inline]
    fn time(row: &[u32]) -> i64 {
        (u64::from(row[HEAD - 2]) | (u64::from(row[HEAD - 1]) << 32)) as i64
    }

    fn set_time(row: &mut [u32], time: i64) {
        row[HEAD - 2] = time as u64 as u32;
        row[HEAD - 1] = ((time as u64) >> 32) as u32;
    }

    #[inline]
    fn key_matches(&self, slot: u32, key: &str) -> bool {
        let row = self.row(slot);
        match row[0] {
            LONG_KEY => self
                .long_keys
                .get(row[1] as usize)
                .is_some_and(|k| **k == *key),
            len => len as usize == key.len() && inline_key(row)[..key.len()] == *key.as_bytes(),
        }
    }

    /// The key of a live slot.
    fn key(&self, slot: u32) -> CompactString {
        let row = self.row(slot);
        match row[0] {
            LONG_KEY => self
                .long_keys
                .get(row[1] as usize)
                .map_or_else(CompactString::default, |k| CompactString::new(k)),
            len => {
                let bytes = inline_key(row);
                let len = (len as usize).min(INLINE_KEY_BYTES);
                // Valid UTF-8: the bytes were copied from a `&str`.
                CompactString::from_utf8_lossy(&bytes[..len])
            }
        }
    }

    #[inline]
    fn find(&self, key: &str, hash: u32) -> Option<u32> {
        self.table
            .find(hash, |s| self.key_matches(s, key))
            .map(|i| self.table.buckets[i].slot)
    }

    fn is_current(&self, time: i64, slot: u32) -> bool {
        (slot as usize) < self.slots() && {
            let row = self.row(slot);
            row[0] != FREE && Self::time(row) == time
        }
    }

    fn insert_row(&mut self, key: &str, hash: u32, time: i64, blank: &[u32]) -> u32 {
        let mut head = [0u32; HEAD];
        if key.len() <= INLINE_KEY_BYTES {
            head[0] = key.len() as u32;
            let mut bytes = [0u8; INLINE_KEY_BYTES];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            for (w, chunk) in head[1..=KEY_WORDS].iter_mut().zip(bytes.chunks_exact(4)) {
                *w = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        } else {
            let boxed: Box<str> = key.into();
            self.long_key_bytes += boxed.len();
            head[0] = LONG_KEY;
            head[1] = match self.long_free.pop() {
                Some(i) => {
                    self.long_keys[i as usize] = boxed;
                    i
                }
                None => {
                    self.long_keys.push(boxed);
                    (self.long_keys.len() - 1) as u32
                }
            };
        }
        Self::set_time(&mut head, time);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                // The per-shard cap is clamped below EMPTY_SLOT, so this fits.
                let slot = self.slots() as u32;
                self.rows.resize(self.rows.len() + self.stride, 0);
                slot
            }
        };
        let row = self.row_mut(slot);
        row[..HEAD].copy_from_slice(&head);
        row[HEAD..].copy_from_slice(blank);
        self.table.insert(hash, slot);
        self.live += 1;
        self.bytes += row_bytes(self.stride, key.len());
        self.queue.push(QueueEntry::new(time, slot));
        slot
    }

    fn remove_slot(&mut self, slot: u32) -> CompactString {
        let key = self.key(slot);
        let hash = shard::hash_key(&key) as u32;
        if let Some(i) = self.table.find(hash, |x| x == slot) {
            self.table.remove_at(i);
        }
        let (tag, long) = {
            let row = self.row_mut(slot);
            let tag = std::mem::replace(&mut row[0], FREE);
            (tag, row[1])
        };
        self.bytes = self.bytes.saturating_sub(row_bytes(self.stride, key.len()));
        if tag == LONG_KEY {
            if let Some(k) = self.long_keys.get_mut(long as usize) {
                self.long_key_bytes -= k.len();
                *k = Box::default();
                self.long_free.push(long);
            }
        }
        self.free.push(slot);
        self.live -= 1;
        key
    }

    /// Removes the row with the oldest update time.
    fn evict_oldest(&mut self) -> Option<CompactString> {
        while let Some(entry) = self.queue.pop() {
            let (time, slot) = entry.get();
            if self.is_current(time, slot) {
                return Some(self.remove_slot(slot));
            }
        }
        None
    }

    /// Removes rows updated before `cutoff`, oldest first.
    fn expire_before(&mut self, cutoff: i64) -> usize {
        let mut removed = 0;
        while let Some((time, slot)) = self.queue.peek().map(QueueEntry::get) {
            if time >= cutoff {
                break;
            }
            self.queue.pop();
            if self.is_current(time, slot) {
                self.remove_slot(slot);
                removed += 1;
            }
        }
        removed
    }

    fn compact_queue_if_stale(&mut self) {
        if self.queue.len() <= 2 * self.live + 1024 {
            return;
        }
        let mut entries = std::mem::take(&mut self.queue).into_vec();
        entries.clear();
        entries.extend(
            self.rows
                .chunks_exact(self.stride)
                .enumerate()
                .filter(|(_, row)| row[0] != FREE)
                .map(|(s, row)| QueueEntry::new(Self::time(row), s as u32)),
        );
        self.queue = BinaryHeap::from(entries);
    }

    fn heap_bytes(&self) -> usize {
        self.table.buckets.capacity() * size_of::<Bucket>()
            + self.rows.capacity() * size_of::<u32>()
            + self.free.capacity() * size_of::<u32>()
            + self.long_keys.capacity() * size_of::<Box<str>>()
            + self.long_key_bytes
            + self.long_free.capacity() * size_of::<u32>()
            + self.queue.capacity() * size_of::<QueueEntry>()
    }
}

/// What one row counts against `store.max_bytes`: its record (key tag,
/// inline key, time, cells), an id longer than the inline 24 bytes with its
/// box, its index bucket at the table's 7/8 load, and two queue entries
/// (the queue holds up to about two per live row before it is compacted).
pub fn row_bytes(stride_words: usize, key_len: usize) -> usize {
    let long_key = if key_len > INLINE_KEY_BYTES {
        key_len + size_of::<Box<str>>() + size_of::<u32>()
    } else {
        0
    };
    stride_words * size_of::<u32>()
        + long_key
        + (size_of::<Bucket>() * 8).div_ceil(7)
        + 2 * size_of::<QueueEntry>()
}

/// `(updated_at, slot)` ordered oldest first in a max-heap.
///
/// Stored as `(time high, time low, slot)` in 32-bit parts, which orders like
/// `(i64, u32)` but packs into 12 bytes instead of 16: one entry per row adds up.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct QueueEntry(Reverse<(i32, u32, u32)>);

impl QueueEntry {
    fn new(time: i64, slot: u32) -> Self {
        QueueEntry(Reverse(((time >> 32) as i32, time as u32, slot)))
    }

    fn get(&self) -> (i64, u32) {
        let Reverse((hi, lo, slot)) = self.0;
        ((i64::from(hi) << 32) | i64::from(lo), slot)
    }
}

/// The inline key bytes of a row (meaningful up to the tag's length).
#[inline]
fn inline_key(row: &[u32]) -> [u8; INLINE_KEY_BYTES] {
    let mut bytes = [0u8; INLINE_KEY_BYTES];
    for (chunk, w) in bytes.chunks_exact_mut(4).zip(&row[1..=KEY_WORDS]) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    bytes
}

/// Relaxed counters of one shard, summed by [`FeatureStore::stats`].
#[derive(Default)]
struct Counters {
    entities: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    expired_reads: AtomicU64,
    upserts: AtomicU64,
    deletes: AtomicU64,
    evicted_capacity: AtomicU64,
    evicted_bytes: AtomicU64,
    evicted_ttl: AtomicU64,
    /// The shard's [`Shard::bytes`], for the gauge without the lock.
    bytes: AtomicUsize,
}

/// A shard with its counters, on its own cache lines so that readers of
/// different shards never write to the same line.
#[repr(align(128))]
struct ShardSlot {
    rows: RwLock<Shard>,
    counters: Counters,
}

/// A category's entries besides its text: its name in the snapshot and in
/// the code map, the code, the map's control byte and pointer share.
const DICT_ENTRY_BYTES: usize =
    2 * size_of::<CompactString>() + size_of::<u32>() + 1 + size_of::<usize>();

/// Categories per dictionary chunk: bounds what publishing a new category copies.
const DICT_CHUNK: usize = 256;

/// Code ↔ text of one categorical column.
///
/// Readers decode through an immutable snapshot (lock-free `ArcSwap` load);
/// writers take the mutex, and when a category is new, publish a new snapshot.
/// The snapshot is a list of shared fixed-size chunks, so publishing copies
/// only the last chunk and the chunk pointers, not every name: a column that
/// turns out to have many categories stays linear to fill rather than quadratic.
struct Dictionary {
    chunks: ArcSwap<Vec<Arc<Vec<CompactString>>>>,
    codes: Mutex<Codes>,
    max_categories: usize,
    max_bytes: usize,
}

/// The writer side of a dictionary.
#[derive(Default)]
struct Codes {
    map: HashMap<CompactString, u32, foldhash::fast::RandomState>,
    /// Sum of the categories' lengths.
    text_bytes: usize,
}

/// Why [`Dictionary::encode`] refused a category: its size when full.
struct Full {
    categories: usize,
    bytes: usize,
}

impl Dictionary {
    fn new(max_categories: usize, max_bytes: usize) -> Self {
        Dictionary {
            chunks: ArcSwap::from_pointee(Vec::new()),
            codes: Mutex::new(Codes::default()),
            max_categories: max_categories.min(MAX_CATEGORIES),
            max_bytes,
        }
    }

    fn encode(&self, name: &str) -> Result<u32, Full> {
        let mut guard = self.codes.lock();
        let codes = &mut *guard;
        if let Some(&code) = codes.map.get(name) {
            return Ok(code);
        }
        let text_bytes = codes.text_bytes.saturating_add(name.len());
        if codes.map.len() >= self.max_categories || text_bytes > self.max_bytes {
            return Err(Full {
                categories: codes.map.len(),
                bytes: codes.text_bytes,
            });
        }
        codes.text_bytes = text_bytes;
        let codes = &mut codes.map;
        let code = codes.len() as u32;
        let name = CompactString::new(name);
        let mut chunks: Vec<Arc<Vec<CompactString>>> = self.chunks.load().as_ref().clone();
        match chunks.last_mut() {
            Some(last) if last.len() < DICT_CHUNK => {
                let mut names = Vec::with_capacity(DICT_CHUNK);
                names.extend(last.iter().cloned());
                names.push(name.clone());
                *last = Arc::new(names);
            }
            _ => {
                let mut names = Vec::with_capacity(DICT_CHUNK);
                names.push(name.clone());
                chunks.push(Arc::new(names));
            }
        }
        // Published before the code can reach any row, so readers never meet an unknown code.
        self.chunks.store(Arc::new(chunks));
        codes.insert(name, code);
        Ok(code)
    }

    fn decode(&self, code: u32) -> Option<CompactString> {
        let code = code as usize;
        self.chunks
            .load()
            .get(code / DICT_CHUNK)?
            .get(code % DICT_CHUNK)
            .cloned()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.chunks.load().iter().map(|c| c.len()).sum()
    }

    /// The running estimate: every category's text twice (snapshot and
    /// code map) and its entries, without walking the names.
    fn bytes(&self) -> usize {
        let codes = self.codes.lock();
        2 * codes.text_bytes + codes.map.len() * DICT_ENTRY_BYTES
    }

    fn heap_bytes(&self) -> usize {
        let chunks = self.chunks.load();
        let text: usize = chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter(|n| n.is_heap_allocated())
            .map(|n| n.capacity())
            .sum();
        // The code map holds a second copy of every name.
        chunks.capacity() * size_of::<Arc<Vec<CompactString>>>()
            + chunks.len() * (DICT_CHUNK * size_of::<CompactString>() + 2 * size_of::<usize>())
            + self.codes.lock().map.capacity() * (size_of::<(CompactString, u32)>() + 1)
            + 2 * text
    }
}

/// A validated value waiting to be written.
enum Staged<'a> {
    Cell(u32),
    Category(&'a str),
}

/// The online feature store. Share it as `Arc<FeatureStore>`; every method takes `&self`.
pub struct FeatureStore {
    schema: StoreSchema,
    shards: Box<[ShardSlot]>,
    /// One per column; `None` for numeric columns.
    dictionaries: Box<[Option<Dictionary>]>,
    /// A new row's cells: every column missing.
    blank: Box<[u32]>,
    cap_per_shard: usize,
    /// `max_bytes / shards`.
    bytes_per_shard: usize,
    max_bytes: usize,
    ttl_ms: Option<i64>,
    max_category_bytes: usize,
}

impl std::fmt::Debug for FeatureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureStore")
            .field("columns", &self.schema.len())
            .field("shards", &self.shards.len())
            .field("cap_per_shard", &self.cap_per_shard)
            .field("ttl_ms", &self.ttl_ms)
            .field("entities", &self.len())
            .finish()
    }
}

impl FeatureStore {
    /// An empty store; `cfg.shards` is rounded to a power of two.
    pub fn new(schema: StoreSchema, cfg: StoreConfig) -> Self {
        let n = shard::shard_count(cfg.shards);
        let cap_per_shard = cfg
            .max_entities
            .div_ceil(n)
            .clamp(1, EMPTY_SLOT as usize - 1);
        let shards = (0..n)
            .map(|_| ShardSlot {
                rows: RwLock::new(Shard::new(schema.len())),
                counters: Counters::default(),
            })
            .collect();
        let dictionaries = schema
            .columns()
            .iter()
            .map(|c| {
                (c.kind == ColumnKind::Categorical)
                    .then(|| Dictionary::new(cfg.max_categories, cfg.max_dictionary_bytes))
            })
            .collect();
        let blank = schema
            .columns()
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Numeric => MISSING_NUMBER,
                ColumnKind::Categorical => MISSING_CODE,
            })
            .collect();
        FeatureStore {
            schema,
            shards,
            dictionaries,
            blank,
            cap_per_shard,
            bytes_per_shard: cfg.max_bytes / n,
            max_bytes: cfg.max_bytes,
            ttl_ms: cfg.ttl_ms,
            max_category_bytes: cfg.max_category_bytes,
        }
    }

    /// The store's columns.
    pub fn schema(&self) -> &StoreSchema {
        &self.schema
    }

    /// A row buffer already sized for this schema.
    pub fn new_row(&self) -> Row {
        Row {
            cells: self.blank.to_vec(),
        }
    }

    #[inline]
    fn slot_of(&self, entity: &str) -> &ShardSlot {
        &self.shards[shard::shard_of(entity, self.shards.len())]
    }

    /// Partial upsert: only the named columns change (a new entity starts all
    /// missing); a [`FeatureValue::Null`] clears its column.
    ///
    /// Names that are not store columns are skipped and listed in the outcome.
    /// A value of the wrong kind (anything but a number for a numeric column,
    /// anything but text for a categorical one) or a number that is not finite
    /// or does not fit an `f32` is an error naming the entity and column, and
    /// then nothing is written. The row's update time becomes the later of its
    /// current one and `updated_at_ms`, so a late event cannot make a row look
    /// older than it is.
    pub fn upsert(
        &self,
        entity: &str,
        values: &Features,
        updated_at_ms: i64,
    ) -> Result<UpsertOutcome, StoreError> {
        let mut unknown = Vec::new();
        let known = values
            .iter()
            .filter_map(|(name, value)| match self.schema.index_of(name) {
                Some(col) => Some((col, value)),
                None => {
                    unknown.push(CompactString::new(name));
                    None
                }
            });
        let staged = self.stage(entity, known)?;
        let mut outcome = self.write(entity, &staged, updated_at_ms);
        outcome.unknown_columns = unknown;
        Ok(outcome)
    }

    /// [`upsert`](Self::upsert) with columns given by schema index, for callers
    /// that resolved names once (snapshot loading, enrichment).
    pub fn upsert_indexed(
        &self,
        entity: &str,
        values: &[(usize, FeatureValue)],
        updated_at_ms: i64,
    ) -> Result<UpsertOutcome, StoreError> {
        if let Some(&(index, _)) = values.iter().find(|(c, _)| *c >= self.schema.len()) {
            return Err(StoreError::NoSuchColumn {
                entity: entity.into(),
                index,
            });
        }
        let staged = self.stage(entity, values.iter().map(|(c, v)| (*c, v)))?;
        Ok(self.write(entity, &staged, updated_at_ms))
    }

    /// Checks and encodes every value without touching any row.
    fn stage<'v>(
        &self,
        entity: &str,
        values: impl Iterator<Item = (usize, &'v FeatureValue)>,
    ) -> Result<Vec<(usize, u32)>, StoreError> {
        if entity.is_empty() {
            return Err(StoreError::EmptyEntity);
        }
        let bytes = row_bytes(HEAD + self.blank.len(), entity.len());
        if bytes > self.bytes_per_shard {
            return Err(StoreError::RowTooLarge {
                entity: entity.into(),
                id_bytes: entity.len(),
                bytes,
                max: self.bytes_per_shard,
            });
        }
        let columns = self.schema.columns();
        let mut staged = Vec::with_capacity(values.size_hint().0);
        for (col, value) in values {
            let column = &columns[col];
            let wrong = |expected| StoreError::WrongType {
                entity: entity.into(),
                column: column.name.clone(),
                expected,
                got: value.kind(),
            };
            let cell = match (column.kind, value) {
                (_, FeatureValue::Null) => Staged::Cell(self.blank[col]),
                (ColumnKind::Numeric, FeatureValue::Number(x)) => {
                    Staged::Cell(encode_number(entity, &column.name, *x)?)
                }
                (ColumnKind::Numeric, _) => return Err(wrong("a number")),
                (ColumnKind::Categorical, FeatureValue::Text(t)) => {
                    if t.len() > self.max_category_bytes {
                        return Err(StoreError::CategoryTooLong {
                            entity: entity.into(),
                            column: column.name.clone(),
                            bytes: t.len(),
                            max: self.max_category_bytes,
                        });
                    }
                    Staged::Category(t)
                }
                (ColumnKind::Categorical, _) => return Err(wrong("text")),
            };
            staged.push((col, cell));
        }
        // Dictionaries change only once every value is known to be valid.
        staged
            .into_iter()
            .map(|(col, cell)| match cell {
                Staged::Cell(bits) => Ok((col, bits)),
                Staged::Category(text) => match &self.dictionaries[col] {
                    Some(d) => d.encode(text).map(|code| (col, code)).map_err(|full| {
                        StoreError::DictionaryFull {
                            column: columns[col].name.clone(),
                            categories: full.categories,
                            bytes: full.bytes,
                            max_categories: d.max_categories,
                            max_bytes: d.max_bytes,
                        }
                    }),
                    // A categorical column always has a dictionary.
                    None => Err(StoreError::WrongType {
                        entity: entity.into(),
                        column: columns[col].name.clone(),
                        expected: "a number",
                        got: "text",
                    }),
                },
            })
            .collect()
    }

    fn write(&self, entity: &str, staged: &[(usize, u32)], updated_at_ms: i64) -> UpsertOutcome {
        let slot_ref = self.slot_of(entity);
        let hash = shard::hash_key(entity) as u32;
        let mut outcome = UpsertOutcome::default();
        {
            let mut shard = slot_ref.rows.write();
            let slot = match shard.find(entity, hash) {
                Some(slot) => {
                    let row = shard.row_mut(slot);
                    if updated_at_ms > Shard::time(row) {
                        Shard::set_time(row, updated_at_ms);
                        shard.queue.push(QueueEntry::new(updated_at_ms, slot));
                    }
                    slot
                }
                None => {
                    if shard.live >= self.cap_per_shard {
                        if let Some(id) = shard.evict_oldest() {
                            outcome.evicted.push(id);
                            slot_ref.counters.evicted_capacity.fetch_add(1, Relaxed);
                        }
                    }
                    // `stage` refused a row larger than the whole share, so
                    // this ends with room for it.
                    let bytes = row_bytes(shard.stride, entity.len());
                    while shard.bytes + bytes > self.bytes_per_shard {
                        let Some(id) = shard.evict_oldest() else {
                            break;
                        };
                        outcome.evicted.push(id);
                        slot_ref.counters.evicted_bytes.fetch_add(1, Relaxed);
                    }
                    outcome.created = true;
                    shard.insert_row(entity, hash, updated_at_ms, &self.blank)
                }
            };
            let row = &mut shard.row_mut(slot)[HEAD..];
            for &(col, bits) in staged {
                row[col] = bits;
            }
            shard.compact_queue_if_stale();
            slot_ref.counters.entities.store(shard.live, Relaxed);
            slot_ref.counters.bytes.store(shard.bytes, Relaxed);
        }
        slot_ref.counters.upserts.fetch_add(1, Relaxed);
        outcome
    }

    /// Removes the entity; false when it was not there.
    pub fn delete(&self, entity: &str) -> bool {
        let slot_ref = self.slot_of(entity);
        let hash = shard::hash_key(entity) as u32;
        let mut shard = slot_ref.rows.write();
        let Some(slot) = shard.find(entity, hash) else {
            return false;
        };
        shard.remove_slot(slot);
        shard.compact_queue_if_stale();
        slot_ref.counters.entities.store(shard.live, Relaxed);
        slot_ref.counters.bytes.store(shard.bytes, Relaxed);
        drop(shard);
        slot_ref.counters.deletes.fetch_add(1, Relaxed);
        true
    }

    /// Copies the entity's row into `out` (reused; no allocation once sized).
    ///
    /// A row updated before `now_ms - ttl` is [`Lookup::Expired`] and counted
    /// as an expired read; on `Miss` and `Expired`, `out` reads as all missing.
    pub fn get(&self, entity: &str, now_ms: i64, out: &mut Row) -> Lookup {
        let slot_ref = self.slot_of(entity);
        let hash = shard::hash_key(entity) as u32;
        let lookup = {
            let shard = slot_ref.rows.read();
            match shard.find(entity, hash) {
                None => Lookup::Miss,
                Some(slot) => {
                    let row = shard.row(slot);
                    let updated_at_ms = Shard::time(row);
                    if self.is_expired(updated_at_ms, now_ms) {
                        Lookup::Expired
                    } else {
                        out.cells.clear();
                        out.cells.extend_from_slice(&row[HEAD..]);
                        Lookup::Hit { updated_at_ms }
                    }
                }
            }
        };
        let counter = match lookup {
            Lookup::Hit { .. } => &slot_ref.counters.hits,
            Lookup::Miss => &slot_ref.counters.misses,
            Lookup::Expired => &slot_ref.counters.expired_reads,
        };
        counter.fetch_add(1, Relaxed);
        if !matches!(lookup, Lookup::Hit { .. }) {
            out.cells.clear();
            out.cells.extend_from_slice(&self.blank);
        }
        lookup
    }

    #[inline]
    fn is_expired(&self, updated_at_ms: i64, now_ms: i64) -> bool {
        self.ttl_ms
            .is_some_and(|ttl| updated_at_ms < now_ms.saturating_sub(ttl))
    }

    /// Value of column `col` in a row read by [`get`](Self::get):
    /// `Number` (the stored `f32` widened), `Text` (the category) or `Null`
    /// when missing or `col` is out of range.
    pub fn value(&self, row: &Row, col: usize) -> FeatureValue {
        let (Some(&bits), Some(column)) = (row.cells.get(col), self.schema.columns().get(col))
        else {
            return FeatureValue::Null;
        };
        match column.kind {
            ColumnKind::Numeric => {
                let x = f32::from_bits(bits);
                if x.is_nan() {
                    FeatureValue::Null
                } else {
                    FeatureValue::Number(f64::from(x))
                }
            }
            ColumnKind::Categorical => self
                .category(col, bits)
                .map_or(FeatureValue::Null, FeatureValue::Text),
        }
    }

    /// The `f32` of numeric column `col` in `row`; `None` when missing or not numeric.
    #[inline]
    pub fn number(&self, row: &Row, col: usize) -> Option<f32> {
        let column = self.schema.columns().get(col)?;
        if column.kind != ColumnKind::Numeric {
            return None;
        }
        let x = f32::from_bits(*row.cells.get(col)?);
        (!x.is_nan()).then_some(x)
    }

    /// The dictionary code of categorical column `col` in `row`; `None` when
    /// missing or not categorical. Codes are stable for the store's lifetime.
    #[inline]
    pub fn code(&self, row: &Row, col: usize) -> Option<u32> {
        self.dictionaries.get(col)?.as_ref()?;
        let code = *row.cells.get(col)?;
        (code != MISSING_CODE).then_some(code)
    }

    /// Text of category `code` in column `col`.
    pub fn category(&self, col: usize, code: u32) -> Option<CompactString> {
        if code == MISSING_CODE {
            return None;
        }
        self.dictionaries.get(col)?.as_ref()?.decode(code)
    }

    /// Removes rows older than the TTL at `now_ms`, oldest first; returns how many.
    pub fn expire(&self, now_ms: i64) -> usize {
        let Some(ttl) = self.ttl_ms else {
            return 0;
        };
        let cutoff = now_ms.saturating_sub(ttl);
        let mut total = 0;
        for slot_ref in self.shards.iter() {
            let mut shard = slot_ref.rows.write();
            let removed = shard.expire_before(cutoff);
            shard.compact_queue_if_stale();
            slot_ref.counters.entities.store(shard.live, Relaxed);
            slot_ref.counters.bytes.store(shard.bytes, Relaxed);
            drop(shard);
            slot_ref
                .counters
                .evicted_ttl
                .fetch_add(removed as u64, Relaxed);
            total += removed;
        }
        total
    }

    /// Calls `f(entity, updated_at_ms, row)` for every row, expired or not, in
    /// no particular order. Rows are copied out one shard at a time, so `f`
    /// may use the store, and writers wait for at most one shard copy.
    pub fn for_each_row(&self, mut f: impl FnMut(&str, i64, &Row)) {
        let w = self.blank.len();
        let mut keys = Vec::new();
        let mut times = Vec::new();
        let mut cells = Vec::new();
        let mut row = self.new_row();
        for slot_ref in self.shards.iter() {
            keys.clear();
            times.clear();
            cells.clear();
            {
                let shard = slot_ref.rows.read();
                for slot in 0..shard.slots() as u32 {
                    let row = shard.row(slot);
                    if row[0] != FREE {
                        keys.push(shard.key(slot));
                        times.push(Shard::time(row));
                        cells.extend_from_slice(&row[HEAD..]);
                    }
                }
            }
            for (i, key) in keys.iter().enumerate() {
                row.cells.clear();
                row.cells.extend_from_slice(&cells[i * w..(i + 1) * w]);
                f(key, times[i], &row);
            }
        }
    }

    /// Number of entities (expired rows included until [`expire`](Self::expire)).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.counters.entities.load(Relaxed))
            .sum()
    }

    /// True when no entity is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `store.max_bytes`.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The most [`StoreUsage::dictionary_bytes`] can reach: every
    /// categorical column's dictionary full (`max_dictionary_bytes` of text
    /// twice, `max_categories` entries).
    pub fn dictionary_limit_bytes(&self) -> usize {
        self.dictionaries
            .iter()
            .flatten()
            .map(|d| 2 * d.max_bytes + d.max_categories * DICT_ENTRY_BYTES)
            .sum()
    }

    /// What the gauge and the bound need, without a walk or a shard lock:
    /// the rows' running byte estimate, the dictionaries', and the
    /// eviction counts (capacity, bytes, ttl).
    pub fn usage(&self) -> StoreUsage {
        let mut u = StoreUsage {
            dictionary_bytes: self
                .dictionaries
                .iter()
                .flatten()
                .map(Dictionary::bytes)
                .sum(),
            ..StoreUsage::default()
        };
        for slot_ref in self.shards.iter() {
            let c = &slot_ref.counters;
            u.row_bytes += c.bytes.load(Relaxed);
            u.evicted_capacity += c.evicted_capacity.load(Relaxed);
            u.evicted_bytes += c.evicted_bytes.load(Relaxed);
            u.evicted_ttl += c.evicted_ttl.load(Relaxed);
        }
        u
    }

    /// Counters summed over shards, and the approximate heap held.
    pub fn stats(&self) -> StoreStats {
        let u = self.usage();
        let mut st = StoreStats {
            approx_heap_bytes: self.shards.len() * size_of::<ShardSlot>()
                + self.blank.len() * size_of::<u32>()
                + self.dictionaries.len() * size_of::<Option<Dictionary>>(),
            row_bytes: u.row_bytes,
            dictionary_bytes: u.dictionary_bytes,
            evicted_capacity: u.evicted_capacity,
            evicted_bytes: u.evicted_bytes,
            evicted_ttl: u.evicted_ttl,
            ..StoreStats::default()
        };
        for slot_ref in self.shards.iter() {
            let c = &slot_ref.counters;
            st.entities += c.entities.load(Relaxed);
            st.hits += c.hits.load(Relaxed);
            st.misses += c.misses.load(Relaxed);
            st.expired_reads += c.expired_reads.load(Relaxed);
            st.upserts += c.upserts.load(Relaxed);
            st.deletes += c.deletes.load(Relaxed);
            st.approx_heap_bytes += slot_ref.rows.read().heap_bytes();
        }
        st.approx_heap_bytes += self
            .dictionaries
            .iter()
            .flatten()
            .map(Dictionary::heap_bytes)
            .sum::<usize>();
        st
    }
}

/// The cell of a numeric value, or why it cannot be stored.
fn encode_number(entity: &str, column: &str, x: f64) -> Result<u32, StoreError> {
    if !x.is_finite() {
        return Err(StoreError::NonFinite {
            entity: entity.into(),
            column: column.into(),
            value: x,
        });
    }
    let y = x as f32;
    if !y.is_finite() {
        return Err(StoreError::OutOfRange {
            entity: entity.into(),
            column: column.into(),
            value: x,
        });
    }
    Ok(y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> StoreSchema {
        StoreSchema::new(vec![
            Column::numeric("credit_limit"),
            Column::numeric("avg_amount_90d"),
            Column::categorical("card_tier"),
        ])
        .unwrap()
    }

    fn feats(items: &[(&str, FeatureValue)]) -> Features {
        let mut f = Features::default();
        for (k, v) in items {
            f.insert(*k, v.clone());
        }
        f
    }

    fn num(x: f64) -> FeatureValue {
        FeatureValue::Number(x)
    }

    fn text(s: &str) -> FeatureValue {
        FeatureValue::Text(s.into())
    }

    fn values(store: &FeatureStore, entity: &str, now: i64) -> Option<Vec<FeatureValue>> {
        let mut row = Row::new();
        match store.get(entity, now, &mut row) {
            Lookup::Hit { .. } => Some(
                (0..store.schema().len())
                    .map(|c| store.value(&row, c))
                    .collect(),
            ),
            _ => None,
        }
    }

    #[test]
    fn schema_rejects_duplicates_and_resolves_names() {
        let err =
            StoreSchema::new(vec![Column::numeric("a"), Column::categorical("a")]).unwrap_err();
        assert_eq!(err.to_string(), "duplicate column `a` in store schema");
        assert!(StoreSchema::new(vec![Column::numeric("")]).is_err());
        let s = schema();
        assert_eq!(s.len(), 3);
        assert_eq!(s.index_of("card_tier"), Some(2));
        assert_eq!(s.index_of("nope"), None);
    }

    #[test]
    fn upsert_get_delete() {
        let store = FeatureStore::new(schema(), StoreConfig::default());
        assert!(store.is_empty());
        let out = store
            .upsert(
                "card-1",
                &feats(&[("credit_limit", num(5000.0)), ("card_tier", text("gold"))]),
                100,
            )
            .unwrap();
        assert!(out.created);
        assert!(out.unknown_columns.is_empty());
        let mut row = store.new_row();
        assert_eq!(
            store.get("card-1", 100, &mut row),
            Lookup::Hit { updated_at_ms: 100 }
        );
        assert_eq!(store.value(&row, 0), num(5000.0));
        assert_eq!(store.value(&row, 1), FeatureValue::Null);
        assert_eq!(store.value(&row, 2), text("gold"));
        assert_eq!(store.value(&row, 99), FeatureValue::Null);
        assert_eq!(store.number(&row, 0), Some(5000.0));
        assert_eq!(store.number(&row, 2), None);
        assert_eq!(store.code(&row, 2), Some(0));
        assert_eq!(store.get("card-2", 100, &mut row), Lookup::Miss);
        assert_eq!(
            store.value(&row, 0),
            FeatureValue::Null,
            "a miss leaves no stale cells"
        );
        assert_eq!(store.len(), 1);

        assert!(store.delete("card-1"));
        assert!(!store.delete("card-1"));
        assert_eq!(store.get("card-1", 100, &mut row), Lookup::Miss);
        assert!(store.is_empty());

        let st = store.stats();
        assert_eq!((st.hits, st.misses, st.upserts, st.deletes), (1, 2, 1, 1));
        assert_eq!(st.entities, 0);
    }

    #[test]
    fn partial_upsert_changes_only_named_columns() {
        let store = FeatureStore::new(schema(), StoreConfig::default());
        store
            .upsert(
                "c",
                &feats(&[
                    ("credit_limit", num(1.5)),
                    ("avg_amount_90d", num(2.5)),
                    ("card_tier", text("std")),
                ]),
                10,
            )
            .unwrap();
        let out = store
            .upsert(
                "c",
                &feats(&[("avg_amount_90d", num(7.0)), ("unknown_x", num(1.0))]),
                20,
            )
            .unwrap();
        assert!(!out.created);
        assert_eq!(out.unknown_columns, vec![CompactString::from("unknown_x")]);
        assert_eq!(
            values(&store, "c", 20).unwrap(),
            vec![num(1.5), num(7.0), text("std")]
        );

        // Null clears; a late event does not move the update time back.
        store
            .upsert("c", &feats(&[("card_tier", FeatureValue::Null)]), 5)
            .unwrap();
        let mut row = Row::new();
        assert_eq!(
            store.get("c", 20, &mut row),
            Lookup::Hit { updated_at_ms: 20 }
        );
        assert_eq!(store.value(&row, 2), FeatureValue::Null);
        assert_eq!(store.value(&row, 0), num(1.5));
    }

    #[test]
    fn wrong_type_and_non_finite_write_nothing() {
        let store = FeatureStore::new(schema(), StoreConfig::default());
        store
            .upsert("c", &feats(&[("credit_limit", num(1.0))]), 1)
            .unwrap();
        let before = values(&store, "c", 1).unwrap();

        let cases = [
            (
                feats(&[("credit_limit", num(2.0)), ("avg_amount_90d", text("abc"))]),
                "entity `c`: column `avg_amount_90d`: expected a number, got text",
            ),
            (
                feats(&[("card_tier", text("gold")), ("credit_limit", num(f64::NAN))]),
                "entity `c`: column `credit_limit`: non-finite number NaN",
            ),
            (
                feats(&[("credit_limit", num(f64::INFINITY))]),
                "entity `c`: column `credit_limit`: non-finite number inf",
            ),
            (
                feats(&[("credit_limit", num(1e300))]),
                "entity `c`: column `credit_limit`: number 1e300 does not fit in an f32",
            ),
            (
                feats(&[("card_tier", num(3.0))]),
                "entity `c`: column `card_tier`: expected text, got number",
            ),
            (
                feats(&[("credit_limit", FeatureValue::Bool(true))]),
                "entity `c`: column `credit_limit`: expected a number, got bool",
            ),
        ];
        for (f, msg) in cases {
            let err = store.upsert("c", &f, 50).unwrap_err();
            assert_eq!(err.to_string(), msg);
        }
        let mut row = Row::new();
        assert_eq!(
            store.get("c", 1, &mut row),
            Lookup::Hit { updated_at_ms: 1 }
        );
        assert_eq!(values(&store, "c", 1).unwrap(), before);
        // A rejected upsert neither creates the entity nor registers its category.
        assert!(store.upsert("new", &cases_bad(), 1).is_err());
        assert_eq!(store.get("new", 1, &mut row), Lookup::Miss);
        assert_eq!(store.dictionaries[2].as_ref().unwrap().len(), 0);
        assert_eq!(
            store.upsert("", &feats(&[]), 1),
            Err(StoreError::EmptyEntity)
        );
        assert_eq!(store.stats().upserts, 1);
    }

    fn cases_bad() -> Features {
        feats(&[
            ("card_tier", text("gold")),
            ("credit_limit", num(f64::NEG_INFINITY)),
        ])
    }

    #[test]
    fn upsert_indexed_checks_indices() {
        let store = FeatureStore::new(schema(), StoreConfig::default());
        store
            .upsert_indexed("c", &[(0, num(3.0)), (2, text("gold"))], 1)
            .unwrap();
        assert_eq!(
            values(&store, "c", 1).unwrap(),
            vec![num(3.0), FeatureValue::Null, text("gold")]
        );
        assert!(matches!(
            store.upsert_indexed("c", &[(3, num(1.0))], 1),
            Err(StoreError::NoSuchColumn { index: 3, .. })
        ));
    }

    #[test]
    fn ttl_reads_expired_and_expire_removes() {
        let cfg = StoreConfig {
            shards: 4,
            ttl_ms: Some(1_000),
            ..StoreConfig::default()
        };
        let store = FeatureStore::new(schema(), cfg);
        for i in 0..100 {
            store
                .upsert(
                    &format!("e{i}"),
                    &feats(&[("credit_limit", num(i as f64))]),
                    i * 100,
                )
                .unwrap();
        }
        let mut row = Row::new();
        // At now = 5000 the cutoff is 4000: e0..e39 are expired, e40 is exactly at the edge.
        assert_eq!(store.get("e39", 5_000, &mut row), Lookup::Expired);
        assert_eq!(store.value(&row, 0), FeatureValue::Null);
        assert_eq!(
            store.get("e40", 5_000, &mut row),
            Lookup::Hit {
                updated_at_ms: 4_000
            }
        );
        // Refreshing a row keeps it.
        store.upsert("e3", &feats(&[]), 4_500).unwrap();
        assert_eq!(store.stats().expired_reads, 1);

        assert_eq!(store.expire(5_000), 39);
        assert_eq!(store.len(), 61);
        assert_eq!(store.get("e39", 5_000, &mut row), Lookup::Miss);
        assert!(matches!(
            store.get("e3", 5_000, &mut row),
            Lookup::Hit { .. }
        ));
        assert_eq!(store.expire(5_000), 0);
        assert_eq!(store.stats().evicted_ttl, 39);

        let no_ttl = FeatureStore::new(schema(), StoreConfig::default());
        no_ttl.upsert("x", &feats(&[]), 0).unwrap();
        assert_eq!(no_ttl.expire(i64::MAX), 0);
        assert!(matches!(
            no_ttl.get("x", i64::MAX, &mut row),
            Lookup::Hit { .. }
        ));
    }

    #[test]
    fn cap_evicts_least_recently_updated() {
        let cfg = StoreConfig {
            shards: 1,
            max_entities: 3,
            ttl_ms: None,
            ..StoreConfig::default()
        };
        let store = FeatureStore::new(schema(), cfg);
        let f = feats(&[("credit_limit", num(1.0))]);
        store.upsert("a", &f, 10).unwrap();
        store.upsert("b", &f, 20).unwrap();
        store.upsert("c", &f, 30).unwrap();
        store.upsert("a", &f, 40).unwrap();
        let out = store.upsert("d", &f, 50).unwrap();
        assert_eq!(out.evicted, ["b"]);
        let out = store.upsert("e", &f, 60).unwrap();
        assert_eq!(out.evicted, ["c"]);
        let mut row = Row::new();
        for (k, present) in [
            ("a", true),
            ("b", false),
            ("c", false),
            ("d", true),
            ("e", true),
        ] {
            assert_eq!(store.get(k, 60, &mut row) != Lookup::Miss, present, "{k}");
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.stats().evicted_capacity, 2);

        // Per-shard cap is ceil(max / shards).
        let cfg = StoreConfig {
            shards: 4,
            max_entities: 10,
            ttl_ms: None,
            ..StoreConfig::default()
        };
        let store = FeatureStore::new(schema(), cfg);
        for i in 0..1_000 {
            store.upsert(&format!("k{i}"), &f, i).unwrap();
        }
        assert_eq!(store.len(), 12);
        assert_eq!(store.stats().evicted_capacity, 988);
    }

    #[test]
    fn slots_are_reused_and_index_survives_churn() {
        let store = FeatureStore::new(
            schema(),
            StoreConfig {
                shards: 2,
                ..StoreConfig::default()
            },
        );
        let mut row = Row::new();
        for round in 0..20_i64 {
            for i in 0..500 {
                let v = feats(&[("credit_limit", num((round * 1000 + i) as f64))]);
                store
                    .upsert(&format!("entity-with-a-fairly-long-id-{i}"), &v, round)
                    .unwrap();
            }
            for i in (0..500).filter(|i| (i + round) % 3 == 0) {
                assert!(store.delete(&format!("entity-with-a-fairly-long-id-{i}")));
            }
            for i in 0..500 {
                let k = format!("entity-with-a-fairly-long-id-{i}");
                let deleted = (i + round) % 3 == 0;
                match store.get(&k, round, &mut row) {
                    Lookup::Hit { .. } => {
                        assert!(!deleted);
                        assert_eq!(store.number(&row, 0), Some((round * 1000 + i) as f32));
                    }
                    other => assert!(deleted, "{k}: {other:?}"),
                }
            }
        }
        let shard = store.shards[0].rows.read();
        assert!(
            shard.slots() <= 500,
            "freed slots are reused: {}",
            shard.slots()
        );
        assert!(shard.queue.len() <= 2 * shard.live + 1024);
        drop(shard);
        let mut n = 0;
        store.for_each_row(|_, _, _| n += 1);
        assert_eq!(n, store.len());
    }

    #[test]
    fn concurrent_readers_see_whole_rows() {
        let cols = (0..10).map(|i| Column::numeric(format!("f{i}"))).collect();
        let store = FeatureStore::new(
            StoreSchema::new(cols).unwrap(),
            StoreConfig {
                shards: 4,
                ..StoreConfig::default()
            },
        );
        let names: Vec<CompactString> = (0..10).map(|i| format!("f{i}").into()).collect();
        let entities: Vec<String> = (0..64).map(|i| format!("card-{i:07}")).collect();
        let write = |round: i64| {
            for e in &entities {
                let f = Features(
                    names
                        .iter()
                        .map(|n| (n.clone(), num(round as f64)))
                        .collect(),
                );
                store.upsert(e, &f, round).unwrap();
            }
        };
        write(0);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut row = store.new_row();
                    let mut checked = 0u64;
                    while !done.load(Relaxed) || checked == 0 {
                        for e in &entities {
                            let Lookup::Hit { updated_at_ms } = store.get(e, 0, &mut row) else {
                                panic!("{e} vanished");
                            };
                            for c in 0..10 {
                                assert_eq!(
                                    store.number(&row, c),
                                    Some(updated_at_ms as f32),
                                    "{e} torn"
                                );
                            }
                            checked += 1;
                        }
                    }
                });
            }
            s.spawn(|| {
                for round in 1..=300 {
                    write(round);
                }
                done.store(true, Relaxed);
            });
        });
        let mut row = Row::new();
        assert_eq!(
            store.get(&entities[5], 0, &mut row),
            Lookup::Hit { updated_at_ms: 300 }
        );
    }

    #[test]
    fn queue_pops_oldest_first_across_the_whole_i64_range() {
        let times = [
            i64::MIN,
            -5_000_000_000,
            -1,
            0,
            1,
            4_294_967_295,
            4_294_967_296,
            i64::MAX,
        ];
        let mut heap = BinaryHeap::new();
        for (i, t) in times.iter().rev().enumerate() {
            heap.push(QueueEntry::new(*t, i as u32));
        }
        let popped: Vec<i64> = std::iter::from_fn(|| heap.pop().map(|e| e.get().0)).collect();
        assert_eq!(popped, times);
        assert_eq!(QueueEntry::new(-7, 3).get(), (-7, 3));
        assert_eq!(size_of::<QueueEntry>(), 12);
    }

    #[test]
    fn dictionary_codes_are_stable_across_chunks() {
        let d = Dictionary::new(DEFAULT_MAX_CATEGORIES, DEFAULT_MAX_DICTIONARY_BYTES);
        let names: Vec<String> = (0..3 * DICT_CHUNK + 7)
            .map(|i| format!("merchant-{i}"))
            .collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(d.encode(n).ok(), Some(i as u32));
        }
        assert_eq!(
            d.encode(&names[DICT_CHUNK + 1]).ok(),
            Some(DICT_CHUNK as u32 + 1)
        );
        for (i, n) in names.iter().enumerate() {
            assert_eq!(d.decode(i as u32).as_deref(), Some(n.as_str()));
        }
        assert_eq!(d.decode(names.len() as u32), None);
        assert_eq!(d.len(), names.len());
    }

    #[test]
    fn dictionaries_are_bounded_in_entries_and_bytes() {
        let schema = || {
            StoreSchema::new(vec![
                Column::numeric("credit_limit"),
                Column::categorical("merchant"),
            ])
            .unwrap()
        };
        let upsert = |store: &FeatureStore, entity: &str, merchant: &str| {
            let mut f = Features::default();
            f.insert("credit_limit", FeatureValue::Number(1.0));
            f.insert("merchant", FeatureValue::Text(merchant.into()));
            store.upsert(entity, &f, 1)
        };
        let store = FeatureStore::new(
            schema(),
            StoreConfig {
                max_categories: 3,
                max_category_bytes: 8,
                ..StoreConfig::default()
            },
        );
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            upsert(&store, &format!("e{i}"), m).unwrap();
        }
        // Full: a fourth category is refused whole, known ones still work.
        let err = upsert(&store, "e9", "d").unwrap_err();
        assert!(
            matches!(err, StoreError::DictionaryFull { categories: 3, .. }),
            "{err}"
        );
        assert_eq!(store.len(), 3, "the refused upsert created nothing");
        upsert(&store, "e9", "b").unwrap();
        let err = upsert(&store, "e10", "123456789").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::CategoryTooLong {
                    bytes: 9,
                    max: 8,
                    ..
                }
            ),
            "{err}"
        );

        let by_bytes = FeatureStore::new(
            schema(),
            StoreConfig {
                max_dictionary_bytes: 10,
                ..StoreConfig::default()
            },
        );
        upsert(&by_bytes, "a", "12345").unwrap();
        upsert(&by_bytes, "b", "67890").unwrap();
        let err = upsert(&by_bytes, "c", "x").unwrap_err();
        assert!(
            matches!(err, StoreError::DictionaryFull { bytes: 10, .. }),
            "{err}"
        );
        let mut row = Row::new();
        assert!(matches!(by_bytes.get("b", 1, &mut row), Lookup::Hit { .. }));
        assert_eq!(by_bytes.value(&row, 1), FeatureValue::Text("67890".into()));
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FeatureStore>();
    }

    proptest::proptest! {
        /// Random upserts and deletes, with short and long keys, agree with a map.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..3, 0u16..300, -1e6f64..1e6), 1..600)) {
            let store = FeatureStore::new(schema(), StoreConfig { shards: 2, ..StoreConfig::default() });
            let mut model = std::collections::HashMap::new();
            let mut row = Row::new();
            for (t, (op, k, x)) in ops.into_iter().enumerate() {
                let key = if k % 2 == 0 { format!("k{k}") } else { format!("a-key-longer-than-twenty-four-bytes-{k}") };
                match op {
                    0 => {
                        store.upsert(&key, &feats(&[("credit_limit", num(x))]), t as i64).unwrap();
                        model.insert(key, x as f32);
                    }
                    1 => proptest::prop_assert_eq!(store.delete(&key), model.remove(&key).is_some()),
                    _ => match (store.get(&key, 0, &mut row), model.get(&key)) {
                        (Lookup::Hit { .. }, Some(&v)) => proptest::prop_assert_eq!(store.number(&row, 0), Some(v)),
                        (Lookup::Miss, None) => {}
                        (got, want) => proptest::prop_assert!(false, "{}: {:?} vs {:?}", key, got, want),
                    },
                }
            }
            proptest::prop_assert_eq!(store.len(), model.len());
            let mut seen = 0;
            store.for_each_row(|k, _, r| {
                assert_eq!(store.number(r, 0), model.get(k).copied(), "{k}");
                seen += 1;
            });
            proptest::prop_assert_eq!(seen, model.len());
        }
    }

    #[test]
    fn table_handles_collisions_and_removal() {
        // All entries share one home bucket: removal must keep every chain reachable.
        let mut t = Table::new();
        for slot in 0..100 {
            t.insert(7, slot);
        }
        for slot in (0..100).step_by(2) {
            let i = t.find(7, |s| s == slot).unwrap();
            t.remove_at(i);
        }
        for slot in 0..100 {
            assert_eq!(t.find(7, |s| s == slot).is_some(), slot % 2 == 1, "{slot}");
        }
        assert_eq!(t.len, 50);
    }

    #[test]
    fn stats_report_heap() {
        let store = FeatureStore::new(schema(), StoreConfig::default());
        let before = store.stats().approx_heap_bytes;
        for i in 0..1000 {
            store
                .upsert(&format!("c{i}"), &feats(&[("card_tier", text("gold"))]), 0)
                .unwrap();
        }
        let st = store.stats();
        assert_eq!(st.entities, 1000);
        assert!(st.approx_heap_bytes > before + 1000 * 40, "{st:?}");
    }

    #[test]
    fn rows_stay_within_max_bytes_under_distinct_long_ids() {
        let max_bytes = 64 * 1024;
        let store = FeatureStore::new(
            schema(),
            StoreConfig {
                shards: 4,
                max_bytes,
                ..StoreConfig::default()
            },
        );
        // Distinct ids of growing length (the store itself does not bound
        // ids): without the byte bound, 20k rows of up to 1 KiB ids.
        let mut peak = 0;
        for i in 0..20_000usize {
            let id = format!("{i:06}-{}", "x".repeat(i % 1000));
            store
                .upsert(&id, &feats(&[("credit_limit", num(1.0))]), i as i64)
                .unwrap();
            let u = store.usage();
            assert!(u.row_bytes <= max_bytes, "{i}: {u:?}");
            peak = peak.max(u.row_bytes);
        }
        let u = store.usage();
        assert!(peak > max_bytes / 2, "the bound was reached: {peak}");
        assert!(u.evicted_bytes > 10_000, "{u:?}");
        assert_eq!(u.evicted_capacity, 0, "{u:?}");
        // The newest row is kept; the running estimate matches the rows.
        let newest = format!("{:06}-{}", 19_999, "x".repeat(19_999 % 1000));
        assert!(values(&store, &newest, 0).is_some());
        let mut estimate = 0;
        store.for_each_row(|id, _, _| estimate += row_bytes(HEAD + 3, id.len()));
        assert_eq!(estimate, u.row_bytes);
        assert_eq!(store.stats().row_bytes, u.row_bytes);
        // A row larger than a shard's share is refused, not stored.
        let huge = "y".repeat(max_bytes);
        let err = store
            .upsert(&huge, &feats(&[("credit_limit", num(1.0))]), 0)
            .unwrap_err();
        assert!(matches!(err, StoreError::RowTooLarge { .. }), "{err}");
        // Removal gives the bytes back.
        let mut ids = Vec::new();
        store.for_each_row(|id, _, _| ids.push(id.to_string()));
        for id in ids {
            assert!(store.delete(&id));
        }
        assert_eq!(store.usage().row_bytes, 0);
    }
}
