//! Arrow IPC batch decoding (spec: `features` topic, batch form).
//!
//! A high-volume producer may send one Kafka message holding an Arrow IPC
//! stream, marked by the header `content-type: application/vnd.apache.arrow.stream`,
//! with columns `event_id`, `entity_id`, optional `ts` and one column per feature.
//!
//! Guarantees:
//!
//! - **Same events as the JSON form.** A row decodes to exactly the [`Event`]
//!   [`decode_json`](super::decode::decode_json) would give for the same data, and
//!   is rejected with the same reason codes: empty or null ids are
//!   `missing_field`, NaN/±inf are `non_finite`, an unreadable `ts` is
//!   `invalid_timestamp`. Null feature cells are kept as [`FeatureValue::Null`],
//!   as a JSON `null` is.
//! - **Two levels of failure.** A message that cannot be read as a whole
//!   (oversize, not an IPC stream, cut mid-message, bytes after the
//!   end-of-stream marker, a missing or ill-typed id column, a column of an
//!   unsupported type) is one [`Rejection`], decided before any row is decoded.
//!   Otherwise every row gets its own result, in order, and a bad row carries
//!   a JSON rendering of itself for the DLQ.
//! - **Never panics** on any byte string. arrow-ipc 60.1 panics on some
//!   corrupt buffer tables, so the stream's framing and every buffer's bounds
//!   and element width are checked here before arrow reads them; a panic
//!   that would still escape arrow is caught and reported as `malformed_batch`.
//!   Compressed (LZ4/ZSTD) batches are `malformed_batch`: no codec is built in.
//! - **Truncation.** The IPC spec lets a stream end without its end-of-stream
//!   marker, so a stream cut exactly between two messages decodes as the rows
//!   before the cut; a cut anywhere else is `malformed_batch`.
//! - **Bounded decoded size.** A small message can stand for a large
//!   decoded batch: dictionary keys and string views repeat one long value
//!   per row, a bit-packed boolean column becomes one feature cell per row.
//!   [`BatchLimits`] bounds the rows (read from the message metadata before
//!   arrow reads anything) and the decoded size: each row's [`Event`] and
//!   feature cells (also from metadata) plus every id and text cell it will
//!   hold, summed from the columns' offsets, views and dictionary keys after
//!   arrow has read them (which costs about the message size) and before any
//!   row is built. Over either bound the message is one `oversize` rejection.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Float64Array, Float64Builder,
    Int64Array, Int64Builder, LargeStringArray, RecordBatch, StringArray, StringBuilder,
    StringViewArray, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::ipc::MessageHeader;
use compact_str::CompactString;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::event::{Event, FeatureValue, Features, RejectReason, Rejection};
use crate::source::decode::{check_id, DEFAULT_MAX_ID_BYTES};

/// Header value that marks an Arrow IPC batch message.
pub const ARROW_CONTENT_TYPE: &str = "application/vnd.apache.arrow.stream";

/// One row of a batch: the decoded event, or why the row cannot be scored
/// together with the row rendered as a JSON event (for the DLQ, since a row has no bytes of its own).
pub type RowResult = Result<Event, (Rejection, Vec<u8>)>;

const EVENT_ID: &str = "event_id";
const ENTITY_ID: &str = "entity_id";
const TS: &str = "ts";

/// Why [`encode_arrow_batch`] could not build a stream.
#[derive(Debug, thiserror::Error)]
pub enum ArrowBatchError {
    /// An Arrow column has one type, and rendering numbers or bools as text
    /// would change what the consumer decodes.
    #[error(
        "feature `{feature}` has both {first} and {second} values; an Arrow column holds one kind"
    )]
    MixedKinds {
        feature: String,
        first: &'static str,
        second: &'static str,
    },
    /// A feature named like an id or `ts` column would be read back as that column.
    #[error("feature `{0}` has the name of a reserved column (event_id, entity_id, ts)")]
    ReservedName(String),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}

/// Default of `pipeline.max_batch_rows`.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 100_000;
/// Default of `pipeline.max_batch_decoded_bytes`: 100k rows of ten features
/// with short ids decode to about 70 MiB.
pub const DEFAULT_MAX_BATCH_DECODED_BYTES: usize = 128 * 1024 * 1024;

/// Bounds of one batch message; 0 turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Largest message, in bytes (`pipeline.max_batch_bytes`).
    pub max_message_bytes: usize,
    /// Most rows over all record batches of the message (`pipeline.max_batch_rows`).
    pub max_rows: usize,
    /// Largest decoded size, in bytes, as described in the module docs
    /// (`pipeline.max_batch_decoded_bytes`).
    pub max_decoded_bytes: usize,
    /// Longest `event_id` / `entity_id` of a row (`pipeline.max_id_bytes`);
    /// a longer one rejects the row as `invalid_id`.
    pub max_id_bytes: usize,
}

impl BatchLimits {
    /// No bound at all (tests and tools that read trusted files).
    pub const UNBOUNDED: BatchLimits = BatchLimits {
        max_message_bytes: 0,
        max_rows: 0,
        max_decoded_bytes: 0,
        max_id_bytes: 0,
    };

    /// `max_message_bytes` with the default row, decoded-size and id bounds.
    pub fn with_max_message_bytes(max_message_bytes: usize) -> Self {
        BatchLimits {
            max_message_bytes,
            max_rows: DEFAULT_MAX_BATCH_ROWS,
            max_decoded_bytes: DEFAULT_MAX_BATCH_DECODED_BYTES,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
        }
    }
}

/// Decodes one batch message. `max_bytes` bounds the message size (0 = no
/// bound); rows, decoded size and ids get the defaults of [`BatchLimits`].
/// Whole-message failures (oversize → RejectReason::Oversize; not a readable IPC stream,
/// truncated stream, missing/ill-typed `event_id`/`entity_id` column, unsupported column type →
/// RejectReason::MalformedBatch, detail naming the column and type) are Err.
/// Otherwise one RowResult per row, in order, over all record batches in the stream.
pub fn decode_arrow_batch(bytes: &[u8], max_bytes: usize) -> Result<Vec<RowResult>, Rejection> {
    decode_arrow_batch_with(bytes, &BatchLimits::with_max_message_bytes(max_bytes))
}

/// [`decode_arrow_batch`] under explicit `limits`.
pub fn decode_arrow_batch_with(
    bytes: &[u8],
    limits: &BatchLimits,
) -> Result<Vec<RowResult>, Rejection> {
    if limits.max_message_bytes > 0 && bytes.len() > limits.max_message_bytes {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!(
                "message is {} bytes, the limit is {}",
                bytes.len(),
                limits.max_message_bytes
            ),
        ));
    }
    // Last line of defence: the framing check covers the panics known in
    // arrow-ipc 60.1, but a consumer task must not die on a producer's bytes.
    std::panic::catch_unwind(|| decode_limited(bytes, limits)).unwrap_or_else(|_| {
        Err(malformed(
            "the Arrow reader failed on this stream (internal panic)",
        ))
    })
}

#[cfg(test)]
fn decode_checked(bytes: &[u8]) -> Result<Vec<RowResult>, Rejection> {
    decode_limited(bytes, &BatchLimits::UNBOUNDED)
}

