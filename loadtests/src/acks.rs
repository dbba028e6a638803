//! The pass-through's at-least-once bookkeeping: per input partition, the
//! offset up to which every forwarded record is acknowledged.
//!
//! Records of one input partition are forwarded in offset order, but their
//! copies go to output partitions by key, so acknowledgements come back in
//! any order. An input offset is committable only when it and every offset
//! before it that was forwarded are acknowledged; a failed delivery blocks
//! its partition for good (the process stops and the record is re-read by
//! the next owner). This is the same rule driftline's offset tracker
//! applies, reduced to one output per input.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default)]
struct Partition {
    /// Forwarded offsets not yet acknowledged, oldest first, with their state.
    pending: VecDeque<(i64, State)>,
    /// The offset after the last forwarded one.
    next: Option<i64>,
    /// Last offset handed out by [`AckTracker::take_commits`].
    committed: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Acked,
    Failed,
}

/// Per-partition acknowledged-up-to tracker.
#[derive(Debug, Default)]
pub struct AckTracker {
    partitions: BTreeMap<i32, Partition>,
    failure: Option<String>,
}

impl AckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A record at `offset` of `partition` was handed to the producer.
    /// Offsets of a partition must be forwarded in increasing order.
    pub fn forwarded(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.pending.push_back((offset, State::InFlight));
        p.next = Some(offset + 1);
    }

    /// The broker acknowledged the copy of `offset`.
    pub fn acked(&mut self, partition: i32, offset: i64) {
        self.settle(partition, offset, State::Acked);
    }

    /// The copy of `offset` could not be delivered (after the producer's retries).
    pub fn failed(&mut self, partition: i32, offset: i64, reason: &str) {
        self.settle(partition, offset, State::Failed);
        if self.failure.is_none() {
            self.failure = Some(format!("partition {partition} offset {offset}: {reason}"));
        }
    }

    fn settle(&mut self, partition: i32, offset: i64, state: State) {
        // An ack for a partition given away since is ignored: its offsets
        // were committed (or not) at revoke time.
        let Some(p) = self.partitions.get_mut(&partition) else {
            return;
        };
        if let Ok(i) = p.pending.binary_search_by_key(&offset, |&(o, _)| o) {
            p.pending[i].1 = state;
        }
        while let Some(&(_, State::Acked)) = p.pending.front() {
            p.pending.pop_front();
        }
    }

    /// The first delivery failure, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Offsets to commit (the next offset to read, Kafka's convention) for
    /// partitions that moved since the last call.
    pub fn take_commits(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.partitions {
            let upto = match p.pending.front() {
                Some(&(offset, _)) => Some(offset),
                None => p.next,
            };
            if let Some(upto) = upto {
                if p.committed.is_none_or(|c| upto > c) {
                    p.committed = Some(upto);
                    out.push((partition, upto));
                }
            }
        }
        out
    }

    /// Forgets partitions that were revoked.
    pub fn remove(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// Records handed to the producer and not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_first_unacknowledged_offset() {
        let mut t = AckTracker::new();
        for o in 10..15 {
            t.forwarded(0, o);
        }
        assert_eq!(t.take_commits(), vec![(0, 10)]);
        t.acked(0, 12);
        t.acked(0, 11);
        assert_eq!(t.take_commits(), vec![], "10 is still in flight");
        t.acked(0, 10);
        assert_eq!(t.take_commits(), vec![(0, 13)]);
        t.acked(0, 14);
        t.acked(0, 13);
        assert_eq!(t.take_commits(), vec![(0, 15)]);
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.take_commits(), vec![], "nothing moved");
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = AckTracker::new();
        t.forwarded(0, 0);
        t.forwarded(1, 100);
        t.forwarded(1, 101);
        t.acked(1, 101);
        t.acked(1, 100);
        assert_eq!(t.take_commits(), vec![(0, 0), (1, 102)]);
    }

    #[test]
    fn a_failed_delivery_blocks_its_partition() {
        let mut t = AckTracker::new();
        for o in 0..3 {
            t.forwarded(2, o);
        }
        t.acked(2, 0);
        t.failed(2, 1, "message timed out");
        t.acked(2, 2);
        assert_eq!(t.take_commits(), vec![(2, 1)]);
        assert_eq!(t.take_commits(), vec![]);
        assert!(t.failure().is_some_and(|f| f.contains("offset 1")));
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut t = AckTracker::new();
        t.forwarded(3, 5);
        t.remove(&[3]);
        t.acked(3, 5);
        assert_eq!(t.take_commits(), vec![]);
        assert_eq!(t.in_flight(), 0);
    }
}
