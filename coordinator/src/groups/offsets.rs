//! Committed offsets, the pure part: the in-memory mirror of a group's
//! records in `__consumer_offsets`, the offsets pending in open
//! transactions, and how far each offsets partition has been read back.
//! No I/O: the caller writes and reads the log and reports what happened.
//!
//! The rule that keeps the mirror equal to the log: **the record with the
//! highest log offset wins** (what compaction keeps and what a reader in
//! log order ends with). Every committed entry remembers the log offset of
//! the record that set it, so entries may arrive in any order — an
//! acknowledged write, a transaction's commit, a read-back of the log —
//! and the result is the same.
//!
//! A transactional write's offsets stay *pending* under the transaction's
//! producer identity until its markers are written: then they become
//! committed (commit) or vanish (abort). While any are pending for a
//! partition, OffsetFetch for it answers UNSTABLE_OFFSET_COMMIT.
//!
//! When the coordinator cannot know what the log holds — after a restart,
//! or after a write whose outcome is unknown (a timeout) — the offsets
//! partition is *stale*: every group on it answers UNSTABLE until a
//! read_committed read of the partition has reached the high watermark seen
//! after that moment. Reaching it needs the last stable offset to pass it,
//! i.e. every transaction open in the partition then (a restart's Ongoing /
//! Prepare* transactions included) to have ended, which is exactly when
//! their offsets stop being in doubt.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xo_proto::Offset;

use super::codec::OffsetValue;
use crate::error::CoordinatorError;
use crate::txn_core::{self, AddPartitionsToTxn, Answer, Command};
use crate::txn_metadata::{ProducerIdentity, TopicPartition, TxnMetadata};

/// Identifies one write in flight (unique per coordinator process).
pub type WriteId = u64;

/// A committed offset and the log offset of the record that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub value: OffsetValue,
    pub log_offset: Offset,
}

/// How a write to `__consumer_offsets` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// In the log: record `i` of the batch is at `base_offset + i`.
    Appended { base_offset: Offset },
    /// The partition server refused it: nothing was appended.
    Refused,
    /// No answer (timeout, connection lost): it may or may not be in the log.
    Unknown,
}

/// What the caller must do after reporting a write: mark the group's
/// offsets partition stale when the outcome is unknown.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followup {
    Nothing,
    MarkStale,
}

/// The offsets one open transaction wrote for one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PendingTxn {
    transactional_id: String,
    /// Acknowledged writes (latest per partition).
    written: BTreeMap<TopicPartition, Committed>,
    /// Writes not answered yet.
    in_flight: BTreeMap<WriteId, Vec<(TopicPartition, OffsetValue)>>,
    /// Set when the transaction's markers were written while writes were
    /// still in flight (commit?): an append acknowledged after that landed
    /// before the marker (a marker closes the epoch for later writes), so it
    /// shares the transaction's fate.
    ended: Option<bool>,
}

impl PendingTxn {
    fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.written.keys().chain(self.in_flight.values().flatten().map(|(tp, _)| tp))
    }
}

/// One group's offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupOffsets {
    committed: BTreeMap<TopicPartition, Committed>,
    pending: HashMap<ProducerIdentity, PendingTxn>,
}