fn decode_limited(bytes: &[u8], limits: &BatchLimits) -> Result<Vec<RowResult>, Rejection> {
    let (plan, rows) = check_stream(bytes, limits)?;
    let reader = StreamReader::try_new(bytes, None)
        .map_err(|e| malformed(format!("not a readable Arrow IPC stream: {e}")))?;
    // Every batch is read (columnar, about the message size) and bound
    // before any row is built, so the decoded size is known in full first.
    let batches = reader
        .map(|b| b.map_err(|e| malformed(format!("unreadable record batch: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut bound = Vec::with_capacity(batches.len());
    let mut decoded = rows.saturating_mul(plan.row_bytes());
    for batch in &batches {
        let cols = plan.bind(batch, limits.max_id_bytes)?;
        decoded = decoded.saturating_add(cols.text_bytes(batch.num_rows()));
        bound.push(cols);
    }
    if limits.max_decoded_bytes > 0 && decoded > limits.max_decoded_bytes {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!(
                "the batch decodes to about {decoded} bytes ({rows} rows), the limit is {} \
                 (pipeline.max_batch_decoded_bytes)",
                limits.max_decoded_bytes
            ),
        ));
    }
    let mut out = Vec::with_capacity(rows);
    for (batch, cols) in batches.iter().zip(&bound) {
        for row in 0..batch.num_rows() {
            let index = out.len();
            out.push(cols.row(row, index));
        }
    }
    Ok(out)
}

fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectReason::MalformedBatch, detail)
}

/// Walks the whole stream before arrow-ipc reads it: length prefixes,
/// message metadata, body lengths, the schema (column types are judged here,
/// so a bad column fails the message before any row is decoded) and the
/// buffer table of every batch.
///
/// arrow-ipc 60.1 trusts the buffer table: an offset outside the body, or an
/// offsets/values buffer whose length is not a multiple of its element
/// width, panics inside arrow instead of returning an error. It also takes a
/// stream cut inside a 4-byte length prefix for a clean end. Checking here,
/// on the slice we already hold, turns all of these into `malformed_batch`.
///
/// Also sums the rows the record batches declare and refuses the message as
/// `oversize` when they, or the fixed part of their decoded size, exceed
/// `limits`; returns the plan and the row count.
fn check_stream(bytes: &[u8], limits: &BatchLimits) -> Result<(Plan, usize), Rejection> {
    let mut pos = 0usize;
    // Set by the first message, which must be the schema.
    let mut stream: Option<StreamHead> = None;
    let mut rows = 0usize;
    loop {
        let start = pos;
        let rest = bytes.get(start..).unwrap_or_default();
        if rest.is_empty() {
            // The IPC spec lets a stream end without its marker.
            return end_of_stream(stream.map(|s| s.plan), 0).map(|p| (p, rows));
        }
        let (prefix, meta_len) = read_prefix(rest).ok_or_else(|| {
            malformed(format!(
                "truncated Arrow IPC stream: {} stray bytes at offset {start}",
                rest.len()
            ))
        })?;
        let meta_len = usize::try_from(meta_len).map_err(|_| {
            malformed(format!(
                "not an Arrow IPC stream: message length {meta_len} at offset {start}"
            ))
        })?;
        if meta_len == 0 {
            return end_of_stream(stream.map(|s| s.plan), rest.len() - prefix).map(|p| (p, rows));
        }
        let meta_start = start + prefix;
        let meta_end = meta_start
            .checked_add(meta_len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                malformed(format!(
                    "truncated Arrow IPC stream: message at offset {start} needs {meta_len} metadata bytes"
                ))
            })?;
        let message = arrow::ipc::root_as_message(&bytes[meta_start..meta_end]).map_err(|e| {
            malformed(format!(
                "not a readable Arrow IPC stream: bad message at offset {start}: {e}"
            ))
        })?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| {
            malformed(format!(
                "invalid Arrow IPC body length {} at offset {start}",
                message.bodyLength()
            ))
        })?;
        pos = meta_end
            .checked_add(body_len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                malformed(format!(
                    "truncated Arrow IPC stream: message at offset {start} needs a {body_len}-byte body"
                ))
            })?;

        let Some(StreamHead {
            plan,
            schema,
            dictionaries,
        }) = &stream
        else {
            let fb = message.header_as_schema().ok_or_else(|| {
                malformed("not an Arrow IPC stream: the first message is not a schema")
            })?;
            let schema = arrow::ipc::convert::try_fb_to_schema(fb)
                .map_err(|e| malformed(format!("unreadable Arrow schema: {e}")))?;
            let plan = Plan::from_schema(&schema)?;
            let mut dictionaries = Vec::new();
            for (fb_field, field) in fb.fields().iter().flatten().zip(schema.fields()) {
                if let (Some(enc), DataType::Dictionary(_, value)) =
                    (fb_field.dictionary(), field.data_type())
                {
                    dictionaries.push((enc.id(), (**value).clone()));
                }
            }
            stream = Some(StreamHead {
                plan,
                schema,
                dictionaries,
            });
            continue;
        };
        let (batch, types): (_, Vec<&DataType>) = match message.header_type() {
            MessageHeader::RecordBatch => {
                let batch = message.header_as_record_batch();
                let declared = batch.map_or(0, |b| b.length());
                rows = usize::try_from(declared)
                    .ok()
                    .and_then(|n| rows.checked_add(n))
                    .ok_or_else(|| {
                        malformed(format!(
                            "record batch at offset {start} declares {declared} rows"
                        ))
                    })?;
                check_rows(rows, plan, limits)?;
                (
                    batch,
                    schema.fields().iter().map(|f| f.data_type()).collect(),
                )
            }
            MessageHeader::DictionaryBatch => {
                let dict = message.header_as_dictionary_batch();
                let id = dict.map(|d| d.id());
                let value = dictionaries.iter().find(|(d, _)| Some(*d) == id);
                (
                    dict.and_then(|d| d.data()),
                    value.map(|(_, t)| t).into_iter().collect(),
                )
            }
            // Anything else is arrow-ipc's to reject.
            _ => (None, Vec::new()),
        };
        if let Some(batch) = batch {
            check_buffers(batch, &types, body_len)
                .map_err(|detail| malformed(format!("{detail} (message at offset {start})")))?;
        }
    }
}

/// Refuses a stream whose rows so far exceed the row bound, or whose rows'
/// fixed decoded size (events and feature cells, text not counted yet)
/// already exceeds the decoded-size bound.
fn check_rows(rows: usize, plan: &Plan, limits: &BatchLimits) -> Result<(), Rejection> {
    if limits.max_rows > 0 && rows > limits.max_rows {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!(
                "the batch has more than {} rows (pipeline.max_batch_rows): at least {rows}",
                limits.max_rows
            ),
        ));
    }
    let fixed = rows.saturating_mul(plan.row_bytes());
    if limits.max_decoded_bytes > 0 && fixed > limits.max_decoded_bytes {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!(
                "the batch's {rows} rows of {} features decode to more than {fixed} bytes, \
                 the limit is {} (pipeline.max_batch_decoded_bytes)",
                plan.features.len(),
                limits.max_decoded_bytes
            ),
        ));
    }
    Ok(())
}

/// What the schema message fixes for the rest of the stream.
struct StreamHead {
    plan: Plan,
    schema: Schema,
    /// Dictionary id → value type: dictionary batches name their column only by id.
    dictionaries: Vec<(i64, DataType)>,
}

