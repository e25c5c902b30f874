//! What the coordinator knows about one transactional id, and the only way
//! to change it: prepare a transition (which marks it pending and returns
//! the full next record), persist that record, then complete it. A second
//! prepare while one is pending is refused, so two requests can never race
//! on the same transactional id between "decided" and "durable".
//!
//! Three producer identities live here, and keeping them apart is the point
//! of this record:
//! - **current** (`producer_id`, `producer_epoch`): the identity the live
//!   producer must use for its next request. Every older one is fenced.
//! - **last** (`last_producer_*`): the identity the holder of *current* had
//!   before it was handed *current*. A request carrying it comes from that
//!   holder (retrying after a lost reply) and is answered with *current*
//!   (KIP-360). `NONE` when nobody may claim *current* that way: a new
//!   producer instance got it, or the coordinator fenced the old producer.
//! - **txn** (`txn_producer_*`): the identity the open or most recent
//!   transaction's data batches carry. Its markers carry the same identity,
//!   so (producer id, epoch) names exactly one transaction, on the wire and
//!   in every partition's log.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use xo_proto::{ProducerEpoch, ProducerId};

use crate::error::CoordinatorError;
use crate::txn_state::TxnState;

/// The highest epoch ever handed to a producer (Kafka's limit too). Any bump
/// past it allocates a new producer id with epoch 0 instead, so no stored or
/// handed-out epoch ever exceeds it and `i16::MAX` stays unused headroom.
pub const PRODUCER_EPOCH_MAX: ProducerEpoch = ProducerEpoch(i16::MAX - 1);

/// Most partitions one transaction may touch. Bounds the marker fan-out of
/// one commit and the size of the stored record (it lists them all).
pub const TXN_PARTITIONS_MAX: usize = 1000;

/// A partition of a topic, as the coordinator names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A producer id with one of its epochs: one producer session, and — since
/// every transaction end bumps the epoch — at most one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerIdentity {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
}

impl ProducerIdentity {
    pub const NONE: ProducerIdentity =
        ProducerIdentity { producer_id: ProducerId::NONE, producer_epoch: ProducerEpoch::NONE };

    pub fn new(producer_id: ProducerId, producer_epoch: ProducerEpoch) -> ProducerIdentity {
        ProducerIdentity { producer_id, producer_epoch }
    }

    fn from_parts(producer_id: ProducerId, producer_epoch: ProducerEpoch) -> Option<Self> {
        let identity = ProducerIdentity::new(producer_id, producer_epoch);
        (identity != ProducerIdentity::NONE).then_some(identity)
    }
}

impl fmt::Display for ProducerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.producer_id, self.producer_epoch)
    }
}

// The proto newtypes carry no serde (proto is a pure codec); these mirror
// them for the stored record only.
#[derive(Serialize, Deserialize)]
#[serde(remote = "ProducerId")]
struct ProducerIdDef(i64);

#[derive(Serialize, Deserialize)]
#[serde(remote = "ProducerEpoch")]
struct ProducerEpochDef(i16);

/// Everything the coordinator knows about one transactional id. This is the
/// record stored in sled (serde), one per transactional id.
///
/// Fields are public for reading (describe, tests, storage); change them
/// only through `prepare_*` → persist → [`TxnMetadata::complete`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    /// Current identity: what the live producer uses (see the module doc).
    #[serde(with = "ProducerIdDef")]
    pub producer_id: ProducerId,
    #[serde(with = "ProducerEpochDef")]
    pub producer_epoch: ProducerEpoch,
    /// Last identity: the one the holder of the current identity had before
    /// (retried InitProducerId / EndTxn, KIP-360). Both `NONE` when nobody
    /// may claim the current identity by retrying (new instance, fence).
    #[serde(with = "ProducerIdDef")]
    pub last_producer_id: ProducerId,
    #[serde(with = "ProducerEpochDef")]
    pub last_producer_epoch: ProducerEpoch,
    /// Transaction identity: what the open or last transaction's batches and
    /// markers carry. Equals the current identity while `Ongoing`; falls
    /// behind it when the transaction ends (the end bumps the epoch).
    #[serde(with = "ProducerIdDef")]
    pub txn_producer_id: ProducerId,
    #[serde(with = "ProducerEpochDef")]
    pub txn_producer_epoch: ProducerEpoch,
    pub state: TxnState,
    /// The state a prepared, not yet persisted, transition is moving to (for
    /// a fence: `PrepareEpochFence`). In memory only: a loaded record has
    /// nothing pending.
    #[serde(skip)]
    pub pending: Option<TxnState>,
    /// Partitions of the open transaction (empty when none is open).
    pub partitions: BTreeSet<TopicPartition>,
    /// How long a transaction may stay `Ongoing` before the coordinator
    /// aborts it; chosen by the producer at InitProducerId.
    pub timeout_ms: u32,
    /// When the open or last transaction added its first partition.
    pub txn_start_ms: Option<u64>,
    /// Last persisted change; idle expiry counts from here.
    pub last_update_ms: u64,
}

