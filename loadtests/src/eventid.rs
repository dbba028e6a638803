//! Event ids that carry the load generator's sequence number.
//!
//! The generator names event `seq` `lt-<seq>`. Both outputs the load test
//! reads carry it: a driftline prediction (`{"event_id":"lt-42",...}`) and
//! the pass-through's copy of the raw event (also `{"event_id":"lt-42",...}`).
//! [`parse_seq`] finds it with a byte scan, without parsing the JSON, so
//! reading predictions costs the measuring side as little as possible.
//! It accepts whitespace around the colon and returns `None` for anything
//! that is not exactly `"event_id"`, `:`, `"lt-<digits>"`.

/// Prefix of every generated event id.
pub const PREFIX: &str = "lt-";

const KEY: &[u8] = b"\"event_id\"";

/// The id of event `seq`.
pub fn event_id(seq: u64) -> String {
    format!("{PREFIX}{seq}")
}

/// The sequence number in a JSON value's `event_id` (`None` when there is no
/// such field or it is not one of ours).
pub fn parse_seq(value: &[u8]) -> Option<u64> {
    let at = find(value, KEY)?;
    let mut rest = &value[at + KEY.len()..];
    rest = skip_ws(rest);
    rest = rest.strip_prefix(b":")?;
    rest = skip_ws(rest);
    rest = rest.strip_prefix(b"\"")?;
    rest = rest.strip_prefix(PREFIX.as_bytes())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || rest.get(digits) != Some(&b'"') {
        return None;
    }
    let mut seq: u64 = 0;
    for &b in &rest[..digits] {
        seq = seq.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(seq)
}

fn skip_ws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\n' | b'\r', tail @ ..] = s {
        s = tail;
    }
    s
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // `event_id` is the first field of both outputs, so this returns after
    // a few bytes in practice.
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for seq in [0, 1, 42, 1_000_000, u64::MAX] {
            let json = format!(r#"{{"event_id":"{}","entity_id":"card-1"}}"#, event_id(seq));
            assert_eq!(parse_seq(json.as_bytes()), Some(seq));
        }
    }

    #[test]
    fn reads_predictions_and_raw_events() {
        let prediction = br#"{"event_id":"lt-77","entity_id":"card-000003","ts":1,"model":"fraud-mlp","model_version":"1","variant":"primary","score":0.01,"latency_us":40}"#;
        assert_eq!(parse_seq(prediction), Some(77));
        let raw = br#"{"event_id":"lt-9","entity_id":"card-000001","ts":1763792400123,"features":{"amount":12.5}}"#;
        assert_eq!(parse_seq(raw), Some(9));
        let spaced = b"{ \"entity_id\": \"x\", \"event_id\" :\n \"lt-5\" }";
        assert_eq!(parse_seq(spaced), Some(5));
    }

    #[test]
    fn rejects_what_is_not_ours() {
        for bad in [
            &br#"{"event_id":"evt-000001"}"#[..],
            br#"{"event_id":"lt-"}"#,
            br#"{"event_id":"lt-12x"}"#,
            br#"{"event_id":"lt-12"#,
            br#"{"event_id":12}"#,
            br#"{"entity_id":"lt-12"}"#,
            br#"{"event_id":"lt-99999999999999999999"}"#,
            b"",
            b"\"event_id\"",
        ] {
            assert_eq!(parse_seq(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
