//! Getting events in: decoding of the `features` topic's message formats.

pub mod arrow;
pub mod decode;