/// A prepared change: the full record to persist, and what it moves from.
/// Returned by `prepare_*`; hand it to [`TxnMetadata::complete`] once
/// [`TxnTransition::next`] is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnTransition {
    pub(crate) from: TxnState,
    /// The pending mark set by the prepare: `next.state`, except for a fence
    /// (`PrepareEpochFence` while the `PrepareAbort` record is written).
    pub(crate) pending: TxnState,
    pub(crate) next: TxnMetadata,
}

impl TxnTransition {
    /// The record to persist (flushed) before calling `complete`. If its
    /// state is `Dead`, persisting means deleting the stored record.
    pub fn next(&self) -> &TxnMetadata {
        &self.next
    }

    pub fn from(&self) -> TxnState {
        self.from
    }

    pub fn to(&self) -> TxnState {
        self.next.state
    }
}

impl TxnMetadata {
    /// A record for a transactional id the coordinator has never seen: no
    /// producer id yet, `Empty`. It lives in memory only, until the first
    /// InitProducerId's transition is persisted; other requests treat it as
    /// not found.
    pub fn new(transactional_id: impl Into<String>, now_ms: u64) -> TxnMetadata {
        TxnMetadata {
            transactional_id: transactional_id.into(),
            producer_id: ProducerId::NONE,
            producer_epoch: ProducerEpoch::NONE,
            last_producer_id: ProducerId::NONE,
            last_producer_epoch: ProducerEpoch::NONE,
            txn_producer_id: ProducerId::NONE,
            txn_producer_epoch: ProducerEpoch::NONE,
            state: TxnState::Empty,
            pending: None,
            partitions: BTreeSet::new(),
            timeout_ms: 0,
            txn_start_ms: None,
            last_update_ms: now_ms,
        }
    }

    /// False for a record made by [`TxnMetadata::new`] that no
    /// InitProducerId has completed on yet.
    pub fn has_producer_id(&self) -> bool {
        !self.producer_id.is_none()
    }

    pub fn current(&self) -> ProducerIdentity {
        ProducerIdentity::new(self.producer_id, self.producer_epoch)
    }

    pub fn last(&self) -> Option<ProducerIdentity> {
        ProducerIdentity::from_parts(self.last_producer_id, self.last_producer_epoch)
    }

    pub fn txn(&self) -> Option<ProducerIdentity> {
        ProducerIdentity::from_parts(self.txn_producer_id, self.txn_producer_epoch)
    }

    // ---- prepare ------------------------------------------------------

    /// InitProducerId: → `Empty` with identity `next`; `last` is who may
    /// claim it by retrying. Clears any finished transaction.
    pub fn prepare_init(
        &mut self,
        next: ProducerIdentity,
        last: Option<ProducerIdentity>,
        timeout_ms: u32,
        now_ms: u64,
    ) -> Result<TxnTransition, CoordinatorError> {
        let mut record = self.next_record(TxnState::Empty, now_ms);
        record.set_current(next);
        record.set_last(last);
        record.set_txn(None);
        record.partitions.clear();
        record.txn_start_ms = None;
        record.timeout_ms = timeout_ms;
        self.prepare(TxnState::Empty, record)
    }

