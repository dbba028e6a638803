//! Key-to-shard routing shared by the online store and the aggregate state.
//!
//! A fixed-seed hash so that the same entity lands on the same shard in every
//! process (useful when comparing dumps across instances).

use std::hash::{BuildHasher, Hasher};

/// Seeded so shard placement is stable across runs and processes.
const SEED: u64 = 0x6472_6966_746c_696e; // "driftlin"

/// Hash of an entity id, used for shard selection and in-shard tables.
#[inline]
pub fn hash_key(key: &str) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(SEED).build_hasher();
    h.write(key.as_bytes());
    h.finish()
}

/// Index of the shard that owns `key` among `shards` (a power of two).
#[inline]
pub fn shard_of(key: &str, shards: usize) -> usize {
    debug_assert!(shards.is_power_of_two());
    // High bits: the low ones also pick the bucket inside the shard's table.
    ((hash_key(key) >> 40) as usize) & (shards - 1)
}

/// Rounds a requested shard count to a power of two in `1..=1024`.
pub fn shard_count(requested: usize) -> usize {
    requested.clamp(1, 1024).next_power_of_two()
}
