//! The open-loop send schedule.
//!
//! A schedule is a list of segments, each a constant rate for a duration.
//! Event `seq` (0, 1, 2, ...) is due at a time that depends only on `seq`
//! and the segments, never on how fast anything answers: a stalled system
//! cannot slow the generator down, and the consumer can recompute the
//! scheduled send time of any event it reads from its sequence number alone.
//! Latency measured from that time includes every stall (no coordinated
//! omission).
//!
//! Guarantees: a segment of rate `r` and duration `d` holds
//! `round(r * d)` events spaced exactly `1 / r` apart, starting at the
//! segment's start; segments follow each other without gaps; [`due`](Schedule::due)
//! never decreases with `seq`.

use std::time::Duration;

/// One constant-rate stretch of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// What the segment is for (`warmup`, `steady`, `step 3`, `burst`, ...).
    pub label: String,
    /// Events per second (0 = a pause).
    pub rate: f64,
    /// Length in seconds.
    pub secs: f64,
}

impl Segment {
    pub fn new(label: impl Into<String>, rate: f64, secs: f64) -> Self {
        Segment {
            label: label.into(),
            rate: if rate.is_finite() { rate.max(0.0) } else { 0.0 },
            secs: if secs.is_finite() { secs.max(0.0) } else { 0.0 },
        }
    }

    /// Events in the segment.
    pub fn events(&self) -> u64 {
        (self.rate * self.secs).round() as u64
    }
}

/// Segments with their first sequence number and start time.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// First seq of each segment, plus the total at the end.
    first_seq: Vec<u64>,
    /// Start of each segment in seconds from the schedule's start, plus the end.
    start_secs: Vec<f64>,
}

impl Schedule {
    pub fn new(segments: Vec<Segment>) -> Self {
        let mut first_seq = Vec::with_capacity(segments.len() + 1);
        let mut start_secs = Vec::with_capacity(segments.len() + 1);
        let (mut seq, mut secs) = (0u64, 0.0f64);
        for s in &segments {
            first_seq.push(seq);
            start_secs.push(secs);
            seq += s.events();
            secs += s.secs;
        }
        first_seq.push(seq);
        start_secs.push(secs);
        Schedule {
            segments,
            first_seq,
            start_secs,
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Events in the whole schedule.
    pub fn total(&self) -> u64 {
        self.first_seq.last().copied().unwrap_or(0)
    }

    /// Length of the whole schedule in seconds.
    pub fn secs(&self) -> f64 {
        self.start_secs.last().copied().unwrap_or(0.0)
    }

    /// The segment holding event `seq` (`None` past the end).
    pub fn segment_of(&self, seq: u64) -> Option<usize> {
        if seq >= self.total() {
            return None;
        }
        // The last segment whose first seq is <= seq; empty segments share a
        // first seq with their successor and are skipped by taking the last.
        let i = self.first_seq.partition_point(|&f| f <= seq);
        i.checked_sub(1)
    }

    /// When event `seq` is due, from the schedule's start (`None` past the end).
    pub fn due(&self, seq: u64) -> Option<Duration> {
        let i = self.segment_of(seq)?;
        let seg = &self.segments[i];
        let k = (seq - self.first_seq[i]) as f64;
        Some(Duration::from_secs_f64(self.start_secs[i] + k / seg.rate))
    }

    /// Start and end of segment `i`, in seconds from the schedule's start.
    pub fn bounds(&self, i: usize) -> Option<(f64, f64)> {
        Some((*self.start_secs.get(i)?, *self.start_secs.get(i + 1)?))
    }

    /// First seq of segment `i` and the first seq after it.
    pub fn seq_range(&self, i: usize) -> Option<(u64, u64)> {
        Some((*self.first_seq.get(i)?, *self.first_seq.get(i + 1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule::new(vec![
            Segment::new("warmup", 100.0, 2.0),
            Segment::new("pause", 0.0, 1.0),
            Segment::new("steady", 1000.0, 3.0),
        ])
    }

    #[test]
    fn counts_and_lengths() {
        let s = schedule();
        assert_eq!(s.total(), 200 + 3000);
        assert_eq!(s.secs(), 6.0);
        assert_eq!(s.seq_range(0), Some((0, 200)));
        assert_eq!(s.seq_range(1), Some((200, 200)));
        assert_eq!(s.seq_range(2), Some((200, 3200)));
        assert_eq!(s.bounds(2), Some((3.0, 6.0)));
        assert_eq!(s.bounds(3), None);
    }

    #[test]
    fn due_times_are_evenly_spaced_per_segment() {
        let s = schedule();
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(1), Some(Duration::from_millis(10)));
        assert_eq!(s.due(199), Some(Duration::from_millis(1990)));
        // The pause holds no event: the next one is due when "steady" starts.
        assert_eq!(s.due(200), Some(Duration::from_secs(3)));
        assert_eq!(s.due(201), Some(Duration::from_millis(3001)));
        assert_eq!(s.due(3199), Some(Duration::from_millis(5999)));
        assert_eq!(s.due(3200), None);
    }

    #[test]
    fn segment_of_skips_empty_segments() {
        let s = schedule();
        assert_eq!(s.segment_of(0), Some(0));
        assert_eq!(s.segment_of(199), Some(0));
        assert_eq!(s.segment_of(200), Some(2));
        assert_eq!(s.segment_of(3199), Some(2));
        assert_eq!(s.segment_of(3200), None);
    }

    #[test]
    fn due_never_decreases() {
        let s = Schedule::new(vec![
            Segment::new("a", 333.0, 1.5),
            Segment::new("b", 7.0, 2.0),
            Segment::new("c", 12_345.0, 0.5),
        ]);
        let mut last = Duration::ZERO;
        for seq in 0..s.total() {
            let d = s.due(seq).unwrap();
            assert!(d >= last, "seq {seq}: {d:?} < {last:?}");
            last = d;
        }
        assert!(last.as_secs_f64() < s.secs());
    }

    #[test]
    fn odd_inputs_make_empty_segments() {
        let s = Schedule::new(vec![
            Segment::new("nan", f64::NAN, 3.0),
            Segment::new("neg", -5.0, 3.0),
        ]);
        assert_eq!(s.total(), 0);
        assert_eq!(s.due(0), None);
    }
}