    /// AddPartitionsToTxn: → `Ongoing` with `added` joined to the open
    /// transaction, or starting one (its identity is the current one).
    pub fn prepare_add_partitions(
        &mut self,
        added: &BTreeSet<TopicPartition>,
        now_ms: u64,
    ) -> Result<TxnTransition, CoordinatorError> {
        let mut record = self.next_record(TxnState::Ongoing, now_ms);
        if self.state != TxnState::Ongoing {
            record.partitions.clear();
            record.txn_start_ms = Some(record.last_update_ms);
            record.set_txn(Some(self.current()));
        }
        record.partitions.extend(added.iter().cloned());
        if record.partitions.len() > TXN_PARTITIONS_MAX {
            return Err(CoordinatorError::TooManyPartitions);
        }
        self.prepare(TxnState::Ongoing, record)
    }

    /// EndTxn from the producer: `Ongoing` → `PrepareCommit`/`PrepareAbort`.
    /// The producer is handed `next` (the bumped identity) in the reply, so
    /// it becomes current now and the transaction's identity becomes last.
    pub fn prepare_end(
        &mut self,
        commit: bool,
        next: ProducerIdentity,
        now_ms: u64,
    ) -> Result<TxnTransition, CoordinatorError> {
        let to = TxnState::prepare_for(commit);
        let mut record = self.next_record(to, now_ms);
        record.set_current(next);
        record.set_last(self.txn());
        self.prepare(to, record)
    }

    /// Coordinator-initiated abort of the open transaction (timeout, or a
    /// new InitProducerId): `Ongoing` → `PrepareEpochFence` → `PrepareAbort`,
    /// in one write. `next` is the bumped identity that fences the old
    /// producer; `entitled` is who may claim it (see `last`), if anyone.
    pub fn prepare_fence(
        &mut self,
        next: ProducerIdentity,
        entitled: Option<ProducerIdentity>,
        now_ms: u64,
    ) -> Result<TxnTransition, CoordinatorError> {
        let mut record = self.next_record(TxnState::PrepareAbort, now_ms);
        record.set_current(next);
        record.set_last(entitled);
        self.prepare(TxnState::PrepareEpochFence, record)
    }

    /// Every partition acknowledged its marker: `Prepare*` → `Complete*`.
    pub fn prepare_complete(&mut self, now_ms: u64) -> Result<TxnTransition, CoordinatorError> {
        let to = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        let mut record = self.next_record(to, now_ms);
        record.partitions.clear();
        self.prepare(to, record)
    }

    /// Idle expiry: → `Dead` (the stored record is deleted).
    pub fn prepare_dead(&mut self, now_ms: u64) -> Result<TxnTransition, CoordinatorError> {
        let mut record = self.next_record(TxnState::Dead, now_ms);
        record.partitions.clear();
        self.prepare(TxnState::Dead, record)
    }

    /// The next record starts as a copy of this one in state `to`.
    fn next_record(&self, to: TxnState, now_ms: u64) -> TxnMetadata {
        let mut record = self.clone();
        record.state = to;
        record.pending = None;
        // Wall clocks step back; a record's own clock does not.
        record.last_update_ms = now_ms.max(self.last_update_ms);
        record
    }

    fn prepare(
        &mut self,
        mark: TxnState,
        record: TxnMetadata,
    ) -> Result<TxnTransition, CoordinatorError> {
        if self.pending.is_some() {
            return Err(CoordinatorError::ConcurrentTransactions);
        }
        self.state.transition(mark)?;
        if mark != record.state {
            mark.transition(record.state)?;
        }
        // Check the record right before it goes to disk (paired with the
        // check after loading, in `txn_core::resume`).
        if let Err(reason) = record.check_invariants() {
            panic!("prepared an invalid record ({reason}): {record:?} from {self:?}");
        }
        assert_identity_step(self, &record);
        self.pending = Some(mark);
        Ok(TxnTransition { from: self.state, pending: mark, next: record })
    }