impl GroupOffsets {
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty() && self.pending.is_empty()
    }

    pub fn committed(&self) -> &BTreeMap<TopicPartition, Committed> {
        &self.committed
    }

    /// A record in the log (read back, or just acknowledged): it wins if it
    /// is later in the log than what set the entry. `None` is a tombstone.
    pub fn apply(&mut self, tp: TopicPartition, value: Option<OffsetValue>, log_offset: Offset) {
        let newer = self.committed.get(&tp).is_none_or(|c| c.log_offset < log_offset);
        if !newer {
            return;
        }
        match value {
            Some(value) => {
                self.committed.insert(tp, Committed { value, log_offset });
            }
            None => {
                self.committed.remove(&tp);
            }
        }
    }

    /// A plain (non-transactional) OffsetCommit's write ended.
    pub fn plain_write_done(
        &mut self,
        offsets: &[(TopicPartition, OffsetValue)],
        outcome: WriteOutcome,
    ) -> Followup {
        match outcome {
            WriteOutcome::Appended { base_offset } => {
                for (i, (tp, value)) in offsets.iter().enumerate() {
                    self.apply(tp.clone(), Some(value.clone()), base_offset.plus(i as i64));
                }
                Followup::Nothing
            }
            WriteOutcome::Refused => Followup::Nothing,
            WriteOutcome::Unknown => Followup::MarkStale,
        }
    }

    /// A TxnOffsetCommit's write is about to be sent: its offsets are
    /// pending (OffsetFetch says UNSTABLE) from now on.
    pub fn begin_txn_write(
        &mut self,
        txn: ProducerIdentity,
        transactional_id: &str,
        write: WriteId,
        offsets: Vec<(TopicPartition, OffsetValue)>,
    ) {
        let pending = self.pending.entry(txn).or_insert_with(|| PendingTxn {
            transactional_id: transactional_id.to_string(),
            ..PendingTxn::default()
        });
        assert_eq!(pending.transactional_id, transactional_id, "{txn} belongs to one id");
        let previous = pending.in_flight.insert(write, offsets);
        assert!(previous.is_none(), "write id {write} used twice");
    }

    /// That write ended.
    pub fn txn_write_done(
        &mut self,
        txn: ProducerIdentity,
        write: WriteId,
        outcome: WriteOutcome,
    ) -> Followup {
        let pending =
            self.pending.get_mut(&txn).expect("a write in flight keeps its pending entry");
        let offsets = pending.in_flight.remove(&write).expect("the write was begun");
        let followup = match (outcome, pending.ended) {
            (WriteOutcome::Appended { base_offset }, None) => {
                for (i, (tp, value)) in offsets.into_iter().enumerate() {
                    let log_offset = base_offset.plus(i as i64);
                    let newer = pending.written.get(&tp).is_none_or(|c| c.log_offset < log_offset);
                    if newer {
                        pending.written.insert(tp, Committed { value, log_offset });
                    }
                }
                Followup::Nothing
            }
            (WriteOutcome::Appended { base_offset }, Some(true)) => {
                for (i, (tp, value)) in offsets.into_iter().enumerate() {
                    self.apply(tp, Some(value), base_offset.plus(i as i64));
                }
                Followup::Nothing
            }
            (WriteOutcome::Appended { .. }, Some(false)) | (WriteOutcome::Refused, _) => {
                Followup::Nothing
            }
            // Only the log knows; a read-back of it will tell.
            (WriteOutcome::Unknown, _) => Followup::MarkStale,
        };
        self.forget_if_settled(txn);
        followup
    }

    /// The transaction's markers are written (in `__consumer_offsets` too):
    /// its acknowledged offsets become committed, or are dropped.
    pub fn txn_ended(&mut self, txn: ProducerIdentity, commit: bool) {
        let Some(pending) = self.pending.get_mut(&txn) else { return };
        let written = std::mem::take(&mut pending.written);
        pending.ended = Some(commit);
        if commit {
            for (tp, c) in written {
                self.apply(tp, Some(c.value), c.log_offset);
            }
        }
        self.forget_if_settled(txn);
    }

    /// Drops a transaction's pending offsets without applying them (the
    /// coordinator lost track of its end; the caller marks the partition
    /// stale so the log decides). Writes in flight keep their entry.
    pub fn drop_txn(&mut self, txn: ProducerIdentity) {
        if let Some(pending) = self.pending.get_mut(&txn) {
            pending.written.clear();
            pending.ended.get_or_insert(false);
        }
        self.forget_if_settled(txn);
    }

    fn forget_if_settled(&mut self, txn: ProducerIdentity) {
        let settled = self
            .pending
            .get(&txn)
            .is_some_and(|p| p.in_flight.is_empty() && (p.ended.is_some() || p.written.is_empty()));
        if settled {
            self.pending.remove(&txn);
        }
    }

    /// The open transactions holding offsets of this group, with their
    /// transactional id and whether a write of theirs is in flight.
    pub fn pending_txns(&self) -> impl Iterator<Item = (ProducerIdentity, &str, bool)> {
        self.pending
            .iter()
            .map(|(txn, p)| (*txn, p.transactional_id.as_str(), !p.in_flight.is_empty()))
    }

    pub fn has_pending(&self, txn: ProducerIdentity) -> bool {
        self.pending.contains_key(&txn)
    }

    /// Is any of `partitions` (all, if empty) pending in a transaction?
    pub fn is_unstable(&self, partitions: &[TopicPartition]) -> bool {
        let asked: BTreeSet<&TopicPartition> = partitions.iter().collect();
        self.pending
            .values()
            .flat_map(PendingTxn::partitions)
            .any(|tp| asked.is_empty() || asked.contains(tp))
    }

    /// OffsetFetch: the committed offset of each of `partitions` (every
    /// committed one, if empty), or UNSTABLE while any is pending.
    pub fn fetch(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<Committed>)>, Unstable> {
        if self.is_unstable(partitions) {
            return Err(Unstable);
        }
        if partitions.is_empty() {
            return Ok(self
                .committed
                .iter()
                .map(|(tp, c)| (tp.clone(), Some(c.clone())))
                .collect());
        }
        Ok(partitions.iter().map(|tp| (tp.clone(), self.committed.get(tp).cloned())).collect())
    }
}

