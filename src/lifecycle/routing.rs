//! Routing: which version of a model scores an entity's events.
//!
//! A [`RoutingTable`] is immutable: one primary version, at most one
//! candidate in the role [`Role::Shadow`] or [`Role::Canary`] with a
//! [`Share`], and a salt (the rollout's id). The scoring loop takes the
//! current table once per batch from a [`Router`] (an `ArcSwap`), so a batch
//! is routed by one table from its first event to its last, and a swap
//! between batches is one atomic pointer store: events in flight finish on
//! the version that took them, and nothing is routed twice.
//!
//! Guarantees of [`RoutingTable::route`]:
//!
//! - **Sticky**: an entity's bucket is `xxh3_64(entity id, seed = salt)`
//!   scaled into `0..BUCKETS` (10,000 buckets, so shares have a resolution
//!   of 0.01 points). XXH3 is a published, fixed algorithm, so every
//!   instance, every restart and every future build puts an entity in the
//!   same bucket for the same salt (a test pins known values).
//! - **One version per entity**: a canary entity's events all go to the
//!   candidate and every other entity's to the primary, for a given salt
//!   and share; with a shadow, every event goes to the primary and the
//!   shadowed entities' events are scored by the candidate as well.
//! - **Monotone**: the candidate takes the buckets below its share, so
//!   raising the share only moves entities from the primary to the
//!   candidate, never back (plans refuse canary steps that lower it).
//! - **Cheap**: no allocation, one hash per event when a candidate takes
//!   traffic, none otherwise (`benches/routing.rs`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// Buckets the entity space is cut into.
pub const BUCKETS: u32 = 10_000;

/// A fraction of entities, in basis points (1/100 of a percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Share(u32);

impl Share {
    /// No entity.
    pub const NONE: Share = Share(0);
    /// Every entity.
    pub const ALL: Share = Share(BUCKETS);

    /// A share from a percentage, rounded to the nearest basis point and
    /// clamped to 0..=100 (NaN is 0).
    pub fn from_percent(percent: f64) -> Share {
        if percent.is_nan() {
            return Share::NONE;
        }
        let bp = (percent.clamp(0.0, 100.0) * f64::from(BUCKETS) / 100.0).round();
        Share(bp as u32)
    }

    /// A share in basis points, clamped to 0..=10,000.
    pub fn from_basis_points(bp: u32) -> Share {
        Share(bp.min(BUCKETS))
    }

    pub fn basis_points(self) -> u32 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) * 100.0 / f64::from(BUCKETS)
    }
}

/// What a candidate does with its share of entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Scores its share next to the primary; its predictions go to
    /// `predictions-shadow`, never to `predictions`.
    Shadow,
    /// Serves its share instead of the primary.
    Canary,
}

/// The `variant` field of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Primary,
    Canary,
    Shadow,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Primary => "primary",
            Variant::Canary => "canary",
            Variant::Shadow => "shadow",
        }
    }
}

/// Where one event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Scored by the primary only.
    Primary,
    /// Scored by the candidate only (its prediction is the one published).
    Canary,
    /// Scored by the primary (published) and by the candidate (to `predictions-shadow`).
    Shadowed,
}

impl Route {
    /// The variant whose prediction goes to `predictions`.
    pub fn served_by(self) -> Variant {
        match self {
            Route::Canary => Variant::Canary,
            Route::Primary | Route::Shadowed => Variant::Primary,
        }
    }

    /// Whether the candidate also scores the event in shadow.
    pub fn shadowed(self) -> bool {
        self == Route::Shadowed
    }
}

/// The candidate of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub version: Arc<str>,
    pub role: Role,
    pub share: Share,
}

/// One immutable routing decision for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    model: Arc<str>,
    primary: Arc<str>,
    candidate: Option<Candidate>,
    salt: u64,
    /// The state generation this table was built from (for logs and tests:
    /// two instances with the same generation route identically).
    generation: u64,
}

/// Indices of a batch's events by where they go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Events whose published prediction comes from the primary.
    pub primary: Vec<usize>,
    /// Events served by the canary.
    pub canary: Vec<usize>,
    /// Events the candidate also scores in shadow (a subset of `primary`).
    pub shadow: Vec<usize>,
}

