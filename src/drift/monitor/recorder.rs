//! The hot path: per scored event, one sketch update per column; closed
//! sub-windows go to the evaluator over a bounded channel, never waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::WindowKind;
use super::plan::{Plan, Probe};
use super::window::{max_opt, min_opt, Window};
use crate::drift::profile::ColumnSketch;

/// Counts of the recorder, read by the evaluator and the service's metrics.
#[derive(Debug, Default)]
pub struct RecorderStats {
    pub windows: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
    /// Scores dropped from open windows to stay within
    /// `drift.max_window_bytes`.
    pub thinned: std::sync::atomic::AtomicU64,
    /// Bytes of the open sub-window (refreshed every [`BYTES_EVERY`]
    /// events and whenever its scores are thinned).
    pub open_bytes: AtomicUsize,
    /// Bytes of closed sub-windows on their way to the evaluator.
    pub queued_bytes: AtomicUsize,
    /// Bytes of the sub-windows the evaluator keeps for the sliding window.
    pub held_bytes: AtomicUsize,
}

impl RecorderStats {
    /// Every window's bytes: open, queued and held.
    pub fn bytes(&self) -> usize {
        self.open_bytes.load(Ordering::Relaxed)
            + self.queued_bytes.load(Ordering::Relaxed)
            + self.held_bytes.load(Ordering::Relaxed)
    }
}

/// How often (in events) the open window's bytes are measured for the
/// gauge: a sketch's KLL grows by a few values per thousand events.
const BYTES_EVERY: u64 = 4096;

/// Updates the open sub-window per scored event; see the module docs.
pub struct Recorder {
    plan: Arc<Plan>,
    window: Window,
    opened: Instant,
    sub_events: u64,
    sub_duration: Option<Duration>,
    tx: SyncSender<Window>,
    stats: Arc<RecorderStats>,
    /// Warm-up events still to ignore.
    skip: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("seq", &self.window.seq)
            .field("count", &self.window.count)
            .finish()
    }
}

impl Recorder {
    /// A recorder and the receiving end for the
    /// [`Evaluator`](super::Evaluator) thread.
    pub fn new(plan: Arc<Plan>, stats: Arc<RecorderStats>) -> (Recorder, Receiver<Window>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(plan.config.queue.max(1));
        let (sub_events, sub_duration) = match plan.config.window {
            WindowKind::Count => (plan.config.sub_window_events(), None),
            WindowKind::Time => (u64::MAX, Some(plan.sub_duration)),
        };
        let recorder = Recorder {
            skip: plan.config.warmup_events,
            window: plan.empty_window(0),
            plan,
            opened: Instant::now(),
            sub_events,
            sub_duration,
            tx,
            stats,
        };
        (recorder, rx)
    }

    /// The counters and byte gauges shared with the evaluator.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }

    /// The plan it records for.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Observes one scored event: `row` is the encoded model input,
    /// `missing[i]` says input `i` fell back to its default (or had no value).
    #[inline]
    pub fn observe(&mut self, row: &[f32], missing: &[bool], score: f32, ts_ms: i64) {
        if self.skip > 0 {
            self.skip -= 1;
            if self.skip == 0 {
                self.opened = Instant::now();
                self.window.opened_ms = crate::event::now_ms();
            }
            return;
        }
        let w = &mut self.window;
        for (i, (column, sketch)) in self.plan.columns.iter().zip(&mut w.columns).enumerate() {
            if missing.get(i).copied().unwrap_or(false) {
                match sketch {
                    ColumnSketch::Numeric(s) => s.update_missing(),
                    ColumnSketch::Categorical(s) => s.update_missing(),
                }
                continue;
            }
            match (&column.probe, sketch) {
                (Probe::Numeric { offset }, ColumnSketch::Numeric(s)) => {
                    s.update(f64::from(row.get(*offset).copied().unwrap_or(f32::NAN)));
                }
                (
                    Probe::OneHot {
                        offset,
                        buckets,
                        other,
                    },
                    ColumnSketch::Categorical(s),
                ) => {
                    let block = row.get(*offset..*offset + buckets.len()).unwrap_or(&[]);
                    let hot = block.iter().position(|&v| v == 1.0);
                    s.update_bucket(hot.and_then(|p| buckets.get(p).copied()).unwrap_or(*other));
                }
                (
                    Probe::Ordinal {
                        offset,
                        buckets,
                        other,
                    },
                    ColumnSketch::Categorical(s),
                ) => {
                    let code = row.get(*offset).copied().unwrap_or(-1.0);
                    let bucket = if code >= 0.0 && code.fract() == 0.0 {
                        buckets.get(code as usize).copied()
                    } else {
                        None
                    };
                    s.update_bucket(bucket.unwrap_or(*other));
                }
                // Plan::new builds probes from the same profile columns.
                _ => {}
            }
        }
        w.score.update(f64::from(score));
        if self.plan.config.sequential {
            let thinned = keep_score(w, score, self.plan.score_cap.max(2));
            if thinned > 0 {
                self.stats.thinned.fetch_add(thinned, Ordering::Relaxed);
                self.stats.open_bytes.store(w.bytes(), Ordering::Relaxed);
            }
        }
        w.count += 1;
        if w.count.is_multiple_of(BYTES_EVERY) {
            self.stats.open_bytes.store(w.bytes(), Ordering::Relaxed);
        }
        w.first_ts_ms = min_opt(w.first_ts_ms, Some(ts_ms));
        w.last_ts_ms = max_opt(w.last_ts_ms, Some(ts_ms));
        if w.count >= self.sub_events {
            self.close();
        }
    }

    /// Closes a time sub-window that has run its length (called by the loop
    /// between batches, so a quiet stream still closes its windows).
    pub fn tick(&mut self) {
        if let Some(d) = self.sub_duration {
            if self.opened.elapsed() >= d {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        let next = self.plan.empty_window(self.window.seq + 1);
        let mut closed = std::mem::replace(&mut self.window, next);
        self.opened = Instant::now();
        closed.closed_ms = Some(crate::event::now_ms());
        self.stats
            .windows
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = closed.bytes();
        self.stats
            .open_bytes
            .store(self.window.bytes(), Ordering::Relaxed);
        // Counted before the send: the evaluator takes it off on receipt.
        self.stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        match self.tx.try_send(closed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Appends `score` to the window's scores for the sequential detector,
/// at most `cap` of them (never more capacity either): when full, every
/// second kept score is dropped and the stride doubles, so what is kept
/// stays evenly spaced and in order. Returns how many were dropped.
fn keep_score(w: &mut Window, score: f32, cap: usize) -> u64 {
    let stride = w.score_stride.max(1);
    if !w.count.is_multiple_of(stride) {
        return 0;
    }
    let mut thinned = 0;
    if w.scores.len() >= cap {
        let before = w.scores.len();
        let mut i = 0u64;
        w.scores.retain(|_| {
            i += 1;
            !i.is_multiple_of(2)
        });
        thinned = (before - w.scores.len()) as u64;
        w.score_stride = stride.saturating_mul(2);
        // This score's position may not be on the new stride.
        if !w.count.is_multiple_of(w.score_stride) {
            return thinned;
        }
    }
    if w.scores.len() == w.scores.capacity() {
        // Doubling would overshoot the cap by up to twice.
        let want = (w.scores.len() * 2).clamp(16, cap);
        w.scores.reserve_exact(want.saturating_sub(w.scores.len()));
    }
    w.scores.push(score);
    thinned
}