/// OffsetFetch must answer UNSTABLE_OFFSET_COMMIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unstable;

/// Until when an offsets partition's groups are in doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stale {
    /// Until the high watermark the next read-back reports.
    NextHighWatermark,
    /// Until the read-back reaches this offset.
    Until(Offset),
}

/// How far one `__consumer_offsets` partition has been read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSync {
    /// Where the next read-back starts.
    read_to: Offset,
    stale: Option<Stale>,
    /// Counts [`PartitionSync::mark_stale`] calls, so a read-back sent before
    /// a mark does not clear it.
    marks: u64,
}

impl PartitionSync {
    /// A partition the coordinator has not read yet (at start): stale.
    pub fn unread() -> PartitionSync {
        PartitionSync { read_to: Offset::ZERO, stale: Some(Stale::NextHighWatermark), marks: 0 }
    }

    pub fn is_stale(&self) -> bool {
        self.stale.is_some()
    }

    pub fn read_to(&self) -> Offset {
        self.read_to
    }

    pub fn marks(&self) -> u64 {
        self.marks
    }

    /// The log may hold something the mirror does not.
    pub fn mark_stale(&mut self) {
        self.stale = Some(Stale::NextHighWatermark);
        self.marks += 1;
    }

    /// The log starts later than the read-back position (retention).
    pub fn skip_to(&mut self, log_start: Offset) {
        self.read_to = self.read_to.max(log_start);
    }

    /// A read-back sent when [`PartitionSync::marks`] was `marks_before`
    /// applied every record below `next_offset`; the partition's high
    /// watermark was `high_watermark`. Returns whether it is fresh now.
    pub fn read_done(
        &mut self,
        marks_before: u64,
        next_offset: Offset,
        high_watermark: Offset,
    ) -> bool {
        self.read_to = self.read_to.max(next_offset);
        if self.marks == marks_before {
            if self.stale == Some(Stale::NextHighWatermark) {
                self.stale = Some(Stale::Until(high_watermark));
            }
            if let Some(Stale::Until(target)) = self.stale
                && self.read_to >= target
            {
                self.stale = None;
            }
        }
        !self.is_stale()
    }

    /// The `__consumer_offsets` topic does not exist: nothing to read.
    pub fn no_topic(&mut self, marks_before: u64) {
        if self.marks == marks_before {
            self.read_to = Offset::ZERO;
            self.stale = None;
        }
    }
}

