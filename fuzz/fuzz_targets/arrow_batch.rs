//! The `features` topic's Arrow IPC batch decoder, under the default limits
//! (16 MiB messages, 100k rows, 128 MiB decoded): libFuzzer's RSS limit
//! (2 GiB by default) turns a decoded-size bound that does not hold into a
//! crash too.
#![no_main]

use driftline::source::arrow::{decode_arrow_batch_with, BatchLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = BatchLimits::with_max_message_bytes(16 * 1024 * 1024);
    match decode_arrow_batch_with(data, &limits) {
        Ok(rows) => {
            assert!(rows.len() <= limits.max_rows);
            for row in rows {
                match row {
                    Ok(e) => {
                        assert!(!e.event_id.trim().is_empty() && !e.entity_id.trim().is_empty())
                    }
                    Err((r, json)) => {
                        assert!(!r.detail.is_empty());
                        assert!(!json.is_empty());
                    }
                }
            }
        }
        Err(r) => assert!(!r.detail.is_empty()),
    }
});
