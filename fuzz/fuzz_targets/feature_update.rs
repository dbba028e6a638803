//! The `feature-updates` topic's decoder, with and without a record key:
//! the first byte says how many of the following bytes are the key.
#![no_main]

use driftline::source::decode::{decode_update_with, DecodeLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_message_bytes: 64 * 1024,
    max_id_bytes: 256,
};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    // 255: no key at all (a keyless record).
    let (key, value) = match n {
        255 => (None, rest),
        n => {
            let n = usize::from(n).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
    };
    match decode_update_with(value, key, LIMITS) {
        Ok(u) => {
            assert!(!u.entity_id.trim().is_empty() && u.entity_id.len() <= LIMITS.max_id_bytes);
            assert!(!u.entity_id.chars().any(char::is_control));
        }
        Err(r) => assert!(!r.detail.is_empty()),
    }
});
