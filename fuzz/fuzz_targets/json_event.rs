//! The `features` topic's JSON decoder, under the default limits.
//!
//! Invariants on top of "never panics": an accepted event has non-empty ids
//! within the id bound and without control characters; a rejection has a
//! detail; decoding is deterministic.
#![no_main]

use driftline::source::decode::{decode_json_with, DecodeLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_message_bytes: 64 * 1024,
    max_id_bytes: 256,
};

fuzz_target!(|data: &[u8]| {
    let first = decode_json_with(data, LIMITS);
    match &first {
        Ok(e) => {
            for id in [&e.event_id, &e.entity_id] {
                assert!(!id.trim().is_empty() && id.len() <= LIMITS.max_id_bytes);
                assert!(!id.chars().any(char::is_control));
            }
        }
        Err(r) => assert!(!r.detail.is_empty()),
    }
    assert_eq!(first, decode_json_with(data, LIMITS));
});
