//! Batch buffering: polled records copied out of librdkafka's buffers into
//! one micro-batch.
//!
//! Guarantees: a batch outlives the poll calls that filled it (a rebalance
//! inside a later poll can still score it); records keep their poll order;
//! keys and payloads share one byte buffer, reused from batch to batch.

use std::time::Instant;

use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

use crate::source::arrow::ARROW_CONTENT_TYPE;

/// One polled record; its key and payload are spans of the batch's bytes.
#[derive(Debug, Clone)]
pub struct Item {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<(usize, usize)>,
    pub payload: Option<(usize, usize)>,
    /// Whether the record declared itself an Arrow IPC batch (its
    /// `content-type` header starts with [`ARROW_CONTENT_TYPE`]).
    pub arrow: bool,
    /// When it was polled.
    pub received: Instant,
}

/// The records of one micro-batch.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    pub items: Vec<Item>,
    /// When the first record was added: the start of the latency budget.
    pub first_at: Option<Instant>,
    /// Events in the batch (rows of Arrow messages count one each, roughly).
    pub events: usize,
}

impl Batch {
    /// Copies `m` in.
    pub fn push(&mut self, m: &BorrowedMessage<'_>) {
        let mut span = |data: Option<&[u8]>| {
            data.map(|d| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(d);
                (start, self.bytes.len())
            })
        };
        let key = span(m.key());
        let payload = span(m.payload());
        let arrow = m.headers().is_some_and(|h| {
            h.iter().any(|h| {
                h.key.eq_ignore_ascii_case("content-type")
                    && h.value
                        .is_some_and(|v| v.starts_with(ARROW_CONTENT_TYPE.as_bytes()))
            })
        });
        let now = Instant::now();
        self.first_at.get_or_insert(now);
        self.items.push(Item {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key,
            payload,
            arrow,
            received: now,
        });
        // An Arrow message is assumed to fill a batch on its own.
        self.events += 1;
    }

    /// The bytes of a key or payload span.
    pub fn slice(&self, span: Option<(usize, usize)>) -> Option<&[u8]> {
        span.map(|(a, b)| &self.bytes[a..b])
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
        self.first_at = None;
        self.events = 0;
    }
}
