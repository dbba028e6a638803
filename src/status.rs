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
    /// Why the scoring loop or a follower stopped for good (`/healthz`
    /// answers 503 with it); the first reason is kept.
    failure: Mutex<Option<String>>,
    /// What the service waits for while it cannot score (the brokers at
    /// start-up, outputs being sent again), for `/readyz`.
    waiting: Mutex<Option<String>>,
    /// Why this instance must not take traffic although it runs (a model
    /// version the lifecycle state names that it cannot load).
    pub blocked: RwLock<Option<String>>,
}

impl Shared {
    /// Records that the loop or a follower stopped for good.
    pub fn fail(&self, reason: impl Into<String>) {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            *failure = Some(reason.into());
        }
    }

    /// Alive (`Ok`), or why not: the loop or a follower stopped for good,
    /// or the loop, once it had partitions, is no longer running.
    pub fn health(&self) -> Result<(), String> {
        if let Some(reason) = self.failure.lock().as_ref() {
            return Err(reason.clone());
        }
        let stopped = self.model_loaded.load(Ordering::Acquire)
            && !self.running.load(Ordering::Acquire)
            && self.assigned.load(Ordering::Acquire) > 0;
        if stopped {
            return Err("scoring loop stopped".into());
        }
        Ok(())
    }

    /// Says what the service is waiting for (`None`: no longer waiting).
    pub fn set_waiting(&self, what: Option<String>) {
        *self.waiting.lock() = what;
    }

    /// Ready (`Ok`), or why not, for `/readyz`: a failure, what it is
    /// waiting for, or the first missing step of [`ready`](Self::ready).
    pub fn readiness(&self) -> Result<(), String> {
        self.health()?;
        if let Some(what) = self.waiting.lock().as_ref() {
            return Err(what.clone());
        }
        self.ready().map_err(std::borrow::Cow::into_owned)
    }

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
        assert_eq!(s.readiness(), Ok(()));
        assert_eq!(s.health(), Ok(()));
        *s.blocked.write() = Some("model m version 2 is refused here".into());
        assert_eq!(s.ready().unwrap_err(), "model m version 2 is refused here");
        assert_eq!(
            s.readiness(),
            Err("model m version 2 is refused here".into())
        );
        *s.blocked.write() = None;
        assert_eq!(s.ready(), Ok(()));
    }

    #[test]
    fn connecting_and_failure_are_reported_with_their_reason() {
        let s = Shared::default();
        s.set_waiting(Some("connecting to b1:9092".into()));
        assert_eq!(s.readiness(), Err("connecting to b1:9092".into()));
        assert_eq!(s.health(), Ok(()), "alive while connecting");
        s.set_waiting(None);
        assert_eq!(s.readiness(), Err("model not loaded".into()));
        s.fail("scoring loop stopped: x");
        s.fail("a later reason");
        assert_eq!(s.health(), Err("scoring loop stopped: x".into()));
        assert_eq!(s.readiness(), Err("scoring loop stopped: x".into()));
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
