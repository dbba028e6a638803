//! The `labels` topic's decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The one line to change when label decoding moves (to `source::labels`).
use driftline::drift::labels::decode_label as decode;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(label) => assert!(!label.event_id.trim().is_empty()),
        Err(r) => assert!(!r.detail.is_empty()),
    }
});