/// TxnOffsetCommit's transaction check, on a snapshot of the producer's
/// record: its current identity must be `who`, with an `Ongoing`
/// transaction that already contains `partition` (AddOffsetsToTxn). The
/// refusals are txn_core's own for AddPartitionsToTxn (fenced, unknown id,
/// concurrent, ...), asked on a copy; a partition not yet in the
/// transaction is INVALID_TXN_STATE.
pub fn check_txn(
    meta: Option<TxnMetadata>,
    who: ProducerIdentity,
    partition: &TopicPartition,
    now_ms: u64,
) -> Result<(), CoordinatorError> {
    let mut copy = meta;
    let request = AddPartitionsToTxn {
        producer_id: who.producer_id,
        producer_epoch: who.producer_epoch,
        partitions: BTreeSet::from([partition.clone()]),
    };
    match txn_core::add_partitions_to_txn(copy.as_mut(), &request, now_ms).as_slice() {
        [Command::Reply(Ok(Answer::PartitionsAdded))] => {}
        [Command::Reply(Err(e))] => return Err(*e),
        // It would have to open or extend the transaction.
        _ => return Err(CoordinatorError::InvalidTxnState),
    }
    // The rule the partition servers verify the write against, too.
    if txn_core::is_partition_in_ongoing_txn(
        copy.as_ref(),
        who.producer_id,
        who.producer_epoch,
        partition,
    ) {
        Ok(())
    } else {
        Err(CoordinatorError::InvalidTxnState)
    }
}

#[cfg(test)]
mod tests {
    use xo_proto::{ProducerEpoch, ProducerId};

    use super::*;

    fn tp(p: u32) -> TopicPartition {
        TopicPartition::new("in", p)
    }

    fn v(offset: i64) -> OffsetValue {
        OffsetValue { offset, metadata: String::new(), commit_time_ms: 1 }
    }

    fn txn(epoch: i16) -> ProducerIdentity {
        ProducerIdentity::new(ProducerId(7), ProducerEpoch(epoch))
    }

    fn offset_of(g: &GroupOffsets, p: u32) -> Option<i64> {
        g.fetch(&[tp(p)]).unwrap()[0].1.as_ref().map(|c| c.value.offset)
    }

    #[test]
    fn t10_the_latest_record_in_the_log_wins_whatever_the_order() {
        // Proves: applying records in any order ends with the value of the
        // one with the highest log offset; a tombstone deletes only if later.
        let records = [(5, Some(v(50))), (9, Some(v(90))), (7, Some(v(70)))];
        let mut a = GroupOffsets::default();
        let mut b = GroupOffsets::default();
        for (log, value) in records.iter().cloned() {
            a.apply(tp(0), value, Offset(log));
        }
        for (log, value) in records.iter().rev().cloned() {
            b.apply(tp(0), value, Offset(log));
        }
        assert_eq!(a, b);
        assert_eq!(offset_of(&a, 0), Some(90));
        a.apply(tp(0), None, Offset(8));
        assert_eq!(offset_of(&a, 0), Some(90), "an older tombstone does nothing");
        a.apply(tp(0), None, Offset(10));
        assert_eq!(offset_of(&a, 0), None);
    }

    #[test]
    fn t11_plain_commits_apply_only_once_acknowledged() {
        // Proves: an appended plain commit is committed at base + i; a
        // refused one changes nothing; an unknown outcome asks for a
        // read-back.
        let mut g = GroupOffsets::default();
        let offsets = vec![(tp(0), v(3)), (tp(1), v(4))];
        assert_eq!(g.plain_write_done(&offsets, WriteOutcome::Refused), Followup::Nothing);
        assert!(g.is_empty());
        let appended = WriteOutcome::Appended { base_offset: Offset(100) };
        assert_eq!(g.plain_write_done(&offsets, appended), Followup::Nothing);
        assert_eq!(g.committed()[&tp(1)].log_offset, Offset(101));
        assert_eq!(g.plain_write_done(&offsets, WriteOutcome::Unknown), Followup::MarkStale);
    }

