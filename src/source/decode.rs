//! JSON event decoding (spec: `features` topic).
//!
//! Guarantees: [`decode_json`] never panics on any byte string; every failure
//! is a [`Rejection`] with a stable reason code and a detail naming the field.
//! Feature values are kept as sent (number, text, bool, null); deciding what
//! each model input needs is enrichment's job. Decoding goes straight from
//! bytes to [`Event`] with no intermediate `serde_json::Value` tree, and short
//! strings stay inline, so a typical event costs one allocation (the feature
//! vector).
//!
//! # Rules
//!
//! One reason per rule, checked in this order:
//!
//! 1. Over `max_message_bytes` → `oversize`.
//! 2. Not UTF-8, not JSON, or bytes after the value → `malformed_json`.
//! 3. Not a JSON object (an array, a string, ...) → `wrong_type`: a positional
//!    `["id", "entity", ts, {...}]` is a producer bug, not an event.
//! 4. `event_id`, `entity_id`, `ts` or `features` named twice, or one feature
//!    named twice → `duplicate_field` (other top-level fields are ignored,
//!    repeated or not: nothing reads them).
//! 5. Value errors inside the object, in document order: a non-string id or
//!    a feature that is an array or object → `wrong_type`, NaN/±∞ (including
//!    numbers beyond `f64`) → `non_finite`, an unreadable `ts` →
//!    `invalid_timestamp`.
//! 6. `event_id` / `entity_id` absent, null or blank → `missing_field`.
//! 7. An id longer than `max_id_bytes` or holding a control character
//!    (`char::is_control`: NUL, tab, newline, DEL, C1) → `invalid_id`: ids
//!    become Kafka keys, log fields and state-store keys, where such bytes
//!    either cost memory per entity or break the output.

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::event::{Event, FeatureValue, Features, RejectReason, Rejection};

/// Prefix that marks errors raised by our own visitors as type errors, so
/// they are not confused with syntax errors when classified.
const WRONG_TYPE: &str = "wrong type: ";
const NON_FINITE: &str = "non-finite: ";
const BAD_TS: &str = "invalid timestamp: ";
const DUPLICATE: &str = "duplicate field: ";

/// Default of `pipeline.max_id_bytes`: far above real ids (UUIDs are 36
/// bytes), far below what would make per-entity state cost kilobytes.
pub const DEFAULT_MAX_ID_BYTES: usize = 256;

/// Bounds applied while decoding one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest message accepted, in bytes (0 = no bound) → `oversize`.
    pub max_message_bytes: usize,
    /// Longest `event_id` / `entity_id`, in bytes (0 = no bound) → `invalid_id`.
    pub max_id_bytes: usize,
}

impl DecodeLimits {
    /// `max_message_bytes` with the default id bound.
    pub fn with_max_message_bytes(max_message_bytes: usize) -> Self {
        DecodeLimits {
            max_message_bytes,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
        }
    }
}

/// Decodes one JSON event. `max_bytes` bounds the message size (0 = no
/// bound); ids are bounded by [`DEFAULT_MAX_ID_BYTES`].
pub fn decode_json(bytes: &[u8], max_bytes: usize) -> Result<Event, Rejection> {
    decode_json_with(bytes, DecodeLimits::with_max_message_bytes(max_bytes))
}

/// Decodes one JSON event under `limits` (see the module docs for the rules).
pub fn decode_json_with(bytes: &[u8], limits: DecodeLimits) -> Result<Event, Rejection> {
    let raw = parse_raw(bytes, limits.max_message_bytes)?;
    let event_id = required(raw.event_id, "event_id")?;
    let entity_id = required(raw.entity_id, "entity_id")?;
    check_id(&event_id, "event_id", limits.max_id_bytes)?;
    check_id(&entity_id, "entity_id", limits.max_id_bytes)?;
    Ok(Event {
        event_id,
        entity_id,
        ts_ms: raw.ts,
        features: raw.features.unwrap_or_default(),
    })
}

