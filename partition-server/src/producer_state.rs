//! Producer state of one partition: for every producer id that wrote here,
//! its epoch, the last few batches it appended and its open transaction.
//! This is what makes produce idempotent: a retried batch is recognised and
//! answered with its original offsets, a gap or reorder is refused, and a
//! fenced (older) epoch can never append.
//!
//! Pure logic: no I/O. The partition feeds it batch headers before and after
//! appending; recovery rebuilds it from a snapshot plus a replay of the log
//! written after the snapshot, never from memory.
//!
//! Why only [`BATCHES_RETAINED_MAX`] batches: a client keeps at most that many
//! batches in flight per partition, so a retry can only ever repeat one of the
//! last five. An older batch arriving again cannot be a retry of anything the
//! client still waits for, and is refused as out of order.

use std::collections::{BTreeMap, VecDeque};

use xo_proto::batch::BatchHeader;
use xo_proto::{Offset, ProducerEpoch, ProducerId, Sequence};

/// Batches remembered per producer, matching the client's in-flight bound.
pub const BATCHES_RETAINED_MAX: usize = 5;
/// Producers one partition tracks at once. A new producer beyond this is
/// refused rather than letting state grow without bound.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 100_000;

/// Offsets and sequences of one appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchFootprint {
    pub first_sequence: Sequence,
    pub last_sequence: Sequence,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: ProducerEpoch,
    /// Oldest first; at most [`BATCHES_RETAINED_MAX`].
    pub batches: VecDeque<BatchFootprint>,
    /// Milliseconds since the epoch of the producer's last write, for expiry.
    pub last_write_ms: i64,
    /// First offset of the producer's open transaction in this partition.
    pub txn_first_offset: Option<Offset>,
    /// Epoch of the coordinator that wrote this producer's last marker.
    pub coordinator_epoch: i32,
}

impl ProducerEntry {
    fn new(epoch: ProducerEpoch, now_ms: i64) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_RETAINED_MAX),
            last_write_ms: now_ms,
            txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }

    pub fn last_sequence(&self) -> Option<Sequence> {
        self.batches.back().map(|b| b.last_sequence)
    }
}

/// What to do with a batch that passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendDecision {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: append nothing and answer
    /// with the original offsets.
    Duplicate { first_offset: Offset, last_offset: Offset },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    #[error("producer {producer_id} epoch {got} is fenced: the partition has seen epoch {current}")]
    FencedEpoch { producer_id: ProducerId, current: ProducerEpoch, got: ProducerEpoch },
    #[error(
        "out of order sequence for producer {producer_id} epoch {epoch}: expected {expected}, got {got}"
    )]
    OutOfOrder { producer_id: ProducerId, epoch: ProducerEpoch, expected: Sequence, got: Sequence },
    #[error(
        "producer {producer_id} has no state in this partition (it never wrote here, or it was idle \
         longer than the producer expiry and its state was dropped) and its batch starts at sequence \
         {got}, not 0: re-initialise the producer to get a fresh sequence"
    )]
    UnknownProducer { producer_id: ProducerId, got: Sequence },
    #[error("partition already tracks {PRODUCERS_PER_PARTITION_MAX} producers")]
    TooManyProducers,
    #[error(
        "producer {producer_id} has an open transaction in this partition: a non-transactional \
         write from it is refused until the transaction ends"
    )]
    NonTransactionalWriteInTransaction { producer_id: ProducerId },
    #[error(
        "marker from coordinator epoch {got} for producer {producer_id}, but coordinator epoch \
         {current} already wrote here: the sender is a stale coordinator"
    )]
    CoordinatorFenced { producer_id: ProducerId, current: i32, got: i32 },
}

/// What a commit or abort marker does to the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerDecision {
    /// Append the marker: it ends the producer's transaction of that epoch.
    Append,
    /// The transaction of that epoch already ended here (the partition has
    /// moved past the epoch): a retried marker. Append nothing, succeed.
    AlreadyApplied,
}

/// A transaction that a marker ended in this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    /// Offset of the marker itself.
    pub marker_offset: Offset,
    pub committed: bool,
}

/// The producer state of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateMap {
    producers: BTreeMap<ProducerId, ProducerEntry>,
}

