//! Online features: the entity store, its snapshot loaders, and streaming aggregates.

pub mod aggregates;
pub mod shard;
pub mod snapshot;
pub mod store;
