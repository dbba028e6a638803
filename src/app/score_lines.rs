//! `driftline score`: JSON events in, one JSON line per event out, through
//! the same pipeline as the service.
//!
//! Guarantees: one output line per non-blank input line, in input order; an
//! event that cannot be scored yields an error line naming its line number
//! and reason code instead of stopping the run.

use crate::event::{now_ms, RejectReason};
use crate::pipeline::{BatchOutput, Message, Pipeline};

/// Totals of a [`score_lines`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinesSummary {
    pub scored: usize,
    pub rejected: usize,
}

/// Scores JSON events read one per line and writes one JSON line per event,
/// in input order: a prediction (spec format), or `{"line", "error", "detail"}`
/// for an event that cannot be scored. Blank lines are skipped.
///
/// Lines are bytes, not text: a line that is not UTF-8 is that line's
/// `malformed_json` error (detail `invalid UTF-8 ...`), and the lines after
/// it are still scored. A line longer than `pipeline.max_message_bytes` is
/// read no further than the limit (so one huge line cannot exhaust memory)
/// and reported as `oversize` with its full length.
pub fn score_lines(
    pipeline: &mut Pipeline,
    mut input: impl std::io::BufRead,
    mut out: impl std::io::Write,
    batch_size: usize,
) -> std::io::Result<LinesSummary> {
    let max_bytes = pipeline.input_limits().max_message_bytes;
    let mut summary = LinesSummary::default();
    let mut batch = BatchOutput::default();
    let mut pending: Vec<Line> = Vec::with_capacity(batch_size);
    let mut flush =
        |pending: &mut Vec<Line>, out: &mut dyn std::io::Write| -> std::io::Result<()> {
            let messages: Vec<Message<'_>> = pending
                .iter()
                .map(|line| Message {
                    payload: &line.bytes,
                    timestamp_ms: None,
                })
                .collect();
            pipeline.process(&messages, now_ms(), &mut batch);
            let model = pipeline.model();
            let mut lines: Vec<(usize, String)> = Vec::with_capacity(pending.len());
            for s in &batch.scored {
                let prediction = serde_json::json!({
                    "event_id": s.event.event_id.as_str(),
                    "entity_id": s.event.entity_id.as_str(),
                    "ts": s.ts_ms,
                    "model": model.name(),
                    "model_version": model.version(),
                    "variant": "primary",
                    "score": s.score,
                });
                lines.push((s.index, prediction.to_string()));
            }
            for r in &batch.rejected {
                let line = &pending[r.index];
                let detail = match r.rejection.reason {
                    RejectReason::Oversize if line.length > line.bytes.len() => {
                        format!("line is {} bytes, the limit is {max_bytes}", line.length)
                    }
                    _ => r.rejection.detail.clone(),
                };
                let error = serde_json::json!({
                    "line": line.number,
                    "error": r.rejection.reason.code(),
                    "detail": detail,
                });
                lines.push((r.index, error.to_string()));
            }
            summary.scored += batch.scored.len();
            summary.rejected += batch.rejected.len();
            lines.sort_unstable_by_key(|(i, _)| *i);
            for (_, line) in lines {
                writeln!(out, "{line}")?;
            }
            pending.clear();
            Ok(())
        };
    let mut number = 0;
    loop {
        // Past the limit a line is oversize whatever follows: one byte more
        // than the limit is enough for the decoder to say so.
        let keep = if max_bytes == 0 {
            usize::MAX
        } else {
            max_bytes + 1
        };
        let mut bytes = Vec::new();
        let Some(length) = read_line(&mut input, &mut bytes, keep)? else {
            break;
        };
        number += 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        pending.push(Line {
            number,
            bytes,
            length,
        });
        if pending.len() >= batch_size.max(1) {
            flush(&mut pending, &mut out)?;
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut out)?;
    }
    out.flush()?;
    Ok(summary)
}

/// One input line of [`score_lines`].
struct Line {
    /// 1-based line number.
    number: usize,
    /// The line without its end of line, cut at the read limit.
    bytes: Vec<u8>,
    /// Its full length.
    length: usize,
}

/// Reads one line into `buf` (without `\n` or `\r\n`), keeping at most
/// `keep` bytes and skipping the rest; returns the line's full length, or
/// `None` at the end of the input.
fn read_line(
    input: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<Option<usize>> {
    let mut length = 0usize;
    let mut any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len();
        let used = done.unwrap_or(part.len());
        input.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') && length == buf.len() {
        buf.pop();
        length -= 1;
    }
    Ok(Some(length))
}
