//! Decoding of `labels` records: `{"event_id": "...", "label": 1, "ts": ...}`.
//!
//! Guarantees: any byte string becomes a [`Label`] or a [`Rejection`] whose
//! reason is one of the DLQ reason codes and whose detail names the field;
//! nothing panics on input.

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::event::{RejectReason, Rejection};

/// A decoded `labels` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub event_id: CompactString,
    pub label: bool,
    /// When the label was established (epoch ms), if the producer said.
    pub ts_ms: Option<i64>,
}

// Prefixes our visitors put on their errors, so `classify` can tell them
// from serde_json's own.
const WRONG_TYPE: &str = "wrong type: ";
const BAD_TS: &str = "invalid timestamp: ";

/// Decodes one `labels` value: `{"event_id": "...", "label": 1, "ts": ...}`.
///
/// `label` is `0`, `1`, `true` or `false` (`0.0` and `1.0` too, as some
/// producers write every number as a float); `ts` is optional, epoch
/// milliseconds or RFC 3339. Other fields are ignored. Never panics.
pub fn decode_label(payload: &[u8]) -> Result<Label, Rejection> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectReason::MalformedJson,
            format!("message is not UTF-8: {e}"),
        )
    })?;
    // serde's derived struct visitor also takes `[id, label, ts]`; a label
    // is an object, and a positional array is a producer bug to surface.
    if text.trim_start().starts_with('[') {
        return Err(Rejection::new(
            RejectReason::WrongType,
            "a label must be a JSON object {\"event_id\", \"label\", \"ts\"}",
        ));
    }
    let raw: RawLabel = serde_json::from_str(text).map_err(classify)?;
    let event_id = match raw.event_id {
        Some(id) if !id.trim().is_empty() => id,
        Some(_) => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "`event_id` must be a non-empty string",
            ))
        }
        None => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "`event_id` is required",
            ))
        }
    };
    let label = raw.label.ok_or_else(|| {
        Rejection::new(
            RejectReason::MissingField,
            "`label` is required (0, 1, true or false)",
        )
    })?;
    Ok(Label {
        event_id,
        label,
        ts_ms: raw.ts,
    })
}

fn classify(err: serde_json::Error) -> Rejection {
    let msg = err.to_string();
    // `1e999` is well-formed JSON that serde_json reports as a syntax error.
    let reason = if msg.starts_with("number out of range") {
        RejectReason::NonFinite
    } else if !err.is_data() {
        RejectReason::MalformedJson
    } else if msg.starts_with(BAD_TS) {
        RejectReason::InvalidTimestamp
    } else {
        RejectReason::WrongType
    };
    Rejection::new(reason, msg)
}

#[derive(Deserialize)]
#[serde(expecting = "a label object {\"event_id\", \"label\", \"ts\"}")]
struct RawLabel {
    #[serde(default, deserialize_with = "event_id")]
    event_id: Option<CompactString>,
    #[serde(default, deserialize_with = "label_value")]
    label: Option<bool>,
    #[serde(default, deserialize_with = "timestamp")]
    ts: Option<i64>,
}

/// `event_id` must be a string, as in the `features` topic: a number could
/// never equal a scored event's id, so it is a producer bug to surface.
fn event_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CompactString>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<CompactString>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`event_id` as a string")
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
            Err(wrong_id(format_args!("number {v}")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("number {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("number {v}")))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("{v}")))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_id(format_args!("an array")))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_id(format_args!("an object")))
        }
    }
    d.deserialize_any(V)
}

fn wrong_id<E: de::Error>(got: fmt::Arguments<'_>) -> E {
    E::custom(format_args!(
        "{WRONG_TYPE}`event_id` must be a string, got {got}"
    ))
}

fn wrong_label<E: de::Error>(got: fmt::Arguments<'_>) -> E {
    E::custom(format_args!(
        "{WRONG_TYPE}`label` must be 0, 1, true or false, got {got}"
    ))
}

