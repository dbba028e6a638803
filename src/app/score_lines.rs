//! `driftline score`: JSON events in, one JSON line per event out, through
//! the same pipeline as the service.
//!
//! Guarantees: one output line per non-blank input line, in input order; an
//! event that cannot be scored yields an error line naming its line number
//! and reason code instead of stopping the run.

use crate::event::now_ms;
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
pub fn score_lines(
    pipeline: &mut Pipeline,
    input: impl std::io::BufRead,
    mut out: impl std::io::Write,
    batch_size: usize,
) -> std::io::Result<LinesSummary> {
    let mut summary = LinesSummary::default();
    let mut batch = BatchOutput::default();
    // (1-based line number, text) of the lines in the current batch.
    let mut pending: Vec<(usize, String)> = Vec::with_capacity(batch_size);
    let mut flush =
        |pending: &mut Vec<(usize, String)>, out: &mut dyn std::io::Write| -> std::io::Result<()> {
            let messages: Vec<Message<'_>> = pending
                .iter()
                .map(|(_, text)| Message {
                    payload: text.as_bytes(),
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
                let error = serde_json::json!({
                    "line": pending[r.index].0,
                    "error": r.rejection.reason.code(),
                    "detail": r.rejection.detail,
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
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        pending.push((n + 1, line));
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
