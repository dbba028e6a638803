//! [`LabelJoin`]: predictions held for their labels, joined by event id,
//! and per-version windows of labelled predictions (the guarantees are in
//! the parent module's docs).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use compact_str::CompactString;
use parking_lot::Mutex;

use super::config::{LabelConfig, LabelError};
use super::metrics::{window_metrics, Scored, WindowMetrics};
use crate::event::{now_ms, RejectReason};
use crate::features::shard::hash_key;

/// What became of one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Joined to its prediction, which is now in its version's window.
    /// `delay_ms` is the label's `ts` minus the prediction's, when the
    /// label has one.
    Matched { delay_ms: Option<i64> },
    /// No such prediction held (see the module docs for why).
    Unmatched,
    /// The prediction was already labelled; the first label stands.
    Duplicate,
}

/// Counts since start (`pending` and `held` are current values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoinCounters {
    /// Predictions taken in.
    pub recorded: u64,
    /// Predictions not taken in: a non-finite score, or an id already held.
    pub skipped: u64,
    /// Labels joined to a prediction.
    pub matched: u64,
    /// Labels with no prediction held.
    pub unmatched: u64,
    /// Labels for a prediction already labelled.
    pub duplicates: u64,
    /// Unlabelled predictions dropped to stay within `max_pending`.
    pub evicted: u64,
    /// Unlabelled predictions dropped after `max_age`.
    pub expired: u64,
    /// Predictions awaiting a label now.
    pub pending: u64,
    /// Predictions held now (`pending` plus labelled ones kept to spot
    /// repeated labels); never more than `max_pending`.
    pub held: u64,
}

/// Rolling metrics of one model version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionMetrics {
    pub model_version: String,
    /// Labels joined to this version's predictions since start.
    pub labelled: u64,
    /// Over the last `window` of them.
    pub metrics: WindowMetrics,
}

/// Predictions awaiting labels, and per-version windows of labelled ones.
/// Shared (`Arc`) by the scoring thread, which records, and the label
/// follower, which labels.
pub struct LabelJoin {
    max_pending: usize,
    max_age_ms: i64,
    window: usize,
    threshold: f64,
    // A blocking mutex: every critical section is short (one batch, one
    // label, a window copy) and none spans I/O or an await.
    state: Mutex<State>,
    // Bad label records, counted by the follower without the join lock.
    rejected: [AtomicU64; RejectReason::ALL.len()],
    // Set once labels are being read. Until then a prediction could never
    // be judged, so the scoring loop does not hold it: the join would cost
    // its hash-table work per event and up to `max_pending` entries of
    // memory for nothing on a deployment without a labels topic.
    following: AtomicBool,
}

impl fmt::Debug for LabelJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabelJoin")
            .field("max_pending", &self.max_pending)
            .field("max_age_ms", &self.max_age_ms)
            .field("window", &self.window)
            .field("counters", &self.state.lock().counters())
            .finish()
    }
}

/// A prediction held for its label.
struct Held {
    id: CompactString,
    hash: u64,
    recorded_ms: i64,
    ts_ms: i64,
    score: f32,
    version: u32,
    labelled: bool,
}

struct VersionWindow {
    name: CompactString,
    /// Ring of the last `window` labelled pairs; order does not matter to
    /// any metric, so it is never rotated.
    ring: Vec<Scored>,
    next: usize,
    labelled: u64,
}

struct State {
    /// Id hash → sequence number of the held prediction. The index is 16
    /// bytes an entry whatever the id's length, and the id itself is stored
    /// once, in `held`.
    index: HashMap<u64, u64, foldhash::fast::RandomState>,
    /// Held ids whose hash another held id already has in `index`. Randomly
    /// seeded and keyed by the id, so crafted collisions of the fixed-seed
    /// `hash_key` cannot build long probe chains.
    collided: HashMap<CompactString, u64, foldhash::fast::RandomState>,
    /// Held predictions, oldest first; `held[i]` has sequence number
    /// `front_seq + i`.
    held: VecDeque<Held>,
    front_seq: u64,
    versions: Vec<VersionWindow>,
    // Plain counters under the lock the calls take anyway.
    recorded: u64,
    skipped: u64,
    matched: u64,
    unmatched: u64,
    duplicates: u64,
    evicted: u64,
    expired: u64,
    pending: u64,
}