fn end_of_stream(plan: Option<Plan>, trailing: usize) -> Result<Plan, Rejection> {
    match plan {
        // A second stream in the same message would be silently dropped.
        _ if trailing > 0 => Err(malformed(format!(
            "{trailing} bytes after the Arrow IPC end-of-stream marker"
        ))),
        Some(plan) => Ok(plan),
        None => Err(malformed("not an Arrow IPC stream: no schema message")),
    }
}

/// Checks a batch's buffer table against the body and the column types.
fn check_buffers(
    batch: arrow::ipc::RecordBatch<'_>,
    types: &[&DataType],
    body_len: usize,
) -> Result<(), String> {
    if batch.compression().is_some() {
        return Err("compressed Arrow IPC batches are not supported".into());
    }
    let Some(buffers) = batch.buffers() else {
        return Ok(());
    };
    let mut lengths = Vec::with_capacity(buffers.len());
    for buf in buffers.iter() {
        lengths.push(buf.length());
        let in_body = usize::try_from(buf.offset())
            .ok()
            .zip(usize::try_from(buf.length()).ok())
            .and_then(|(o, l)| o.checked_add(l))
            .is_some_and(|end| end <= body_len);
        if !in_body {
            return Err(format!(
                "Arrow IPC buffer (offset {}, length {}) lies outside its {body_len}-byte body",
                buf.offset(),
                buf.length()
            ));
        }
    }
    // Element width of each buffer, in the order arrow-ipc reads them for
    // the flat types `Plan` accepts; width 1 needs no check.
    let mut variadic = batch.variadicBufferCounts().into_iter().flatten();
    let mut at = 0usize;
    for dt in types {
        let widths: [usize; 3] = match dt {
            DataType::Null => continue,
            DataType::Utf8 => [1, 4, 1],
            DataType::LargeUtf8 => [1, 8, 1],
            DataType::Utf8View => {
                let Some(extra) = variadic.next().and_then(|n| usize::try_from(n).ok()) else {
                    // arrow-ipc reports a missing or negative count.
                    return Ok(());
                };
                check_width(&lengths, at.saturating_add(1), 16)?;
                at = at.saturating_add(2).saturating_add(extra);
                continue;
            }
            DataType::Dictionary(key, _) => [1, key.primitive_width().unwrap_or(1), 0],
            dt => [1, dt.primitive_width().unwrap_or(1), 0],
        };
        for width in widths.into_iter().take_while(|&w| w > 0) {
            check_width(&lengths, at, width)?;
            at = at.saturating_add(1);
        }
    }
    Ok(())
}

fn check_width(lengths: &[i64], at: usize, width: usize) -> Result<(), String> {
    // Past the end: arrow-ipc reports the missing buffer itself.
    if let Some(&length) = lengths.get(at) {
        if width > 1 && length % width as i64 != 0 {
            return Err(format!(
                "Arrow IPC buffer {at} has length {length}, not a multiple of its {width}-byte elements"
            ));
        }
    }
    Ok(())
}

/// Length prefix of an IPC message: `(prefix bytes, metadata length)`.
/// Handles both the continuation-marker form and the pre-1.0 bare length.
fn read_prefix(rest: &[u8]) -> Option<(usize, i32)> {
    let word = |at: usize| -> Option<[u8; 4]> { rest.get(at..at + 4)?.try_into().ok() };
    let first = word(0)?;
    if first == [0xff; 4] {
        Some((8, i32::from_le_bytes(word(4)?)))
    } else {
        Some((4, i32::from_le_bytes(first)))
    }
}

/// Which columns play which role, fixed once per stream from its schema.
struct Plan {
    event_id: usize,
    entity_id: usize,
    ts: Option<usize>,
    /// Column index and name; names are built once and cloned per row
    /// (inline, no allocation, for names up to 24 bytes).
    features: Vec<(usize, CompactString)>,
}

impl Plan {
    /// Decoded bytes of one row besides its id and text cell bytes: the row
    /// result, one (name, value) cell per feature, and the name's own copy
    /// when it is too long to be stored inline.
    fn row_bytes(&self) -> usize {
        let cell = std::mem::size_of::<(CompactString, FeatureValue)>();
        let names: usize = self
            .features
            .iter()
            .filter(|(_, n)| n.is_heap_allocated())
            .map(|(_, n)| n.len())
            .sum();
        std::mem::size_of::<RowResult>() + self.features.len() * cell + names
    }

    fn from_schema(schema: &Schema) -> Result<Plan, Rejection> {
        let mut event_id = None;
        let mut entity_id = None;
        let mut ts = None;
        let mut features = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            let dt = field.data_type();
            let slot = match name {
                EVENT_ID => &mut event_id,
                ENTITY_ID => &mut entity_id,
                TS => &mut ts,
                _ => {
                    if feature_kind_ok(dt) {
                        features.push((i, CompactString::from(name)));
                        continue;
                    }
                    return Err(malformed(format!(
                        "column `{name}` has unsupported type {dt}; feature columns must be integers, floats, Boolean or strings"
                    )));
                }
            };
            if slot.is_some() {
                return Err(malformed(format!("column `{name}` appears more than once")));
            }
            let ok = if name == TS {
                ts_type_ok(dt)
            } else {
                is_text(dt)
            };
            if !ok {
                let expected = if name == TS {
                    "an integer (epoch ms), a Timestamp or a string (RFC 3339)"
                } else {
                    "Utf8, LargeUtf8, Utf8View or Dictionary(_, Utf8)"
                };
                return Err(malformed(format!(
                    "column `{name}` has type {dt}; it must be {expected}"
                )));
            }
            *slot = Some(i);
        }
        let event_id =
            event_id.ok_or_else(|| malformed(format!("the batch has no `{EVENT_ID}` column")))?;
        let entity_id =
            entity_id.ok_or_else(|| malformed(format!("the batch has no `{ENTITY_ID}` column")))?;
        Ok(Plan {
            event_id,
            entity_id,
            ts,
            features,
        })
    }

    /// Resolves every column's concrete array type once for the whole batch.
    fn bind<'a>(
        &'a self,
        batch: &'a RecordBatch,
        max_id_bytes: usize,
    ) -> Result<Bound<'a>, Rejection> {
        let column = |i: usize| -> Result<&'a ArrayRef, Rejection> {
            batch
                .columns()
                .get(i)
                .ok_or_else(|| malformed(format!("record batch lacks column {i}")))
        };
        let text = |i: usize, name: &str| -> Result<TextCol<'a>, Rejection> {
            let array = column(i)?;
            TextCol::bind(array.as_ref()).ok_or_else(|| {
                malformed(format!(
                    "column `{name}` has type {}, not text",
                    array.data_type()
                ))
            })
        };
        let ts = match self.ts {
            Some(i) => TsCol::bind(column(i)?)?,
            None => TsCol::Absent,
        };
        let mut features = Vec::with_capacity(self.features.len());
        for (i, name) in &self.features {
            features.push((name, FeatCol::bind(column(*i)?, name)?));
        }
        Ok(Bound {
            event_id: text(self.event_id, EVENT_ID)?,
            entity_id: text(self.entity_id, ENTITY_ID)?,
            ts,
            features,
            max_id_bytes,
        })
    }
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(key, value) => {
            key.is_dictionary_key_type()
                && matches!(
                    **value,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
        }
        _ => false,
    }
}