impl Split {
    pub fn clear(&mut self) {
        self.primary.clear();
        self.canary.clear();
        self.shadow.clear();
    }
}

impl RoutingTable {
    /// The primary alone.
    pub fn primary_only(model: &str, primary: &str) -> Self {
        RoutingTable {
            model: model.into(),
            primary: primary.into(),
            candidate: None,
            salt: 0,
            generation: 0,
        }
    }

    /// A table with a candidate (`None` is the primary alone).
    pub fn new(
        model: &str,
        primary: &str,
        candidate: Option<Candidate>,
        salt: u64,
        generation: u64,
    ) -> Self {
        RoutingTable {
            model: model.into(),
            primary: primary.into(),
            candidate,
            salt,
            generation,
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn candidate(&self) -> Option<&Candidate> {
        self.candidate.as_ref()
    }

    pub fn salt(&self) -> u64 {
        self.salt
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The version a variant stands for in this table.
    pub fn version_of(&self, variant: Variant) -> Option<&str> {
        match variant {
            Variant::Primary => Some(&self.primary),
            Variant::Canary | Variant::Shadow => self.candidate.as_ref().map(|c| &*c.version),
        }
    }

    /// Where `entity_id`'s events go.
    #[inline]
    pub fn route(&self, entity_id: &str) -> Route {
        let Some(candidate) = &self.candidate else {
            return Route::Primary;
        };
        if candidate.share == Share::NONE {
            return Route::Primary;
        }
        if bucket(self.salt, entity_id) >= candidate.share.0 {
            return Route::Primary;
        }
        match candidate.role {
            Role::Canary => Route::Canary,
            Role::Shadow => Route::Shadowed,
        }
    }

    /// Routes a batch: fills `out` with the indices of `entity_ids` by
    /// destination (cleared first; its buffers are reused).
    pub fn split<'a>(&self, entity_ids: impl IntoIterator<Item = &'a str>, out: &mut Split) {
        out.clear();
        for (i, entity) in entity_ids.into_iter().enumerate() {
            match self.route(entity) {
                Route::Primary => out.primary.push(i),
                Route::Canary => out.canary.push(i),
                Route::Shadowed => {
                    out.primary.push(i);
                    out.shadow.push(i);
                }
            }
        }
    }
}

/// The bucket of an entity for a salt: `xxh3_64` scaled into `0..BUCKETS`
/// by a multiply-shift (no modulo bias worth naming: at most 1 in 2^50).
#[inline]
pub fn bucket(salt: u64, entity_id: &str) -> u32 {
    let h = twox_hash::XxHash3_64::oneshot_with_seed(salt, entity_id.as_bytes());
    ((u128::from(h) * u128::from(BUCKETS)) >> 64) as u32
}

/// The current routing table of a model, swapped atomically.
#[derive(Debug)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
}

impl Router {
    pub fn new(table: RoutingTable) -> Self {
        Router {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// The table to route one batch with: take it once per batch, not per event.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Replaces the table; batches already holding the old one finish with it.
    pub fn swap(&self, table: RoutingTable) -> Arc<RoutingTable> {
        self.table.swap(Arc::new(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(role: Role, percent: f64, salt: u64) -> RoutingTable {
        RoutingTable::new(
            "fraud-mlp",
            "1",
            Some(Candidate {
                version: "2".into(),
                role,
                share: Share::from_percent(percent),
            }),
            salt,
            1,
        )
    }

    fn entities(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("card-{i:06}")).collect()
    }

    #[test]
    fn buckets_are_pinned_so_every_build_routes_alike() {
        // If these change, a rolling upgrade would move entities between
        // versions mid-rollout: the hash must never change.
        let got: Vec<u32> = ["card-000001", "card-000002", "", "é"]
            .iter()
            .map(|e| bucket(42, e))
            .collect();
        assert_eq!(got, PINNED_BUCKETS);
        assert_eq!(bucket(43, "card-000001"), 919);
    }

    /// Computed independently with Python's `xxhash` package:
    /// `(xxh3_64_intdigest(id.encode(), seed=42) * 10000) >> 64`.
    const PINNED_BUCKETS: [u32; 4] = [1629, 7820, 6881, 5000];

    #[test]
    fn no_candidate_or_zero_share_routes_everything_to_the_primary() {
        let alone = RoutingTable::primary_only("m", "1");
        let zero = table(Role::Canary, 0.0, 7);
        for e in entities(1000) {
            assert_eq!(alone.route(&e), Route::Primary);
            assert_eq!(zero.route(&e), Route::Primary);
        }
        let all = table(Role::Shadow, 100.0, 7);
        assert!(entities(1000)
            .iter()
            .all(|e| all.route(e) == Route::Shadowed));
    }

    #[test]
    fn split_puts_shadowed_events_in_both_lists() {
        let t = table(Role::Shadow, 50.0, 3);
        let ids = entities(200);
        let mut split = Split::default();
        t.split(ids.iter().map(String::as_str), &mut split);
        assert_eq!(split.primary.len(), 200);
        assert!(split.canary.is_empty());
        assert!(!split.shadow.is_empty() && split.shadow.len() < 200);
        for &i in &split.shadow {
            assert_eq!(t.route(&ids[i]), Route::Shadowed);
        }
        let c = table(Role::Canary, 50.0, 3);
        c.split(ids.iter().map(String::as_str), &mut split);
        assert_eq!(split.primary.len() + split.canary.len(), 200);
        assert!(split.shadow.is_empty());
    }

    #[test]
    fn share_conversions_round_and_clamp() {
        assert_eq!(Share::from_percent(5.0).basis_points(), 500);
        assert_eq!(Share::from_percent(0.004).basis_points(), 0);
        assert_eq!(Share::from_percent(0.005).basis_points(), 1);
        assert_eq!(Share::from_percent(250.0), Share::ALL);
        assert_eq!(Share::from_percent(-1.0), Share::NONE);
        assert_eq!(Share::from_percent(f64::NAN), Share::NONE);
        assert_eq!(Share::from_basis_points(20_000), Share::ALL);
        assert!((Share::from_percent(12.5).percent() - 12.5).abs() < 1e-12);
    }

    #[test]
    fn the_router_swaps_whole_tables() {
        let router = Router::new(RoutingTable::primary_only("m", "1"));
        let held = router.current();
        let old = router.swap(table(Role::Canary, 100.0, 1));
        assert_eq!(old.primary(), "1");
        // A batch that took the old table keeps routing with it.
        assert_eq!(held.route("card-1"), Route::Primary);
        assert_eq!(router.current().route("card-1"), Route::Canary);
        assert_eq!(router.current().version_of(Variant::Canary), Some("2"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn canary_share_is_within_two_points_over_20000_entities(
            percent in 1.0f64..99.0, salt in any::<u64>()
        ) {
            let t = table(Role::Canary, percent, salt);
            let ids = entities(20_000);
            let canary = ids.iter().filter(|e| t.route(e) == Route::Canary).count();
            let observed = 100.0 * canary as f64 / ids.len() as f64;
            prop_assert!((observed - percent).abs() <= 2.0, "{observed} vs {percent}");
        }

        #[test]
        fn every_entity_stays_on_one_version(percent in 0.0f64..100.0, salt in any::<u64>()) {
            // Two instances building the table from the same state agree,
            // and repeated events of an entity never change version.
            let a = table(Role::Canary, percent, salt);
            let b = table(Role::Canary, percent, salt);
            for e in entities(2_000) {
                let first = a.route(&e);
                prop_assert_eq!(first, a.route(&e));
                prop_assert_eq!(first, b.route(&e));
            }
        }

        #[test]
        fn raising_the_share_only_moves_entities_to_the_candidate(
            low in 0.0f64..100.0, raise in 0.0f64..100.0, salt in any::<u64>()
        ) {
            let high = (low + raise).min(100.0);
            let before = table(Role::Canary, low, salt);
            let after = table(Role::Canary, high, salt);
            for e in entities(2_000) {
                if before.route(&e) == Route::Canary {
                    prop_assert_eq!(after.route(&e), Route::Canary);
                }
            }
        }
    }
}