fn label_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`label` as 0, 1, true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match v {
                0 => Ok(Some(false)),
                1 => Ok(Some(true)),
                _ => Err(wrong_label(format_args!("{v}"))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(wrong_label(format_args!("{v}"))),
            }
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v == 0.0 {
                Ok(Some(false))
            } else if v == 1.0 {
                Ok(Some(true))
            } else {
                Err(wrong_label(format_args!("{v}")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(wrong_label(format_args!("the string {v:?}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_label(format_args!("an array")))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_label(format_args!("an object")))
        }
    }
    d.deserialize_any(V)
}

/// `ts`: epoch milliseconds or an RFC 3339 string (as in `features`).
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    fn bad<E: de::Error>(detail: fmt::Arguments<'_>) -> E {
        E::custom(format_args!("{BAD_TS}`ts` {detail}"))
    }
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`ts` as epoch milliseconds or an RFC 3339 string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| bad(format_args!("{v} is out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v.abs() < 9.0e15 {
                Ok(Some(v as i64))
            } else {
                Err(bad(format_args!("{v} is out of range")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| bad(format_args!("{v:?} is not RFC 3339: {e}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(bad(format_args!("must be a number or a string, got {v}")))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(bad(format_args!(
                "must be a number or a string, got an array"
            )))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(bad(format_args!(
                "must be a number or a string, got an object"
            )))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_every_accepted_label_form() {
        for (text, want) in [
            (r#"{"event_id":"e1","label":1}"#, true),
            (r#"{"event_id":"e1","label":0}"#, false),
            (r#"{"event_id":"e1","label":true}"#, true),
            (r#"{"event_id":"e1","label":false,"ts":null}"#, false),
            (r#"{"event_id":"e1","label":1.0}"#, true),
            (r#"{"label":0.0,"event_id":"e1","extra":[1,2]}"#, false),
        ] {
            let l = decode_label(text.as_bytes()).unwrap();
            assert_eq!(
                (l.event_id.as_str(), l.label, l.ts_ms),
                ("e1", want, None),
                "{text}"
            );
        }
        let l = decode_label(br#"{"event_id":"e","label":1,"ts":1700000000123}"#).unwrap();
        assert_eq!(l.ts_ms, Some(1_700_000_000_123));
        let l =
            decode_label(br#"{"event_id":"e","label":1,"ts":"2023-11-14T22:13:20.5Z"}"#).unwrap();
        assert_eq!(l.ts_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn bad_labels_are_rejected_naming_the_field() {
        for (text, reason, field) in [
            (&b"\xff\xfe"[..], RejectReason::MalformedJson, "UTF-8"),
            (b"{\"event_id\":", RejectReason::MalformedJson, "EOF"),
            (b"[1,2]", RejectReason::WrongType, "JSON object"),
            (b" 3", RejectReason::WrongType, "label object"),
            (b"", RejectReason::MalformedJson, "EOF"),
            (b"not json", RejectReason::MalformedJson, "expected"),
            (b"{\"label\":1}", RejectReason::MissingField, "event_id"),
            (
                b"{\"event_id\":\" \",\"label\":1}",
                RejectReason::MissingField,
                "event_id",
            ),
            (
                b"{\"event_id\":7,\"label\":1}",
                RejectReason::WrongType,
                "event_id",
            ),
            (b"{\"event_id\":\"e\"}", RejectReason::MissingField, "label"),
            (
                b"{\"event_id\":\"e\",\"label\":null}",
                RejectReason::MissingField,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":2}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":-1}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":0.5}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":\"1\"}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":1e999}",
                RejectReason::NonFinite,
                "range",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":1,\"ts\":\"yesterday\"}",
                RejectReason::InvalidTimestamp,
                "ts",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":1,\"ts\":true}",
                RejectReason::InvalidTimestamp,
                "ts",
            ),
        ] {
            let err = decode_label(text).unwrap_err();
            assert_eq!(
                err.reason,
                reason,
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
            assert!(
                err.detail.contains(field),
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_label(&bytes);
        }

        #[test]
        fn decoding_never_panics_on_near_labels(
            id in "[a-z0-9\" ]{0,8}",
            label in "(0|1|2|true|false|null|-1|0\\.5|\"1\"|\\[\\]|\\{\\})",
            ts in "(1700000000000|\"2024-01-01T00:00:00Z\"|null|\"x\"|1e30|-5)",
        ) {
            let text = format!(r#"{{"event_id":"{id}","label":{label},"ts":{ts}}}"#);
            let _ = decode_label(text.as_bytes());
        }
    }
}
