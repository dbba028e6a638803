//! Which input offsets may be committed.
//!
//! Guarantees (at-least-once): [`Tracker::committable`] never returns an
//! offset past an input record whose outputs (prediction, DLQ records) are
//! not all acknowledged by the broker, nor, on a partition with streaming
//! aggregates, past the position covered by the newest completed changelog
//! checkpoint. A delivery that fails permanently blocks its partition's
//! frontier for good and is reported by [`Tracker::failure`], so the service
//! stops instead of committing past a lost output.
//!
//! Inputs are registered by the scoring thread in offset order; acks arrive
//! from the producer's delivery thread in any order.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// What a produced record stands for, handed back by its delivery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// An output (prediction or DLQ record) of input `offset`.
    Input { partition: i32, offset: i64 },
    /// A changelog record of checkpoint `id`.
    Checkpoint { partition: i32, id: u64 },
    /// Not tied to an input offset (DLQ records of feature updates).
    Detached,
}

#[derive(Debug, Default)]
struct Barrier {
    id: u64,
    /// Inputs before this offset are covered by the checkpoint.
    position: i64,
    pending: u32,
}

#[derive(Debug)]
struct Part {
    /// Inputs with outputs still in flight: (offset, outstanding), ascending.
    pending: VecDeque<(i64, u32)>,
    /// One past the newest registered input, once there is one.
    next: Option<i64>,
    barriers: VecDeque<Barrier>,
    /// Position of the newest completed checkpoint; `None` before the first.
    checkpointed: Option<i64>,
    /// Commits wait for checkpoints (the partition feeds aggregates).
    gated: bool,
}

#[derive(Debug, Default)]
struct Inner {
    parts: HashMap<i32, Part>,
    next_checkpoint: u64,
    failure: Option<String>,
}

/// Shared between the scoring thread and the producer's delivery callback.
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a newly assigned partition. `gated`: its commits wait
    /// for aggregate checkpoints.
    pub fn open(&self, partition: i32, gated: bool) {
        self.inner.lock().parts.insert(
            partition,
            Part {
                pending: VecDeque::new(),
                next: None,
                barriers: VecDeque::new(),
                checkpointed: None,
                gated,
            },
        );
    }

    /// Stops tracking a revoked partition (after its outputs were flushed).
    pub fn close(&self, partition: i32) {
        self.inner.lock().parts.remove(&partition);
    }

    /// Registers inputs in offset order: (partition, offset, outputs). An
    /// input with no outputs (an empty batch message) is done at once.
    pub fn register(&self, inputs: impl IntoIterator<Item = (i32, i64, u32)>) {
        let mut inner = self.inner.lock();
        for (partition, offset, outputs) in inputs {
            let Some(part) = inner.parts.get_mut(&partition) else {
                continue;
            };
            if outputs > 0 {
                part.pending.push_back((offset, outputs));
            }
            part.next = Some(offset + 1);
        }
    }

    /// Records a delivery report.
    pub fn ack(&self, token: Token) {
        let mut inner = self.inner.lock();
        match token {
            Token::Input { partition, offset } => {
                let Some(part) = inner.parts.get_mut(&partition) else {
                    return;
                };
                if let Ok(i) = part.pending.binary_search_by_key(&offset, |&(o, _)| o) {
                    part.pending[i].1 = part.pending[i].1.saturating_sub(1);
                }
                while part.pending.front().is_some_and(|&(_, n)| n == 0) {
                    part.pending.pop_front();
                }
            }
            Token::Checkpoint { partition, id } => {
                let Some(part) = inner.parts.get_mut(&partition) else {
                    return;
                };
                if let Some(b) = part.barriers.iter_mut().find(|b| b.id == id) {
                    b.pending = b.pending.saturating_sub(1);
                }
                part.settle();
            }
            Token::Detached => {}
        }
    }

    /// Records a delivery that failed for good.
    pub fn fail(&self, token: Token, error: String) {
        let mut inner = self.inner.lock();
        if token != Token::Detached && inner.failure.is_none() {
            inner.failure = Some(error);
        }
    }

    /// The first permanent delivery failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.lock().failure.clone()
    }

    /// Opens a checkpoint of `records` changelog records covering every
    /// input registered so far on `partition`; returns its id, or `None`
    /// when the partition is not tracked.
    pub fn begin_checkpoint(&self, partition: i32, records: u32) -> Option<u64> {
        let mut inner = self.inner.lock();
        let id = inner.next_checkpoint;
        let part = inner.parts.get_mut(&partition)?;
        let position = part.next?;
        part.barriers.push_back(Barrier {
            id,
            position,
            pending: records,
        });
        part.settle();
        inner.next_checkpoint += 1;
        Some(id)
    }

    /// The offset to commit for `partition` (the next input to read after a
    /// restart), or `None` when nothing can be committed yet.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        let inner = self.inner.lock();
        let part = inner.parts.get(&partition)?;
        let delivered = match part.pending.front() {
            Some(&(offset, _)) => offset,
            None => part.next?,
        };
        if part.gated {
            Some(delivered.min(part.checkpointed?))
        } else {
            Some(delivered)
        }
    }

    /// Outputs in flight on every partition (for shutdown logs and tests).
    pub fn in_flight(&self) -> usize {
        let inner = self.inner.lock();
        inner
            .parts
            .values()
            .map(|p| p.pending.iter().map(|&(_, n)| n as usize).sum::<usize>())
            .sum()
    }
}

