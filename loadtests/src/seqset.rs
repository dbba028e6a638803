//! Which events came back: a bitmap over sequence numbers.
//!
//! Guarantees: every sequence number is counted once as received; every
//! later arrival of the same number is a duplicate; numbers outside the
//! schedule are counted apart (they are not ours, or the schedule is wrong).
//! [`Accounting::lost`] is what was acknowledged by the broker on the way in
//! but never came out on either output topic.

/// What happened to one arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    First,
    Duplicate,
    OutOfRange,
}

/// A set of sequence numbers below a fixed bound, one bit each.
#[derive(Debug, Clone)]
pub struct SeqSet {
    bits: Vec<u64>,
    len: u64,
    unique: u64,
    duplicates: u64,
    out_of_range: u64,
}

impl SeqSet {
    /// A set for numbers `0..len` (1 bit per number: 100 M events take 12.5 MB).
    pub fn new(len: u64) -> Self {
        SeqSet {
            bits: vec![0; len.div_ceil(64) as usize],
            len,
            unique: 0,
            duplicates: 0,
            out_of_range: 0,
        }
    }

    pub fn insert(&mut self, seq: u64) -> Arrival {
        if seq >= self.len {
            self.out_of_range += 1;
            return Arrival::OutOfRange;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.bits[word] & bit != 0 {
            self.duplicates += 1;
            Arrival::Duplicate
        } else {
            self.bits[word] |= bit;
            self.unique += 1;
            Arrival::First
        }
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq < self.len && self.bits[(seq / 64) as usize] & (1u64 << (seq % 64)) != 0
    }

    /// Distinct numbers seen.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Arrivals of a number already seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn out_of_range(&self) -> u64 {
        self.out_of_range
    }

    /// Numbers in `0..upto` never seen.
    pub fn missing_below(&self, upto: u64) -> u64 {
        let upto = upto.min(self.len);
        let full = (upto / 64) as usize;
        let mut seen: u64 = self.bits[..full]
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = upto % 64;
        if rest > 0 {
            seen += u64::from((self.bits[full] & ((1u64 << rest) - 1)).count_ones());
        }
        upto - seen
    }
}

/// End-of-run counts of one system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Events handed to the producer.
    pub sent: u64,
    /// Of those, deliveries the broker refused (never reached the input topic).
    pub produce_failed: u64,
    /// Distinct events with an output on the predictions topic.
    pub received: u64,
    /// Distinct events on the dead-letter topic (not on predictions).
    pub dlq: u64,
    /// Extra copies of events already received.
    pub duplicates: u64,
}

impl Accounting {
    /// Events that reached the input topic but never came out.
    pub fn lost(&self) -> u64 {
        self.sent
            .saturating_sub(self.produce_failed)
            .saturating_sub(self.received + self.dlq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_duplicate_out_of_range() {
        let mut s = SeqSet::new(130);
        assert_eq!(s.insert(0), Arrival::First);
        assert_eq!(s.insert(129), Arrival::First);
        assert_eq!(s.insert(64), Arrival::First);
        assert_eq!(s.insert(64), Arrival::Duplicate);
        assert_eq!(s.insert(64), Arrival::Duplicate);
        assert_eq!(s.insert(130), Arrival::OutOfRange);
        assert_eq!((s.unique(), s.duplicates(), s.out_of_range()), (3, 2, 1));
        assert!(s.contains(129) && !s.contains(128) && !s.contains(1000));
    }

    #[test]
    fn missing_counts_the_holes_below_a_bound() {
        let mut s = SeqSet::new(200);
        for seq in (0..200).filter(|n| n % 3 != 0) {
            s.insert(seq);
        }
        // Multiples of 3 below 200: 0, 3, ..., 198 = 67.
        assert_eq!(s.missing_below(200), 67);
        assert_eq!(s.missing_below(64), 22);
        assert_eq!(s.missing_below(65), 22);
        assert_eq!(s.missing_below(0), 0);
        assert_eq!(s.missing_below(10_000), 67);
    }

    #[test]
    fn lost_is_what_went_in_and_never_came_out() {
        let a = Accounting {
            sent: 1000,
            produce_failed: 3,
            received: 990,
            dlq: 2,
            duplicates: 50,
        };
        // Duplicates never make up for a missing event.
        assert_eq!(a.lost(), 5);
        let all = Accounting {
            sent: 10,
            received: 10,
            duplicates: 4,
            ..Default::default()
        };
        assert_eq!(all.lost(), 0);
        let odd = Accounting {
            sent: 5,
            received: 7,
            ..Default::default()
        };
        assert_eq!(odd.lost(), 0);
    }
}