/// The `invalid_id` rule, shared with the Arrow batch form: an id at most
/// `max_bytes` long (0 = no bound) without control characters.
pub fn check_id(id: &str, field: &str, max_bytes: usize) -> Result<(), Rejection> {
    if max_bytes > 0 && id.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::InvalidId,
            format!(
                "`{field}` is {} bytes, the limit is {max_bytes} (pipeline.max_id_bytes)",
                id.len()
            ),
        ));
    }
    if let Some((at, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Rejection::new(
            RejectReason::InvalidId,
            format!(
                "`{field}` holds the control character U+{:04X} at byte {at}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// A decoded `feature-updates` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub entity_id: CompactString,
    pub ts_ms: Option<i64>,
    pub features: Features,
}

/// Decodes one `feature-updates` value (`{"entity_id", "ts", "features"}`),
/// with the same value rules as [`decode_json`]. The record key stands in
/// for a missing `entity_id`; when both are present they must agree, since a
/// compacted topic keeps only the newest record per key.
pub fn decode_update(
    bytes: &[u8],
    key: Option<&[u8]>,
    max_bytes: usize,
) -> Result<Update, Rejection> {
    decode_update_with(bytes, key, DecodeLimits::with_max_message_bytes(max_bytes))
}

/// [`decode_update`] under `limits`; the id rule applies to the id used,
/// from the value or the key.
pub fn decode_update_with(
    bytes: &[u8],
    key: Option<&[u8]>,
    limits: DecodeLimits,
) -> Result<Update, Rejection> {
    let raw = parse_raw(bytes, limits.max_message_bytes)?;
    let key = key.and_then(|k| std::str::from_utf8(k).ok());
    let entity_id = match (raw.entity_id, key) {
        (Some(id), Some(k)) if !id.trim().is_empty() && id != k => {
            return Err(Rejection::new(
                RejectReason::WrongType,
                format!(
                    "`entity_id` {:?} differs from the record key {:?}",
                    shorten(&id),
                    shorten(k)
                ),
            ))
        }
        (Some(id), _) if !id.trim().is_empty() => id,
        (_, Some(k)) if !k.trim().is_empty() => CompactString::from(k),
        _ => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "`entity_id` is required (in the value or as the record key)",
            ))
        }
    };
    check_id(&entity_id, "entity_id", limits.max_id_bytes)?;
    Ok(Update {
        entity_id,
        ts_ms: raw.ts,
        features: raw.features.unwrap_or_default(),
    })
}

/// At most 64 bytes of `s` (on a character boundary) for an error detail,
/// so a rejected megabyte-long id does not become a megabyte-long header.
fn shorten(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn parse_raw(bytes: &[u8], max_bytes: usize) -> Result<RawEvent, Rejection> {
    if max_bytes > 0 && bytes.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!("message is {} bytes, the limit is {max_bytes}", bytes.len()),
        ));
    }
    // One validation pass over the whole message (std's ASCII fast path),
    // then parsing from `&str`, where serde_json skips per-string re-checks.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("invalid UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(classify)
}

fn required(value: Option<CompactString>, field: &str) -> Result<CompactString, Rejection> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(Rejection::new(
            RejectReason::MissingField,
            format!("`{field}` must be a non-empty string"),
        )),
        None => Err(Rejection::new(
            RejectReason::MissingField,
            format!("`{field}` is required"),
        )),
    }
}

fn classify(err: serde_json::Error) -> Rejection {
    let msg = err.to_string();
    // serde_json reports a number beyond f64 (`1e999`) as a syntax error,
    // but it is well-formed JSON whose value is infinite.
    let reason = if msg.starts_with("number out of range") {
        RejectReason::NonFinite
    } else if !err.is_data() {
        RejectReason::MalformedJson
    } else if msg.starts_with(NON_FINITE) {
        RejectReason::NonFinite
    } else if msg.starts_with(BAD_TS) {
        RejectReason::InvalidTimestamp
    } else if msg.starts_with(DUPLICATE) {
        RejectReason::DuplicateField
    } else if msg.starts_with("missing field") {
        RejectReason::MissingField
    } else {
        RejectReason::WrongType
    };
    Rejection::new(reason, msg)
}