impl State {
    fn counters(&self) -> JoinCounters {
        JoinCounters {
            recorded: self.recorded,
            skipped: self.skipped,
            matched: self.matched,
            unmatched: self.unmatched,
            duplicates: self.duplicates,
            evicted: self.evicted,
            expired: self.expired,
            pending: self.pending,
            held: self.held.len() as u64,
        }
    }

    /// Sequence number of the held prediction `id` (whose hash is `hash`).
    fn find(&self, id: &str, hash: u64) -> Option<u64> {
        if let Some(&seq) = self.index.get(&hash) {
            if self.get(seq).is_some_and(|h| h.id == id) {
                return Some(seq);
            }
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(id).copied()
    }

    fn get(&self, seq: u64) -> Option<&Held> {
        let i = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
        self.held.get(i)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Held> {
        let i = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
        self.held.get_mut(i)
    }

    fn push(&mut self, held: Held) {
        let seq = self.front_seq + self.held.len() as u64;
        match self.index.entry(held.hash) {
            Entry::Vacant(slot) => {
                slot.insert(seq);
            }
            Entry::Occupied(_) => {
                self.collided.insert(held.id.clone(), seq);
            }
        }
        self.held.push_back(held);
        self.pending += 1;
    }

    /// Drops the oldest prediction; `true` if it was still unlabelled.
    fn pop_front(&mut self) -> Option<bool> {
        let held = self.held.pop_front()?;
        let seq = self.front_seq;
        self.front_seq += 1;
        if self.index.get(&held.hash) == Some(&seq) {
            self.index.remove(&held.hash);
        } else {
            self.collided.remove(&held.id);
        }
        if !held.labelled {
            self.pending -= 1;
        }
        Some(!held.labelled)
    }

    fn expire(&mut self, now_ms: i64, max_age_ms: i64) {
        // The queue is in recording order; a wall clock that steps back
        // only delays expiry, and `max_pending` still bounds the queue.
        while self
            .held
            .front()
            .is_some_and(|h| now_ms.saturating_sub(h.recorded_ms) > max_age_ms)
        {
            if self.pop_front() == Some(true) {
                self.expired += 1;
            }
        }
    }

    fn version(&mut self, name: &str, window: usize) -> u32 {
        // Linear: a process sees a handful of model versions.
        if let Some(i) = self.versions.iter().position(|v| v.name == name) {
            return i as u32;
        }
        self.versions.push(VersionWindow {
            name: CompactString::from(name),
            ring: Vec::with_capacity(window.min(4_096)),
            next: 0,
            labelled: 0,
        });
        (self.versions.len() - 1) as u32
    }
}

impl VersionWindow {
    fn push(&mut self, scored: Scored, window: usize) {
        self.labelled += 1;
        if self.ring.len() < window {
            self.ring.push(scored);
        } else {
            self.ring[self.next] = scored;
            self.next = (self.next + 1) % window;
        }
    }
}

impl LabelJoin {
    /// A join with `config`'s limits; fails on the problems
    /// [`LabelConfig::problems`] finds.
    pub fn new(config: &LabelConfig) -> Result<Self, LabelError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(LabelError::InvalidConfig { problems });
        }
        Ok(LabelJoin {
            max_pending: config.max_pending,
            max_age_ms: config.max_age_ms()?,
            window: config.window,
            threshold: config.threshold,
            state: Mutex::new(State {
                index: HashMap::default(),
                collided: HashMap::default(),
                held: VecDeque::new(),
                front_seq: 0,
                versions: Vec::new(),
                recorded: 0,
                skipped: 0,
                matched: 0,
                unmatched: 0,
                duplicates: 0,
                evicted: 0,
                expired: 0,
                pending: 0,
            }),
            rejected: Default::default(),
            following: AtomicBool::new(false),
        })
    }

