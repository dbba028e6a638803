//! Per-entity streaming aggregates (counts, sums, means, minima, maxima over
//! sliding windows) computed from the events themselves, for use as model inputs.
//!
//! # Windows
//!
//! Every aggregate has a window `W` (ms), split into `B` buckets
//! ([`AggregatorConfig::buckets`], default 12) of granularity `g = W / B` ms.
//! `W` must be a positive multiple of `B`, so `g ≥ 1`. An instant `x` falls in
//! bucket `b(x) = x.div_euclid(g)` (Python: `x // g`). The window therefore
//! slides in steps of `g` and covers between `W - g` and `W` of history.
//!
//! # What a read returns
//!
//! Each distinct `(field, window)` pair of the configured aggregates is one
//! *ring* per entity; `count`/`sum`/`mean`/`min`/`max` over the same field and
//! window share it. A ring folds in the events whose field is a finite number
//! (`Bool` counts as 0 or 1); `Null`, `Text`, a missing field, NaN and ±∞ are
//! skipped entirely: not counted, and they neither advance nor are late for
//! the ring.
//!
//! Let `N` be the newest bucket a ring has accepted. An event in bucket `b` is
//! **accepted** if `b > N - B` (or the ring is empty), after which
//! `N = max(N, b)`. Otherwise it is older than anything the ring can still
//! represent: it is **dropped** and counted once in
//! [`AggregateStats::late_events`] (once per event, however many rings dropped it).
//!
//! Reading the ring at time `t` covers the accepted events `e` with
//!
//! ```text
//! max(b(t), N) - B  <  b(e.ts)  ≤  b(t)
//! ```
//!
//! - Streaming case, `t` at or after the newest event (`b(t) ≥ N`): this is
//!   exactly `b(t) - B < b(e) ≤ b(t)`, the training definition.
//! - `t` earlier than the newest event (an out-of-order event, or a read into
//!   the past): events in buckets after `b(t)` are excluded, and the low end is
//!   cut at `N - B`, because newer events have already pushed those buckets out
//!   of the ring. Such reads can see less history than a full window.
//! - Resolution is the bucket: events in `b(t)` itself are included even when
//!   their timestamp is after `t`.
//!
//! Values: `count` and `sum` of an empty window are 0; `mean`, `min`, `max`
//! of an empty window are NaN, meaning "missing" (enrichment then uses the
//! manifest default). `mean` is `sum / count`.
//!
//! [`Aggregator::read_then_observe`] reads every aggregate as of the event
//! *before* folding it in, under one lock, so an event never sees itself but
//! sees every earlier call for its entity (also earlier events of the same batch).
//!
//! # Memory
//!
//! All rings of an entity live in one fixed-width block of 8-byte words in a
//! per-shard arena: the entity's newest event time, then per ring its `N` and
//! `B` buckets of (count, sum) plus min and/or max only if an aggregate of the
//! ring needs them. A bucket's number is not stored: slot `s` always holds the
//! bucket `k ≡ s (mod B)` in `(N - B, N]`, its slots being cleared as `N`
//! advances past them, which also bounds memory at `B` buckets per ring
//! whatever the event rate. Besides its block, an entity costs its id (inline
//! up to 24 bytes), a 16-byte index entry, a recency stamp and queue entry;
//! [`Aggregator::bytes_per_entity`] gives the total. There is no allocation per
//! call for a known entity.
//!
//! # Entities
//!
//! Entities are spread over power-of-two shards ([`shard::shard_of`]), each
//! behind its own mutex. A shard holds at most `max_entities / shards` entities
//! (the shard count is lowered if needed so that this is at least 1); inserting
//! beyond that evicts the shard's least recently *observed* entity (reads do not
//! count as use), counted in [`AggregateStats::evicted_capacity`].
//! [`Aggregator::expire`] drops entities whose newest event is more than the
//! longest window older than `now_ms`: all their windows are empty by then, so
//! reads are unchanged, except that a later event for such an entity starts a
//! fresh ring and can no longer be late.
//!
//! # Checkpoints
//!
//! [`Aggregator::export_entity`] / [`Aggregator::import_entity`] move an
//! entity's state as a serde [`EntityState`], keyed by field, window and bucket
//! count so that a checkpoint survives adding or removing aggregates.

use std::collections::{HashMap, VecDeque};

use compact_str::CompactString;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::event::{FeatureValue, Features};
use crate::features::shard;

/// Errors from aggregate configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("aggregate on field `{field}` has an empty name")]
    EmptyName { field: String },
    #[error("aggregate `{name}`: empty field name")]
    EmptyField { name: String },
    #[error("duplicate aggregate name `{name}`")]
    DuplicateName { name: String },
    #[error(
        "aggregate `{name}`: window of {window_ms} ms is not a positive multiple of {buckets} buckets"
    )]
    BadWindow {
        name: String,
        window_ms: i64,
        buckets: u32,
    },
    #[error("invalid aggregator config: {reason}")]
    InvalidConfig { reason: &'static str },
}

/// Aggregate function. Deserialises from lowercase names (`"count"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AggFn {
    Count,
    Sum,
    Mean,
    Min,
    Max,
}

impl AggFn {
    /// The lowercase name, as in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            AggFn::Count => "count",
            AggFn::Sum => "sum",
            AggFn::Mean => "mean",
            AggFn::Min => "min",
            AggFn::Max => "max",
        }
    }
}

/// One aggregate: `function` of event feature `field` over the last `window_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSpec {
    /// Model input name, e.g. `txn_count_1h`.
    pub name: CompactString,
    /// Event feature aggregated, e.g. `amount`.
    pub field: CompactString,
    pub function: AggFn,
    pub window_ms: i64,
}

/// Aggregator sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// Buckets per window (the window slides in steps of `window / buckets`).
    pub buckets: u32,
    /// Requested shard count, rounded to a power of two in `1..=1024`.
    pub shards: usize,
    /// Upper bound on tracked entities (enforced per shard, see module docs).
    pub max_entities: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            buckets: 12,
            shards: 16,
            max_entities: 1_000_000,
        }
    }
}

/// Counters since construction, plus the current entity count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateStats {
    /// Entities currently tracked.
    pub entities: usize,
    /// Events folded in (`observe` / `read_then_observe` calls).
    pub observed: u64,
    /// Events dropped by at least one ring as too old to represent.
    pub late_events: u64,
    /// Entities evicted because their shard was full.
    pub evicted_capacity: u64,
    /// Entities dropped by [`Aggregator::expire`].
    pub evicted_idle: u64,
}

/// Checkpointable state of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// Newest event time folded in; drives [`Aggregator::expire`].
    pub last_ts_ms: i64,
    pub rings: Vec<RingState>,
}

/// One `(field, window)` ring of an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingState {
    pub field: CompactString,
    pub window_ms: i64,
    /// Buckets per window the state was built with; import requires a match.
    pub buckets_per_window: u32,
    /// Newest accepted bucket (`N` in the module docs); `None` for an empty ring.
    pub newest_bucket: Option<i64>,
    /// Non-empty buckets still inside the ring, oldest first.
    pub buckets: Vec<BucketState>,
}

/// One bucket of a ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketState {
    pub bucket: i64,
    pub count: u64,
    pub sum: f64,
    /// Present when the ring keeps minima.
    pub min: Option<f64>,
    /// Present when the ring keeps maxima.
    pub max: Option<f64>,
}

/// Marks an empty ring (`N` unset); real bucket numbers are far above it.
const EMPTY: i64 = i64::MIN;
/// Entities per arena chunk: growth allocates a chunk instead of copying the
/// whole shard under its lock.
const CHUNK: usize = 256;

/// Word layout of one ring inside an entity block:
/// `[N, (count, sum, [min], [max]) × B]`.
///
/// Slot `s` holds bucket `k ≡ s (mod B)` with `N - B < k ≤ N`, so bucket
/// numbers are implied by `N` and need no storage: whenever `N` advances, the
/// slots of the buckets it passes are cleared, as they held buckets that have
/// just left the ring. An empty bucket has count 0, sum 0, min +∞ and max −∞,
/// the identities of the accumulation, so reads need no emptiness test.
#[derive(Debug)]
struct Ring {
    field: usize,
    window_ms: i64,
    gran_ms: i64,
    offset: usize,
    stride: usize,
    has_min: bool,
    has_max: bool,
    max_at: usize,
    /// Range into `Aggregator::outputs` of the specs this ring serves.
    outputs: std::ops::Range<usize>,
}