    // ---- complete / abort ----------------------------------------------

    /// Applies a transition whose record the caller has persisted. Passing
    /// any transition but the one the pending prepare returned is a bug.
    pub fn complete(&mut self, transition: TxnTransition) {
        assert_eq!(
            self.pending,
            Some(transition.pending),
            "complete() of {}: transition does not match the pending prepare",
            self.transactional_id
        );
        assert_eq!(self.state, transition.from, "record changed while a transition was pending");
        assert_eq!(self.transactional_id, transition.next.transactional_id);
        assert!(transition.next.pending.is_none());
        assert_identity_step(self, &transition.next);
        *self = transition.next;
    }

    /// The persist of the pending transition failed: forget it; the record
    /// is as before the prepare and the request is answered with a
    /// retriable error. If the failed write did reach disk after all, the
    /// stored record is a legal successor of this one: the next successful
    /// write replaces it (records are stored whole), and a crash before that
    /// loads it — both states clients already retry against.
    pub fn abort_pending(&mut self) {
        assert!(self.pending.is_some(), "abort_pending() with nothing pending");
        self.pending = None;
    }

    // ---- invariants ------------------------------------------------------

    /// The rules every stored record obeys. Checked before a record is
    /// persisted and after one is loaded; `Err` names the broken rule.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        if self.pending.is_some() {
            return Err("a record to persist has nothing pending");
        }
        if self.partitions.len() > TXN_PARTITIONS_MAX {
            return Err("more than TXN_PARTITIONS_MAX partitions");
        }
        if !self.has_producer_id() {
            let untouched = self.producer_epoch == ProducerEpoch::NONE
                && self.last().is_none()
                && self.txn().is_none()
                && self.partitions.is_empty();
            return match self.state {
                TxnState::Empty | TxnState::Dead if untouched => Ok(()),
                _ => Err("a record without producer id must be an untouched Empty (or Dead)"),
            };
        }
        let current = self.current();
        for identity in [Some(current), self.last(), self.txn()].into_iter().flatten() {
            if identity.producer_id.is_none()
                || identity.producer_epoch.0 < 0
                || identity.producer_epoch > PRODUCER_EPOCH_MAX
            {
                return Err("identity out of range (id >= 0, 0 <= epoch <= PRODUCER_EPOCH_MAX)");
            }
        }
        if self.last() == Some(current) {
            return Err("last identity equals current");
        }
        let txn_behind = self.txn().is_some() && self.txn() != Some(current);
        match self.state {
            TxnState::Empty => {
                if !self.partitions.is_empty()
                    || self.txn().is_some()
                    || self.txn_start_ms.is_some()
                {
                    return Err("Empty has no transaction");
                }
            }
            TxnState::Ongoing => {
                if self.partitions.is_empty()
                    || self.txn() != Some(current)
                    || self.txn_start_ms.is_none()
                {
                    return Err("Ongoing has partitions, a start and the current identity");
                }
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                if self.partitions.is_empty() || !txn_behind || self.txn_start_ms.is_none() {
                    return Err("Prepare* has partitions, a start and a bumped current identity");
                }
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if !self.partitions.is_empty() || !txn_behind || self.txn_start_ms.is_none() {
                    return Err("Complete* has no partitions and a bumped current identity");
                }
            }
            TxnState::PrepareEpochFence => return Err("PrepareEpochFence is never stored"),
            TxnState::Dead => {
                if !self.partitions.is_empty() {
                    return Err("Dead has no partitions");
                }
            }
        }
        Ok(())
    }
}

/// The current identity only moves forward: unchanged, epoch + 1, or a
/// different (new) producer id at epoch 0.
fn assert_identity_step(before: &TxnMetadata, after: &TxnMetadata) {
    let (a, b) = (before.current(), after.current());
    let ok = a == b
        || (a.producer_id == b.producer_id
            && a.producer_epoch.0.checked_add(1) == Some(b.producer_epoch.0))
        || (a.producer_id != b.producer_id && b.producer_epoch == ProducerEpoch(0));
    assert!(ok, "producer identity may not move from {a} to {b}");
}