    #[test]
    fn t12_transactional_offsets_are_pending_until_commit() {
        // Proves: offsets of an open transaction make OffsetFetch unstable
        // for their partitions (from the moment the write is begun) but not
        // for others; the commit makes them committed.
        let mut g = GroupOffsets::default();
        g.apply(tp(0), Some(v(1)), Offset(0));
        g.begin_txn_write(txn(0), "app", 1, vec![(tp(0), v(10))]);
        assert_eq!(g.fetch(&[tp(0)]), Err(Unstable), "in flight is already pending");
        let done = g.txn_write_done(txn(0), 1, WriteOutcome::Appended { base_offset: Offset(5) });
        assert_eq!(done, Followup::Nothing);
        assert_eq!(g.fetch(&[tp(0)]), Err(Unstable));
        assert_eq!(g.fetch(&[]), Err(Unstable), "all partitions includes the pending one");
        assert_eq!(offset_of(&g, 1), None, "another partition is stable");
        g.txn_ended(txn(0), true);
        assert_eq!(offset_of(&g, 0), Some(10));
        assert_eq!(g.committed()[&tp(0)].log_offset, Offset(5));
        assert!(!g.has_pending(txn(0)));
    }

    #[test]
    fn t13_an_abort_drops_pending_offsets() {
        // Proves: an aborted transaction's offsets never become committed
        // and OffsetFetch is stable again afterwards.
        let mut g = GroupOffsets::default();
        g.apply(tp(0), Some(v(1)), Offset(0));
        g.begin_txn_write(txn(0), "app", 1, vec![(tp(0), v(10))]);
        let _ = g.txn_write_done(txn(0), 1, WriteOutcome::Appended { base_offset: Offset(5) });
        g.txn_ended(txn(0), false);
        assert_eq!(offset_of(&g, 0), Some(1));
        assert!(!g.has_pending(txn(0)));
    }

    #[test]
    fn t14_a_write_acknowledged_after_the_markers_shares_the_outcome() {
        // Proves: a write still in flight when the transaction's markers are
        // written keeps the partition unstable; if it was appended it landed
        // before the marker, so it is committed on commit and dropped on
        // abort; a refused one is dropped.
        for commit in [true, false] {
            let mut g = GroupOffsets::default();
            g.begin_txn_write(txn(0), "app", 1, vec![(tp(0), v(10))]);
            g.begin_txn_write(txn(0), "app", 2, vec![(tp(1), v(20))]);
            let _ = g.txn_write_done(txn(0), 1, WriteOutcome::Appended { base_offset: Offset(3) });
            g.txn_ended(txn(0), commit);
            assert_eq!(g.fetch(&[tp(1)]), Err(Unstable), "write 2 is still in flight");
            let _ = g.txn_write_done(txn(0), 2, WriteOutcome::Appended { base_offset: Offset(4) });
            assert!(!g.has_pending(txn(0)));
            let expect = |o| if commit { Some(o) } else { None };
            assert_eq!((offset_of(&g, 0), offset_of(&g, 1)), (expect(10), expect(20)));
        }
        let mut g = GroupOffsets::default();
        g.begin_txn_write(txn(0), "app", 1, vec![(tp(0), v(10))]);
        g.txn_ended(txn(0), true);
        assert_eq!(g.txn_write_done(txn(0), 1, WriteOutcome::Refused), Followup::Nothing);
        assert!(g.is_empty());
    }

    #[test]
    fn t15_unknown_and_refused_transactional_writes() {
        // Proves: a refused write leaves no trace; an unknown one asks for a
        // read-back (the log decides) and is not applied on commit; a later
        // transaction of the same producer (next epoch) is separate.
        let mut g = GroupOffsets::default();
        g.begin_txn_write(txn(0), "app", 1, vec![(tp(0), v(10))]);
        assert_eq!(g.txn_write_done(txn(0), 1, WriteOutcome::Refused), Followup::Nothing);
        assert!(g.is_empty(), "nothing pending after a refusal");
        g.begin_txn_write(txn(1), "app", 2, vec![(tp(0), v(10))]);
        assert_eq!(g.txn_write_done(txn(1), 2, WriteOutcome::Unknown), Followup::MarkStale);
        g.txn_ended(txn(1), true);
        assert_eq!(offset_of(&g, 0), None);
        g.begin_txn_write(txn(2), "app", 3, vec![(tp(0), v(30))]);
        let _ = g.txn_write_done(txn(2), 3, WriteOutcome::Appended { base_offset: Offset(9) });
        g.txn_ended(txn(1), true);
        assert!(g.has_pending(txn(2)), "the end of another transaction does not touch it");
        g.drop_txn(txn(2));
        assert!(g.is_empty());
    }