/// The four fields of an event; anything else is read past.
#[derive(Default)]
struct RawEvent {
    event_id: Option<CompactString>,
    entity_id: Option<CompactString>,
    ts: Option<i64>,
    features: Option<Features>,
}

/// A top-level key, compared without allocating.
enum Key {
    EventId,
    EntityId,
    Ts,
    Features,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "event_id" => Key::EventId,
                    "entity_id" => Key::EntityId,
                    "ts" => Key::Ts,
                    "features" => Key::Features,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for RawEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEvent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object (an event)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent, A::Error> {
                let mut raw = RawEvent::default();
                // Whether each known field was present, null included: a
                // repeated `"ts": null` is as ambiguous as any other repeat.
                let mut seen = [false; 4];
                let mut first = |slot: usize, name: &str| -> Result<(), A::Error> {
                    if std::mem::replace(&mut seen[slot], true) {
                        Err(de::Error::custom(format_args!(
                            "{DUPLICATE}`{name}` appears more than once"
                        )))
                    } else {
                        Ok(())
                    }
                };
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::EventId => {
                            first(0, "event_id")?;
                            raw.event_id = map.next_value_seed(IdSeed)?;
                        }
                        Key::EntityId => {
                            first(1, "entity_id")?;
                            raw.entity_id = map.next_value_seed(IdSeed)?;
                        }
                        Key::Ts => {
                            first(2, "ts")?;
                            raw.ts = map.next_value::<Option<Timestamp>>()?.map(|t| t.0);
                        }
                        Key::Features => {
                            first(3, "features")?;
                            raw.features = map.next_value::<Option<Features>>()?;
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(V)
    }
}

/// Ids must be strings; a number here is a producer bug worth surfacing.
struct IdSeed;

impl<'de> de::DeserializeSeed<'de> for IdSeed {
    type Value = Option<CompactString>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl<'de> Visitor<'de> for IdVisitor {
    type Value = Option<CompactString>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string id")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(CompactString::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(E::custom(format_args!(
            "{WRONG_TYPE}id must be a string, got number {v}"
        )))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(E::custom(format_args!(
            "{WRONG_TYPE}id must be a string, got number {v}"
        )))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format_args!(
            "{WRONG_TYPE}id must be a string, got number {v}"
        )))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Err(E::custom(format_args!(
            "{WRONG_TYPE}id must be a string, got {v}"
        )))
    }
}