impl ProducerStateMap {
    pub fn new() -> ProducerStateMap {
        ProducerStateMap::default()
    }

    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProducerId, &ProducerEntry)> {
        self.producers.iter()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Decides whether a data batch may be appended. Does not change state;
    /// call [`ProducerStateMap::record_batch`] once it is in the log.
    pub fn check_batch(&self, header: &BatchHeader) -> Result<AppendDecision, ProducerStateError> {
        debug_assert!(!header.is_control(), "markers go through check_marker");
        if !header.is_idempotent() {
            return Ok(AppendDecision::Append);
        }
        let producer_id = header.producer_id;
        let first = header.base_sequence;
        let sequenced = header.is_sequenced();
        let Some(entry) = self.producers.get(&producer_id) else {
            if sequenced && first != Sequence(0) {
                return Err(ProducerStateError::UnknownProducer { producer_id, got: first });
            }
            if self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
                return Err(ProducerStateError::TooManyProducers);
            }
            return Ok(AppendDecision::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(ProducerStateError::FencedEpoch {
                producer_id,
                current: entry.epoch,
                got: header.producer_epoch,
            });
        }
        if !header.is_transactional() && entry.txn_first_offset.is_some() {
            return Err(ProducerStateError::NonTransactionalWriteInTransaction { producer_id });
        }
        if !sequenced {
            return Ok(AppendDecision::Append);
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch restarts the sequence.
            if first != Sequence(0) {
                return Err(ProducerStateError::OutOfOrder {
                    producer_id,
                    epoch: header.producer_epoch,
                    expected: Sequence(0),
                    got: first,
                });
            }
            return Ok(AppendDecision::Append);
        }
        let last = header.last_sequence();
        if let Some(original) =
            entry.batches.iter().find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(AppendDecision::Duplicate {
                first_offset: original.first_offset,
                last_offset: original.last_offset,
            });
        }
        let expected = entry.last_sequence().map_or(Sequence(0), Sequence::next);
        if first != expected {
            return Err(ProducerStateError::OutOfOrder {
                producer_id,
                epoch: entry.epoch,
                expected,
                got: first,
            });
        }
        Ok(AppendDecision::Append)
    }

    /// Records a data batch that is now in the log (its header carries the
    /// assigned base offset). Also used when replaying the log on recovery.
    pub fn record_batch(&mut self, header: &BatchHeader, now_ms: i64) {
        if !header.is_idempotent() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_epoch, now_ms));
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        assert_eq!(entry.epoch, header.producer_epoch, "a fenced batch reached the log");
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(header.base_offset);
        }
        if !header.is_sequenced() {
            return;
        }
        if entry.batches.len() == BATCHES_RETAINED_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchFootprint {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
        debug_assert!(entry.batches.len() <= BATCHES_RETAINED_MAX);
    }

    /// Decides what a marker for (`producer_id`, `epoch`) from a coordinator
    /// of `coordinator_epoch` does. Markers name the epoch the transaction's
    /// data was written with; once one is applied the partition accepts only
    /// later epochs from that producer, so a delayed write of the ended
    /// transaction is fenced instead of landing in the next one.
    pub fn check_marker(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        coordinator_epoch: i32,
    ) -> Result<MarkerDecision, ProducerStateError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(MarkerDecision::Append);
        };
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerStateError::CoordinatorFenced {
                producer_id,
                current: entry.coordinator_epoch,
                got: coordinator_epoch,
            });
        }
        // The partition has moved past `epoch` only through this very marker
        // (or a later one): data of a newer epoch is verified with the
        // coordinator, which refuses it until every marker of the older
        // transaction is acknowledged.
        if epoch < entry.epoch {
            return Ok(MarkerDecision::AlreadyApplied);
        }
        Ok(MarkerDecision::Append)
    }

    /// Records a marker now in the log at `marker_offset` (also used when
    /// replaying the log): ends the producer's open transaction, if any, and
    /// closes `epoch` for further writes.
    pub fn record_marker(
        &mut self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        coordinator_epoch: i32,
        committed: bool,
        marker_offset: Offset,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        let entry =
            self.producers.entry(producer_id).or_insert_with(|| ProducerEntry::new(epoch, now_ms));
        let first_offset = entry.txn_first_offset.take();
        assert!(epoch.0 < i16::MAX, "the coordinator never hands out epoch i16::MAX");
        let next_epoch = ProducerEpoch(epoch.0 + 1);
        if next_epoch > entry.epoch {
            entry.epoch = next_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(coordinator_epoch);
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
        first_offset.map(|first_offset| {
            assert!(first_offset < marker_offset, "a marker precedes its transaction's data");
            CompletedTxn { producer_id, first_offset, marker_offset, committed }
        })
    }

    /// Drops producers idle for longer than `idle_ms_max` that have no open
    /// transaction (an open transaction holds the LSO and must be ended by a
    /// marker, not forgotten). Returns the ids dropped.
    pub fn expire_idle(&mut self, now_ms: i64, idle_ms_max: i64) -> Vec<ProducerId> {
        let expired: Vec<ProducerId> = self
            .producers
            .iter()
            .filter(|(_, e)| e.txn_first_offset.is_none() && now_ms - e.last_write_ms > idle_ms_max)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.producers.remove(id);
        }
        expired
    }

    /// First offset of the oldest open transaction, which bounds the LSO.
    pub fn first_open_txn_offset(&self) -> Option<Offset> {
        self.producers.values().filter_map(|e| e.txn_first_offset).min()
    }

    pub(crate) fn insert_entry(&mut self, producer_id: ProducerId, entry: ProducerEntry) {
        assert!(entry.batches.len() <= BATCHES_RETAINED_MAX);
        self.producers.insert(producer_id, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_proto::batch::Attributes;
    use xo_proto::batch::header::HEADER_LEN;

    fn header(pid: i64, epoch: i16, first_seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: Offset(base_offset),
            batch_length: (HEADER_LEN - 12) as i32,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: Attributes::default(),
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: ProducerId(pid),
            producer_epoch: ProducerEpoch(epoch),
            base_sequence: Sequence(first_seq),
            record_count: count,
        }
    }

    /// Checks and, when accepted, records the batch: what a partition does.
    fn append(
        state: &mut ProducerStateMap,
        h: BatchHeader,
    ) -> Result<AppendDecision, ProducerStateError> {
        let decision = state.check_batch(&h)?;
        if decision == AppendDecision::Append {
            state.record_batch(&h, 0);
        }
        Ok(decision)
    }

    #[test]
    fn consecutive_batches_are_accepted() {
        // Proves the happy path: sequences 0..3, 3..5, 5 follow each other.
        let mut s = ProducerStateMap::new();
        assert_eq!(append(&mut s, header(7, 0, 0, 3, 0)), Ok(AppendDecision::Append));
        assert_eq!(append(&mut s, header(7, 0, 3, 2, 3)), Ok(AppendDecision::Append));
        assert_eq!(append(&mut s, header(7, 0, 5, 1, 5)), Ok(AppendDecision::Append));
        assert_eq!(s.get(ProducerId(7)).unwrap().last_sequence(), Some(Sequence(5)));
    }

    #[test]
    fn retry_of_any_of_the_last_five_is_a_duplicate_with_original_offsets() {
        // Proves dedupe answers with the offsets the original batch got.
        let mut s = ProducerStateMap::new();
        for i in 0..6 {
            append(&mut s, header(1, 0, i * 2, 2, 100 + i as i64 * 2)).unwrap();
        }
        // Batches 1..=5 are retained; batch 0 (seq 0..1) fell out of the window.
        for i in 1..6 {
            let d = s.check_batch(&header(1, 0, i * 2, 2, 999)).unwrap();
            let first = Offset(100 + i as i64 * 2);
            assert_eq!(
                d,
                AppendDecision::Duplicate { first_offset: first, last_offset: first.plus(1) }
            );
        }
        assert!(matches!(
            s.check_batch(&header(1, 0, 0, 2, 999)),
            Err(ProducerStateError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn gap_and_reorder_are_out_of_order() {
        // Proves a skipped or repeated-but-different sequence is refused.
        let mut s = ProducerStateMap::new();
        append(&mut s, header(1, 0, 0, 3, 0)).unwrap();
        let gap = s.check_batch(&header(1, 0, 4, 1, 0));
        assert_eq!(
            gap,
            Err(ProducerStateError::OutOfOrder {
                producer_id: ProducerId(1),
                epoch: ProducerEpoch(0),
                expected: Sequence(3),
                got: Sequence(4)
            })
        );
        // Same first sequence as a retained batch but a different length.
        assert!(matches!(
            s.check_batch(&header(1, 0, 0, 2, 0)),
            Err(ProducerStateError::OutOfOrder { .. })
        ));
        assert!(matches!(
            s.check_batch(&header(1, 0, 2, 1, 0)),
            Err(ProducerStateError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn older_epoch_is_fenced_and_new_epoch_restarts_at_zero() {
        // Proves epoch rules: lower fenced, higher must start at 0 and resets the window.
        let mut s = ProducerStateMap::new();
        append(&mut s, header(1, 3, 0, 2, 0)).unwrap();
        assert_eq!(
            s.check_batch(&header(1, 2, 2, 1, 0)),
            Err(ProducerStateError::FencedEpoch {
                producer_id: ProducerId(1),
                current: ProducerEpoch(3),
                got: ProducerEpoch(2)
            })
        );
        assert!(matches!(
            s.check_batch(&header(1, 4, 5, 1, 0)),
            Err(ProducerStateError::OutOfOrder { expected: Sequence(0), .. })
        ));
        assert_eq!(append(&mut s, header(1, 4, 0, 1, 2)), Ok(AppendDecision::Append));
        let e = s.get(ProducerId(1)).unwrap();
        assert_eq!((e.epoch, e.batches.len()), (ProducerEpoch(4), 1));
        // The old epoch's batch is no longer a "duplicate": it is fenced.
        assert!(matches!(
            s.check_batch(&header(1, 3, 0, 2, 0)),
            Err(ProducerStateError::FencedEpoch { .. })
        ));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        // Proves the batch after one ending at i32::MAX starts at 0, and a batch spanning the wrap works.
        let mut s = ProducerStateMap::new();
        s.insert_entry(
            ProducerId(1),
            ProducerEntry {
                epoch: ProducerEpoch(0),
                batches: VecDeque::from([BatchFootprint {
                    first_sequence: Sequence(i32::MAX - 9),
                    last_sequence: Sequence(i32::MAX - 2),
                    first_offset: Offset(0),
                    last_offset: Offset(7),
                }]),
                last_write_ms: 0,
                txn_first_offset: None,
                coordinator_epoch: -1,
            },
        );
        // Spans MAX-1, MAX, 0, 1.
        let spanning = header(1, 0, i32::MAX - 1, 4, 8);
        assert_eq!(spanning.last_sequence(), Sequence(1));
        assert_eq!(append(&mut s, spanning), Ok(AppendDecision::Append));
        assert_eq!(append(&mut s, header(1, 0, 2, 1, 12)), Ok(AppendDecision::Append));
        assert_eq!(
            s.check_batch(&header(1, 0, i32::MAX - 1, 4, 0)),
            Ok(AppendDecision::Duplicate { first_offset: Offset(8), last_offset: Offset(11) })
        );
    }

    #[test]
    fn unknown_producer_must_start_at_zero() {
        // Proves a producer with no state (never seen or expired) gets a clear error unless it starts fresh.
        let s = ProducerStateMap::new();
        assert_eq!(s.check_batch(&header(9, 0, 0, 1, 0)), Ok(AppendDecision::Append));
        assert_eq!(
            s.check_batch(&header(9, 0, 17, 1, 0)),
            Err(ProducerStateError::UnknownProducer {
                producer_id: ProducerId(9),
                got: Sequence(17)
            })
        );
    }

    #[test]
    fn idle_producers_expire_and_then_get_a_clear_error() {
        // Proves expiry drops idle producers (not those with an open transaction) and a later write is refused.
        let mut s = ProducerStateMap::new();
        let h = header(1, 0, 0, 1, 0);
        s.record_batch(&h, 1_000);
        let mut txn = header(2, 0, 0, 1, 1);
        txn.attributes = Attributes::new(xo_proto::batch::Compression::None, true, false);
        s.record_batch(&txn, 1_000);
        assert!(s.expire_idle(5_000, 10_000).is_empty());
        assert_eq!(s.expire_idle(20_000, 10_000), vec![ProducerId(1)]);
        assert!(s.get(ProducerId(2)).is_some(), "open transaction keeps its producer");
        assert!(matches!(
            s.check_batch(&header(1, 0, 1, 1, 2)),
            Err(ProducerStateError::UnknownProducer { .. })
        ));
    }

    #[test]
    fn unsequenced_transactional_batches_are_epoch_checked_but_not_deduped() {
        // Proves coordinator-written offset commits (pid, epoch, no sequence) open the txn, are fenced by epoch, and never enter the dedupe window.
        let mut s = ProducerStateMap::new();
        let mut h = header(4, 2, -1, 1, 10);
        h.attributes = Attributes::new(xo_proto::batch::Compression::None, true, false);
        assert_eq!(append(&mut s, h), Ok(AppendDecision::Append));
        assert_eq!(
            append(&mut s, h),
            Ok(AppendDecision::Append),
            "same bytes again is a new write"
        );
        let e = s.get(ProducerId(4)).unwrap();
        assert!(e.batches.is_empty());
        assert_eq!(e.txn_first_offset, Some(Offset(10)));
        let mut old = header(4, 1, -1, 1, 11);
        old.attributes = h.attributes;
        assert!(matches!(s.check_batch(&old), Err(ProducerStateError::FencedEpoch { .. })));
    }

    #[test]
    fn non_idempotent_batches_skip_every_check() {
        // Proves pid -1 batches are appended without state.
        let mut s = ProducerStateMap::new();
        let h = header(-1, -1, -1, 3, 0);
        assert_eq!(append(&mut s, h), Ok(AppendDecision::Append));
        assert_eq!(append(&mut s, h), Ok(AppendDecision::Append));
        assert!(s.is_empty());
    }

    #[test]
    fn transactional_batch_opens_a_transaction_bounding_the_lso() {
        // Proves the first transactional batch of a producer marks the txn start.
        let mut s = ProducerStateMap::new();
        let mut a = header(1, 0, 0, 2, 10);
        a.attributes = Attributes::new(xo_proto::batch::Compression::None, true, false);
        let mut b = header(1, 0, 2, 2, 14);
        b.attributes = a.attributes;
        s.record_batch(&a, 0);
        s.record_batch(&b, 0);
        assert_eq!(s.first_open_txn_offset(), Some(Offset(10)));
    }
}