const COUNT: usize = 0;
const SUM: usize = 1;
const MIN: usize = 2;

impl Ring {
    fn words(&self, buckets: usize) -> usize {
        1 + buckets * self.stride
    }

    #[inline]
    fn slot(&self, bucket: i64, buckets: i64) -> usize {
        1 + bucket.rem_euclid(buckets) as usize * self.stride
    }

    #[inline]
    fn clear(&self, s: &mut [u64]) {
        s[COUNT] = 0;
        s[SUM] = 0f64.to_bits();
        if self.has_min {
            s[MIN] = f64::INFINITY.to_bits();
        }
        if self.has_max {
            s[self.max_at] = f64::NEG_INFINITY.to_bits();
        }
    }

    /// Empty ring: `N` unset, every slot cleared.
    fn init(&self, words: &mut [u64]) {
        words[0] = EMPTY as u64;
        for s in words[1..].chunks_exact_mut(self.stride) {
            self.clear(s);
        }
    }

    /// Accumulates the accepted events with `max(bt, N) - B < b ≤ bt`, where
    /// `bt = b(t)`.
    #[inline]
    fn read(&self, words: &[u64], bt: i64, buckets: i64) -> Acc {
        let mut acc = Acc::EMPTY;
        let newest = words[0] as i64;
        if newest == EMPTY {
            return acc;
        }
        let hi = bt.min(newest);
        let lo = bt.max(newest).saturating_sub(buckets);
        if hi <= lo {
            return acc; // the window has slid past every stored bucket
        }
        // Slot s holds bucket base + s, or base + s - B past N's slot. Every
        // slot is visited and filtered, rather than only the live ones, so
        // that the loads do not wait on this arithmetic: at 100k entities
        // they are cache misses, and independent ones overlap.
        let r = newest.rem_euclid(buckets);
        let base = newest - r;
        for (s, slot) in (0i64..).zip(words[1..].chunks_exact(self.stride)) {
            let k = if s > r { base + s - buckets } else { base + s };
            if k > lo && k <= hi {
                acc.count = acc.count.saturating_add(slot[COUNT]);
                acc.sum += f64::from_bits(slot[SUM]);
                if self.has_min {
                    acc.min = acc.min.min(f64::from_bits(slot[MIN]));
                }
                if self.has_max {
                    acc.max = acc.max.max(f64::from_bits(slot[self.max_at]));
                }
            }
        }
        acc
    }

    /// Folds `x` in bucket `b`; false if `b` is too old for the ring.
    #[inline]
    fn observe(&self, words: &mut [u64], b: i64, x: f64, buckets: i64) -> bool {
        let newest = words[0] as i64;
        let sb = b.rem_euclid(buckets) as usize;
        if newest != EMPTY {
            if b <= newest.saturating_sub(buckets) {
                return false;
            }
            if b > newest {
                // Buckets newest+1..=b enter the ring; their slots still hold
                // buckets B earlier, which leave it. Clear at most B of them,
                // walking back from b's slot.
                let fresh = b.checked_sub(newest).map_or(buckets, |d| d.min(buckets));
                let mut s = sb;
                for _ in 0..fresh {
                    let at = 1 + s * self.stride;
                    self.clear(&mut words[at..at + self.stride]);
                    s = if s == 0 { buckets as usize - 1 } else { s - 1 };
                }
            }
        }
        if b > newest {
            words[0] = b as u64;
        }
        let at = 1 + sb * self.stride;
        let s = &mut words[at..at + self.stride];
        s[COUNT] = s[COUNT].saturating_add(1);
        s[SUM] = (f64::from_bits(s[SUM]) + x).to_bits();
        if self.has_min {
            s[MIN] = f64::from_bits(s[MIN]).min(x).to_bits();
        }
        if self.has_max {
            s[self.max_at] = f64::from_bits(s[self.max_at]).max(x).to_bits();
        }
        true
    }

    /// `N` and the non-empty buckets, oldest first.
    fn export(&self, words: &[u64], buckets: i64) -> (Option<i64>, Vec<BucketState>) {
        let newest = words[0] as i64;
        if newest == EMPTY {
            return (None, Vec::new());
        }
        let oldest = newest.saturating_sub(buckets) + 1;
        let kept = (oldest..=newest)
            .filter_map(|k| {
                let at = self.slot(k, buckets);
                let s = &words[at..at + self.stride];
                (s[COUNT] > 0).then(|| BucketState {
                    bucket: k,
                    count: s[COUNT],
                    sum: f64::from_bits(s[SUM]),
                    min: self.has_min.then(|| f64::from_bits(s[MIN])),
                    max: self.has_max.then(|| f64::from_bits(s[self.max_at])),
                })
            })
            .collect();
        (Some(newest), kept)
    }

    /// Loads `state` into an empty ring; false (ring left empty) if the state
    /// lacks minima or maxima this ring needs.
    fn import(&self, words: &mut [u64], state: &RingState, buckets: i64) -> bool {
        let complete = state
            .buckets
            .iter()
            .all(|b| (!self.has_min || b.min.is_some()) && (!self.has_max || b.max.is_some()));
        if !complete {
            return false;
        }
        let Some(newest) = state.newest_bucket else {
            return true;
        };
        let newest = newest.clamp(-BUCKET_LIMIT, BUCKET_LIMIT);
        let lo = newest - buckets;
        words[0] = newest as u64;
        for b in &state.buckets {
            if b.count == 0 || b.bucket <= lo || b.bucket > newest {
                continue;
            }
            let at = self.slot(b.bucket, buckets);
            let s = &mut words[at..at + self.stride];
            s[COUNT] = b.count;
            s[SUM] = b.sum.to_bits();
            if self.has_min {
                s[MIN] = b.min.unwrap_or(f64::INFINITY).to_bits();
            }
            if self.has_max {
                s[self.max_at] = b.max.unwrap_or(f64::NEG_INFINITY).to_bits();
            }
        }
        true
    }
}

#[derive(Debug, Clone, Copy)]
struct Output {
    out: usize,
    function: AggFn,
}

/// Running aggregate over the buckets of a ring that fall in a read window.
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    #[inline]
    fn value(&self, f: AggFn) -> f64 {
        match f {
            AggFn::Count => self.count as f64,
            AggFn::Sum => self.sum,
            _ if self.count == 0 => f64::NAN,
            AggFn::Mean => self.sum / self.count as f64,
            AggFn::Min => self.min,
            AggFn::Max => self.max,
        }
    }
}

/// Bucket numbers are kept within ±2^62 (timestamps beyond ±146 million years
/// are clamped), so that bucket arithmetic cannot overflow and stays clear of
/// [`EMPTY`].
const BUCKET_LIMIT: i64 = 1 << 62;

#[inline]
fn bucket_of(ts: i64, gran_ms: i64) -> i64 {
    // gran_ms ≥ 1 by construction.
    ts.div_euclid(gran_ms).clamp(-BUCKET_LIMIT, BUCKET_LIMIT)
}