impl TxnMetadata {
    fn set_current(&mut self, identity: ProducerIdentity) {
        self.producer_id = identity.producer_id;
        self.producer_epoch = identity.producer_epoch;
    }

    fn set_last(&mut self, identity: Option<ProducerIdentity>) {
        let identity = identity.unwrap_or(ProducerIdentity::NONE);
        self.last_producer_id = identity.producer_id;
        self.last_producer_epoch = identity.producer_epoch;
    }

    fn set_txn(&mut self, identity: Option<ProducerIdentity>) {
        let identity = identity.unwrap_or(ProducerIdentity::NONE);
        self.txn_producer_id = identity.producer_id;
        self.txn_producer_epoch = identity.producer_epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn id(pid: i64, epoch: i16) -> ProducerIdentity {
        ProducerIdentity::new(ProducerId(pid), ProducerEpoch(epoch))
    }

    fn parts(names: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
        names.iter().map(|&(t, p)| TopicPartition::new(t, p)).collect()
    }

    /// A persisted `Empty` record at identity 7/0.
    fn initialised() -> TxnMetadata {
        let mut meta = TxnMetadata::new("app-1", T0);
        let t = meta.prepare_init(id(7, 0), None, 60_000, T0).unwrap();
        meta.complete(t);
        meta
    }

    #[test]
    fn t10_prepare_marks_pending_and_complete_applies_the_record() {
        // Proves: prepare leaves the record as it was except for the pending
        // mark, and complete replaces it with exactly the prepared record.
        let mut meta = initialised();
        let before = meta.clone();
        let t = meta.prepare_add_partitions(&parts(&[("a", 0)]), T0 + 5).unwrap();
        assert_eq!(meta.pending, Some(TxnState::Ongoing));
        assert_eq!(meta.state, TxnState::Empty);
        assert_eq!(TxnMetadata { pending: None, ..meta.clone() }, before);
        assert_eq!((t.from(), t.to()), (TxnState::Empty, TxnState::Ongoing));
        let next = t.next().clone();
        assert_eq!(next.txn(), Some(id(7, 0)));
        assert_eq!(next.txn_start_ms, Some(T0 + 5));
        meta.complete(t);
        assert_eq!(meta, next);
        assert_eq!(meta.pending, None);
    }

    #[test]
    fn t11_second_prepare_while_pending_is_concurrent_transactions() {
        // Proves: a pending transition blocks every other prepare with the
        // retriable CONCURRENT_TRANSACTIONS, and leaves the first intact.
        let mut meta = initialised();
        let first = meta.prepare_add_partitions(&parts(&[("a", 0)]), T0 + 1).unwrap();
        let second = meta.prepare_add_partitions(&parts(&[("b", 0)]), T0 + 2);
        assert_eq!(second, Err(CoordinatorError::ConcurrentTransactions));
        assert!(CoordinatorError::ConcurrentTransactions.is_retriable());
        assert_eq!(meta.prepare_dead(T0 + 2), Err(CoordinatorError::ConcurrentTransactions));
        assert_eq!(meta.pending, Some(TxnState::Ongoing));
        meta.complete(first);
        assert_eq!(meta.partitions, parts(&[("a", 0)]));
    }

    #[test]
    fn t12_abort_pending_rolls_back_and_allows_a_new_prepare() {
        // Proves: after a failed persist, abort_pending leaves the record
        // exactly as before the prepare, and the next prepare works.
        let mut meta = initialised();
        let before = meta.clone();
        let _lost = meta.prepare_add_partitions(&parts(&[("a", 0)]), T0 + 1).unwrap();
        meta.abort_pending();
        assert_eq!(meta, before);
        let t = meta.prepare_add_partitions(&parts(&[("b", 1)]), T0 + 2).unwrap();
        meta.complete(t);
        assert_eq!(meta.partitions, parts(&[("b", 1)]));
    }

    #[test]
    fn t13_illegal_prepare_is_invalid_txn_state_and_sets_nothing() {
        // Proves: a prepare the state machine forbids (complete from Empty,
        // end from Empty) is refused with INVALID_TXN_STATE, nothing pending.
        let mut meta = initialised();
        assert_eq!(meta.prepare_complete(T0), Err(CoordinatorError::InvalidTxnState));
        assert_eq!(meta.prepare_end(true, id(7, 1), T0), Err(CoordinatorError::InvalidTxnState));
        assert_eq!(meta.pending, None);
    }

    #[test]
    fn t14_fence_is_pending_as_prepare_epoch_fence_and_lands_in_prepare_abort() {
        // Proves: a fence marks PrepareEpochFence while its PrepareAbort
        // record (bumped epoch, same transaction identity) is written.
        let mut meta = initialised();
        let t = meta.prepare_add_partitions(&parts(&[("a", 0)]), T0).unwrap();
        meta.complete(t);
        let t = meta.prepare_fence(id(7, 1), None, T0 + 9).unwrap();
        assert_eq!(meta.pending, Some(TxnState::PrepareEpochFence));
        assert_eq!(t.to(), TxnState::PrepareAbort);
        meta.complete(t);
        assert_eq!(meta.state, TxnState::PrepareAbort);
        assert_eq!((meta.current(), meta.txn(), meta.last()), (id(7, 1), Some(id(7, 0)), None));
    }

    #[test]
    fn t15_adding_past_the_partition_bound_is_refused() {
        // Proves: a transaction can never list more than TXN_PARTITIONS_MAX.
        let mut meta = initialised();
        let many: BTreeSet<_> =
            (0..=TXN_PARTITIONS_MAX as u32).map(|p| TopicPartition::new("t", p)).collect();
        assert_eq!(
            meta.prepare_add_partitions(&many, T0),
            Err(CoordinatorError::TooManyPartitions)
        );
        assert_eq!(meta.pending, None);
    }

    #[test]
    #[should_panic(expected = "does not match the pending prepare")]
    fn t16_complete_without_prepare_is_a_bug() {
        // Proves: completing a transition that is not the pending one panics.
        let mut meta = initialised();
        let mut other = meta.clone();
        let t = other.prepare_add_partitions(&parts(&[("a", 0)]), T0).unwrap();
        meta.complete(t);
    }

    #[test]
    fn t17_serde_round_trip_keeps_everything_but_pending() {
        // Proves: the stored form restores the record field for field, and a
        // loaded record never carries a pending mark.
        let mut meta = initialised();
        let t = meta.prepare_add_partitions(&parts(&[("a", 0), ("b", 3)]), T0 + 1).unwrap();
        meta.complete(t);
        let t = meta.prepare_end(true, id(7, 1), T0 + 2).unwrap();
        let stored = serde_json::to_string(t.next()).unwrap();
        let loaded: TxnMetadata = serde_json::from_str(&stored).unwrap();
        assert_eq!(&loaded, t.next());
        assert_eq!(loaded.check_invariants(), Ok(()));
        let pending_copy = meta.clone();
        let loaded: TxnMetadata =
            serde_json::from_str(&serde_json::to_string(&pending_copy).unwrap()).unwrap();
        assert_eq!(loaded.pending, None);
    }

    #[test]
    fn t18_invariants_reject_impossible_records() {
        // Proves: loaded records that could never have been written are
        // caught (stored PrepareEpochFence, Ongoing without partitions,
        // epoch above PRODUCER_EPOCH_MAX).
        let meta = initialised();
        let fence = TxnMetadata { state: TxnState::PrepareEpochFence, ..meta.clone() };
        assert!(fence.check_invariants().is_err());
        let ongoing = TxnMetadata { state: TxnState::Ongoing, ..meta.clone() };
        assert!(ongoing.check_invariants().is_err());
        let epoch = TxnMetadata { producer_epoch: ProducerEpoch(i16::MAX), ..meta.clone() };
        assert!(epoch.check_invariants().is_err());
        assert_eq!(meta.check_invariants(), Ok(()));
        assert_eq!(TxnMetadata::new("x", T0).check_invariants(), Ok(()));
    }
}
