//! JSON event decoding (spec: `features` topic).
//!
//! Guarantees: [`decode_json`] never panics on any byte string; every failure
//! is a [`Rejection`] with a stable reason code and a detail naming the field.
//! Feature values are kept as sent (number, text, bool, null); deciding what
//! each model input needs is enrichment's job. Decoding goes straight from
//! bytes to [`Event`] with no intermediate `serde_json::Value` tree, and short
//! strings stay inline, so a typical event costs one allocation (the feature
//! vector).

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

/// Decodes one JSON event. `max_bytes` bounds the message size (0 = no bound).
pub fn decode_json(bytes: &[u8], max_bytes: usize) -> Result<Event, Rejection> {
    let raw = parse_raw(bytes, max_bytes)?;
    let event_id = required(raw.event_id, "event_id")?;
    let entity_id = required(raw.entity_id, "entity_id")?;
    Ok(Event {
        event_id,
        entity_id,
        ts_ms: raw.ts.map(|t| t.0),
        features: raw.features.unwrap_or_default(),
    })
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
    let raw = parse_raw(bytes, max_bytes)?;
    let key = key.and_then(|k| std::str::from_utf8(k).ok());
    let entity_id = match (raw.entity_id, key) {
        (Some(id), Some(k)) if !id.trim().is_empty() && id != k => {
            return Err(Rejection::new(
                RejectReason::WrongType,
                format!("`entity_id` {id:?} differs from the record key {k:?}"),
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
    Ok(Update {
        entity_id,
        ts_ms: raw.ts.map(|t| t.0),
        features: raw.features.unwrap_or_default(),
    })
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
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            RejectReason::MalformedJson,
            format!("message is not UTF-8: {e}"),
        )
    })?;
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
    } else if msg.starts_with("missing field") {
        RejectReason::MissingField
    } else {
        RejectReason::WrongType
    };
    Rejection::new(reason, msg)
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default, deserialize_with = "id_string")]
    event_id: Option<CompactString>,
    #[serde(default, deserialize_with = "id_string")]
    entity_id: Option<CompactString>,
    #[serde(default)]
    ts: Option<Timestamp>,
    #[serde(default)]
    features: Option<Features>,
}

/// Ids must be strings; a number here is a producer bug worth surfacing.
fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CompactString>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
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
    d.deserialize_any(V)
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

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Features;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of feature values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Features, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(name) = map.next_key::<CompactString>()? {
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