    #[test]
    fn t16_a_plain_commit_after_a_transactional_one_wins_if_later_in_the_log() {
        // Proves: the log order decides between a transaction's offsets and
        // a plain commit of the same partition, as compaction would.
        let mut g = GroupOffsets::default();
        g.begin_txn_write(txn(0), "app", 1, vec![(tp(0), v(10))]);
        let _ = g.txn_write_done(txn(0), 1, WriteOutcome::Appended { base_offset: Offset(5) });
        let _ = g
            .plain_write_done(&[(tp(0), v(99))], WriteOutcome::Appended { base_offset: Offset(8) });
        g.txn_ended(txn(0), true);
        assert_eq!(offset_of(&g, 0), Some(99));
    }

    #[test]
    fn t20_a_partition_is_stale_until_read_past_the_high_watermark() {
        // Proves: an unread partition is stale; a read-back that stops at the
        // last stable offset below the high watermark leaves it stale; once
        // a read reaches the high watermark first reported it is fresh.
        let mut p = PartitionSync::unread();
        assert!(p.is_stale());
        let marks = p.marks();
        assert!(!p.read_done(marks, Offset(40), Offset(50)), "LSO 40 < HW 50");
        assert_eq!(p.read_to(), Offset(40));
        assert!(!p.read_done(marks, Offset(45), Offset(70)), "the target stays 50");
        assert!(p.read_done(marks, Offset(55), Offset(80)));
        assert!(!p.is_stale());
    }

    #[test]
    fn t21_a_mark_during_a_read_back_survives_it() {
        // Proves: a read-back begun before a mark_stale cannot clear it: the
        // next read takes a new target.
        let mut p = PartitionSync::unread();
        let before = p.marks();
        p.mark_stale();
        assert!(!p.read_done(before, Offset(100), Offset(100)));
        assert!(!p.read_done(p.marks(), Offset(100), Offset(120)));
        assert!(p.read_done(p.marks(), Offset(120), Offset(120)));
        let mut q = PartitionSync::unread();
        q.no_topic(q.marks());
        assert!(!q.is_stale());
        q.mark_stale();
        q.no_topic(0);
        assert!(q.is_stale(), "a no-topic answer from before the mark is stale news");
    }

    fn ongoing(partitions: &[TopicPartition]) -> TxnMetadata {
        let who = txn(0);
        let mut meta = TxnMetadata::new("app", 0);
        let t = meta.prepare_init(who, None, 60_000, 0).unwrap();
        meta.complete(t);
        let t = meta.prepare_add_partitions(&partitions.iter().cloned().collect(), 0).unwrap();
        meta.complete(t);
        meta
    }

    #[test]
    fn t30_transactional_commits_need_the_partition_in_an_ongoing_transaction() {
        // Proves: the offsets partition must be in the producer's Ongoing
        // transaction under its current identity; otherwise the refusal
        // says why (unknown id, fenced epoch, not added).
        let offsets = TopicPartition::new("__consumer_offsets", 3);
        let meta = ongoing(&[offsets.clone(), tp(0)]);
        assert_eq!(check_txn(Some(meta.clone()), txn(0), &offsets, 0), Ok(()));
        assert_eq!(
            check_txn(None, txn(0), &offsets, 0),
            Err(CoordinatorError::TransactionalIdNotFound)
        );
        let mut newer = meta.clone();
        newer.producer_epoch = ProducerEpoch(1);
        newer.txn_producer_epoch = ProducerEpoch(1);
        assert_eq!(
            check_txn(Some(newer), txn(0), &offsets, 0),
            Err(CoordinatorError::ProducerFenced)
        );
        assert_eq!(
            check_txn(Some(ongoing(&[tp(0)])), txn(0), &offsets, 0),
            Err(CoordinatorError::InvalidTxnState),
            "AddOffsetsToTxn was not called"
        );
    }
}
