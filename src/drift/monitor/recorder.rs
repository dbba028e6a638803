//! The hot path: per scored event, one sketch update per column; closed
//! sub-windows go to the evaluator over a bounded channel, never waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::WindowKind;
use super::plan::{Plan, Probe};
use super::window::{max_opt, min_opt, SeasonSlice, Window};
use crate::drift::exact::ColumnValues;
use crate::drift::profile::ColumnSketch;

/// Event-time buckets per season: a seasonal column's values are kept
/// per bucket (an hour of a day), so its season window is whole buckets.
pub(super) const SEASON_BUCKETS: i64 = 24;

/// One column's value in one event, as the probe read it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seen {
    Missing,
    Number(f32),
    /// A categorical sketch bucket.
    Bucket(usize),
}

impl Seen {
    #[inline]
    fn record(self, sketch: &mut ColumnSketch, values: Option<&mut ColumnValues>) {
        match (self, sketch) {
            (Seen::Missing, ColumnSketch::Numeric(s)) => s.update_missing(),
            (Seen::Missing, ColumnSketch::Categorical(s)) => s.update_missing(),
            (Seen::Number(x), ColumnSketch::Numeric(s)) => s.update(f64::from(x)),
            (Seen::Bucket(b), ColumnSketch::Categorical(s)) => s.update_bucket(b),
            // Plan::new builds probes from the same profile columns.
            _ => {}
        }
        if let Some(v) = values {
            match self {
                Seen::Number(x) => v.update(x),
                Seen::Missing => v.update_missing(),
                Seen::Bucket(_) => {}
            }
        }
    }
}

impl Probe {
    /// The column's value in an encoded row.
    #[inline]
    fn read(&self, row: &[f32]) -> Seen {
        match self {
            Probe::Numeric { offset } => {
                Seen::Number(row.get(*offset).copied().unwrap_or(f32::NAN))
            }
            Probe::OneHot {
                offset,
                buckets,
                other,
            } => {
                let block = row.get(*offset..*offset + buckets.len()).unwrap_or(&[]);
                let hot = block.iter().position(|&v| v == 1.0);
                Seen::Bucket(hot.and_then(|p| buckets.get(p).copied()).unwrap_or(*other))
            }
            Probe::Ordinal {
                offset,
                buckets,
                other,
            } => {
                let code = row.get(*offset).copied().unwrap_or(-1.0);
                let bucket = if code >= 0.0 && code.fract() == 0.0 {
                    buckets.get(code as usize).copied()
                } else {
                    None
                };
                Seen::Bucket(bucket.unwrap_or(*other))
            }
        }
    }
}

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
    /// `missing[i]` says input `i` fell back to its default (or had no
    /// value), `entity` is the event's entity id (counted only when a
    /// store or aggregate column is watched).
    #[inline]
    pub fn observe(&mut self, row: &[f32], missing: &[bool], score: f32, ts_ms: i64, entity: &str) {
        if self.skip > 0 {
            self.skip -= 1;
            if self.skip == 0 {
                self.opened = Instant::now();
                self.window.opened_ms = crate::event::now_ms();
            }
            return;
        }
        let w = &mut self.window;
        for (i, ((column, sketch), values)) in self
            .plan
            .columns
            .iter()
            .zip(&mut w.columns)
            .zip(&mut w.values)
            .enumerate()
        {
            let seen = if missing.get(i).copied().unwrap_or(false) {
                Seen::Missing
            } else {
                column.probe.read(row)
            };
            seen.record(sketch, values.as_mut());
            if let Some(bucket_ms) = column.season_ms.map(|s| (s / SEASON_BUCKETS).max(1)) {
                let bucket = ts_ms.div_euclid(bucket_ms).saturating_mul(bucket_ms);
                if let Some(slices) = w.seasons.get_mut(i) {
                    if let Some(slice) = season_slice(slices, bucket, bucket_ms, sketch, values) {
                        seen.record(&mut slice.sketch, slice.values.as_mut());
                    }
                }
            }
        }
        w.score.update(f64::from(score));
        w.score_values.update(score);
        if let Some(e) = &mut w.entities {
            e.update(entity);
        }
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

    /// Closes the open sub-window now, if it holds any event: the end of
    /// a finite input (`driftline report`), whose last window is short.
    pub fn close_now(&mut self) {
        if self.window.count > 0 {
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

/// The slice of `bucket` among a window's season slices (kept ordered by
/// bucket), opened when new. At most [`SEASON_BUCKETS`] + 1 are kept, one
/// season's worth behind the newest bucket: the evaluator judges the last
/// whole season only, so an event older than that (out of order by more
/// than a season) counts in the event window but in no season slice
/// (`None`). The window's byte bound counts on this.
fn season_slice<'a>(
    slices: &'a mut Vec<SeasonSlice>,
    bucket: i64,
    bucket_ms: i64,
    sketch: &ColumnSketch,
    values: &Option<ColumnValues>,
) -> Option<&'a mut SeasonSlice> {
    // Events mostly arrive in bucket order: the last slice, or a new one.
    if slices.last().is_some_and(|s| s.bucket_ms == bucket) {
        return slices.last_mut();
    }
    let at = match slices.binary_search_by_key(&bucket, |s| s.bucket_ms) {
        Ok(at) => return slices.get_mut(at),
        Err(at) => at,
    };
    let newest = slices.last().map_or(bucket, |s| s.bucket_ms.max(bucket));
    let oldest = newest.saturating_sub(bucket_ms.saturating_mul(SEASON_BUCKETS));
    if bucket < oldest {
        return None;
    }
    slices.insert(
        at,
        SeasonSlice {
            bucket_ms: bucket,
            sketch: sketch.empty_like(),
            values: values.as_ref().map(ColumnValues::empty_like),
        },
    );
    let stale = slices.partition_point(|s| s.bucket_ms < oldest);
    slices.drain(..stale);
    slices.iter_mut().find(|s| s.bucket_ms == bucket)
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
        let want = (w.scores.len() * 2).max(16).min(cap);
        w.scores.reserve_exact(want.saturating_sub(w.scores.len()));
    }
    w.scores.push(score);
    thinned
}