    /// Whether labels are being read (see [`set_following`](Self::set_following)).
    pub fn following(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    /// Called by the label follower once it reads the labels topic; the
    /// scoring loop records predictions only from then on.
    pub fn set_following(&self, on: bool) {
        self.following.store(on, Ordering::Relaxed);
    }

    /// Holds one scored batch, `(event_id, score, ts_ms)` each, made by
    /// `model_version`, for its labels. Takes the lock once: `predictions`
    /// is iterated under it, so pass a plain iterator over the batch.
    ///
    /// About 120 ns a prediction with the default 1,000,000 held (two cache
    /// misses: the id's index slot and the evicted one's); `benches/labels.rs`.
    pub fn record<'a>(
        &self,
        predictions: impl IntoIterator<Item = (&'a str, f32, i64)>,
        model_version: &str,
    ) {
        self.record_at(now_ms(), predictions, model_version);
    }

    /// [`record`](Self::record) at wall-clock time `now_ms` (tests, replays).
    pub fn record_at<'a>(
        &self,
        now_ms: i64,
        predictions: impl IntoIterator<Item = (&'a str, f32, i64)>,
        model_version: &str,
    ) {
        let mut st = self.state.lock();
        st.expire(now_ms, self.max_age_ms);
        let version = st.version(model_version, self.window);
        for (id, score, ts_ms) in predictions {
            // NaN would poison every mean of the window; it cannot be judged.
            if !score.is_finite() {
                st.skipped += 1;
                continue;
            }
            let hash = hash_key(id);
            if st.find(id, hash).is_some() {
                st.skipped += 1;
                continue;
            }
            if st.held.len() >= self.max_pending && st.pop_front() == Some(true) {
                st.evicted += 1;
            }
            st.push(Held {
                id: CompactString::from(id),
                hash,
                recorded_ms: now_ms,
                ts_ms,
                score,
                version,
                labelled: false,
            });
            st.recorded += 1;
        }
    }

    /// Joins the label of `event_id` (`ts_ms`: the label's time, if known)
    /// to its prediction.
    pub fn label(&self, event_id: &str, label: bool, ts_ms: Option<i64>) -> JoinOutcome {
        self.label_at(now_ms(), event_id, label, ts_ms)
    }

    /// [`label`](Self::label) at wall-clock time `now_ms` (tests, replays).
    pub fn label_at(
        &self,
        now_ms: i64,
        event_id: &str,
        label: bool,
        ts_ms: Option<i64>,
    ) -> JoinOutcome {
        let hash = hash_key(event_id);
        let mut guard = self.state.lock();
        let st = &mut *guard;
        st.expire(now_ms, self.max_age_ms);
        let Some(held) = st.find(event_id, hash).and_then(|seq| st.get_mut(seq)) else {
            st.unmatched += 1;
            return JoinOutcome::Unmatched;
        };
        if held.labelled {
            st.duplicates += 1;
            return JoinOutcome::Duplicate;
        }
        held.labelled = true;
        let (score, version, predicted_ms) = (held.score, held.version, held.ts_ms);
        st.pending -= 1;
        st.matched += 1;
        if let Some(v) = st.versions.get_mut(version as usize) {
            v.push(Scored { score, label }, self.window);
        }
        JoinOutcome::Matched {
            delay_ms: ts_ms.map(|t| t.saturating_sub(predicted_ms)),
        }
    }

    /// Rolling metrics of every model version seen, in the order first seen.
    ///
    /// Cost: the windows are copied under the lock (8 bytes a pair, ~40 kB
    /// for a window of 5,000) and the metrics computed after releasing it;
    /// AUC sorts each copy, O(w log w): about 70 µs in all for w = 5,000
    /// (`benches/labels.rs`).
    pub fn snapshot(&self) -> Vec<VersionMetrics> {
        self.snapshot_at(now_ms())
    }

    /// [`snapshot`](Self::snapshot) at wall-clock time `now_ms`.
    pub fn snapshot_at(&self, now_ms: i64) -> Vec<VersionMetrics> {
        let copies: Vec<(String, u64, Vec<Scored>)> = {
            let mut st = self.state.lock();
            st.expire(now_ms, self.max_age_ms);
            st.versions
                .iter()
                .map(|v| (v.name.to_string(), v.labelled, v.ring.clone()))
                .collect()
        };
        copies
            .into_iter()
            .map(|(model_version, labelled, mut ring)| VersionMetrics {
                model_version,
                labelled,
                metrics: window_metrics(&mut ring, self.threshold),
            })
            .collect()
    }

    /// Counters now (expiring what is due first, so `pending` is current
    /// even when no predictions or labels arrive).
    pub fn counters(&self) -> JoinCounters {
        self.counters_at(now_ms())
    }

    /// [`counters`](Self::counters) at wall-clock time `now_ms`.
    pub fn counters_at(&self, now_ms: i64) -> JoinCounters {
        let mut st = self.state.lock();
        st.expire(now_ms, self.max_age_ms);
        st.counters()
    }

    /// Counts a label record that could not be read (called by the follower).
    pub fn count_rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Unreadable label records so far, by reason (reasons with none left out).
    pub fn rejected(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The accuracy threshold in use.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn join(max_pending: usize, max_age: &str, window: usize) -> LabelJoin {
        LabelJoin::new(&LabelConfig {
            max_pending,
            max_age: max_age.into(),
            window,
            min_labels: 0,
            ..LabelConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn label_matches_once_then_is_a_duplicate() {
        let j = join(100, "1h", 10);
        j.record_at(T0, [("a", 0.9, T0 - 5), ("b", 0.2, T0)], "v1");
        assert_eq!(
            j.label_at(T0 + 10, "a", true, Some(T0 + 995)),
            JoinOutcome::Matched {
                delay_ms: Some(1_000)
            }
        );
        assert_eq!(
            j.label_at(T0 + 11, "a", false, None),
            JoinOutcome::Duplicate
        );
        assert_eq!(
            j.label_at(T0 + 12, "zzz", true, None),
            JoinOutcome::Unmatched
        );
        let c = j.counters_at(T0 + 13);
        assert_eq!(
            (c.recorded, c.matched, c.duplicates, c.unmatched),
            (2, 1, 1, 1)
        );
        assert_eq!((c.pending, c.held), (1, 2));
        let snap = j.snapshot_at(T0 + 14);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].model_version, "v1");
        assert_eq!(snap[0].labelled, 1);
        assert_eq!(snap[0].metrics.count, 1);
        assert_eq!(snap[0].metrics.accuracy, Some(1.0));
    }

    #[test]
    fn oldest_is_evicted_first_and_counted() {
        let j = join(3, "1h", 10);
        j.record_at(T0, [("a", 0.1, 0), ("b", 0.2, 0), ("c", 0.3, 0)], "v1");
        assert_eq!(
            j.label_at(T0, "b", true, None),
            JoinOutcome::Matched { delay_ms: None }
        );
        // Room for d and e: a (unlabelled, evicted) then b (labelled, not counted).
        j.record_at(T0, [("d", 0.4, 0), ("e", 0.5, 0)], "v1");
        let c = j.counters_at(T0);
        assert_eq!((c.evicted, c.held, c.pending), (1, 3, 3));
        assert_eq!(j.label_at(T0, "a", true, None), JoinOutcome::Unmatched);
        assert_eq!(j.label_at(T0, "b", true, None), JoinOutcome::Unmatched);
        assert!(matches!(
            j.label_at(T0, "c", true, None),
            JoinOutcome::Matched { .. }
        ));
    }

    #[test]
    fn old_predictions_expire_by_wall_clock() {
        let j = join(100, "10s", 10);
        j.record_at(T0, [("a", 0.1, 0)], "v1");
        j.record_at(T0 + 5_000, [("b", 0.1, 0)], "v1");
        // Exactly max_age old is still held; a millisecond more is not.
        assert!(matches!(
            j.label_at(T0 + 10_000, "a", true, None),
            JoinOutcome::Matched { .. }
        ));
        let c = j.counters_at(T0 + 15_001);
        assert_eq!((c.expired, c.pending, c.held), (1, 0, 0), "{c:?}");
        assert_eq!(
            j.label_at(T0 + 15_001, "b", true, None),
            JoinOutcome::Unmatched
        );
    }

    #[test]
    fn replayed_and_non_finite_predictions_are_skipped() {
        let j = join(100, "1h", 10);
        j.record_at(T0, [("a", 0.1, 0), ("a", 0.9, 0), ("n", f32::NAN, 0)], "v1");
        j.record_at(T0, [("a", 0.7, 0)], "v2");
        let c = j.counters_at(T0);
        assert_eq!((c.recorded, c.skipped, c.held), (1, 3, 1));
        j.label_at(T0, "a", true, None);
        let snap = j.snapshot_at(T0);
        assert_eq!(snap[0].metrics.count, 1);
        // `d * d`, not `powi(2)`: a release build folds the constant
        // `powi` differently in the last bit.
        let d = 1.0 - f64::from(0.1f32);
        assert_eq!(snap[0].metrics.brier, Some(d * d));
        assert_eq!(snap[1].metrics.count, 0, "the first prediction stands");
    }

    #[test]
    fn windows_are_per_version_and_keep_the_last_n() {
        let j = join(1_000, "1h", 4);
        let ids: Vec<String> = (0..10).map(|i| format!("evt-{i}")).collect();
        j.record_at(T0, ids[..6].iter().map(|id| (id.as_str(), 0.9, 0)), "v1");
        j.record_at(T0, ids[6..].iter().map(|id| (id.as_str(), 0.1, 0)), "v2");
        // v1: labels false, false, then four true: the window keeps the four.
        for (i, id) in ids[..6].iter().enumerate() {
            j.label_at(T0, id, i >= 2, None);
        }
        j.label_at(T0, &ids[6], true, None);
        let snap = j.snapshot_at(T0);
        let v1 = &snap[0];
        assert_eq!(
            (v1.labelled, v1.metrics.count, v1.metrics.positives),
            (6, 4, 4)
        );
        assert_eq!(v1.metrics.accuracy, Some(1.0));
        let v2 = &snap[1];
        assert_eq!((v2.model_version.as_str(), v2.metrics.count), ("v2", 1));
        assert_eq!(v2.metrics.accuracy, Some(0.0));
    }

    #[test]
    fn colliding_hashes_still_join_exactly() {
        // Force a collision: a held id and a new one under the same hash.
        let j = join(10, "1h", 10);
        {
            let mut st = j.state.lock();
            let h = hash_key("x");
            st.push(Held {
                id: "x".into(),
                hash: h,
                recorded_ms: T0,
                ts_ms: 0,
                score: 0.5,
                version: 0,
                labelled: false,
            });
            st.recorded += 1;
            // "y" stored under x's hash: must land in `collided`.
            st.push(Held {
                id: "y".into(),
                hash: h,
                recorded_ms: T0,
                ts_ms: 0,
                score: 0.5,
                version: 0,
                labelled: false,
            });
            st.recorded += 1;
            assert_eq!(st.collided.len(), 1);
            assert_eq!(st.find("y", h), Some(1));
            assert_eq!(st.find("x", h), Some(0));
            assert_eq!(st.find("z", h), None);
            st.versions.push(VersionWindow {
                name: "v".into(),
                ring: Vec::new(),
                next: 0,
                labelled: 0,
            });
            // Evicting x frees the index slot; y is still found.
            assert_eq!(st.pop_front(), Some(true));
            assert!(st.index.is_empty());
            assert_eq!(st.find("y", h), Some(1));
        }
    }

    #[test]
    fn rejected_counts_by_reason() {
        let j = join(10, "1h", 10);
        j.count_rejected(RejectReason::WrongType);
        j.count_rejected(RejectReason::WrongType);
        j.count_rejected(RejectReason::MalformedJson);
        assert_eq!(
            j.rejected(),
            vec![
                (RejectReason::MalformedJson, 1),
                (RejectReason::WrongType, 2)
            ]
        );
    }

    #[test]
    fn join_is_shared_across_threads() {
        let j = std::sync::Arc::new(join(10_000, "1h", 1_000));
        let ids: Vec<String> = (0..2_000).map(|i| format!("e{i}")).collect();
        let writer = {
            let (j, ids) = (j.clone(), ids.clone());
            std::thread::spawn(move || {
                for chunk in ids.chunks(100) {
                    j.record(chunk.iter().map(|id| (id.as_str(), 0.6, 0)), "v");
                }
            })
        };
        writer.join().unwrap();
        let reader = {
            let j = j.clone();
            std::thread::spawn(move || {
                ids.iter()
                    .filter(|id| matches!(j.label(id, true, None), JoinOutcome::Matched { .. }))
                    .count()
            })
        };
        assert_eq!(reader.join().unwrap(), 2_000);
        assert_eq!(j.counters().matched, 2_000);
    }

    // --- bounded memory, against a plain reference model ---

    #[derive(Debug, Clone)]
    enum Op {
        Record(Vec<u8>, u8),
        Label(u8, bool),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (proptest::collection::vec(0u8..40, 0..12), 0u8..2).prop_map(|(ids, v)| Op::Record(ids, v)),
            3 => (0u8..40, any::<bool>()).prop_map(|(id, l)| Op::Label(id, l)),
            1 => (0i64..4_000).prop_map(Op::Advance),
        ]
    }

    /// The join as a plain list scanned on every call.
    #[derive(Default)]
    struct Model {
        held: Vec<(u8, i64, bool, u8)>,
        counters: JoinCounters,
        labelled: [usize; 2],
    }

    impl Model {
        fn expire(&mut self, now: i64, max_age: i64) {
            while self.held.first().is_some_and(|h| now - h.1 > max_age) {
                let h = self.held.remove(0);
                if !h.2 {
                    self.counters.expired += 1;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn memory_stays_bounded_and_matches_the_reference(
            max_pending in 1usize..16,
            window in 1usize..6,
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let max_age = 10_000;
            let j = join(max_pending, "10s", window);
            let mut m = Model::default();
            let mut now = T0;
            let name = |id: u8| format!("e{id}");
            for op in ops {
                match op {
                    Op::Advance(ms) => now += ms,
                    Op::Record(ids, v) => {
                        let names: Vec<String> = ids.iter().map(|&i| name(i)).collect();
                        j.record_at(now, names.iter().map(|n| (n.as_str(), 0.5, 0)), &format!("v{v}"));
                        m.expire(now, max_age);
                        for id in ids {
                            if m.held.iter().any(|h| h.0 == id) {
                                m.counters.skipped += 1;
                                continue;
                            }
                            if m.held.len() >= max_pending && !m.held.remove(0).2 {
                                m.counters.evicted += 1;
                            }
                            m.held.push((id, now, false, v));
                            m.counters.recorded += 1;
                        }
                    }
                    Op::Label(id, label) => {
                        let got = j.label_at(now, &name(id), label, None);
                        m.expire(now, max_age);
                        let want = match m.held.iter_mut().find(|h| h.0 == id) {
                            None => { m.counters.unmatched += 1; JoinOutcome::Unmatched }
                            Some(h) if h.2 => { m.counters.duplicates += 1; JoinOutcome::Duplicate }
                            Some(h) => {
                                h.2 = true;
                                m.counters.matched += 1;
                                m.labelled[h.3 as usize] += 1;
                                JoinOutcome::Matched { delay_ms: None }
                            }
                        };
                        prop_assert_eq!(got, want);
                    }
                }
                let c = j.counters_at(now);
                m.expire(now, max_age);
                m.counters.held = m.held.len() as u64;
                m.counters.pending = m.held.iter().filter(|h| !h.2).count() as u64;
                prop_assert_eq!(c, m.counters);
                prop_assert!(c.held <= max_pending as u64);
                prop_assert_eq!(c.recorded, c.pending + c.matched + c.evicted + c.expired);
                let st = j.state.lock();
                prop_assert_eq!(st.index.len() + st.collided.len(), st.held.len());
                for v in &st.versions {
                    prop_assert!(v.ring.len() <= window);
                }
            }
            for v in j.snapshot_at(now) {
                let i: usize = v.model_version[1..].parse().unwrap();
                prop_assert_eq!(v.labelled as usize, m.labelled[i]);
                prop_assert_eq!(v.metrics.count, m.labelled[i].min(window));
            }
        }
    }
}