#[inline]
fn numeric(v: Option<&FeatureValue>) -> Option<f64> {
    match v? {
        FeatureValue::Number(x) if x.is_finite() => Some(*x),
        FeatureValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Fixed-width entity blocks in chunks.
struct Arena {
    width: usize,
    len: usize,
    chunks: Vec<Box<[u64]>>,
}

impl Arena {
    fn new(width: usize) -> Self {
        Arena {
            width,
            len: 0,
            chunks: Vec::new(),
        }
    }

    #[inline]
    fn block(&self, i: usize) -> &[u64] {
        let o = (i % CHUNK) * self.width;
        &self.chunks[i / CHUNK][o..o + self.width]
    }

    #[inline]
    fn block_mut(&mut self, i: usize) -> &mut [u64] {
        let o = (i % CHUNK) * self.width;
        &mut self.chunks[i / CHUNK][o..o + self.width]
    }

    fn push(&mut self, init: &[u64]) -> usize {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks
                .push(vec![0u64; CHUNK * self.width].into_boxed_slice());
        }
        let i = self.len;
        self.len += 1;
        self.block_mut(i).copy_from_slice(init);
        i
    }

    /// Loads one word of every cache line of block `i`, so that all its lines
    /// are fetched at once instead of as the ring loops reach them: at 100k
    /// entities each line is a miss, and issued together they overlap.
    #[inline]
    fn warm(&self, i: usize) {
        let b = self.block(i);
        let mut x = b.last().copied().unwrap_or(0);
        for w in b.iter().step_by(8) {
            x ^= *w;
        }
        std::hint::black_box(x);
    }

    /// Moves the last block into slot `to` and shrinks by one.
    fn swap_remove(&mut self, to: usize) {
        let last = self.len - 1;
        if to != last {
            let w = self.width;
            let (cf, of) = (last / CHUNK, (last % CHUNK) * w);
            let (ct, ot) = (to / CHUNK, (to % CHUNK) * w);
            if cf == ct {
                self.chunks[cf].copy_within(of..of + w, ot);
            } else {
                // to < last, so the source chunk is the later one.
                let (lo, hi) = self.chunks.split_at_mut(cf);
                lo[ct][ot..ot + w].copy_from_slice(&hi[0][of..of + w]);
            }
        }
        self.len = last;
        // Keep one spare chunk so that an entity count oscillating around a
        // chunk boundary does not allocate and free on every call.
        let needed = self.len.div_ceil(CHUNK);
        self.chunks.truncate(needed + 1);
    }
}

/// Word 0 of every entity block: the newest event time folded in (for `expire`).
const LAST_TS: usize = 0;
/// Words before the first ring.
const HEADER: usize = 1;

/// One shard: id → slot, the state blocks, and recency for eviction.
///
/// The index maps the id's 64-bit hash to its slot and the id is checked
/// against `keys[slot]`: index entries are 16 bytes (the table stays in cache
/// at 100k entities, where one keyed by the strings does not), and the key
/// check and the state block load in parallel. Ids whose hash equals that of
/// another tracked id go to `collided`, keyed by the id itself, so lookups are
/// exact whatever the hash does.
///
/// Recency is a queue of `(slot, stamp)` pushed on every observation, plus the
/// latest stamp per slot; queue entries whose stamp is no longer their slot's
/// are stale and skipped. The front live entry is then exactly the least
/// recently observed slot, and an observation costs one append instead of
/// unlinking a list node (two random cache misses at 100k entities).
struct Shard {
    // Randomly seeded over the fixed-seed id hash: crafted ids that collide
    // in `hash_key` end up in `collided`, not in long probe chains.
    index: HashMap<u64, u32, foldhash::fast::RandomState>,
    collided: HashMap<CompactString, u32, foldhash::fast::RandomState>,
    keys: Vec<CompactString>,
    stamps: Vec<u64>,
    recency: VecDeque<(u32, u64)>,
    clock: u64,
    arena: Arena,
    // Plain counters under the shard lock: no shared atomics on the hot path.
    observed: u64,
    late: u64,
    evicted_capacity: u64,
    evicted_idle: u64,
}

impl Shard {
    fn new(width: usize) -> Self {
        Shard {
            index: HashMap::default(),
            collided: HashMap::default(),
            keys: Vec::new(),
            stamps: Vec::new(),
            recency: VecDeque::new(),
            clock: 0,
            arena: Arena::new(width),
            observed: 0,
            late: 0,
            evicted_capacity: 0,
            evicted_idle: 0,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Slot of `entity`, whose [`shard::hash_key`] is `h`.
    #[inline]
    fn find(&self, entity: &str, h: u64) -> Option<usize> {
        if let Some(&i) = self.index.get(&h) {
            // Before the key check, whose load is a miss of its own.
            self.arena.warm(i as usize);
            if self.keys[i as usize] == entity {
                return Some(i as usize);
            }
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(entity).map(|&i| i as usize)
    }

    fn index_insert(&mut self, key: CompactString, h: u64, i: usize) {
        match self.index.entry(h) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i as u32);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.insert(key, i as u32);
            }
        }
    }

    /// Forgets `key` (hash `h`), which is at slot `i`.
    fn index_remove(&mut self, key: &str, h: u64, i: usize) {
        if self.index.get(&h) == Some(&(i as u32)) {
            self.index.remove(&h);
        } else {
            self.collided.remove(key);
        }
    }

    /// Points `key` (hash `h`) at slot `to` instead of `from`.
    fn index_move(&mut self, key: &str, h: u64, from: usize, to: usize) {
        match self.index.get_mut(&h) {
            Some(v) if *v == from as u32 => *v = to as u32,
            _ => {
                if let Some(v) = self.collided.get_mut(key) {
                    *v = to as u32;
                }
            }
        }
    }

    /// Marks slot `i` most recently observed.
    #[inline]
    fn touch(&mut self, i: usize) {
        // Already the newest (checked on the queue, not `stamps`, so that the
        // stamp is only stored to, never loaded, on the hot path).
        if self.recency.back().is_some_and(|&(s, _)| s as usize == i) {
            return;
        }
        self.clock += 1;
        self.stamps[i] = self.clock;
        self.recency.push_back((i as u32, self.clock));
        // Bounded at about twice the live entries; amortised O(1) per call.
        if self.recency.len() > 2 * self.len() + 64 {
            let stamps = &self.stamps;
            self.recency
                .retain(|&(s, q)| stamps.get(s as usize) == Some(&q));
        }
    }

    /// Least recently observed slot, removed from the queue.
    fn pop_lru(&mut self) -> Option<usize> {
        while let Some((s, q)) = self.recency.pop_front() {
            if self.stamps.get(s as usize) == Some(&q) {
                return Some(s as usize);
            }
        }
        None
    }

    /// Slot of `entity`, created (evicting the least recently observed entity
    /// when full) if absent, and marked most recently observed.
    #[inline]
    fn entry(&mut self, entity: &str, ts: i64, init: &[u64], cap: usize) -> usize {
        let h = shard::hash_key(entity);
        if let Some(i) = self.find(entity, h) {
            self.touch(i);
            let last = &mut self.arena.block_mut(i)[LAST_TS];
            *last = (*last as i64).max(ts) as u64;
            return i;
        }
        let key = CompactString::from(entity);
        let victim = if self.len() >= cap {
            self.pop_lru()
        } else {
            None
        };
        let i = match victim {
            Some(i) => {
                let old = std::mem::replace(&mut self.keys[i], key.clone());
                self.index_remove(&old, shard::hash_key(&old), i);
                self.arena.block_mut(i).copy_from_slice(init);
                self.evicted_capacity += 1;
                i
            }
            None => {
                self.keys.push(key.clone());
                self.stamps.push(0);
                self.arena.push(init)
            }
        };
        self.arena.block_mut(i)[LAST_TS] = ts as u64;
        self.index_insert(key, h, i);
        self.touch(i);
        i
    }

    /// Removes slot `i`, moving the last slot into its place. Leaves the
    /// recency queue inconsistent for the moved slot: call
    /// [`Shard::rebuild_recency`] after a series of removals.
    fn remove(&mut self, i: usize) {
        let last = self.len() - 1;
        let key = self.keys.swap_remove(i);
        self.stamps.swap_remove(i);
        self.arena.swap_remove(i);
        self.index_remove(&key, shard::hash_key(&key), i);
        if i < last {
            let moved = self.keys[i].clone();
            self.index_move(&moved, shard::hash_key(&moved), last, i);
        }
    }

    fn rebuild_recency(&mut self) {
        let mut order: Vec<(u64, u32)> = self
            .stamps
            .iter()
            .enumerate()
            .map(|(s, &q)| (q, s as u32))
            .collect();
        order.sort_unstable();
        self.recency.clear();
        self.recency.extend(order.into_iter().map(|(q, s)| (s, q)));
        self.recency.shrink_to(2 * self.len() + 64);
    }
}

/// Shards sit on their own cache lines so that threads working on different
/// shards do not contend on the lock words.
#[repr(align(128))]
struct Padded<T>(T);

/// Sharded per-entity aggregate state. `Send + Sync`; see the module docs for
/// the exact semantics.
pub struct Aggregator {
    specs: Vec<AggregateSpec>,
    fields: Vec<CompactString>,
    /// Sorted by field so that each field is looked up once per call.
    rings: Vec<Ring>,
    outputs: Vec<Output>,
    buckets: i64,
    buckets_usize: usize,
    /// Empty entity block, copied into new slots.
    init: Box<[u64]>,
    max_window_ms: i64,
    shard_cap: usize,
    shards: Box<[Padded<Mutex<Shard>>]>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("specs", &self.specs)
            .field("buckets", &self.buckets)
            .field("rings", &self.rings.len())
            .field("shards", &self.shards.len())
            .field("shard_cap", &self.shard_cap)
            .finish()
    }
}