fn is_number(dt: &DataType) -> bool {
    use DataType::*;
    matches!(
        dt,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float16
            | Float32
            | Float64
    )
}

fn feature_kind_ok(dt: &DataType) -> bool {
    is_number(dt) || is_text(dt) || matches!(dt, DataType::Boolean | DataType::Null)
}

fn ts_type_ok(dt: &DataType) -> bool {
    use DataType::*;
    matches!(
        dt,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Timestamp(_, _) | Null
    ) || is_text(dt)
}

/// A text column of any accepted encoding.
enum TextCol<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
    Dict(Box<DictText<'a>>),
}

struct DictText<'a> {
    nulls: Option<&'a NullBuffer>,
    /// Keys widened to `usize` once per batch, so a row lookup does not
    /// dispatch on the key type. Empty when the dictionary is empty (then
    /// every key is null).
    keys: Vec<usize>,
    values: TextCol<'a>,
}

impl<'a> TextCol<'a> {
    fn bind(array: &'a dyn Array) -> Option<TextCol<'a>> {
        match array.data_type() {
            DataType::Utf8 => array.as_string_opt::<i32>().map(TextCol::Utf8),
            DataType::LargeUtf8 => array.as_string_opt::<i64>().map(TextCol::Large),
            DataType::Utf8View => array.as_string_view_opt().map(TextCol::View),
            DataType::Dictionary(_, value) if !matches!(**value, DataType::Dictionary(..)) => {
                let dict = array.as_any_dictionary_opt()?;
                let values = TextCol::bind(dict.values().as_ref())?;
                // `normalized_keys` panics on an empty dictionary, which
                // arrow-ipc synthesises when a column is all null.
                let keys = if dict.values().is_empty() {
                    Vec::new()
                } else {
                    dict.normalized_keys()
                };
                Some(TextCol::Dict(Box::new(DictText {
                    nulls: dict.keys().nulls(),
                    keys,
                    values,
                })))
            }
            _ => None,
        }
    }

    /// Bytes of text the first `rows` cells hold once each is copied out:
    /// O(1) for offset-encoded strings, one pass over the views or keys
    /// otherwise (where one stored value can stand for many rows).
    fn text_bytes(&self, rows: usize) -> usize {
        fn span<O: arrow::array::OffsetSizeTrait>(offsets: &[O], rows: usize) -> usize {
            let first = offsets.first().map_or(0, |o| o.as_usize());
            let last = offsets
                .get(rows)
                .or(offsets.last())
                .map_or(0, |o| o.as_usize());
            last.saturating_sub(first)
        }
        match self {
            TextCol::Utf8(a) => span(a.value_offsets(), rows),
            TextCol::Large(a) => span(a.value_offsets(), rows),
            // The low 32 bits of a view are its length.
            TextCol::View(a) => a
                .views()
                .iter()
                .take(rows)
                .map(|v| *v as u32 as usize)
                .sum(),
            TextCol::Dict(d) => (0..rows.min(d.keys.len()))
                .filter(|&row| !d.nulls.is_some_and(|n| n.is_null(row)))
                .filter_map(|row| d.values.get(d.keys[row]))
                .map(str::len)
                .fold(0usize, usize::saturating_add),
        }
    }

    #[inline]
    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            TextCol::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            TextCol::Large(a) => a.is_valid(row).then(|| a.value(row)),
            TextCol::View(a) => a.is_valid(row).then(|| a.value(row)),
            TextCol::Dict(d) => {
                if d.nulls.is_some_and(|n| n.is_null(row)) {
                    return None;
                }
                d.values.get(*d.keys.get(row)?)
            }
        }
    }
}

/// The `ts` column, integers widened to i64 once per batch.
enum TsCol<'a> {
    Absent,
    Signed { values: Int64Array, unit: TimeUnit },
    Unsigned(UInt64Array),
    Text(TextCol<'a>),
}

/// A `ts` cell before conversion: what the DLQ rendering shows.
enum RawTs<'a> {
    Signed(i64, TimeUnit),
    Unsigned(u64),
    Text(&'a str),
}

impl<'a> TsCol<'a> {
    fn bind(array: &'a ArrayRef) -> Result<TsCol<'a>, Rejection> {
        let widen = |unit| -> Result<TsCol<'a>, Rejection> {
            let values = cast(array, &DataType::Int64)
                .map_err(|e| malformed(format!("column `ts` cannot be read as Int64: {e}")))?;
            let values = values
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
                .cloned()
                .ok_or_else(|| malformed("column `ts` cannot be read as Int64"))?;
            Ok(TsCol::Signed { values, unit })
        };
        match array.data_type() {
            DataType::Null => Ok(TsCol::Absent),
            DataType::UInt64 => array
                .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                .cloned()
                .map(TsCol::Unsigned)
                .ok_or_else(|| malformed("column `ts` cannot be read as UInt64")),
            DataType::Timestamp(unit, _) => widen(*unit),
            dt if is_number(dt) => widen(TimeUnit::Millisecond),
            dt => TextCol::bind(array.as_ref())
                .map(TsCol::Text)
                .ok_or_else(|| malformed(format!("column `ts` has unsupported type {dt}"))),
        }
    }

    #[inline]
    fn raw(&self, row: usize) -> Option<RawTs<'a>> {
        match self {
            TsCol::Absent => None,
            TsCol::Signed { values, unit } => values
                .is_valid(row)
                .then(|| RawTs::Signed(values.value(row), *unit)),
            TsCol::Unsigned(values) => values
                .is_valid(row)
                .then(|| RawTs::Unsigned(values.value(row))),
            TsCol::Text(col) => col.get(row).map(RawTs::Text),
        }
    }

    fn get(&self, row: usize, index: usize) -> Result<Option<i64>, Rejection> {
        let Some(raw) = self.raw(row) else {
            return Ok(None);
        };
        let bad = |detail: String| {
            Rejection::new(
                RejectReason::InvalidTimestamp,
                format!("row {index}: {detail}"),
            )
        };
        match raw {
            RawTs::Signed(v, unit) => to_millis(v, unit)
                .map(Some)
                .ok_or_else(|| bad(format!("`ts` {v} {unit:?} is out of range"))),
            RawTs::Unsigned(v) => i64::try_from(v)
                .map(Some)
                .map_err(|_| bad(format!("`ts` {v} is out of range"))),
            // Same parse as the JSON form's string `ts`.
            RawTs::Text(v) => chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| bad(format!("`ts` {v:?} is not RFC 3339: {e}"))),
        }
    }
}

/// Floors like chrono's `timestamp_millis`, so a string ts and the same
/// instant as a Timestamp column agree before the epoch too.
fn to_millis(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1000),
        TimeUnit::Millisecond => Some(v),
        TimeUnit::Microsecond => Some(v.div_euclid(1000)),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000_000)),
    }
}