impl Part {
    /// Checkpoints complete in order: a later one whose records are all
    /// acknowledged still waits for an earlier one.
    fn settle(&mut self) {
        while self.barriers.front().is_some_and(|b| b.pending == 0) {
            if let Some(b) = self.barriers.pop_front() {
                self.checkpointed = Some(b.position);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(partition: i32, offset: i64) -> Token {
        Token::Input { partition, offset }
    }

    #[test]
    fn commits_up_to_the_first_unacknowledged_input() {
        let t = Tracker::new();
        t.open(0, false);
        assert_eq!(t.committable(0), None, "nothing read yet");
        t.register([(0, 10, 1), (0, 11, 1), (0, 12, 2), (0, 13, 1)]);
        assert_eq!(t.committable(0), Some(10));
        t.ack(input(0, 11));
        assert_eq!(t.committable(0), Some(10), "11 done but 10 is not");
        t.ack(input(0, 10));
        assert_eq!(t.committable(0), Some(12));
        t.ack(input(0, 12));
        t.ack(input(0, 13));
        assert_eq!(t.committable(0), Some(12), "12 has a second output");
        t.ack(input(0, 12));
        assert_eq!(t.committable(0), Some(14));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn empty_inputs_and_gaps_do_not_block() {
        let t = Tracker::new();
        t.open(3, false);
        // Offsets need not be contiguous (compaction, transaction markers).
        t.register([(3, 5, 0), (3, 9, 1)]);
        assert_eq!(t.committable(3), Some(9));
        t.ack(input(3, 9));
        assert_eq!(t.committable(3), Some(10));
    }

    #[test]
    fn gated_partitions_wait_for_checkpoints_in_order() {
        let t = Tracker::new();
        t.open(1, true);
        t.register([(1, 0, 1), (1, 1, 1)]);
        t.ack(input(1, 0));
        t.ack(input(1, 1));
        assert_eq!(t.committable(1), None, "no checkpoint yet");
        let first = t.begin_checkpoint(1, 2).unwrap();
        t.register([(1, 2, 1)]);
        t.ack(input(1, 2));
        let second = t.begin_checkpoint(1, 1).unwrap();
        t.ack(Token::Checkpoint {
            partition: 1,
            id: second,
        });
        assert_eq!(t.committable(1), None, "the later checkpoint waits");
        t.ack(Token::Checkpoint {
            partition: 1,
            id: first,
        });
        t.ack(Token::Checkpoint {
            partition: 1,
            id: first,
        });
        assert_eq!(t.committable(1), Some(3));
        // An empty checkpoint completes at once.
        t.register([(1, 3, 1)]);
        t.ack(input(1, 3));
        t.begin_checkpoint(1, 0).unwrap();
        assert_eq!(t.committable(1), Some(4));
    }

    #[test]
    fn failures_block_and_are_reported_and_closed_partitions_are_forgotten() {
        let t = Tracker::new();
        t.open(0, false);
        t.register([(0, 0, 1), (0, 1, 1)]);
        t.fail(input(0, 0), "MessageTimedOut".into());
        t.ack(input(0, 1));
        assert_eq!(t.committable(0), Some(0));
        assert_eq!(t.failure().as_deref(), Some("MessageTimedOut"));
        t.fail(Token::Detached, "ignored".into());
        assert_eq!(t.failure().as_deref(), Some("MessageTimedOut"));
        t.close(0);
        assert_eq!(t.committable(0), None);
        t.ack(input(0, 0)); // late report after a hand-over: ignored
        t.register([(7, 0, 1)]); // unknown partition: ignored
        assert_eq!(t.committable(7), None);
    }
}
