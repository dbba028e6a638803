//! Entities behind a window's events: how many distinct ones, and how
//! evenly the events spread over them, which decides the effective sample
//! size of store features and streaming aggregates
//! ([`super::significance::effective_n`]).
//!
//! # What it keeps
//!
//! One Apache DataSketches **Tuple sketch** (a Theta sketch whose retained
//! keys each carry a summary; here the entity's event count) per window.
//! Up to its nominal size `k` = 2^[`LG_K`] it holds every entity with its
//! exact count; beyond, a uniform random sample of entities (those whose
//! hash is below `θ`) with their *exact* counts: an entity sampled once
//! stays sampled for the whole window, because `θ` only decreases. So:
//!
//! - distinct entities `D̂ = retained / θ` (exact below `k`; relative
//!   standard error `≈ 1/√k` = 1.6% above),
//! - the second frequency moment `F̂2 = Σ_retained m_e² / θ` (exact below
//!   `k`; unbiased above), and the event count `M` exactly, which give the
//!   Kish effective size `M² / F̂2`.
//!
//! Why a Tuple sketch rather than HLL or CPC: those count distinct
//! entities only, and the distinct count overstates the effective size
//! whenever some entities have more events than others (with the `m_e` of
//! a Poisson(5) activity, by ~20%), which would inflate every test
//! statistic of a store feature by ~10% and its false alarms with it.
//! Theta-family sketches are mergeable (the union adds the counts of keys
//! in both) and their compact image is DataSketches' cross-language
//! format.
//!
//! Guarantees: memory bounded by `k` entries (16 bytes each, twice that
//! while updating), no panic on any input or serialised image.

use datasketches::tuple::{
    CompactTupleSketch, DefaultUnionPolicy, DefaultUpdatePolicy, TupleSketch, TupleSketchBuilder,
    TupleUnionBuilder,
};
use serde::{Deserialize, Serialize};

use super::DriftError;

/// log2 of the Tuple sketch's nominal entries: exact for windows of up to
/// 4,096 distinct entities (a 5,000-event window usually has fewer).
pub const LG_K: u8 = 12;

/// Serialised format version of [`EntityCounter`]; bump on any change.
pub const FORMAT: u32 = 1;

/// Bytes of one retained entity: its 64-bit hash and count.
const ENTRY_BYTES: usize = 16;

/// The most [`EntityCounter::bytes`] can reach: an updating table of
/// `2k` slots and a merged part of as many entries.
pub const BYTES_BOUND: usize = std::mem::size_of::<EntityCounter>() + 2 * (2 << LG_K) * ENTRY_BYTES;

type Updating = TupleSketch<DefaultUpdatePolicy<u64>>;
type Compact = CompactTupleSketch<u64>;

/// Distinct entities and their event counts in one window; see the module
/// docs.
#[derive(Debug)]
pub struct EntityCounter {
    /// Takes updates; `None` only if the library refused to build one,
    /// which it cannot for [`LG_K`] (then updates are counted in `events`
    /// only, and the statistics fall back to the event count).
    live: Option<Updating>,
    /// Windows merged in (and deserialised images).
    merged: Option<Compact>,
    /// Events counted, merged ones included.
    events: u64,
}

fn new_live() -> Option<Updating> {
    TupleSketchBuilder::new(DefaultUpdatePolicy::<u64>::default())
        .lg_k(LG_K)
        .build()
        .ok()
}

impl Default for EntityCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for EntityCounter {
    fn clone(&self) -> Self {
        // The updating sketch is not `Clone`; a copy is its compact union
        // with the merged part (same statistics).
        EntityCounter {
            live: new_live(),
            merged: self.compact(),
            events: self.events,
        }
    }
}

/// Two counters are equal when they describe the same entities: the same
/// statistics (what windows are compared by after a round trip).
impl PartialEq for EntityCounter {
    fn eq(&self, other: &Self) -> bool {
        self.stats() == other.stats()
    }
}

/// The statistics of an [`EntityCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EntityStats {
    /// Events counted.
    pub events: u64,
    /// Estimated distinct entities.
    pub distinct: f64,
    /// Estimated `Σ_e m_e²`.
    pub f2: f64,
    /// Whether both estimates are exact (fewer than `k` entities).
    pub exact: bool,
}