/// A feature column; numbers of every width are widened to f64 once per batch.
enum FeatCol<'a> {
    Number(Float64Array),
    Bool(&'a BooleanArray),
    Text(TextCol<'a>),
    Null,
}

impl<'a> FeatCol<'a> {
    fn bind(array: &'a ArrayRef, name: &str) -> Result<FeatCol<'a>, Rejection> {
        let dt = array.data_type();
        let bound = match dt {
            DataType::Null => Some(FeatCol::Null),
            DataType::Boolean => array.as_boolean_opt().map(FeatCol::Bool),
            DataType::Float64 => array
                .as_primitive_opt::<arrow::datatypes::Float64Type>()
                .cloned()
                .map(FeatCol::Number),
            dt if is_number(dt) => {
                let widened = cast(array, &DataType::Float64).map_err(|e| {
                    malformed(format!(
                        "column `{name}` ({dt}) cannot be read as Float64: {e}"
                    ))
                })?;
                widened
                    .as_primitive_opt::<arrow::datatypes::Float64Type>()
                    .cloned()
                    .map(FeatCol::Number)
            }
            _ => TextCol::bind(array.as_ref()).map(FeatCol::Text),
        };
        bound.ok_or_else(|| malformed(format!("column `{name}` has unsupported type {dt}")))
    }
}

/// Cell of a feature column before the finiteness check.
#[inline]
fn feature_cell(col: &FeatCol<'_>, row: usize) -> FeatureValue {
    match col {
        FeatCol::Number(a) if a.is_valid(row) => FeatureValue::Number(a.value(row)),
        FeatCol::Bool(a) if a.is_valid(row) => FeatureValue::Bool(a.value(row)),
        FeatCol::Text(c) => match c.get(row) {
            Some(s) => FeatureValue::Text(CompactString::from(s)),
            None => FeatureValue::Null,
        },
        _ => FeatureValue::Null,
    }
}

/// One record batch with every column resolved.
struct Bound<'a> {
    event_id: TextCol<'a>,
    entity_id: TextCol<'a>,
    ts: TsCol<'a>,
    features: Vec<(&'a CompactString, FeatCol<'a>)>,
    /// `pipeline.max_id_bytes` (0 = no bound).
    max_id_bytes: usize,
}

impl Bound<'_> {
    /// Text bytes the batch's `rows` rows will hold: ids and text features.
    fn text_bytes(&self, rows: usize) -> usize {
        let features = self.features.iter().filter_map(|(_, c)| match c {
            FeatCol::Text(t) => Some(t.text_bytes(rows)),
            _ => None,
        });
        [
            self.event_id.text_bytes(rows),
            self.entity_id.text_bytes(rows),
        ]
        .into_iter()
        .chain(features)
        .fold(0usize, usize::saturating_add)
    }

    /// `row` is the row in this batch, `index` its position in the message
    /// (what error details name).
    fn row(&self, row: usize, index: usize) -> RowResult {
        self.event(row, index)
            .map_err(|rejection| (rejection, self.render_json(row)))
    }

    fn event(&self, row: usize, index: usize) -> Result<Event, Rejection> {
        // Checked in the order decode_json reports them: value errors come
        // out of its parse, missing ids only after it.
        let ts_ms = self.ts.get(row, index)?;
        let mut features = Vec::with_capacity(self.features.len());
        for (name, col) in &self.features {
            let value = feature_cell(col, row);
            if let FeatureValue::Number(v) = value {
                if !v.is_finite() {
                    return Err(Rejection::new(
                        RejectReason::NonFinite,
                        format!("row {index}: feature `{name}` is {v}"),
                    ));
                }
            }
            features.push(((*name).clone(), value));
        }
        Ok(Event {
            event_id: required(self.event_id.get(row), EVENT_ID, index, self.max_id_bytes)?,
            entity_id: required(self.entity_id.get(row), ENTITY_ID, index, self.max_id_bytes)?,
            ts_ms,
            features: Features(features),
        })
    }

    fn render_json(&self, row: usize) -> Vec<u8> {
        // Serialising plain strings and numbers into a Vec cannot fail.
        serde_json::to_vec(&RowJson { cols: self, row }).unwrap_or_default()
    }
}

/// Same rules and wording as the JSON form's ids.
fn required(
    value: Option<&str>,
    field: &str,
    index: usize,
    max_id_bytes: usize,
) -> Result<CompactString, Rejection> {
    match value {
        Some(v) if !v.trim().is_empty() => match check_id(v, field, max_id_bytes) {
            Ok(()) => Ok(CompactString::from(v)),
            Err(r) => Err(Rejection::new(
                r.reason,
                format!("row {index}: {}", r.detail),
            )),
        },
        Some(_) => Err(Rejection::new(
            RejectReason::MissingField,
            format!("row {index}: `{field}` must be a non-empty string"),
        )),
        None => Err(Rejection::new(
            RejectReason::MissingField,
            format!("row {index}: `{field}` is required"),
        )),
    }
}

/// A row as a JSON event, straight from the columns (features in column
/// order; a `serde_json::Value` map would sort them).
struct RowJson<'b, 'a> {
    cols: &'b Bound<'a>,
    row: usize,
}

impl Serialize for RowJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (cols, row) = (self.cols, self.row);
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry(EVENT_ID, &cols.event_id.get(row))?;
        map.serialize_entry(ENTITY_ID, &cols.entity_id.get(row))?;
        match cols.ts.raw(row) {
            None => map.serialize_entry(TS, &())?,
            Some(RawTs::Signed(v, unit)) => {
                map.serialize_entry(TS, &to_millis(v, unit).unwrap_or(v))?
            }
            Some(RawTs::Unsigned(v)) => map.serialize_entry(TS, &v)?,
            Some(RawTs::Text(v)) => map.serialize_entry(TS, v)?,
        }
        map.serialize_entry("features", &FeaturesJson { cols, row })?;
        map.end()
    }
}

struct FeaturesJson<'b, 'a> {
    cols: &'b Bound<'a>,
    row: usize,
}

impl Serialize for FeaturesJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.cols.features.len()))?;
        for (name, col) in &self.cols.features {
            map.serialize_key(name.as_str())?;
            match feature_cell(col, self.row) {
                FeatureValue::Null => map.serialize_value(&())?,
                FeatureValue::Bool(b) => map.serialize_value(&b)?,
                FeatureValue::Number(v) if v.is_finite() => map.serialize_value(&v)?,
                // JSON has no NaN; serde_json would write `null`, losing why the row failed.
                FeatureValue::Number(v) if v.is_nan() => map.serialize_value("NaN")?,
                FeatureValue::Number(v) if v > 0.0 => map.serialize_value("inf")?,
                FeatureValue::Number(_) => map.serialize_value("-inf")?,
                FeatureValue::Text(t) => map.serialize_value(t.as_str())?,
            }
        }
        map.end()
    }
}

/// Kind a feature column takes in the encoder.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Only nulls so far (written as Float64, all null).
    Unknown,
    Number,
    Bool,
    Text,
}

