//! Newtypes for the numbers that must never be mixed up: a log offset is not
//! a sequence number, and a producer id is not an epoch.

use std::fmt;

/// Position of a record in a partition's log. Offsets start at 0 and grow by
/// one per record; control records (commit/abort markers) take offsets too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    pub fn plus(self, delta: i64) -> Offset {
        Offset(self.0 + delta)
    }
}

/// Identity of an idempotent or transactional producer, handed out by the
/// coordinator. `ProducerId::NONE` (-1) marks a batch from a plain producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub i64);

impl ProducerId {
    pub const NONE: ProducerId = ProducerId(-1);

    pub fn is_none(self) -> bool {
        self.0 < 0
    }
}

/// Generation of a producer id. A higher epoch fences every lower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerEpoch(pub i16);

impl ProducerEpoch {
    pub const NONE: ProducerEpoch = ProducerEpoch(-1);
}

/// Per-partition sequence number of a producer's record. Sequences wrap
/// from `i32::MAX` back to 0, as in Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence(pub i32);

impl Sequence {
    pub const NONE: Sequence = Sequence(-1);

    /// The sequence `delta` records after this one, wrapping at `i32::MAX`.
    pub fn plus(self, delta: i32) -> Sequence {
        debug_assert!(self.0 >= 0 && delta >= 0);
        let sum = self.0 as i64 + delta as i64;
        Sequence((sum % (i32::MAX as i64 + 1)) as i32)
    }

    pub fn next(self) -> Sequence {
        self.plus(1)
    }
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_inner!(Offset, ProducerId, ProducerEpoch, Sequence);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(Sequence(i32::MAX).next(), Sequence(0));
        assert_eq!(Sequence(i32::MAX - 1).plus(3), Sequence(1));
        assert_eq!(Sequence(5).plus(0), Sequence(5));
    }
}