/// `ts`: epoch milliseconds or an RFC 3339 string.
struct Timestamp(i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("epoch milliseconds or an RFC 3339 string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom(format_args!("{BAD_TS}`ts` {v} is out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                if v.is_finite() && v.abs() < 9.0e15 {
                    Ok(Timestamp(v as i64))
                } else {
                    Err(E::custom(format_args!("{BAD_TS}`ts` {v} is out of range")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| Timestamp(t.timestamp_millis()))
                    .map_err(|e| E::custom(format_args!("{BAD_TS}`ts` {v:?} is not RFC 3339: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Features checked for repeats by a linear scan before a hash set takes over.
const LINEAR_SCAN_FEATURES: usize = 32;

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Features;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of feature values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Features, A::Error> {
                let mut out: Vec<(CompactString, FeatureValue)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(12));
                // Past a few dozen features a linear scan per key would make
                // one 64 KiB message of short keys cost ~10^8 comparisons.
                let mut index: Option<
                    std::collections::HashSet<CompactString, foldhash::fast::RandomState>,
                > = None;
                while let Some(name) = map.next_key::<CompactString>()? {
                    let repeated = match &mut index {
                        Some(set) => !set.insert(name.clone()),
                        None => {
                            let repeated = out.iter().any(|(k, _)| *k == name);
                            if out.len() >= LINEAR_SCAN_FEATURES {
                                index = Some(
                                    out.iter()
                                        .map(|(k, _)| k.clone())
                                        .chain([name.clone()])
                                        .collect(),
                                );
                            }
                            repeated
                        }
                    };
                    if repeated {
                        return Err(de::Error::custom(format_args!(
                            "{DUPLICATE}feature `{name}` appears more than once"
                        )));
                    }
                    let value = map.next_value_seed(ValueSeed(&name))?;
                    out.push((name, value));
                }
                Ok(Features(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Deserializes one feature value, naming the feature in errors.
struct ValueSeed<'a>(&'a str);

impl<'de> de::DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = FeatureValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FeatureValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = FeatureValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a number, string, bool or null for feature `{}`", self.0)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FeatureValue, E> {
        Ok(FeatureValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FeatureValue, E> {
        Ok(FeatureValue::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FeatureValue, E> {
        Ok(FeatureValue::Number(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<FeatureValue, E> {
        if v.is_finite() {
            Ok(FeatureValue::Number(v))
        } else {
            Err(E::custom(format_args!(
                "{NON_FINITE}feature `{}` is {v}",
                self.0
            )))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<FeatureValue, E> {
        Ok(FeatureValue::Text(CompactString::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FeatureValue, E> {
        Ok(FeatureValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<FeatureValue, E> {
        Ok(FeatureValue::Null)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<FeatureValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(format_args!(
            "{WRONG_TYPE}feature `{}` is an array; features are numbers, strings, bools or null",
            self.0
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FeatureValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(format_args!(
            "{WRONG_TYPE}feature `{}` is an object; features are numbers, strings, bools or null",
            self.0
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(bytes: &[u8]) -> RejectReason {
        decode_json(bytes, 1024).unwrap_err().reason
    }

    #[test]
    fn decodes_the_spec_example() {
        let e = decode_json(
            br#"{"event_id": "evt-000001", "entity_id": "card-42", "ts": 1763792400123,
                "features": {"amount": 129.5, "merchant_category": "electronics", "hour": 23, "intl": true, "x": null}}"#,
            0,
        )
        .unwrap();
        assert_eq!(e.event_id, "evt-000001");
        assert_eq!(e.entity_id, "card-42");
        assert_eq!(e.ts_ms, Some(1763792400123));
        assert_eq!(e.features.get("amount"), Some(&FeatureValue::Number(129.5)));
        assert_eq!(
            e.features.get("merchant_category"),
            Some(&FeatureValue::Text("electronics".into()))
        );
        assert_eq!(e.features.get("hour"), Some(&FeatureValue::Number(23.0)));
        assert_eq!(e.features.get("intl"), Some(&FeatureValue::Bool(true)));
        assert_eq!(e.features.get("x"), Some(&FeatureValue::Null));
    }

    #[test]
    fn decodes_updates_with_the_key_standing_in_for_the_id() {
        let u = decode_update(
            br#"{"entity_id":"card-7","ts":5,"features":{"credit_limit":900}}"#,
            Some(b"card-7"),
            0,
        )
        .unwrap();
        assert_eq!(u.entity_id, "card-7");
        assert_eq!(u.ts_ms, Some(5));
        assert_eq!(
            u.features.get("credit_limit"),
            Some(&FeatureValue::Number(900.0))
        );
        let keyed = decode_update(br#"{"features":{"card_tier":"gold"}}"#, Some(b"card-8"), 0);
        assert_eq!(keyed.unwrap().entity_id, "card-8");
        let no_id = decode_update(br#"{"features":{}}"#, None, 0).unwrap_err();
        assert_eq!(no_id.reason, RejectReason::MissingField);
        let clash = decode_update(br#"{"entity_id":"a","features":{}}"#, Some(b"b"), 0);
        assert_eq!(clash.unwrap_err().reason, RejectReason::WrongType);
        let list = decode_update(br#"{"entity_id":"a","features":{"x":[1]}}"#, None, 0);
        assert_eq!(list.unwrap_err().reason, RejectReason::WrongType);
        let huge = decode_update(br#"{"entity_id":"a","features":{"x":1e999}}"#, None, 0);
        assert_eq!(huge.unwrap_err().reason, RejectReason::NonFinite);
    }

    #[test]
    fn accepts_rfc3339_and_missing_ts() {
        let e = decode_json(
            br#"{"event_id":"a","entity_id":"b","ts":"2025-11-22T06:20:00.123Z","features":{}}"#,
            0,
        )
        .unwrap();
        assert_eq!(e.ts_ms, Some(1763792400123));
        let e = decode_json(br#"{"event_id":"a","entity_id":"b"}"#, 0).unwrap();
        assert_eq!(e.ts_ms, None);
        assert!(e.features.is_empty());
    }

    #[test]
    fn every_bad_input_gets_its_reason() {
        assert_eq!(reason(b"{not json"), RejectReason::MalformedJson);
        assert_eq!(reason(b"\xff\xfe"), RejectReason::MalformedJson);
        assert_eq!(reason(b""), RejectReason::MalformedJson);
        assert_eq!(reason(br#"[1,2]"#), RejectReason::WrongType);
        assert_eq!(reason(br#"{"entity_id":"b"}"#), RejectReason::MissingField);
        assert_eq!(
            reason(br#"{"event_id":"","entity_id":"b"}"#),
            RejectReason::MissingField
        );
        assert_eq!(reason(br#"{"event_id":"a"}"#), RejectReason::MissingField);
        assert_eq!(
            reason(br#"{"event_id":7,"entity_id":"b"}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(br#"{"event_id":"a","entity_id":"b","features":{"v":[1]}}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(br#"{"event_id":"a","entity_id":"b","features":"x"}"#),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(br#"{"event_id":"a","entity_id":"b","ts":"yesterday"}"#),
            RejectReason::InvalidTimestamp
        );
        // serde_json refuses NaN/Infinity tokens and out-of-range numbers as syntax.
        assert_eq!(
            reason(br#"{"event_id":"a","entity_id":"b","features":{"v":NaN}}"#),
            RejectReason::MalformedJson
        );
        let big = format!(
            r#"{{"event_id":"a","entity_id":"b","pad":"{}"}}"#,
            "x".repeat(2000)
        );
        assert_eq!(reason(big.as_bytes()), RejectReason::Oversize);
    }

    #[test]
    fn errors_name_the_feature() {
        let err = decode_json(
            br#"{"event_id":"a","entity_id":"b","features":{"amount":{}}}"#,
            0,
        )
        .unwrap_err();
        assert!(err.detail.contains("`amount`"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            match decode_json(&bytes, 128) {
                Ok(e) => proptest::prop_assert!(!e.event_id.is_empty() && !e.entity_id.is_empty()),
                Err(r) => proptest::prop_assert!(!r.detail.is_empty()),
            }
        }

        #[test]
        fn round_trips_generated_events(
            id in "[a-z0-9-]{1,20}",
            entity in "[a-z0-9-]{1,30}",
            ts in proptest::option::of(0i64..4_000_000_000_000),
            amount in -1e9f64..1e9,
            category in "[a-z_]{0,12}",
        ) {
            let mut features = Features::default();
            features.insert("amount", FeatureValue::Number(amount));
            features.insert("category", FeatureValue::Text(category.as_str().into()));
            features.insert("flag", FeatureValue::Bool(amount > 0.0));
            features.insert("gone", FeatureValue::Null);
            let event = Event { event_id: id.as_str().into(), entity_id: entity.as_str().into(), ts_ms: ts, features };
            let mut buf = Vec::new();
            crate::demo::generator::write_json(&event, &mut buf);
            let decoded = decode_json(&buf, 0).map_err(|r| proptest::test_runner::TestCaseError::fail(r.to_string()))?;
            proptest::prop_assert_eq!(decoded, event);
        }
    }
}