impl EntityStats {
    /// Kish effective size `events² / F2`, within `[1, events]`.
    pub fn kish(&self) -> f64 {
        super::significance::effective_n(
            super::significance::ValueSource::Store,
            self.events,
            Some(self.f2),
        )
    }
}

impl EntityCounter {
    /// An empty counter.
    pub fn new() -> Self {
        EntityCounter {
            live: new_live(),
            merged: None,
            events: 0,
        }
    }

    /// Counts one event of `entity`.
    #[inline]
    pub fn update(&mut self, entity: &str) {
        self.events = self.events.saturating_add(1);
        if let Some(s) = &mut self.live {
            s.update(entity.as_bytes(), 1u64);
        }
    }

    /// Bytes held now, estimated: the updating sketch's hash table (at most
    /// half full, 16-byte entries) and the merged part's entries.
    pub fn bytes(&self) -> usize {
        let live = self
            .live
            .as_ref()
            .map_or(0, |l| (l.num_retained() * 2).next_power_of_two().max(32));
        let merged = self.merged.as_ref().map_or(0, |m| m.num_retained());
        std::mem::size_of::<Self>() + (live.min(1 << (LG_K + 1)) + merged) * ENTRY_BYTES
    }

    /// Events counted.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The union of the live and merged parts, compacted.
    fn compact(&self) -> Option<Compact> {
        let live_empty = self.live.as_ref().is_none_or(|l| l.is_empty());
        match (&self.merged, live_empty) {
            (None, true) => None,
            (Some(m), true) => Some(m.clone()),
            (merged, false) => {
                let mut union = TupleUnionBuilder::new(DefaultUnionPolicy::<u64>::default())
                    .lg_k(LG_K)
                    .build()
                    .ok()?;
                if let Some(l) = &self.live {
                    union.update(l).ok()?;
                }
                if let Some(m) = merged {
                    union.update(m).ok()?;
                }
                Some(union.to_sketch(true))
            }
        }
    }

    /// Adds `other` into `self`: the counts of an entity seen by both add.
    /// On error `self` is unchanged.
    ///
    /// Errors: sketches of another hash seed (a foreign image).
    pub fn merge(&mut self, other: &EntityCounter) -> Result<(), DriftError> {
        let failed = |_| DriftError::IncompatibleSketches {
            reason: "entity sketches of different seeds",
        };
        let mut union = TupleUnionBuilder::new(DefaultUnionPolicy::<u64>::default())
            .lg_k(LG_K)
            .build()
            .map_err(failed)?;
        for part in [self.compact(), other.compact()].iter().flatten() {
            union.update(part).map_err(failed)?;
        }
        self.merged = Some(union.to_sketch(true));
        self.live = new_live();
        self.events = self.events.saturating_add(other.events);
        Ok(())
    }