impl Aggregator {
    /// Validates the specs (non-empty unique names, non-empty fields, windows
    /// that are positive multiples of `cfg.buckets`) and lays out the rings.
    pub fn new(specs: Vec<AggregateSpec>, cfg: AggregatorConfig) -> Result<Self, AggregateError> {
        if cfg.buckets == 0 {
            return Err(AggregateError::InvalidConfig {
                reason: "buckets must be at least 1",
            });
        }
        if cfg.max_entities == 0 {
            return Err(AggregateError::InvalidConfig {
                reason: "max_entities must be at least 1",
            });
        }
        let buckets = i64::from(cfg.buckets);
        let nb = cfg.buckets as usize;

        let mut fields: Vec<CompactString> = Vec::new();
        // (field index, window) per ring, in first-use order.
        let mut ring_keys: Vec<(usize, i64)> = Vec::new();
        let mut spec_ring = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            if s.name.is_empty() {
                return Err(AggregateError::EmptyName {
                    field: s.field.to_string(),
                });
            }
            if specs[..i].iter().any(|o| o.name == s.name) {
                return Err(AggregateError::DuplicateName {
                    name: s.name.to_string(),
                });
            }
            if s.field.is_empty() {
                return Err(AggregateError::EmptyField {
                    name: s.name.to_string(),
                });
            }
            if s.window_ms <= 0 || s.window_ms % buckets != 0 {
                return Err(AggregateError::BadWindow {
                    name: s.name.to_string(),
                    window_ms: s.window_ms,
                    buckets: cfg.buckets,
                });
            }
            let f = match fields.iter().position(|f| *f == s.field) {
                Some(f) => f,
                None => {
                    fields.push(s.field.clone());
                    fields.len() - 1
                }
            };
            let key = (f, s.window_ms);
            let r = match ring_keys.iter().position(|k| *k == key) {
                Some(r) => r,
                None => {
                    ring_keys.push(key);
                    ring_keys.len() - 1
                }
            };
            spec_ring.push(r);
        }

        let mut order: Vec<usize> = (0..ring_keys.len()).collect();
        order.sort_by_key(|&r| ring_keys[r]);
        let mut rings = Vec::with_capacity(order.len());
        let mut outputs = Vec::with_capacity(specs.len());
        let mut offset = HEADER;
        for &r in &order {
            let (field, window_ms) = ring_keys[r];
            let start = outputs.len();
            for (i, s) in specs.iter().enumerate() {
                if spec_ring[i] == r {
                    outputs.push(Output {
                        out: i,
                        function: s.function,
                    });
                }
            }
            let served = &outputs[start..];
            let has_min = served.iter().any(|o| o.function == AggFn::Min);
            let has_max = served.iter().any(|o| o.function == AggFn::Max);
            let ring = Ring {
                field,
                window_ms,
                gran_ms: window_ms / buckets,
                offset,
                stride: 2 + usize::from(has_min) + usize::from(has_max),
                has_min,
                has_max,
                max_at: MIN + usize::from(has_min),
                outputs: start..outputs.len(),
            };
            offset += ring.words(nb);
            rings.push(ring);
        }

        let mut init = vec![0u64; offset];
        for ring in &rings {
            ring.init(&mut init[ring.offset..ring.offset + ring.words(nb)]);
        }

        // Fewer shards than entities, so that every shard can hold at least one.
        let floor_pow2 = 1usize << (usize::BITS - 1 - cfg.max_entities.leading_zeros());
        let n_shards = shard::shard_count(cfg.shards).min(floor_pow2);
        // Slots are u32.
        let shard_cap = (cfg.max_entities / n_shards).min(u32::MAX as usize);
        let shards = (0..n_shards)
            .map(|_| Padded(Mutex::new(Shard::new(offset))))
            .collect();

