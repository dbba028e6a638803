//! The state the scoring loop shares with the admin API and the demo: what
//! is loaded and assigned, counts and latencies of what was scored, and the
//! drift evaluator's latest status.
//!
//! Guarantees: every field is safe to read from any thread at any time
//! (atomics, or a lock held only to copy or record); readers never block
//! the scoring loop for longer than one histogram update.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};

use crate::drift::monitor::DriftStatus;
use crate::event::RejectReason;

/// Counters the demo prints and the admin API reads.
#[derive(Debug, Default)]
pub struct LoopStats {
    pub predicted: AtomicU64,
    pub dlq: AtomicU64,
    dlq_by_reason: [AtomicU64; RejectReason::ALL.len()],
    /// Receive-to-send latency of predictions in microseconds: since the
    /// last [`take_latencies`](Self::take_latencies), and in total.
    latency_us: Mutex<Option<(Histogram<u64>, Histogram<u64>)>>,
}

fn new_histogram() -> Option<Histogram<u64>> {
    // 1 µs .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).ok()
}

impl LoopStats {
    /// Counts `predicted` predictions and records their latencies.
    pub fn record(&self, predicted: u64, latencies_us: &[u64]) {
        self.predicted.fetch_add(predicted, Ordering::Relaxed);
        let mut guard = self.latency_us.lock();
        if guard.is_none() {
            *guard = new_histogram().zip(new_histogram());
        }
        if let Some((window, total)) = guard.as_mut() {
            for &l in latencies_us {
                window.saturating_record(l.max(1));
                total.saturating_record(l.max(1));
            }
        }
    }

    /// Counts one input sent to the DLQ.
    pub fn record_dlq(&self, reason: RejectReason) {
        self.dlq.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.dlq_by_reason[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// DLQ records so far, by reason (reasons with none left out).
    pub fn dlq_by_reason(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.dlq_by_reason)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Latencies since the last call (`None` before the first prediction).
    pub fn take_latencies(&self) -> Option<Histogram<u64>> {
        let mut guard = self.latency_us.lock();
        let (window, _) = guard.as_mut()?;
        Some(std::mem::replace(window, new_histogram()?))
    }

    /// Every latency recorded so far (`None` before the first prediction).
    pub fn total_latencies(&self) -> Option<Histogram<u64>> {
        self.latency_us
            .lock()
            .as_ref()
            .map(|(_, total)| total.clone())
    }
}

/// State shared by the loop, the admin API and the demo.
#[derive(Debug, Default)]
pub struct Shared {
    pub model_loaded: AtomicBool,
    /// Snapshot loaded and `feature-updates` caught up.
    pub store_ready: AtomicBool,
    /// Input partitions owned.
    pub assigned: AtomicUsize,
    /// The loop is running (cleared when it stops, for `/healthz`).
    pub running: AtomicBool,
    pub stats: LoopStats,
    /// The drift evaluator's latest status (`GET /v1/drift`); its
    /// `reference` is empty while drift monitoring is off.
    pub drift: Arc<RwLock<DriftStatus>>,
    /// Why this instance must not take traffic although it runs (a model
    /// version the lifecycle state names that it cannot load).
    pub blocked: RwLock<Option<String>>,
}

impl Shared {
    /// Ready to score: model loaded, store caught up, partitions
    /// assigned, and nothing blocking (see [`Shared::blocked`]).
    pub fn ready(&self) -> Result<(), std::borrow::Cow<'static, str>> {
        if !self.model_loaded.load(Ordering::Acquire) {
            return Err("model not loaded".into());
        }
        if !self.store_ready.load(Ordering::Acquire) {
            return Err("feature store not caught up".into());
        }
        if !self.running.load(Ordering::Acquire) {
            return Err("scoring loop not running".into());
        }
        if self.assigned.load(Ordering::Acquire) == 0 {
            return Err("no partitions assigned".into());
        }
        if let Some(reason) = self.blocked.read().clone() {
            return Err(reason.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_names_the_first_missing_step() {
        let s = Shared::default();
        assert_eq!(s.ready().unwrap_err(), "model not loaded");
        s.model_loaded.store(true, Ordering::Release);
        assert_eq!(s.ready().unwrap_err(), "feature store not caught up");
        s.store_ready.store(true, Ordering::Release);
        assert_eq!(s.ready().unwrap_err(), "scoring loop not running");
        s.running.store(true, Ordering::Release);
        assert_eq!(s.ready().unwrap_err(), "no partitions assigned");
        s.assigned.store(2, Ordering::Release);
        assert_eq!(s.ready(), Ok(()));
        *s.blocked.write() = Some("model m version 2 is refused here".into());
        assert_eq!(s.ready().unwrap_err(), "model m version 2 is refused here");
        *s.blocked.write() = None;
        assert_eq!(s.ready(), Ok(()));
    }

    #[test]
    fn stats_count_predictions_dlq_reasons_and_latencies() {
        let stats = LoopStats::default();
        assert!(stats.take_latencies().is_none());
        stats.record(3, &[10, 20, 0]);
        stats.record_dlq(RejectReason::WrongType);
        stats.record_dlq(RejectReason::WrongType);
        assert_eq!(stats.predicted.load(Ordering::Relaxed), 3);
        assert_eq!(stats.dlq.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dlq_by_reason(), [(RejectReason::WrongType, 2)]);
        let window = stats.take_latencies().unwrap();
        assert_eq!((window.len(), window.min()), (3, 1), "0 µs counts as 1");
        assert_eq!(stats.take_latencies().unwrap().len(), 0, "taken");
        assert_eq!(stats.total_latencies().unwrap().len(), 3);
    }
}