    /// Distinct entities, `Σ m_e²` and the event count.
    pub fn stats(&self) -> EntityStats {
        let Some(all) = self.compact() else {
            return EntityStats {
                events: self.events,
                distinct: 0.0,
                f2: 0.0,
                exact: true,
            };
        };
        let theta = all.theta();
        let sum_squares: f64 = all
            .iter()
            .map(|e| {
                let m = *e.summary() as f64;
                m * m
            })
            .sum();
        let scale = if theta > 0.0 { 1.0 / theta } else { 1.0 };
        EntityStats {
            events: self.events,
            distinct: all.estimate(),
            f2: sum_squares * scale,
            exact: !all.is_estimation_mode(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityCounterRepr {
    format: u32,
    events: u64,
    /// DataSketches compact Tuple sketch image, `u64` summaries.
    tuple: Vec<u8>,
}

impl Serialize for EntityCounter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tuple = match self.compact() {
            Some(c) => c.serialize(),
            None => {
                datasketches::tuple::TupleSketchBuilder::new(DefaultUpdatePolicy::<u64>::default())
                    .build()
                    .map(|s| s.compact(true).serialize())
                    .unwrap_or_default()
            }
        };
        EntityCounterRepr {
            format: FORMAT,
            events: self.events,
            tuple,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EntityCounter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = EntityCounterRepr::deserialize(deserializer)?;
        if r.format != FORMAT {
            return Err(D::Error::custom(format!(
                "entity counter format {} (this build reads {FORMAT})",
                r.format
            )));
        }
        let merged = Compact::deserialize(&r.tuple)
            .map_err(|e| D::Error::custom(format!("entity counter image: {e}")))?;
        let counted: u64 = merged
            .iter()
            .map(|e| *e.summary())
            .fold(0, u64::saturating_add);
        // Below θ = 1 every event's entity is retained, so the counts must
        // add up to the events; sampled sketches hold fewer.
        if (!merged.is_estimation_mode() && counted != r.events) || counted > r.events {
            return Err(D::Error::custom(format!(
                "entity counter: {counted} events retained, {} counted",
                r.events
            )));
        }
        Ok(EntityCounter {
            live: new_live(),
            merged: (!merged.is_empty()).then_some(merged),
            events: r.events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counted(entities: &[u32]) -> EntityCounter {
        let mut c = EntityCounter::new();
        for e in entities {
            c.update(&format!("card-{e}"));
        }
        c
    }

    #[test]
    fn exact_below_k() {
        // 1000 entities × 5 events: D = 1000, F2 = 25,000, Kish = 1000.
        let events: Vec<u32> = (0..5000).map(|i| i % 1000).collect();
        let s = counted(&events).stats();
        assert!(s.exact);
        assert_eq!((s.events, s.distinct, s.f2), (5000, 1000.0, 25_000.0));
        assert_eq!(s.kish(), 1000.0);
        // Uneven activity: Kish below the distinct count.
        let mut skewed: Vec<u32> = (0..1000).collect();
        skewed.extend(std::iter::repeat_n(7, 1000));
        let s = counted(&skewed).stats();
        assert_eq!(s.distinct, 1000.0);
        assert!(s.kish() < 4.0, "{}", s.kish());
        assert_eq!(EntityCounter::new().stats().distinct, 0.0);
    }

    #[test]
    fn sampled_estimates_are_close_above_k() {
        // 50,000 entities × 3 events: F2 = 450,000, Kish = 50,000.
        let events: Vec<u32> = (0..150_000).map(|i| i % 50_000).collect();
        let s = counted(&events).stats();
        assert!(!s.exact);
        assert!((s.distinct / 50_000.0 - 1.0).abs() < 0.06, "{s:?}");
        assert!((s.kish() / 50_000.0 - 1.0).abs() < 0.06, "{s:?}");
    }

    #[test]
    fn corrupt_images_are_errors() {
        let c = counted(&[1, 2, 2]);
        let mut json = serde_json::to_value(&c).unwrap();
        json["events"] = serde_json::json!(4);
        assert!(serde_json::from_value::<EntityCounter>(json.clone()).is_err());
        json["tuple"] = serde_json::json!([1, 2, 3]);
        assert!(serde_json::from_value::<EntityCounter>(json).is_err());
        let empty: EntityCounter =
            serde_json::from_str(&serde_json::to_string(&EntityCounter::new()).unwrap()).unwrap();
        assert_eq!(empty.stats().events, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn merge_and_round_trip_equal_one_counter(
            a in prop::collection::vec(0u32..3000, 0..3000),
            b in prop::collection::vec(0u32..3000, 0..3000),
        ) {
            let mut merged = counted(&a);
            merged.merge(&counted(&b)).unwrap();
            let union: Vec<u32> = a.iter().chain(&b).copied().collect();
            let single = counted(&union).stats();
            prop_assert_eq!(merged.stats(), single);
            let json = serde_json::to_string(&merged).unwrap();
            let back: EntityCounter = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.stats(), single);
            prop_assert_eq!(merged.clone().stats(), single);
        }

        #[test]
        fn arbitrary_images_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), events in any::<u64>()) {
            let json = serde_json::json!({"format": 1, "events": events, "tuple": bytes});
            if let Ok(c) = serde_json::from_value::<EntityCounter>(json) {
                let _ = c.stats();
            }
        }
    }
}