enum ColBuilder {
    Number(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

/// Encodes events as one Arrow IPC stream (the producer side: tests, demo, load tests).
/// Columns: event_id (Utf8), entity_id (Utf8), ts (Int64, nullable) and one column per
/// feature name seen in any event (first-seen order): Float64 if every non-null value is a
/// number, Boolean if every non-null value is a bool, else Utf8 (numbers/bools rendered as text
/// would change meaning, so mixed kinds → an error instead). Missing feature in a row → null.
pub fn encode_arrow_batch(events: &[Event]) -> Result<Vec<u8>, ArrowBatchError> {
    let mut names: Vec<(&str, Kind)> = Vec::new();
    let mut index: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
    for event in events {
        for (name, value) in event.features.iter() {
            let slot = match index.get(name) {
                Some(&i) => i,
                None => {
                    if matches!(name, EVENT_ID | ENTITY_ID | TS) {
                        return Err(ArrowBatchError::ReservedName(name.to_owned()));
                    }
                    names.push((name, Kind::Unknown));
                    index.insert(name, names.len() - 1);
                    names.len() - 1
                }
            };
            let kind = match value {
                FeatureValue::Null => continue,
                FeatureValue::Number(_) => Kind::Number,
                FeatureValue::Bool(_) => Kind::Bool,
                FeatureValue::Text(_) => Kind::Text,
            };
            let seen = &mut names[slot].1;
            if *seen == Kind::Unknown {
                *seen = kind;
            } else if *seen != kind {
                return Err(ArrowBatchError::MixedKinds {
                    feature: name.to_owned(),
                    first: kind_name(*seen),
                    second: kind_name(kind),
                });
            }
        }
    }

    let n = events.len();
    let mut event_ids = StringBuilder::with_capacity(n, n * 16);
    let mut entity_ids = StringBuilder::with_capacity(n, n * 16);
    let mut ts = Int64Builder::with_capacity(n);
    let mut builders: Vec<ColBuilder> = names
        .iter()
        .map(|(_, kind)| match kind {
            Kind::Unknown | Kind::Number => ColBuilder::Number(Float64Builder::with_capacity(n)),
            Kind::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(n)),
            Kind::Text => ColBuilder::Text(StringBuilder::with_capacity(n, n * 8)),
        })
        .collect();
    let mut cells: Vec<Option<&FeatureValue>> = vec![None; names.len()];
    for event in events {
        event_ids.append_value(&event.event_id);
        entity_ids.append_value(&event.entity_id);
        ts.append_option(event.ts_ms);
        cells.fill(None);
        for (name, value) in event.features.iter() {
            if let Some(&i) = index.get(name) {
                // First occurrence wins, as in `Features::get`.
                if let Some(cell @ None) = cells.get_mut(i) {
                    *cell = Some(value);
                }
            }
        }
        for (builder, cell) in builders.iter_mut().zip(&cells) {
            match (builder, cell) {
                (ColBuilder::Number(b), Some(FeatureValue::Number(v))) => b.append_value(*v),
                (ColBuilder::Number(b), _) => b.append_null(),
                (ColBuilder::Bool(b), Some(FeatureValue::Bool(v))) => b.append_value(*v),
                (ColBuilder::Bool(b), _) => b.append_null(),
                (ColBuilder::Text(b), Some(FeatureValue::Text(v))) => b.append_value(v),
                (ColBuilder::Text(b), _) => b.append_null(),
            }
        }
    }

    let mut fields = vec![
        Field::new(EVENT_ID, DataType::Utf8, false),
        Field::new(ENTITY_ID, DataType::Utf8, false),
        Field::new(TS, DataType::Int64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(event_ids.finish()),
        Arc::new(entity_ids.finish()),
        Arc::new(ts.finish()),
    ];
    for ((name, _), builder) in names.iter().zip(builders) {
        let (dt, array): (DataType, ArrayRef) = match builder {
            ColBuilder::Number(mut b) => (DataType::Float64, Arc::new(b.finish())),
            ColBuilder::Bool(mut b) => (DataType::Boolean, Arc::new(b.finish())),
            ColBuilder::Text(mut b) => (DataType::Utf8, Arc::new(b.finish())),
        };
        fields.push(Field::new(*name, dt, true));
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
    if n > 0 {
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Unknown => "null",
        Kind::Number => "number",
        Kind::Bool => "bool",
        Kind::Text => "text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        DictionaryArray, Float32Array, Int32Array, ListArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Int32Type;

    fn event(id: &str, entity: &str, ts: Option<i64>, features: &[(&str, FeatureValue)]) -> Event {
        let mut f = Features::default();
        for (name, value) in features {
            f.insert(*name, value.clone());
        }
        Event {
            event_id: id.into(),
            entity_id: entity.into(),
            ts_ms: ts,
            features: f,
        }
    }

    fn ipc(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut w = StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        w.into_inner().unwrap()
    }

    fn strs(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn ok_events(rows: Vec<RowResult>) -> Vec<Event> {
        rows.into_iter()
            .map(|r| r.map_err(|(rej, _)| rej).unwrap())
            .collect()
    }

    fn whole_err(bytes: &[u8]) -> Rejection {
        decode_arrow_batch(bytes, 0).unwrap_err()
    }

    fn sample() -> Vec<Event> {
        use FeatureValue::*;
        vec![
            event(
                "evt-1",
                "card-42",
                Some(1_763_792_400_123),
                &[
                    ("amount", Number(129.5)),
                    ("merchant_category", Text("electronics".into())),
                    ("intl", Bool(true)),
                    ("gone", Null),
                ],
            ),
            event(
                "évt-2 ✓",
                "カード-7",
                None,
                &[
                    ("amount", Number(-0.25)),
                    (
                        "merchant_category",
                        Text("café ☕ a long category name over 24 bytes".into()),
                    ),
                    ("intl", Null),
                    ("gone", Null),
                ],
            ),
            event(
                "evt-3",
                "card-9",
                Some(-5),
                &[
                    ("amount", Null),
                    ("merchant_category", Null),
                    ("intl", Bool(false)),
                    ("gone", Null),
                ],
            ),
        ]
    }

    #[test]
    fn round_trips_encoded_events() {
        let events = sample();
        let bytes = encode_arrow_batch(&events).unwrap();
        let decoded = ok_events(decode_arrow_batch(&bytes, 0).unwrap());
        assert_eq!(decoded, events);
        // Empty input: a schema-only stream with no rows.
        let bytes = encode_arrow_batch(&[]).unwrap();
        assert!(decode_arrow_batch(&bytes, 0).unwrap().is_empty());
    }

    #[test]
    fn missing_feature_encodes_as_null_and_mixed_kinds_fail() {
        use FeatureValue::*;
        let events = vec![
            event("a", "b", None, &[("x", Number(1.0))]),
            event("c", "d", None, &[("y", Bool(true))]),
        ];
        let decoded =
            ok_events(decode_arrow_batch(&encode_arrow_batch(&events).unwrap(), 0).unwrap());
        assert_eq!(decoded[0].features.get("y"), Some(&Null));
        assert_eq!(decoded[1].features.get("x"), Some(&Null));

        let mixed = vec![
            event("a", "b", None, &[("x", Number(1.0))]),
            event("c", "d", None, &[("x", Text("1".into()))]),
        ];
        let err = encode_arrow_batch(&mixed).unwrap_err();
        assert!(
            matches!(err, ArrowBatchError::MixedKinds { ref feature, .. } if feature == "x"),
            "{err}"
        );
        let reserved = vec![event("a", "b", None, &[("ts", Number(1.0))])];
        assert!(matches!(
            encode_arrow_batch(&reserved),
            Err(ArrowBatchError::ReservedName(_))
        ));
    }

    #[test]
    fn rejects_unreadable_messages() {
        let bytes = encode_arrow_batch(&sample()).unwrap();
        let cut = whole_err(&bytes[..bytes.len() / 2]);
        assert_eq!(cut.reason, RejectReason::MalformedBatch);
        assert!(cut.detail.contains("truncated"), "{cut}");

        assert_eq!(whole_err(b"").reason, RejectReason::MalformedBatch);
        assert_eq!(
            whole_err(b"definitely not an arrow stream").reason,
            RejectReason::MalformedBatch
        );
        assert_eq!(
            whole_err(br#"{"event_id":"a","entity_id":"b"}"#).reason,
            RejectReason::MalformedBatch
        );

        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&bytes);
        let err = whole_err(&trailing);
        assert!(
            err.detail.contains("after the Arrow IPC end-of-stream"),
            "{err}"
        );

        let err = decode_arrow_batch(&bytes, bytes.len() - 1).unwrap_err();
        assert_eq!(err.reason, RejectReason::Oversize);
        assert!(decode_arrow_batch(&bytes, bytes.len()).is_ok());
    }

    #[test]
    fn rejects_bad_columns_naming_them() {
        let no_id = ipc(vec![("entity_id", strs(&[Some("b")]))]);
        let err = whole_err(&no_id);
        assert_eq!(err.reason, RejectReason::MalformedBatch);
        assert!(err.detail.contains("`event_id`"), "{err}");

        let numeric_id = ipc(vec![
            ("event_id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("entity_id", strs(&[Some("b")])),
        ]);
        let err = whole_err(&numeric_id);
        assert!(
            err.detail.contains("`event_id`") && err.detail.contains("Int32"),
            "{err}"
        );

        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        let listed = ipc(vec![
            ("event_id", strs(&[Some("a")])),
            ("entity_id", strs(&[Some("b")])),
            ("recent_amounts", Arc::new(list) as ArrayRef),
        ]);
        let err = whole_err(&listed);
        assert_eq!(err.reason, RejectReason::MalformedBatch);
        assert!(
            err.detail.contains("`recent_amounts`") && err.detail.contains("List"),
            "{err}"
        );
    }

    #[test]
    fn bad_rows_fail_alone_with_a_json_rendering() {
        let bytes = ipc(vec![
            (
                "event_id",
                strs(&[
                    Some("ok-1"),
                    Some(" "),
                    Some("e3"),
                    Some("e4"),
                    Some("ok-5"),
                ]),
            ),
            (
                "entity_id",
                strs(&[Some("c"), Some("c"), None, Some("c"), Some("c")]),
            ),
            (
                "ts",
                strs(&[
                    None,
                    None,
                    None,
                    Some("yesterday"),
                    Some("2025-11-22T06:20:00.123Z"),
                ]),
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(vec![0.5, 0.5, 0.5, 0.5, 0.5])) as ArrayRef,
            ),
        ]);
        let mut rows = decode_arrow_batch(&bytes, 0).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[4].as_ref().unwrap().ts_ms, Some(1_763_792_400_123));
        assert_eq!(rows[0].as_ref().unwrap().event_id, "ok-1");

        let expect = [
            (1, RejectReason::MissingField, "event_id"),
            (2, RejectReason::MissingField, "entity_id"),
            (3, RejectReason::InvalidTimestamp, "ts"),
        ];
        for (row, reason, field) in expect {
            let (rej, json) = rows[row].as_ref().unwrap_err();
            assert_eq!(rej.reason, reason, "row {row}: {rej}");
            assert!(rej.detail.contains(field), "{rej}");
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            assert_eq!(v["features"]["amount"], serde_json::json!(row as f64 + 1.0));
        }
        let (_, json) = rows.remove(2).unwrap_err();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["entity_id"], serde_json::Value::Null);
        assert_eq!(v["event_id"], "e3");

        // NaN and infinities: non_finite, rendered as strings in the DLQ JSON.
        let bytes = ipc(vec![
            ("event_id", strs(&[Some("a"), Some("b"), Some("c")])),
            ("entity_id", strs(&[Some("x"), Some("x"), Some("x")])),
            (
                "amount",
                Arc::new(Float64Array::from(vec![f64::NAN, 1.0, f64::NEG_INFINITY])) as ArrayRef,
            ),
        ]);
        let rows = decode_arrow_batch(&bytes, 0).unwrap();
        assert!(rows[1].is_ok());
        for (row, shown) in [(0, "NaN"), (2, "-inf")] {
            let (rej, json) = rows[row].as_ref().unwrap_err();
            assert_eq!(rej.reason, RejectReason::NonFinite);
            assert!(rej.detail.contains("`amount`"), "{rej}");
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            assert_eq!(v["features"]["amount"], shown);
            assert_eq!(v["ts"], serde_json::Value::Null);
        }
    }

    #[test]
    fn decodes_other_column_encodings() {
        let ts_us = TimestampMicrosecondArray::from(vec![Some(1_763_792_400_123_456), None])
            .with_timezone("UTC");
        let entity: DictionaryArray<Int32Type> =
            vec![Some("card-1"), Some("card-ü")].into_iter().collect();
        let bytes = ipc(vec![
            ("event_id", strs(&[Some("a"), Some("b")])),
            ("entity_id", Arc::new(entity) as ArrayRef),
            ("ts", Arc::new(ts_us) as ArrayRef),
            (
                "f32",
                Arc::new(Float32Array::from(vec![Some(1.5), None])) as ArrayRef,
            ),
            (
                "i32",
                Arc::new(Int32Array::from(vec![-7, 2_000_000_000])) as ArrayRef,
            ),
            (
                "flag",
                Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef,
            ),
            // Not special: just a feature called `features`.
            ("features", strs(&[Some("x"), None])),
        ]);
        let rows = ok_events(decode_arrow_batch(&bytes, 0).unwrap());
        use FeatureValue::*;
        assert_eq!(
            rows[0],
            event(
                "a",
                "card-1",
                Some(1_763_792_400_123),
                &[
                    ("f32", Number(1.5)),
                    ("i32", Number(-7.0)),
                    ("flag", Bool(true)),
                    ("features", Text("x".into())),
                ]
            )
        );
        assert_eq!(
            rows[1],
            event(
                "b",
                "card-ü",
                None,
                &[
                    ("f32", Null),
                    ("i32", Number(2e9)),
                    ("flag", Null),
                    ("features", Null),
                ]
            )
        );

        let bytes = ipc(vec![
            ("event_id", strs(&[Some("a")])),
            ("entity_id", strs(&[Some("b")])),
            (
                "ts",
                Arc::new(Int64Array::from(vec![1_763_792_400_123])) as ArrayRef,
            ),
        ]);
        let rows = ok_events(decode_arrow_batch(&bytes, 0).unwrap());
        assert_eq!(rows[0].ts_ms, Some(1_763_792_400_123));
        assert!(rows[0].features.is_empty());
    }

    #[test]
    fn decodes_every_accepted_encoding_at_once() {
        let rows = decode_arrow_batch(&exotic_stream(), 0).unwrap();
        let (rej, _) = rows[0].as_ref().unwrap_err();
        assert_eq!(rej.reason, RejectReason::NonFinite, "{rej}");
        let (rej, _) = rows[1].as_ref().unwrap_err();
        assert_eq!(rej.reason, RejectReason::MissingField, "{rej}");
        let e = rows[2].as_ref().unwrap();
        assert_eq!(
            (e.event_id.as_str(), e.entity_id.as_str(), e.ts_ms),
            ("short", "y", Some(-1))
        );
        assert_eq!(
            e.features.get("large"),
            Some(&FeatureValue::Text("".into()))
        );
        assert_eq!(e.features.get("i16"), Some(&FeatureValue::Number(-3.0)));
        assert_eq!(e.features.get("nothing"), Some(&FeatureValue::Null));
        assert_eq!(e.features.get("f16"), Some(&FeatureValue::Number(-2.0)));
        assert_eq!(
            e.features.get("u64"),
            Some(&FeatureValue::Number(u64::MAX as f64))
        );
        let e = rows[3].as_ref().unwrap();
        assert_eq!(e.event_id, "ünïcödé view value, also long");
        assert_eq!(e.features.get("b"), Some(&FeatureValue::Bool(true)));
    }

    #[test]
    fn unsigned_and_second_timestamps() {
        let bytes = ipc(vec![
            ("event_id", strs(&[Some("a"), Some("b")])),
            ("entity_id", strs(&[Some("x"), Some("x")])),
            (
                "ts",
                Arc::new(UInt64Array::from(vec![5, u64::MAX])) as ArrayRef,
            ),
        ]);
        let rows = decode_arrow_batch(&bytes, 0).unwrap();
        assert_eq!(rows[0].as_ref().unwrap().ts_ms, Some(5));
        let (rej, json) = rows[1].as_ref().unwrap_err();
        assert_eq!(rej.reason, RejectReason::InvalidTimestamp, "{rej}");
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(v["ts"], serde_json::json!(u64::MAX));

        let secs = arrow::array::TimestampSecondArray::from(vec![1_763_792_400, i64::MAX]);
        let bytes = ipc(vec![
            ("event_id", strs(&[Some("a"), Some("b")])),
            ("entity_id", strs(&[Some("x"), Some("x")])),
            ("ts", Arc::new(secs) as ArrayRef),
        ]);
        let rows = decode_arrow_batch(&bytes, 0).unwrap();
        assert_eq!(rows[0].as_ref().unwrap().ts_ms, Some(1_763_792_400_000));
        assert_eq!(
            rows[1].as_ref().unwrap_err().0.reason,
            RejectReason::InvalidTimestamp
        );
    }

    #[test]
    fn every_truncation_fails_cleanly_or_decodes_a_prefix() {
        let events = sample();
        let bytes = encode_arrow_batch(&events).unwrap();
        for cut in 0..bytes.len() {
            match decode_checked(&bytes[..cut]) {
                Ok(rows) => {
                    // Only a cut between whole messages reads as a shorter stream.
                    let got = ok_events(rows);
                    assert_eq!(got[..], events[..got.len()], "cut at {cut}");
                }
                Err(rej) => assert_eq!(rej.reason, RejectReason::MalformedBatch, "cut at {cut}"),
            }
        }
    }

    /// Every accepted column encoding at once, as a seed for corruption.
    fn exotic_stream() -> Vec<u8> {
        use arrow::array::{Int16Array, NullArray};
        let dict: DictionaryArray<arrow::datatypes::Int8Type> =
            vec![Some("x"), None, Some("y"), Some("x")]
                .into_iter()
                .collect();
        let view: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("a string longer than twelve bytes"),
            None,
            Some("short"),
            Some("ünïcödé view value, also long"),
        ]));
        ipc(vec![
            ("event_id", view),
            ("entity_id", Arc::new(dict) as ArrayRef),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1),
                    None,
                    Some(-1),
                    Some(5),
                ])) as ArrayRef,
            ),
            (
                "large",
                Arc::new(LargeStringArray::from(vec![
                    Some("l"),
                    None,
                    Some(""),
                    Some("m"),
                ])) as ArrayRef,
            ),
            (
                "i16",
                Arc::new(Int16Array::from(vec![Some(1), None, Some(-3), Some(4)])) as ArrayRef,
            ),
            (
                "f32",
                Arc::new(Float32Array::from(vec![
                    Some(f32::NAN),
                    None,
                    Some(1.0),
                    Some(2.0),
                ])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    None,
                    Some(false),
                    Some(true),
                ])) as ArrayRef,
            ),
            ("nothing", Arc::new(NullArray::new(4)) as ArrayRef),
            (
                "f16",
                cast(
                    &Float32Array::from(vec![Some(0.5), None, Some(-2.0), None]),
                    &DataType::Float16,
                )
                .unwrap(),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![Some(1), None, Some(u64::MAX), None])) as ArrayRef,
            ),
        ])
    }

    fn arb_events() -> impl proptest::strategy::Strategy<Value = Vec<Event>> {
        use proptest::prelude::*;
        let row = (
            "\\PC{1,12}",
            "\\PC{0,30}",
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<f64>()),
            proptest::option::of("\\PC{0,30}"),
        );
        proptest::collection::vec(row, 0..6).prop_map(|rows| {
            rows.into_iter()
                .map(|(id, entity, ts, x, s)| {
                    let x = x.map_or(FeatureValue::Null, FeatureValue::Number);
                    let s = s.map_or(FeatureValue::Null, |s| FeatureValue::Text(s.into()));
                    event(&id, &entity, ts, &[("x", x), ("s", s)])
                })
                .collect()
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            // Unguarded on purpose: the framing check, not catch_unwind, must hold.
            if let Err(r) = decode_checked(&bytes) {
                proptest::prop_assert!(!r.detail.is_empty());
            }
        }

        #[test]
        fn never_panics_on_corrupted_streams(
            events in arb_events(),
            exotic in proptest::bool::ANY,
            flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
            cut in proptest::num::usize::ANY,
        ) {
            let mut bytes = if exotic { exotic_stream() } else { encode_arrow_batch(&events).unwrap() };
            for (at, byte) in flips {
                let len = bytes.len();
                bytes[at % len] ^= byte;
            }
            let cut = cut % (bytes.len() + 1);
            let _ = decode_checked(&bytes[..cut]);
            let _ = decode_checked(&bytes);
        }

        #[test]
        fn truncations_fail_cleanly_or_decode_a_prefix(events in arb_events(), cut in proptest::num::usize::ANY) {
            let bytes = encode_arrow_batch(&events).unwrap();
            let cut = cut % (bytes.len() + 1);
            match decode_checked(&bytes[..cut]) {
                Ok(rows) => proptest::prop_assert!(rows.len() <= events.len()),
                Err(r) => proptest::prop_assert_eq!(r.reason, RejectReason::MalformedBatch),
            }
            // The whole stream decodes to the same verdicts decode_json would reach.
            let rows = decode_checked(&bytes).map_err(|r| proptest::test_runner::TestCaseError::fail(r.to_string()))?;
            proptest::prop_assert_eq!(rows.len(), events.len());
            for (row, event) in rows.iter().zip(&events) {
                let mut json = Vec::new();
                crate::demo::generator::write_json(event, &mut json);
                match (row, crate::source::decode::decode_json(&json, 0)) {
                    (Ok(got), Ok(want)) => proptest::prop_assert_eq!(got, &want),
                    (Err((rej, dlq)), _) => {
                        proptest::prop_assert!(serde_json::from_slice::<serde_json::Value>(dlq).is_ok());
                        proptest::prop_assert!(matches!(rej.reason, RejectReason::MissingField | RejectReason::NonFinite), "{}", rej);
                    }
                    (Ok(got), Err(r)) => proptest::prop_assert!(false, "arrow accepted {:?}, json rejected: {}", got, r),
                }
            }
        }
    }
}