        Ok(Aggregator {
            max_window_ms: specs.iter().map(|s| s.window_ms).max().unwrap_or(0),
            specs,
            fields,
            rings,
            outputs,
            buckets,
            buckets_usize: nb,
            init: init.into_boxed_slice(),
            shard_cap,
            shards,
        })
    }

    /// The aggregates, in output order.
    pub fn specs(&self) -> &[AggregateSpec] {
        &self.specs
    }

    /// Approximate resident bytes per tracked entity: its state block, id
    /// (inline up to 24 bytes), recency stamp and one queue entry, and its
    /// index entry. Hash-table, queue and arena slack come on top (up to
    /// about 50 bytes just after the table or queue has grown).
    pub fn bytes_per_entity(&self) -> usize {
        self.init.len() * 8
            + std::mem::size_of::<CompactString>()
            + std::mem::size_of::<u64>()
            + std::mem::size_of::<(u32, u64)>()
            + std::mem::size_of::<(u64, u32)>()
            + 1
    }

    #[inline]
    fn shard(&self, entity: &str) -> &Mutex<Shard> {
        &self.shards[shard::shard_of(entity, self.shards.len())].0
    }

    /// Writes every spec's value at `ts_ms` (excluding this event) into `out`,
    /// then folds the event in. One shard lock for both, so no other event of
    /// the entity can slip in between.
    ///
    /// # Panics
    /// If `out.len() != self.specs().len()`.
    pub fn read_then_observe(
        &self,
        entity: &str,
        ts_ms: i64,
        features: &Features,
        out: &mut [f64],
    ) {
        assert_eq!(out.len(), self.specs.len(), "one output per aggregate");
        let mut guard = self.shard(entity).lock();
        let shard = &mut *guard;
        let i = shard.entry(entity, ts_ms, &self.init, self.shard_cap);
        let block = shard.arena.block_mut(i);
        let late = !self.read_observe_block(block, ts_ms, features, Some(out));
        shard.observed += 1;
        shard.late += u64::from(late);
    }

    /// Writes every spec's value at `ts_ms` into `out` without observing
    /// anything. Does not count as use for eviction.
    ///
    /// # Panics
    /// If `out.len() != self.specs().len()`.
    pub fn read(&self, entity: &str, ts_ms: i64, out: &mut [f64]) {
        assert_eq!(out.len(), self.specs.len(), "one output per aggregate");
        let shard = self.shard(entity).lock();
        match shard.find(entity, shard::hash_key(entity)) {
            Some(i) => self.read_block(shard.arena.block(i), ts_ms, out),
            None => {
                drop(shard);
                self.read_block(&self.init, ts_ms, out);
            }
        }
    }

    /// Folds one event in.
    pub fn observe(&self, entity: &str, ts_ms: i64, features: &Features) {
        let mut guard = self.shard(entity).lock();
        let shard = &mut *guard;
        let i = shard.entry(entity, ts_ms, &self.init, self.shard_cap);
        let late = !self.read_observe_block(shard.arena.block_mut(i), ts_ms, features, None);
        shard.observed += 1;
        shard.late += u64::from(late);
    }

    /// Drops entities whose newest event is more than the longest window
    /// before `now_ms`; returns how many. Scans every shard, one at a time.
    pub fn expire(&self, now_ms: i64) -> usize {
        let mut dropped = 0;
        for s in self.shards.iter() {
            let mut shard = s.0.lock();
            let before = shard.len();
            let mut i = 0;
            while i < shard.len() {
                let last_ts = shard.arena.block(i)[LAST_TS] as i64;
                if now_ms.saturating_sub(last_ts) > self.max_window_ms {
                    // The last slot moves into `i`: look at `i` again.
                    shard.remove(i);
                } else {
                    i += 1;
                }
            }
            let removed = before - shard.len();
            if removed > 0 {
                shard.rebuild_recency();
                shard.evicted_idle += removed as u64;
                dropped += removed;
            }
        }
        dropped
    }

    /// Current entity count and counters, summed over shards.
    pub fn stats(&self) -> AggregateStats {
        let mut st = AggregateStats::default();
        for s in self.shards.iter() {
            let shard = s.0.lock();
            st.entities += shard.len();
            st.observed += shard.observed;
            st.late_events += shard.late;
            st.evicted_capacity += shard.evicted_capacity;
            st.evicted_idle += shard.evicted_idle;
        }
        st
    }

    /// Ids of all tracked entities (a snapshot; shards are visited in turn).
    pub fn entities(&self) -> Vec<CompactString> {
        let mut ids = Vec::new();
        for s in self.shards.iter() {
            let shard = s.0.lock();
            ids.extend(shard.keys.iter().cloned());
        }
        ids
    }

    /// Drops the given entities' state (their partition moved to another
    /// instance); returns how many were tracked. Not counted as eviction.
    pub fn remove_entities<S: AsRef<str>>(&self, ids: impl IntoIterator<Item = S>) -> usize {
        let mut by_shard: Vec<Vec<S>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for id in ids {
            by_shard[shard::shard_of(id.as_ref(), self.shards.len())].push(id);
        }
        let mut removed = 0;
        for (s, ids) in self.shards.iter().zip(by_shard) {
            if ids.is_empty() {
                continue;
            }
            let mut shard = s.0.lock();
            let before = shard.len();
            for id in ids {
                let id = id.as_ref();
                if let Some(i) = shard.find(id, shard::hash_key(id)) {
                    shard.remove(i);
                }
            }
            if shard.len() < before {
                // Recency entries of removed slots would point at moved ones.
                shard.rebuild_recency();
                removed += before - shard.len();
            }
        }
        removed
    }

    /// The entity's state for a checkpoint, or `None` if it is not tracked.
    pub fn export_entity(&self, entity: &str) -> Option<EntityState> {
        let shard = self.shard(entity).lock();
        let i = shard.find(entity, shard::hash_key(entity))?;
        let block = shard.arena.block(i);
        let rings = self
            .rings
            .iter()
            .map(|ring| {
                let (newest_bucket, buckets) =
                    ring.export(self.ring_words(ring, block), self.buckets);
                RingState {
                    field: self.fields[ring.field].clone(),
                    window_ms: ring.window_ms,
                    buckets_per_window: self.buckets_usize as u32,
                    newest_bucket,
                    buckets,
                }
            })
            .collect();
        Some(EntityState {
            last_ts_ms: block[LAST_TS] as i64,
            rings,
        })
    }

    /// Replaces the entity's state with `state` (inserting it as the most
    /// recently observed entity, which may evict another).
    ///
    /// Rings are matched by field, window and bucket count; a configured ring
    /// with no match, or whose state lacks minima/maxima it now needs, starts
    /// empty. Rings in `state` that are no longer configured, and buckets
    /// outside the ring's range, are ignored.
    pub fn import_entity(&self, entity: &str, state: EntityState) {
        let mut guard = self.shard(entity).lock();
        let shard = &mut *guard;
        let i = shard.entry(entity, state.last_ts_ms, &self.init, self.shard_cap);
        let block = shard.arena.block_mut(i);
        block.copy_from_slice(&self.init);
        block[LAST_TS] = state.last_ts_ms as u64;
        for ring in &self.rings {
            let field = &self.fields[ring.field];
            let Some(rs) = state.rings.iter().find(|r| {
                r.field == *field
                    && r.window_ms == ring.window_ms
                    && i64::from(r.buckets_per_window) == self.buckets
            }) else {
                continue;
            };
            let words = &mut block[ring.offset..ring.offset + ring.words(self.buckets_usize)];
            if !ring.import(words, rs, self.buckets) {
                tracing::debug!(entity, field = %field, window_ms = ring.window_ms,
                    "checkpointed ring lacks min/max now needed; starting it empty");
            }
        }
    }

    #[inline]
    fn ring_words<'b>(&self, ring: &Ring, block: &'b [u64]) -> &'b [u64] {
        &block[ring.offset..ring.offset + ring.words(self.buckets_usize)]
    }

    /// Reads every ring of `block` at `t` into `out`.
    #[inline]
    fn read_block(&self, block: &[u64], t: i64, out: &mut [f64]) {
        for ring in &self.rings {
            let bt = bucket_of(t, ring.gran_ms);
            let acc = ring.read(self.ring_words(ring, block), bt, self.buckets);
            self.write_outputs(ring, &acc, out);
        }
    }

    #[inline]
    fn write_outputs(&self, ring: &Ring, acc: &Acc, out: &mut [f64]) {
        for o in &self.outputs[ring.outputs.clone()] {
            out[o.out] = acc.value(o.function);
        }
    }

    /// Reads every ring at `ts` into `out` (if given), then folds the event in;
    /// false if some ring dropped it as late. One pass: each ring's bucket is
    /// computed once and its words are still in cache for the fold.
    #[inline]
    fn read_observe_block(
        &self,
        block: &mut [u64],
        ts: i64,
        features: &Features,
        mut out: Option<&mut [f64]>,
    ) -> bool {
        let mut accepted_all = true;
        let mut cur_field = usize::MAX;
        let mut value = None;
        for ring in &self.rings {
            // Rings are sorted by field: one lookup per distinct field.
            if ring.field != cur_field {
                cur_field = ring.field;
                value = numeric(features.get(&self.fields[ring.field]));
            }
            let b = bucket_of(ts, ring.gran_ms);
            let words = &mut block[ring.offset..ring.offset + ring.words(self.buckets_usize)];
            if let Some(out) = out.as_deref_mut() {
                let acc = ring.read(words, b, self.buckets);
                self.write_outputs(ring, &acc, out);
            }
            if let Some(x) = value {
                accepted_all &= ring.observe(words, b, x, self.buckets);
            }
        }
        accepted_all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;

    fn spec(name: &str, field: &str, function: AggFn, window_ms: i64) -> AggregateSpec {
        AggregateSpec {
            name: name.into(),
            field: field.into(),
            function,
            window_ms,
        }
    }

    fn cfg(buckets: u32, shards: usize, max_entities: usize) -> AggregatorConfig {
        AggregatorConfig {
            buckets,
            shards,
            max_entities,
        }
    }

    fn amount(x: f64) -> Features {
        let mut f = Features::default();
        f.insert("amount", FeatureValue::Number(x));
        f
    }

    fn fraud_specs() -> Vec<AggregateSpec> {
        vec![
            spec("txn_count_1h", "amount", AggFn::Count, H),
            spec("amount_mean_24h", "amount", AggFn::Mean, 24 * H),
            spec("amount_max_24h", "amount", AggFn::Max, 24 * H),
        ]
    }

    /// Equal, or both NaN.
    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    fn read(agg: &Aggregator, e: &str, t: i64) -> Vec<f64> {
        let mut out = vec![0.0; agg.specs().len()];
        agg.read(e, t, &mut out);
        out
    }

    fn rto(agg: &Aggregator, e: &str, t: i64, f: &Features) -> Vec<f64> {
        let mut out = vec![0.0; agg.specs().len()];
        agg.read_then_observe(e, t, f, &mut out);
        out
    }

    #[test]
    fn aggregator_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Aggregator>();
    }

    #[test]
    fn config_errors_name_the_aggregate() {
        let c = AggregatorConfig::default();
        let dup = vec![spec("a", "x", AggFn::Sum, H), spec("a", "y", AggFn::Sum, H)];
        let e = Aggregator::new(dup, c).unwrap_err();
        assert_eq!(e, AggregateError::DuplicateName { name: "a".into() });
        assert!(e.to_string().contains("`a`"));

        let e = Aggregator::new(vec![spec("w", "x", AggFn::Sum, 1_000_001)], c).unwrap_err();
        assert!(e.to_string().contains("`w`"), "{e}");
        // Below one millisecond per bucket.
        let e = Aggregator::new(vec![spec("tiny", "x", AggFn::Sum, 6)], c).unwrap_err();
        assert!(matches!(e, AggregateError::BadWindow { ref name, .. } if name == "tiny"));
        let e = Aggregator::new(vec![spec("neg", "x", AggFn::Sum, -12)], c).unwrap_err();
        assert!(matches!(e, AggregateError::BadWindow { .. }));
        let e = Aggregator::new(vec![spec("nofield", "", AggFn::Sum, H)], c).unwrap_err();
        assert!(e.to_string().contains("`nofield`"));
        assert!(Aggregator::new(vec![spec("", "x", AggFn::Sum, H)], c).is_err());
        assert!(Aggregator::new(vec![], cfg(0, 1, 1)).is_err());
        assert!(Aggregator::new(vec![], cfg(12, 1, 0)).is_err());
        // 12 ms over 12 buckets is the smallest legal window.
        assert!(Aggregator::new(vec![spec("ok", "x", AggFn::Sum, 12)], c).is_ok());
    }

    #[test]
    fn rings_are_shared_per_field_and_window() {
        let agg = Aggregator::new(fraud_specs(), AggregatorConfig::default()).unwrap();
        assert_eq!(agg.rings.len(), 2);
        // last_ts, 1h: N + 12 × (count, sum); 24h: N + 12 × (count, sum, max).
        assert_eq!(agg.init.len(), 1 + (1 + 12 * 2) + (1 + 12 * 3));
    }

    #[test]
    fn each_function_on_a_sequence() {
        let specs = vec![
            spec("c", "amount", AggFn::Count, 1200),
            spec("s", "amount", AggFn::Sum, 1200),
            spec("mean", "amount", AggFn::Mean, 1200),
            spec("min", "amount", AggFn::Min, 1200),
            spec("max", "amount", AggFn::Max, 1200),
        ];
        let agg = Aggregator::new(specs, cfg(12, 4, 100)).unwrap();
        let out = rto(&agg, "e", 1000, &amount(10.0));
        assert_eq!(out[..2], [0.0, 0.0]);
        assert!(out[2..].iter().all(|v| v.is_nan()));
        assert_eq!(
            rto(&agg, "e", 1010, &amount(-4.0)),
            [1.0, 10.0, 10.0, 10.0, 10.0]
        );
        assert_eq!(
            rto(&agg, "e", 1100, &amount(30.0)),
            [2.0, 6.0, 3.0, -4.0, 10.0]
        );
        // Skipped: not counted, no effect on sum/min/max.
        let mut f = Features::default();
        f.insert("amount", FeatureValue::Null);
        rto(&agg, "e", 1200, &f);
        f.insert("amount", FeatureValue::Text("12".into()));
        rto(&agg, "e", 1200, &f);
        f.insert("amount", FeatureValue::Number(f64::NAN));
        rto(&agg, "e", 1200, &f);
        f.insert("amount", FeatureValue::Number(f64::INFINITY));
        rto(&agg, "e", 1200, &f);
        rto(&agg, "e", 1200, &Features::default());
        assert_eq!(read(&agg, "e", 1200), [3.0, 36.0, 12.0, -4.0, 30.0]);
        // Bool counts as 0/1.
        f.insert("amount", FeatureValue::Bool(true));
        rto(&agg, "e", 1200, &f);
        assert_eq!(read(&agg, "e", 1200), [4.0, 37.0, 9.25, -4.0, 30.0]);
        assert_eq!(agg.stats().observed, 9);
        assert_eq!(agg.stats().late_events, 0);
        // Unknown entity: empty values, nothing created.
        let out = read(&agg, "nobody", 1200);
        assert_eq!(out[..2], [0.0, 0.0]);
        assert!(out[2..].iter().all(|v| v.is_nan()));
        assert_eq!(agg.stats().entities, 1);
    }

    #[test]
    fn values_leave_exactly_when_their_bucket_leaves() {
        // W = 1200 ms, B = 12, g = 100 ms.
        let specs = vec![
            spec("c", "amount", AggFn::Count, 1200),
            spec("m", "amount", AggFn::Max, 1200),
        ];
        let agg = Aggregator::new(specs, cfg(12, 1, 10)).unwrap();
        agg.observe("e", 150, &amount(5.0)); // bucket 1
        agg.observe("e", 420, &amount(2.0)); // bucket 4
                                             // Bucket 1 is in the window while b(t) ≤ 12, i.e. t < 1300.
        assert_eq!(read(&agg, "e", 1299), [2.0, 5.0]);
        assert_eq!(read(&agg, "e", 1300), [1.0, 2.0]);
        assert_eq!(read(&agg, "e", 1599), [1.0, 2.0]);
        let out = read(&agg, "e", 1600);
        assert_eq!(out[0], 0.0);
        assert!(out[1].is_nan());
        // Bucket resolution: an event later in the same bucket counts; a later bucket does not.
        assert_eq!(read(&agg, "e", 400), [2.0, 5.0]);
        assert_eq!(read(&agg, "e", 399), [1.0, 5.0]);
        // Negative times bucket by floor division.
        agg.observe("n", -1, &amount(1.0)); // bucket -1
        assert_eq!(read(&agg, "n", -100), [1.0, 1.0]);
        assert_eq!(read(&agg, "n", 1099), [1.0, 1.0]);
        assert_eq!(read(&agg, "n", 1100)[0], 0.0);
    }

    #[test]
    fn reading_before_the_newest_event_is_cut_at_the_ring() {
        let agg = Aggregator::new(
            vec![spec("c", "amount", AggFn::Count, 1200)],
            cfg(12, 1, 10),
        )
        .unwrap();
        agg.observe("e", 0, &amount(1.0)); // bucket 0
        agg.observe("e", 500, &amount(1.0)); // bucket 5
        agg.observe("e", 1500, &amount(1.0)); // bucket 15: N = 15, ring keeps 4..=15
                                              // Plain window at 1000 would be buckets -1..=10 → 2 events; bucket 0
                                              // has left the ring, bucket 15 is later than t.
        assert_eq!(read(&agg, "e", 1000), [1.0]);
        assert_eq!(read(&agg, "e", 1500), [2.0]);
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let specs = vec![
            spec("c", "amount", AggFn::Count, 12),
            spec("m", "amount", AggFn::Min, 7 * 24 * H),
        ];
        let agg = Aggregator::new(specs, cfg(12, 1, 10)).unwrap();
        for ts in [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            i64::MAX - 1,
            i64::MAX,
            i64::MIN,
        ] {
            rto(&agg, "e", ts, &amount(1.0));
            read(&agg, "e", ts);
        }
        // Far past and far future, both ends clamped: the i64::MIN events are late.
        assert_eq!(agg.stats().late_events, 1);
        let st = agg.export_entity("e").unwrap();
        agg.import_entity("e", st.clone());
        assert_eq!(agg.export_entity("e"), Some(st));
        assert_eq!(agg.expire(i64::MAX), 0);
        assert_eq!(agg.expire(i64::MIN), 0);
    }

    #[test]
    fn late_events_are_dropped_and_counted() {
        let specs = vec![
            spec("c1", "amount", AggFn::Count, 1200),
            spec("c2", "amount", AggFn::Count, 2400),
        ];
        let agg = Aggregator::new(specs, cfg(12, 1, 10)).unwrap();
        agg.observe("e", 2000, &amount(1.0)); // 1200 ring: bucket 20; 2400 ring: bucket 10
                                              // bucket 8 ≤ 20 - 12 in the short ring: late there, but fits the long ring (4 > 10 - 12).
                                              // Reading at 800 excludes the event at 2000 (a later bucket in both rings).
        let out = rto(&agg, "e", 800, &amount(1.0));
        assert_eq!(out, [0.0, 0.0]);
        assert_eq!(agg.stats().late_events, 1);
        assert_eq!(read(&agg, "e", 2000), [1.0, 2.0]);
        // bucket 9 > 8: accepted in both.
        rto(&agg, "e", 900, &amount(1.0));
        assert_eq!(agg.stats().late_events, 1);
        assert_eq!(read(&agg, "e", 2000), [2.0, 3.0]);
        // Missing values are never late.
        rto(&agg, "e", 0, &Features::default());
        assert_eq!(agg.stats().late_events, 1);
        assert_eq!(agg.stats().observed, 4);
    }

    #[test]
    fn full_shard_evicts_least_recently_observed() {
        let agg =
            Aggregator::new(vec![spec("c", "amount", AggFn::Count, H)], cfg(12, 1, 2)).unwrap();
        agg.observe("a", 0, &amount(1.0));
        agg.observe("b", 0, &amount(1.0));
        agg.read("a", 0, &mut [0.0]); // reads are not use
        agg.observe("b", 1, &amount(1.0));
        agg.observe("c", 2, &amount(1.0)); // evicts a
        assert_eq!(agg.stats().evicted_capacity, 1);
        assert_eq!(read(&agg, "a", 10), [0.0]);
        assert_eq!(read(&agg, "b", 10), [2.0]);
        agg.observe("b", 3, &amount(1.0));
        agg.observe("d", 3, &amount(1.0)); // evicts c
        let mut ids = agg.entities();
        ids.sort();
        assert_eq!(ids, ["b", "d"]);
        assert_eq!(read(&agg, "d", 10), [1.0]); // the reused slot starts empty
        assert_eq!(read(&agg, "b", 10), [3.0]);
        let st = agg.stats();
        assert_eq!((st.entities, st.evicted_capacity), (2, 2));
        // Shards are reduced so each holds at least one entity.
        let agg =
            Aggregator::new(vec![spec("c", "amount", AggFn::Count, H)], cfg(12, 16, 3)).unwrap();
        for e in ["p", "q", "r", "s", "t", "u"] {
            agg.observe(e, 0, &amount(1.0));
        }
        assert!(agg.stats().entities <= 3 && agg.stats().entities >= 1);
    }

    #[test]
    fn expire_drops_idle_entities_only() {
        let specs = vec![
            spec("c", "amount", AggFn::Count, H),
            spec("m", "amount", AggFn::Max, 2 * H),
        ];
        let agg = Aggregator::new(specs, cfg(12, 1, 100)).unwrap();
        for i in 0..10 {
            agg.observe(&format!("old{i}"), 0, &amount(i as f64));
            agg.observe(&format!("new{i}"), H, &amount(i as f64));
        }
        // The newest event counts, even if an older one came last.
        agg.observe("new0", 0, &amount(100.0));
        assert_eq!(agg.expire(2 * H), 0);
        assert_eq!(agg.expire(2 * H + 1), 10);
        let st = agg.stats();
        assert_eq!((st.entities, st.evicted_idle), (10, 10));
        let mut ids = agg.entities();
        ids.sort();
        let want: Vec<String> = (0..10).map(|i| format!("new{i}")).collect();
        assert_eq!(ids, want);
        // Survivors were moved around by the compaction and keep their state.
        for i in 0..10 {
            let want = if i == 0 { 100.0 } else { i as f64 };
            // new0's event at 0 was late for the 1h ring but kept by the 2h one.
            assert_eq!(read(&agg, &format!("new{i}"), H), [1.0, want]);
        }
        // The recency list survived compaction: eviction still works.
        let agg2 =
            Aggregator::new(vec![spec("c", "amount", AggFn::Count, H)], cfg(12, 1, 3)).unwrap();
        agg2.observe("x", 0, &amount(1.0));
        agg2.observe("y", 10 * H, &amount(1.0));
        agg2.observe("z", 10 * H, &amount(1.0));
        assert_eq!(agg2.expire(10 * H), 1);
        agg2.observe("w", 10 * H, &amount(1.0));
        agg2.observe("y", 10 * H, &amount(1.0));
        agg2.observe("v", 10 * H, &amount(1.0)); // evicts z
        let mut ids = agg2.entities();
        ids.sort();
        assert_eq!(ids, ["v", "w", "y"]);
        assert_eq!(agg.expire(i64::MAX), 10);
        assert_eq!(agg.expire(i64::MIN), 0);
    }

    #[test]
    fn export_import_round_trip() {
        let mut specs = fraud_specs();
        specs.push(spec("amount_min_1h", "amount", AggFn::Min, H));
        specs.push(spec("fee_sum_1h", "fee", AggFn::Sum, H));
        let agg = Aggregator::new(specs.clone(), AggregatorConfig::default()).unwrap();
        let mut f = amount(0.0);
        for i in 0..200i64 {
            f.insert("amount", FeatureValue::Number((i * 37 % 101) as f64));
            f.insert("fee", FeatureValue::Number(0.5));
            agg.observe(&format!("card-{}", i % 7), i * 400_000, &f);
        }
        assert!(agg.export_entity("nobody").is_none());
        let other = Aggregator::new(specs, cfg(12, 4, 1000)).unwrap();
        for id in agg.entities() {
            let st = agg.export_entity(&id).unwrap();
            let json = serde_json::to_string(&st).unwrap();
            let back: EntityState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, st);
            other.import_entity(&id, back);
            assert_eq!(other.export_entity(&id), Some(st));
            for t in [200 * 400_000, 210 * 400_000, 300 * 400_000] {
                let (a, b) = (read(&agg, &id, t), read(&other, &id, t));
                assert!(a.iter().zip(&b).all(|(x, y)| same(*x, *y)), "{a:?} {b:?}");
            }
        }
        assert_eq!(other.stats().entities, 7);
        // Handing partitions away: removed ids read as empty, the rest keep
        // their state, and the slots that moved still evict in LRU order.
        let gone = ["card-1", "card-4", "nobody"];
        assert_eq!(other.remove_entities(gone), 2);
        assert_eq!(other.stats().entities, 5);
        assert!(other.export_entity("card-1").is_none());
        for id in ["card-0", "card-2", "card-3", "card-5", "card-6"] {
            assert_eq!(other.export_entity(id), agg.export_entity(id), "{id}");
        }
        assert_eq!(other.stats().evicted_capacity, 0);

        // A config with other rings takes what matches and starts the rest empty.
        let st = agg.export_entity("card-0").unwrap();
        let changed = Aggregator::new(
            vec![
                spec("cnt", "amount", AggFn::Count, H),
                spec("max1h", "amount", AggFn::Max, H), // ring exists but kept no max
                spec("week", "amount", AggFn::Sum, 7 * 24 * H),
            ],
            AggregatorConfig::default(),
        )
        .unwrap();
        changed.import_entity("card-0", st.clone());
        let t = 200 * 400_000;
        let out = read(&changed, "card-0", t);
        assert_eq!(out[0], 0.0); // the 1h ring kept no max: it starts empty
        assert!(out[1].is_nan());
        assert_eq!(out[2], 0.0);
        // Garbage buckets are ignored rather than trusted.
        let mut bad = st;
        bad.rings[0].buckets.push(BucketState {
            bucket: i64::MIN,
            count: u64::MAX,
            sum: f64::NAN,
            min: None,
            max: None,
        });
        agg.import_entity("card-0", bad);
        read(&agg, "card-0", t);
    }

    #[test]
    fn colliding_hashes_stay_exact() {
        // Pretend "a", "b" and "c" share one 64-bit hash.
        let mut sh = Shard::new(1);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            sh.keys.push(k.into());
            sh.stamps.push(0);
            sh.arena.push(&[i as u64]);
            sh.index_insert(k.into(), 7, i);
        }
        assert_eq!(sh.collided.len(), 2);
        assert_eq!(
            [sh.find("a", 7), sh.find("b", 7), sh.find("c", 7)],
            [Some(0), Some(1), Some(2)]
        );
        assert_eq!(sh.find("d", 7), None);
        // Removing the one in the main index leaves the others reachable.
        sh.index_remove("a", 7, 0);
        assert_eq!(
            [sh.find("a", 7), sh.find("b", 7), sh.find("c", 7)],
            [None, Some(1), Some(2)]
        );
        sh.index_move("c", 7, 2, 0);
        sh.keys[0] = "c".into();
        assert_eq!(sh.find("c", 7), Some(0));
        sh.index_remove("b", 7, 1);
        assert_eq!(sh.find("b", 7), None);
        assert_eq!(sh.find("c", 7), Some(0));
    }

    #[test]
    fn one_entity_shard_keeps_evicting() {
        let agg =
            Aggregator::new(vec![spec("c", "amount", AggFn::Count, H)], cfg(12, 1, 1)).unwrap();
        for (n, e) in ["a", "b", "c", "b", "b", "a"].iter().enumerate() {
            agg.observe(e, n as i64, &amount(1.0));
            assert_eq!(agg.entities(), [*e]);
        }
        assert_eq!(agg.stats().evicted_capacity, 4);
    }

    proptest! {
        /// Eviction and expiry against a plain model of "least recently observed".
        #[test]
        fn eviction_is_exact_lru(
            ops in prop::collection::vec((0..8usize, 0..50i64, prop::option::weighted(0.1, 0..60i64)), 1..300),
        ) {
            let agg = Aggregator::new(vec![spec("c", "amount", AggFn::Count, 12)], cfg(12, 1, 4)).unwrap();
            // entity → (observation order, newest ts)
            let mut model: HashMap<usize, (usize, i64)> = HashMap::new();
            let (mut evicted, mut idle) = (0u64, 0u64);
            for (n, &(e, ts, expire)) in ops.iter().enumerate() {
                if let Some(now) = expire {
                    let before = model.len();
                    model.retain(|_, &mut (_, last)| now - last <= 12);
                    idle += (before - model.len()) as u64;
                    prop_assert_eq!(agg.expire(now), before - model.len());
                    continue;
                }
                if !model.contains_key(&e) && model.len() == 4 {
                    let lru = model.iter().min_by_key(|(_, &(o, _))| o).map(|(&k, _)| k).unwrap();
                    model.remove(&lru);
                    evicted += 1;
                }
                let last = model.get(&e).map_or(ts, |&(_, l)| l.max(ts));
                model.insert(e, (n, last));
                agg.observe(&format!("e{e}"), ts, &amount(1.0));
                let mut want: Vec<String> = model.keys().map(|k| format!("e{k}")).collect();
                want.sort();
                let mut got: Vec<String> = agg.entities().iter().map(|k| k.to_string()).collect();
                got.sort();
                prop_assert_eq!(got, want);
            }
            let st = agg.stats();
            prop_assert_eq!((st.evicted_capacity, st.evicted_idle), (evicted, idle));
        }
    }

    // ---- model-based property test ------------------------------------

    #[derive(Debug, Clone)]
    enum V {
        Num(f64),
        Missing,
        Null,
        Text,
        Bool(bool),
        NonFinite,
    }

    fn v_strategy() -> impl Strategy<Value = V> {
        prop_oneof![
            10 => (-1000.0..1000.0f64).prop_map(V::Num),
            1 => Just(V::Missing),
            1 => Just(V::Null),
            1 => Just(V::Text),
            1 => any::<bool>().prop_map(V::Bool),
            1 => Just(V::NonFinite),
        ]
    }

    fn v_num(v: &V) -> Option<f64> {
        match v {
            V::Num(x) => Some(*x),
            V::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    fn put(f: &mut Features, name: &str, v: &V) {
        match v {
            V::Num(x) => f.insert(name, FeatureValue::Number(*x)),
            V::Missing => {}
            V::Null => f.insert(name, FeatureValue::Null),
            V::Text => f.insert(name, FeatureValue::Text("7".into())),
            V::Bool(b) => f.insert(name, FeatureValue::Bool(*b)),
            V::NonFinite => f.insert(name, FeatureValue::Number(f64::NEG_INFINITY)),
        }
    }

    #[derive(Debug, Clone)]
    struct Step {
        entity: usize,
        advance: i64,
        jitter: i64,
        amount: V,
        fee: V,
        /// Also read at `ts + probe` without observing.
        probe: Option<i64>,
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        (
            0..3usize,
            0..120i64,
            prop_oneof![6 => Just(0i64), 1 => 0..100i64, 1 => 0..1500i64],
            v_strategy(),
            v_strategy(),
            prop::option::weighted(0.2, -600..600i64),
        )
            .prop_map(|(entity, advance, jitter, amount, fee, probe)| Step {
                entity,
                advance,
                jitter,
                amount,
                fee,
                probe,
            })
    }

    /// An entity's earlier events for one field: (ts, numeric value), in call order.
    type History = Vec<(i64, Option<f64>)>;

    /// The module docs, computed from the list of the entity's earlier events.
    fn brute(history: &[(i64, Option<f64>)], t: i64, window: i64, buckets: i64, f: AggFn) -> f64 {
        let g = window / buckets;
        let mut newest: Option<i64> = None;
        let mut kept = Vec::new();
        for &(ts, v) in history {
            let Some(x) = v else { continue };
            let b = ts.div_euclid(g);
            if newest.is_some_and(|n| b <= n - buckets) {
                continue;
            }
            newest = Some(newest.map_or(b, |n| n.max(b)));
            kept.push((b, x));
        }
        let bt = t.div_euclid(g);
        let lo = newest.map_or(bt, |n| bt.max(n)) - buckets;
        let w: Vec<f64> = kept
            .iter()
            .filter(|(b, _)| *b > lo && *b <= bt)
            .map(|&(_, x)| x)
            .collect();
        match f {
            AggFn::Count => w.len() as f64,
            AggFn::Sum => w.iter().sum(),
            _ if w.is_empty() => f64::NAN,
            AggFn::Mean => w.iter().sum::<f64>() / w.len() as f64,
            AggFn::Min => w.iter().copied().fold(f64::INFINITY, f64::min),
            AggFn::Max => w.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    fn is_late(history: &[(i64, Option<f64>)], ts: i64, window: i64, buckets: i64) -> bool {
        let g = window / buckets;
        let mut newest: Option<i64> = None;
        for &(t, v) in history {
            if v.is_none() {
                continue;
            }
            let b = t.div_euclid(g);
            if newest.is_some_and(|n| b <= n - buckets) {
                continue;
            }
            newest = Some(newest.map_or(b, |n| n.max(b)));
        }
        newest.is_some_and(|n| ts.div_euclid(g) <= n - buckets)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_brute_force(
            buckets in 1..=6u32,
            grans in (1..=40i64, 1..=120i64),
            raw_specs in prop::collection::vec((any::<bool>(), 0..5usize, any::<bool>()), 1..=6),
            start in -5_000..5_000i64,
            steps in prop::collection::vec(step_strategy(), 1..150),
        ) {
            let fns = [AggFn::Count, AggFn::Sum, AggFn::Mean, AggFn::Min, AggFn::Max];
            let b = i64::from(buckets);
            let specs: Vec<AggregateSpec> = raw_specs
                .iter()
                .enumerate()
                .map(|(i, &(fee, f, long))| spec(
                    &format!("s{i}"),
                    if fee { "fee" } else { "amount" },
                    fns[f],
                    b * if long { grans.1 } else { grans.0 },
                ))
                .collect();
            let agg = Aggregator::new(specs.clone(), cfg(buckets, 2, 100)).unwrap();
            // Per entity, per field: (ts, numeric value) in call order.
            let mut hist: Vec<[History; 2]> = vec![Default::default(); 3];
            let mut clock = start;
            let mut late = 0u64;
            let mut out = vec![0.0; specs.len()];
            for st in &steps {
                clock += st.advance;
                let ts = clock - st.jitter;
                let id = ["alice", "bob", "carol"][st.entity];
                if let Some(p) = st.probe {
                    agg.read(id, ts + p, &mut out);
                    for (s, got) in specs.iter().zip(&out) {
                        let h = &hist[st.entity][usize::from(s.field == "fee")];
                        let want = brute(h, ts + p, s.window_ms, b, s.function);
                        prop_assert!(same(*got, want), "read {} at {}: got {} want {}", s.name, ts + p, got, want);
                    }
                }
                let mut f = Features::default();
                put(&mut f, "amount", &st.amount);
                put(&mut f, "fee", &st.fee);
                agg.read_then_observe(id, ts, &f, &mut out);
                for (s, got) in specs.iter().zip(&out) {
                    let h = &hist[st.entity][usize::from(s.field == "fee")];
                    let want = brute(h, ts, s.window_ms, b, s.function);
                    prop_assert!(same(*got, want), "{} at {}: got {} want {}", s.name, ts, got, want);
                }
                let values = [v_num(&st.amount), v_num(&st.fee)];
                let dropped = specs.iter().any(|s| {
                    let k = usize::from(s.field == "fee");
                    values[k].is_some() && is_late(&hist[st.entity][k], ts, s.window_ms, b)
                });
                late += u64::from(dropped);
                hist[st.entity][0].push((ts, values[0]));
                hist[st.entity][1].push((ts, values[1]));
            }
            let stats = agg.stats();
            prop_assert_eq!(stats.late_events, late);
            prop_assert_eq!(stats.observed, steps.len() as u64);
            // Export/import preserves every read.
            let copy = Aggregator::new(specs.clone(), cfg(buckets, 1, 100)).unwrap();
            for id in agg.entities() {
                copy.import_entity(&id, agg.export_entity(&id).unwrap());
                let mut a = vec![0.0; specs.len()];
                let mut c = vec![0.0; specs.len()];
                for t in [clock - 500, clock, clock + 300] {
                    agg.read(&id, t, &mut a);
                    copy.read(&id, t, &mut c);
                    prop_assert!(a.iter().zip(&c).all(|(x, y)| same(*x, *y)));
                }
            }
        }
    }
}
