//! The coordinator's decisions, with no I/O: each function takes the record
//! of one transactional id and an event (a request, "markers written", a
//! clock tick, a restart) and returns the [`Command`]s the caller carries
//! out. Tests assert on the exact command lists; the gRPC handlers, the sled
//! store and the marker writer only execute them.
//!
//! # Epochs: which one is where
//!
//! A transaction is named by the identity its data batches carry, (producer
//! id, epoch) = `txn`. Its **markers carry that same identity**, so a
//! partition server matches a marker to exactly the transaction it ends and
//! a delayed marker can never end a later one (whose epoch is higher).
//!
//! Ending a transaction — commit, abort, or a coordinator abort — **bumps the
//! epoch** (or, past [`PRODUCER_EPOCH_MAX`], moves to a fresh producer id at
//! epoch 0). For EndTxn the bumped identity is decided in the `Prepare*`
//! record and **returned in EndTxn's reply**
//! ([`Answer::TxnEnded::next`]): the producer uses it for its next
//! transaction without another InitProducerId, and everything still in
//! flight under the old epoch is fenced.
//!
//! What a partition server does with a marker (pid, E), so that this holds:
//! it ends pid's open transaction if that transaction's epoch is E; a
//! marker for an epoch below the open transaction's, or for a transaction
//! it already ended, is a late duplicate — acknowledge it and change
//! nothing. After the marker for E, pid's transactional batches at epoch
//! ≤ E are refused (verification with [`is_partition_in_ongoing_txn`]
//! refuses them too).
//!
//! # Contract with the caller (the driver)
//!
//! Hold the transactional id's lock from calling a handler until the
//! `Persist` of its decision has completed or failed, and run the commands
//! in order:
//! - [`Command::Persist`]: write `next()` durably (flushed; a `Dead` record
//!   is deleted), then [`TxnMetadata::complete`]. If the write fails, call
//!   [`TxnMetadata::abort_pending`], skip the rest of the list, and answer
//!   the request (if the list had a `Reply`) with
//!   [`CoordinatorError::CoordinatorNotAvailable`].
//! - [`Command::Reply`]: answer the request.
//! - [`Command::WriteMarkers`] (always last): retry the marker on every
//!   partition until each has acknowledged it, then call [`markers_written`]
//!   and run its commands. If that `Persist` fails, call `markers_written`
//!   again later (markers are idempotent; a restart also resumes them).
//!
//! For a transactional id it has no record of, the caller makes one with
//! [`TxnMetadata::new`] before calling [`init_producer_id`]; if that first
//! persist fails, it may drop the record again.

use std::collections::BTreeSet;

use xo_proto::{ProducerEpoch, ProducerId};

use crate::error::CoordinatorError;
use crate::txn_metadata::{
    PRODUCER_EPOCH_MAX, ProducerIdentity, TopicPartition, TxnMetadata, TxnTransition,
};
use crate::txn_state::TxnState;

/// The coordinator's limits for transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnConfig {
    /// The longest transaction timeout a producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`, 15 minutes): bounds how long a dead
    /// producer can hold back every last stable offset it touched.
    pub txn_timeout_ms_max: u32,
    /// A transactional id with no transaction in flight and no change for
    /// this long is forgotten (Kafka's `transactional.id.expiration.ms`,
    /// 7 days): bounds the number of records kept.
    pub transactional_id_idle_ms_max: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            txn_timeout_ms_max: 15 * 60 * 1000,
            transactional_id_idle_ms_max: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

/// InitProducerId for the record's transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitProducerId {
    pub txn_timeout_ms: u32,
    /// The identity the producer holds, if it holds one (a producer
    /// re-initialising after an error, or retrying after a lost reply).
    /// `None` from a new producer instance: it fences whoever held the id.
    pub expected: Option<ProducerIdentity>,
}

/// AddPartitionsToTxn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddPartitionsToTxn {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub partitions: BTreeSet<TopicPartition>,
}

/// EndTxn: commit or abort the open transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndTxn {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub commit: bool,
}

/// A successful answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// InitProducerId: the identity the producer uses from now on.
    ProducerId(ProducerIdentity),
    /// AddPartitionsToTxn: every requested partition is in the open
    /// transaction (durably).
    PartitionsAdded,
    /// EndTxn: the outcome is durable and will be applied to every
    /// partition. `next` is the identity for the producer's next transaction
    /// (bumped, unless the transaction was empty: then nothing was written
    /// under the current identity and it stays).
    TxnEnded { committed: bool, next: ProducerIdentity },
}

/// One step the caller carries out; see the module doc for the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Write the transition's record durably, then complete it.
    Persist(TxnTransition),
    /// Answer the request that caused this decision.
    Reply(Result<Answer, CoordinatorError>),
    /// Write a commit or abort marker for the transaction
    /// (`producer_id`, `producer_epoch`) into each of `partitions`, until
    /// every one has acknowledged; then call [`markers_written`].
    WriteMarkers {
        transactional_id: String,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        commit: bool,
        partitions: BTreeSet<TopicPartition>,
    },
}

/// A stored record that breaks the invariants: refuse to serve it rather
/// than guess (the store is corrupt).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored transaction record of {transactional_id:?} is corrupt: {reason}")]
pub struct CorruptTxnRecord {
    pub transactional_id: String,
    pub reason: &'static str,
}

// ---- handlers ------------------------------------------------------------

/// InitProducerId. `meta` is the record of the transactional id (a
/// [`TxnMetadata::new`] one if it was unknown); `fresh_producer_id` is
/// called only when a new producer id is needed.
///
/// - Unknown id: a fresh producer id at epoch 0.
/// - `Empty` / `Complete*`: epoch + 1 (fresh id past `PRODUCER_EPOCH_MAX`).
///   A retry — `expected` is the *last* identity, i.e. this very call
///   already bumped — gets the current identity again, not another bump
///   (KIP-360), so a live producer is never handed an epoch that another
///   answer also handed out.
/// - `Ongoing`: the open transaction is aborted first, with an epoch bump
///   that fences its producer; the caller is told to retry
///   (CONCURRENT_TRANSACTIONS). A caller that proved to be the holder
///   (`expected` = current or last) may claim the bumped identity on that
///   retry; a new instance gets a further bump.
/// - `Prepare*`: markers must land first: CONCURRENT_TRANSACTIONS.
pub fn init_producer_id(
    meta: &mut TxnMetadata,
    req: &InitProducerId,
    now_ms: u64,
    config: &TxnConfig,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> Vec<Command> {
    decided(decide_init_producer_id(meta, req, now_ms, config, fresh_producer_id))
}

fn decide_init_producer_id(
    meta: &mut TxnMetadata,
    req: &InitProducerId,
    now_ms: u64,
    config: &TxnConfig,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> Result<Vec<Command>, CoordinatorError> {
    if req.txn_timeout_ms == 0 || req.txn_timeout_ms > config.txn_timeout_ms_max {
        return Err(CoordinatorError::InvalidTransactionTimeout);
    }
    if meta.pending.is_some() || meta.state == TxnState::Dead {
        return Err(CoordinatorError::ConcurrentTransactions);
    }
    if !meta.has_producer_id() {
        // A producer id never handed out collides with nothing, whatever
        // `expected` claims (the id may have expired since).
        let next = fresh_identity(ProducerIdentity::NONE, fresh_producer_id);
        let transition = meta.prepare_init(next, None, req.txn_timeout_ms, now_ms)?;
        return Ok(vec![
            Command::Persist(transition),
            Command::Reply(Ok(Answer::ProducerId(next))),
        ]);
    }
    let current = meta.current();
    let retry = match req.expected {
        None => false,
        Some(expected) if expected == current => false,
        Some(expected) if Some(expected) == meta.last() => true,
        Some(expected) => return Err(refusal_for(meta, expected)),
    };
    match meta.state {
        TxnState::Ongoing => {
            let fence = fence_open_txn(meta, req.expected, now_ms, fresh_producer_id);
            let (persist, markers) = fence;
            Ok(vec![
                persist,
                Command::Reply(Err(CoordinatorError::ConcurrentTransactions)),
                markers,
            ])
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            Err(CoordinatorError::ConcurrentTransactions)
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            if retry && meta.state == TxnState::Empty && meta.timeout_ms == req.txn_timeout_ms {
                return Ok(vec![Command::Reply(Ok(Answer::ProducerId(current)))]);
            }
            // A retry re-persists the same identity (with this call's
            // timeout, and clearing a finished transaction); anything else
            // bumps, and whoever presented `current` may claim the result.
            let (next, last) = if retry {
                (current, meta.last())
            } else {
                (bumped(current, fresh_producer_id), req.expected)
            };
            let transition = meta.prepare_init(next, last, req.txn_timeout_ms, now_ms)?;
            Ok(vec![Command::Persist(transition), Command::Reply(Ok(Answer::ProducerId(next)))])
        }
        TxnState::PrepareEpochFence | TxnState::Dead => {
            unreachable!("{:?} is never a served record's state", meta.state)
        }
    }
}

/// AddPartitionsToTxn: the first call of a transaction opens it
/// (`Empty`/`Complete*` → `Ongoing`, start time = now); later ones add
/// partitions. A retry whose partitions are all in already answers without
/// a write. While markers are in flight: CONCURRENT_TRANSACTIONS.
pub fn add_partitions_to_txn(
    meta: Option<&mut TxnMetadata>,
    req: &AddPartitionsToTxn,
    now_ms: u64,
) -> Vec<Command> {
    decided(decide_add_partitions(meta, req, now_ms))
}

fn decide_add_partitions(
    meta: Option<&mut TxnMetadata>,
    req: &AddPartitionsToTxn,
    now_ms: u64,
) -> Result<Vec<Command>, CoordinatorError> {
    let meta = served(meta)?;
    check_current(meta, ProducerIdentity::new(req.producer_id, req.producer_epoch))?;
    if meta.pending.is_some() {
        return Err(CoordinatorError::ConcurrentTransactions);
    }
    let added = Command::Reply(Ok(Answer::PartitionsAdded));
    match meta.state {
        TxnState::Ongoing if req.partitions.is_subset(&meta.partitions) => Ok(vec![added]),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            if req.partitions.is_empty() =>
        {
            Ok(vec![added])
        }
        TxnState::Ongoing
        | TxnState::Empty
        | TxnState::CompleteCommit
        | TxnState::CompleteAbort => {
            let transition = meta.prepare_add_partitions(&req.partitions, now_ms)?;
            Ok(vec![Command::Persist(transition), added])
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            Err(CoordinatorError::ConcurrentTransactions)
        }
        TxnState::PrepareEpochFence | TxnState::Dead => {
            unreachable!("{:?} is never a served record's state", meta.state)
        }
    }
}

/// EndTxn. From `Ongoing`: persist `Prepare*` with the bumped identity,
/// answer with that identity, then write markers carrying the
/// transaction's own identity. A retry of the EndTxn that ended this
/// transaction (same identity, same outcome) gets the same answer; the
/// opposite outcome is INVALID_TXN_STATE. With no transaction open (no
/// partitions added) it is trivially done.
pub fn end_txn(
    meta: Option<&mut TxnMetadata>,
    req: &EndTxn,
    now_ms: u64,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> Vec<Command> {
    decided(decide_end_txn(meta, req, now_ms, fresh_producer_id))
}

fn decide_end_txn(
    meta: Option<&mut TxnMetadata>,
    req: &EndTxn,
    now_ms: u64,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> Result<Vec<Command>, CoordinatorError> {
    let meta = served(meta)?;
    let presented = ProducerIdentity::new(req.producer_id, req.producer_epoch);
    let ended = matches!(
        meta.state,
        TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
    );
    // `last == txn`: the producer of this transaction was handed the
    // current identity, i.e. it ended the transaction itself (a coordinator
    // fence leaves `last` empty, so a fenced producer gets PRODUCER_FENCED).
    if ended && Some(presented) == meta.txn() && meta.last() == meta.txn() {
        if meta.pending.is_some() {
            return Err(CoordinatorError::ConcurrentTransactions);
        }
        let committed = meta.state.outcome_commit() == Some(true);
        if committed != req.commit {
            return Err(CoordinatorError::InvalidTxnState);
        }
        let next = meta.current();
        return Ok(vec![Command::Reply(Ok(Answer::TxnEnded { committed, next }))]);
    }
    check_current(meta, presented)?;
    if meta.pending.is_some() {
        return Err(CoordinatorError::ConcurrentTransactions);
    }
    match meta.state {
        TxnState::Ongoing => {
            let txn = meta.current();
            let next = bumped(txn, fresh_producer_id);
            let partitions = meta.partitions.clone();
            let transition = meta.prepare_end(req.commit, next, now_ms)?;
            Ok(vec![
                Command::Persist(transition),
                Command::Reply(Ok(Answer::TxnEnded { committed: req.commit, next })),
                write_markers(meta, txn, req.commit, partitions),
            ])
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            Ok(vec![Command::Reply(Ok(Answer::TxnEnded {
                committed: req.commit,
                next: presented,
            }))])
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            Err(CoordinatorError::ConcurrentTransactions)
        }
        TxnState::PrepareEpochFence | TxnState::Dead => {
            unreachable!("{:?} is never a served record's state", meta.state)
        }
    }
}

/// Every partition acknowledged the markers of transaction `txn`: persist
/// `Complete*`. Anything stale (already complete, another transaction, a
/// completion already pending) decides nothing.
pub fn markers_written(meta: &mut TxnMetadata, txn: ProducerIdentity, now_ms: u64) -> Vec<Command> {
    if !meta.state.is_prepared() || meta.txn() != Some(txn) || meta.pending.is_some() {
        return Vec::new();
    }
    let transition = meta.prepare_complete(now_ms).expect("Prepare* -> Complete* is always legal");
    vec![Command::Persist(transition)]
}

/// The clock moved on. An `Ongoing` transaction older than its timeout is
/// aborted with an epoch bump that fences its producer (nobody may claim
/// the new identity: the producer must call InitProducerId). A transactional
/// id idle in `Empty`/`Complete*` past the configured time is forgotten.
pub fn expire(
    meta: &mut TxnMetadata,
    now_ms: u64,
    config: &TxnConfig,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> Vec<Command> {
    if meta.pending.is_some() {
        return Vec::new();
    }
    match meta.state {
        TxnState::Ongoing => {
            let started = meta.txn_start_ms.expect("an Ongoing record has a start");
            if now_ms.saturating_sub(started) <= u64::from(meta.timeout_ms) {
                return Vec::new();
            }
            let (persist, markers) = fence_open_txn(meta, None, now_ms, fresh_producer_id);
            vec![persist, markers]
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            if now_ms.saturating_sub(meta.last_update_ms) <= config.transactional_id_idle_ms_max {
                return Vec::new();
            }
            let transition = meta.prepare_dead(now_ms).expect("idle states may always die");
            vec![Command::Persist(transition)]
        }
        TxnState::PrepareCommit
        | TxnState::PrepareAbort
        | TxnState::PrepareEpochFence
        | TxnState::Dead => Vec::new(),
    }
}

/// An operator's AbortTransaction: like a timeout, the open transaction is
/// aborted with an epoch bump that fences its producer (which must call
/// InitProducerId again). Without an open transaction there is nothing to
/// abort: INVALID_TXN_STATE; while markers are in flight (or a write is
/// pending): CONCURRENT_TRANSACTIONS. Success is a `Persist` and the abort
/// markers, with no `Reply`: the request is answered once the persist is done.
pub fn operator_abort(
    meta: Option<&mut TxnMetadata>,
    now_ms: u64,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> Vec<Command> {
    let meta = match served(meta) {
        Ok(meta) => meta,
        Err(error) => return vec![Command::Reply(Err(error))],
    };
    if meta.pending.is_some() || meta.state.is_prepared() {
        return vec![Command::Reply(Err(CoordinatorError::ConcurrentTransactions))];
    }
    if meta.state != TxnState::Ongoing {
        return vec![Command::Reply(Err(CoordinatorError::InvalidTxnState))];
    }
    let (persist, markers) = fence_open_txn(meta, None, now_ms, fresh_producer_id);
    vec![persist, markers]
}

/// After a restart, for one loaded record: checks it, and returns the
/// markers to resend — every `PrepareCommit` / `PrepareAbort` is decided but
/// may not have reached all its partitions. `Ongoing` transactions stay
/// open (their producer may continue; [`expire`] aborts them otherwise).
pub fn resume(meta: &TxnMetadata) -> Result<Vec<Command>, CorruptTxnRecord> {
    let corrupt =
        |reason| CorruptTxnRecord { transactional_id: meta.transactional_id.clone(), reason };
    meta.check_invariants().map_err(corrupt)?;
    if !meta.has_producer_id() {
        return Err(corrupt("a stored record always has a producer id"));
    }
    if !meta.state.is_prepared() {
        return Ok(Vec::new());
    }
    let txn = meta.txn().expect("a prepared record has a transaction");
    let commit = meta.state == TxnState::PrepareCommit;
    Ok(vec![write_markers(meta, txn, commit, meta.partitions.clone())])
}

/// For a partition server about to take the first transactional batch of
/// (`producer_id`, `producer_epoch`) into `partition`: was that partition
/// durably added to that transaction, and is the transaction still open?
/// Anything else (ended or ending, fenced identity, unknown partition)
/// means the append must be rejected, so no write can open a hanging
/// transaction.
pub fn is_partition_in_ongoing_txn(
    meta: Option<&TxnMetadata>,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    partition: &TopicPartition,
) -> bool {
    let Some(meta) = meta else {
        return false;
    };
    meta.state == TxnState::Ongoing
        // More partitions being added is fine; an end being persisted is not.
        && matches!(meta.pending, None | Some(TxnState::Ongoing))
        && meta.current() == ProducerIdentity::new(producer_id, producer_epoch)
        && meta.partitions.contains(partition)
}

// ---- helpers -------------------------------------------------------------

fn decided(decision: Result<Vec<Command>, CoordinatorError>) -> Vec<Command> {
    decision.unwrap_or_else(|error| vec![Command::Reply(Err(error))])
}

/// The record, if it is one requests other than InitProducerId may use.
fn served(meta: Option<&mut TxnMetadata>) -> Result<&mut TxnMetadata, CoordinatorError> {
    match meta {
        Some(meta) if meta.has_producer_id() && meta.state != TxnState::Dead => Ok(meta),
        _ => Err(CoordinatorError::TransactionalIdNotFound),
    }
}

/// Requests other than retries must carry the current identity.
fn check_current(meta: &TxnMetadata, presented: ProducerIdentity) -> Result<(), CoordinatorError> {
    if presented == meta.current() { Ok(()) } else { Err(refusal_for(meta, presented)) }
}

/// Why `presented` (not the current identity) is refused.
fn refusal_for(meta: &TxnMetadata, presented: ProducerIdentity) -> CoordinatorError {
    let current = meta.current();
    debug_assert_ne!(presented, current);
    if presented.producer_id == current.producer_id {
        return if presented.producer_epoch < current.producer_epoch {
            CoordinatorError::ProducerFenced
        } else {
            CoordinatorError::InvalidProducerEpoch
        };
    }
    // A producer id this transactional id used before: an older session.
    let older = [meta.last(), meta.txn()]
        .into_iter()
        .flatten()
        .any(|identity| identity.producer_id == presented.producer_id);
    if older {
        CoordinatorError::ProducerFenced
    } else {
        CoordinatorError::InvalidProducerIdMapping
    }
}

/// `current` with its epoch bumped, or a fresh producer id at epoch 0 once
/// the bump would pass `PRODUCER_EPOCH_MAX`.
fn bumped(
    current: ProducerIdentity,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> ProducerIdentity {
    assert!(!current.producer_id.is_none() && current.producer_epoch.0 >= 0);
    if current.producer_epoch < PRODUCER_EPOCH_MAX {
        ProducerIdentity::new(current.producer_id, ProducerEpoch(current.producer_epoch.0 + 1))
    } else {
        fresh_identity(current, fresh_producer_id)
    }
}

fn fresh_identity(
    previous: ProducerIdentity,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> ProducerIdentity {
    let producer_id = fresh_producer_id();
    assert!(
        !producer_id.is_none() && producer_id != previous.producer_id,
        "producer id allocator returned {producer_id} after {previous}"
    );
    ProducerIdentity::new(producer_id, ProducerEpoch(0))
}

/// Aborts the open transaction on the coordinator's initiative: the
/// `PrepareAbort` record with the bumped identity, and its abort markers.
fn fence_open_txn(
    meta: &mut TxnMetadata,
    entitled: Option<ProducerIdentity>,
    now_ms: u64,
    fresh_producer_id: impl FnOnce() -> ProducerId,
) -> (Command, Command) {
    let txn = meta.current();
    let next = bumped(txn, fresh_producer_id);
    let partitions = meta.partitions.clone();
    let transition = meta
        .prepare_fence(next, entitled, now_ms)
        .expect("an Ongoing record with nothing pending may always be fenced");
    let markers = write_markers(meta, txn, false, partitions);
    (Command::Persist(transition), markers)
}

fn write_markers(
    meta: &TxnMetadata,
    txn: ProducerIdentity,
    commit: bool,
    partitions: BTreeSet<TopicPartition>,
) -> Command {
    Command::WriteMarkers {
        transactional_id: meta.transactional_id.clone(),
        producer_id: txn.producer_id,
        producer_epoch: txn.producer_epoch,
        commit,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn_metadata::TXN_PARTITIONS_MAX;

    const T0: u64 = 1_700_000_000_000;
    const TIMEOUT_MS: u32 = 60_000;
    const TXN_ID: &str = "app-1";

    fn id(pid: i64, epoch: i16) -> ProducerIdentity {
        ProducerIdentity::new(ProducerId(pid), ProducerEpoch(epoch))
    }

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn parts(list: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
        list.iter().map(|&(t, p)| tp(t, p)).collect()
    }

    fn config() -> TxnConfig {
        TxnConfig::default()
    }

    /// For decisions that must not allocate a producer id.
    fn no_alloc() -> ProducerId {
        panic!("no producer id may be allocated here")
    }

    fn init_req(expected: Option<ProducerIdentity>) -> InitProducerId {
        InitProducerId { txn_timeout_ms: TIMEOUT_MS, expected }
    }

    fn add_req(who: ProducerIdentity, list: &[(&str, u32)]) -> AddPartitionsToTxn {
        AddPartitionsToTxn {
            producer_id: who.producer_id,
            producer_epoch: who.producer_epoch,
            partitions: parts(list),
        }
    }

    fn end_req(who: ProducerIdentity, commit: bool) -> EndTxn {
        EndTxn { producer_id: who.producer_id, producer_epoch: who.producer_epoch, commit }
    }

    /// Plays a driver whose writes all succeed: completes every Persist.
    fn apply(meta: &mut TxnMetadata, commands: &[Command]) {
        for command in commands {
            if let Command::Persist(transition) = command {
                meta.complete(transition.clone());
            }
        }
    }

    /// The transition a decision must return: from `before`, whose next
    /// record is `before` changed by `change`.
    fn transition(
        before: &TxnMetadata,
        pending: TxnState,
        change: impl FnOnce(&mut TxnMetadata),
    ) -> TxnTransition {
        let mut next = before.clone();
        next.pending = None;
        change(&mut next);
        TxnTransition { from: before.state, pending, next }
    }

    fn markers(txn: ProducerIdentity, commit: bool, list: &[(&str, u32)]) -> Command {
        Command::WriteMarkers {
            transactional_id: TXN_ID.to_string(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            commit,
            partitions: parts(list),
        }
    }

    fn refused(error: CoordinatorError) -> Vec<Command> {
        vec![Command::Reply(Err(error))]
    }

    /// A durable `Empty` record with identity 7/0.
    fn ready() -> TxnMetadata {
        let mut meta = TxnMetadata::new(TXN_ID, T0);
        let commands =
            init_producer_id(&mut meta, &init_req(None), T0, &config(), || ProducerId(7));
        apply(&mut meta, &commands);
        assert_eq!(meta.current(), id(7, 0));
        meta
    }

    /// A durable `Ongoing` record at 7/0 with partitions a-0, b-1.
    fn ongoing() -> TxnMetadata {
        let mut meta = ready();
        let commands = add_partitions_to_txn(
            Some(&mut meta),
            &add_req(id(7, 0), &[("a", 0), ("b", 1)]),
            T0 + 10,
        );
        apply(&mut meta, &commands);
        assert_eq!(meta.state, TxnState::Ongoing);
        meta
    }

    /// `ongoing()` ended by its producer: `Prepare*` (markers not yet
    /// written), current 7/1.
    fn prepared(commit: bool) -> TxnMetadata {
        let mut meta = ongoing();
        let commands = end_txn(Some(&mut meta), &end_req(id(7, 0), commit), T0 + 20, no_alloc);
        apply(&mut meta, &commands);
        meta
    }

    /// `prepared(commit)` after every marker was acknowledged.
    fn completed(commit: bool) -> TxnMetadata {
        let mut meta = prepared(commit);
        let commands = markers_written(&mut meta, id(7, 0), T0 + 30);
        apply(&mut meta, &commands);
        meta
    }

    // ---- t10: InitProducerId ---------------------------------------------

    #[test]
    fn t10_init_of_a_new_id_allocates_a_producer_id_at_epoch_0() {
        // Proves: an unknown transactional id gets the allocator's fresh id
        // at epoch 0, persisted before the answer.
        let mut meta = TxnMetadata::new(TXN_ID, T0);
        let before = meta.clone();
        let commands =
            init_producer_id(&mut meta, &init_req(None), T0 + 1, &config(), || ProducerId(7));
        let expected = transition(&before, TxnState::Empty, |m| {
            m.producer_id = ProducerId(7);
            m.producer_epoch = ProducerEpoch(0);
            m.timeout_ms = TIMEOUT_MS;
            m.last_update_ms = T0 + 1;
        });
        assert_eq!(
            commands,
            vec![Command::Persist(expected), Command::Reply(Ok(Answer::ProducerId(id(7, 0)))),]
        );
        assert_eq!(meta.pending, Some(TxnState::Empty));
    }

    #[test]
    fn t11_init_from_a_new_instance_bumps_and_leaves_no_claim() {
        // Proves: InitProducerId without an expected identity bumps the
        // epoch and records no `last`, so nobody can claim it by "retrying".
        let mut meta = ready();
        let before = meta.clone();
        let commands = init_producer_id(&mut meta, &init_req(None), T0 + 5, &config(), no_alloc);
        let expected = transition(&before, TxnState::Empty, |m| {
            m.producer_epoch = ProducerEpoch(1);
            m.last_update_ms = T0 + 5;
        });
        assert_eq!(
            commands,
            vec![Command::Persist(expected), Command::Reply(Ok(Answer::ProducerId(id(7, 1)))),]
        );
    }

    #[test]
    fn t12_init_from_the_holder_bumps_and_remembers_its_old_identity() {
        // Proves: InitProducerId presenting the current identity bumps and
        // records that identity as `last` (KIP-360).
        let mut meta = ready();
        let commands =
            init_producer_id(&mut meta, &init_req(Some(id(7, 0))), T0 + 5, &config(), no_alloc);
        assert_eq!(commands[1], Command::Reply(Ok(Answer::ProducerId(id(7, 1)))));
        apply(&mut meta, &commands);
        assert_eq!((meta.current(), meta.last()), (id(7, 1), Some(id(7, 0))));
    }

    #[test]
    fn t13_retried_init_gets_the_same_identity_without_a_second_bump() {
        // Proves: a retry (expected = last) is answered with the current
        // identity and writes nothing; with a new timeout it re-persists the
        // same identity. Never a second bump a live producer could collide
        // with.
        let mut meta = ready();
        let first =
            init_producer_id(&mut meta, &init_req(Some(id(7, 0))), T0 + 5, &config(), no_alloc);
        apply(&mut meta, &first);
        let retry =
            init_producer_id(&mut meta, &init_req(Some(id(7, 0))), T0 + 6, &config(), no_alloc);
        assert_eq!(retry, vec![Command::Reply(Ok(Answer::ProducerId(id(7, 1))))]);
        assert_eq!(meta.pending, None);

        let before = meta.clone();
        let other_timeout = InitProducerId { txn_timeout_ms: 30_000, expected: Some(id(7, 0)) };
        let retry = init_producer_id(&mut meta, &other_timeout, T0 + 7, &config(), no_alloc);
        let expected = transition(&before, TxnState::Empty, |m| {
            m.timeout_ms = 30_000;
            m.last_update_ms = T0 + 7;
        });
        assert_eq!(
            retry,
            vec![Command::Persist(expected), Command::Reply(Ok(Answer::ProducerId(id(7, 1)))),]
        );
    }

    #[test]
    fn t14_init_presenting_a_stale_identity_is_refused() {
        // Proves: once a new instance bumped the epoch, the old holder's
        // retry is PRODUCER_FENCED; an unknown producer id is
        // INVALID_PRODUCER_ID_MAPPING; a never-issued epoch is
        // INVALID_PRODUCER_EPOCH. None of them changes anything.
        let mut meta = ready();
        let holder =
            init_producer_id(&mut meta, &init_req(Some(id(7, 0))), T0 + 5, &config(), no_alloc);
        apply(&mut meta, &holder);
        let new_instance =
            init_producer_id(&mut meta, &init_req(None), T0 + 6, &config(), no_alloc);
        apply(&mut meta, &new_instance);
        assert_eq!((meta.current(), meta.last()), (id(7, 2), None));
        let before = meta.clone();
        for (expected, error) in [
            (id(7, 0), CoordinatorError::ProducerFenced),
            (id(7, 1), CoordinatorError::ProducerFenced),
            (id(8, 0), CoordinatorError::InvalidProducerIdMapping),
            (id(7, 3), CoordinatorError::InvalidProducerEpoch),
        ] {
            let commands =
                init_producer_id(&mut meta, &init_req(Some(expected)), T0 + 7, &config(), no_alloc);
            assert_eq!(commands, refused(error), "expected {expected}");
        }
        assert_eq!(meta, before);
    }

    #[test]
    fn t15_init_while_ongoing_aborts_the_open_txn_first() {
        // Proves: InitProducerId from a new instance during an open
        // transaction fences it (epoch bump, PrepareEpochFence pending →
        // PrepareAbort), answers CONCURRENT_TRANSACTIONS, and writes abort
        // markers under the transaction's own identity; once they land, the
        // retry gets a further bump.
        let mut meta = ongoing();
        let before = meta.clone();
        let commands = init_producer_id(&mut meta, &init_req(None), T0 + 40, &config(), no_alloc);
        let fence = transition(&before, TxnState::PrepareEpochFence, |m| {
            m.state = TxnState::PrepareAbort;
            m.producer_epoch = ProducerEpoch(1);
            m.last_update_ms = T0 + 40;
        });
        assert_eq!(
            commands,
            vec![
                Command::Persist(fence),
                Command::Reply(Err(CoordinatorError::ConcurrentTransactions)),
                markers(id(7, 0), false, &[("a", 0), ("b", 1)]),
            ]
        );
        assert_eq!(meta.pending, Some(TxnState::PrepareEpochFence));
        apply(&mut meta, &commands);
        assert_eq!((meta.current(), meta.last(), meta.txn()), (id(7, 1), None, Some(id(7, 0))));

        let retry = init_producer_id(&mut meta, &init_req(None), T0 + 41, &config(), no_alloc);
        assert_eq!(retry, refused(CoordinatorError::ConcurrentTransactions));
        let done = markers_written(&mut meta, id(7, 0), T0 + 42);
        apply(&mut meta, &done);
        assert_eq!(meta.state, TxnState::CompleteAbort);
        let retry = init_producer_id(&mut meta, &init_req(None), T0 + 43, &config(), no_alloc);
        assert_eq!(retry[1], Command::Reply(Ok(Answer::ProducerId(id(7, 2)))));
    }

    #[test]
    fn t16_init_by_the_holder_while_ongoing_claims_the_fence_epoch_on_retry() {
        // Proves: when the open transaction's own producer re-initialises
        // (expected = current), the fence records it as entitled, so its
        // retry after the abort gets the fence's identity (7/1) — one bump,
        // not two — while a stranger presenting 7/0 cannot.
        let mut meta = ongoing();
        let commands =
            init_producer_id(&mut meta, &init_req(Some(id(7, 0))), T0 + 40, &config(), no_alloc);
        apply(&mut meta, &commands);
        assert_eq!((meta.current(), meta.last()), (id(7, 1), Some(id(7, 0))));
        let done = markers_written(&mut meta, id(7, 0), T0 + 41);
        apply(&mut meta, &done);
        let retry =
            init_producer_id(&mut meta, &init_req(Some(id(7, 0))), T0 + 42, &config(), no_alloc);
        assert_eq!(retry[1], Command::Reply(Ok(Answer::ProducerId(id(7, 1)))));
        apply(&mut meta, &retry);
        assert_eq!((meta.state, meta.current()), (TxnState::Empty, id(7, 1)));
    }

    #[test]
    fn t17_init_while_markers_are_in_flight_is_concurrent() {
        // Proves: in PrepareCommit/PrepareAbort InitProducerId must wait for
        // the markers: CONCURRENT_TRANSACTIONS, nothing persisted.
        for commit in [true, false] {
            let mut meta = prepared(commit);
            for expected in [None, Some(id(7, 1)), Some(id(7, 0))] {
                let commands =
                    init_producer_id(&mut meta, &init_req(expected), T0 + 25, &config(), no_alloc);
                assert_eq!(commands, refused(CoordinatorError::ConcurrentTransactions));
            }
            assert_eq!(meta.pending, None);
        }
    }

    #[test]
    fn t18_init_past_the_epoch_limit_moves_to_a_fresh_producer_id() {
        // Proves: the bump from PRODUCER_EPOCH_MAX - 1 still lands on
        // PRODUCER_EPOCH_MAX; the one after allocates a new producer id at
        // epoch 0 (so no epoch ever passes i16::MAX - 1), and a retry of that
        // call gets the new id, not another one.
        let mut meta = ready();
        meta.producer_epoch = ProducerEpoch(PRODUCER_EPOCH_MAX.0 - 1);
        let commands = init_producer_id(&mut meta, &init_req(None), T0 + 1, &config(), no_alloc);
        assert_eq!(commands[1], Command::Reply(Ok(Answer::ProducerId(id(7, i16::MAX - 1)))));
        apply(&mut meta, &commands);
        let holder = Some(id(7, i16::MAX - 1));
        let commands =
            init_producer_id(&mut meta, &init_req(holder), T0 + 2, &config(), || ProducerId(8));
        assert_eq!(commands[1], Command::Reply(Ok(Answer::ProducerId(id(8, 0)))));
        apply(&mut meta, &commands);
        assert_eq!(meta.last(), holder);
        let retry = init_producer_id(&mut meta, &init_req(holder), T0 + 3, &config(), no_alloc);
        assert_eq!(retry, vec![Command::Reply(Ok(Answer::ProducerId(id(8, 0))))]);
        // The old producer id now belongs to an older session: fenced.
        let stale = add_partitions_to_txn(
            Some(&mut meta),
            &add_req(id(7, i16::MAX - 1), &[("a", 0)]),
            T0 + 4,
        );
        assert_eq!(stale, refused(CoordinatorError::ProducerFenced));
    }

    #[test]
    fn t19_init_rejects_a_timeout_out_of_range_and_waits_for_pending_writes() {
        // Proves: timeout 0 or above the maximum is refused; a pending write
        // on the id makes InitProducerId CONCURRENT_TRANSACTIONS.
        let mut meta = ready();
        for txn_timeout_ms in [0, config().txn_timeout_ms_max + 1] {
            let req = InitProducerId { txn_timeout_ms, expected: None };
            let commands = init_producer_id(&mut meta, &req, T0, &config(), no_alloc);
            assert_eq!(commands, refused(CoordinatorError::InvalidTransactionTimeout));
        }
        let _pending = add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 0), &[("a", 0)]), T0);
        let commands = init_producer_id(&mut meta, &init_req(None), T0, &config(), no_alloc);
        assert_eq!(commands, refused(CoordinatorError::ConcurrentTransactions));
    }

    // ---- t20: AddPartitionsToTxn -----------------------------------------

    #[test]
    fn t20_first_add_opens_the_txn_with_the_current_identity() {
        // Proves: Empty → Ongoing, start time = now, transaction identity =
        // current, persisted before the answer.
        let mut meta = ready();
        let before = meta.clone();
        let commands =
            add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 0), &[("a", 0)]), T0 + 10);
        let expected = transition(&before, TxnState::Ongoing, |m| {
            m.state = TxnState::Ongoing;
            m.partitions = parts(&[("a", 0)]);
            m.txn_producer_id = ProducerId(7);
            m.txn_producer_epoch = ProducerEpoch(0);
            m.txn_start_ms = Some(T0 + 10);
            m.last_update_ms = T0 + 10;
        });
        assert_eq!(
            commands,
            vec![Command::Persist(expected), Command::Reply(Ok(Answer::PartitionsAdded)),]
        );
    }

    #[test]
    fn t21_more_partitions_join_and_the_start_time_stays() {
        // Proves: Ongoing + new partitions → Ongoing with the union, the
        // transaction's start unchanged (its timeout counts from the first).
        let mut meta = ongoing();
        let before = meta.clone();
        let commands = add_partitions_to_txn(
            Some(&mut meta),
            &add_req(id(7, 0), &[("b", 1), ("c", 2)]),
            T0 + 15,
        );
        let expected = transition(&before, TxnState::Ongoing, |m| {
            m.partitions = parts(&[("a", 0), ("b", 1), ("c", 2)]);
            m.last_update_ms = T0 + 15;
        });
        assert_eq!(expected.next.txn_start_ms, Some(T0 + 10));
        assert_eq!(
            commands,
            vec![Command::Persist(expected), Command::Reply(Ok(Answer::PartitionsAdded)),]
        );
    }

    #[test]
    fn t22_retried_add_with_nothing_new_writes_nothing() {
        // Proves: an AddPartitions whose partitions are all in already is
        // answered without a Persist and without a pending mark.
        let mut meta = ongoing();
        let before = meta.clone();
        let commands =
            add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 0), &[("b", 1)]), T0 + 15);
        assert_eq!(commands, vec![Command::Reply(Ok(Answer::PartitionsAdded))]);
        assert_eq!(meta, before);
    }

    #[test]
    fn t23_add_while_markers_are_in_flight_or_a_write_pending_is_concurrent() {
        // Proves: in Prepare* (with the new identity the client just got)
        // and during a pending write, AddPartitions is
        // CONCURRENT_TRANSACTIONS.
        for commit in [true, false] {
            let mut meta = prepared(commit);
            let commands =
                add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 1), &[("a", 0)]), T0 + 25);
            assert_eq!(commands, refused(CoordinatorError::ConcurrentTransactions));
        }
        let mut meta = ongoing();
        let _pending = end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 20, no_alloc);
        let commands =
            add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 0), &[("a", 0)]), T0 + 21);
        assert_eq!(commands, refused(CoordinatorError::ConcurrentTransactions));
    }

    #[test]
    fn t24_next_txn_opens_from_complete_with_the_bumped_identity() {
        // Proves: after a commit, the producer opens the next transaction
        // with the identity EndTxn returned (7/1), no InitProducerId needed;
        // that transaction's identity is 7/1, distinct from the last (7/0).
        for commit in [true, false] {
            let mut meta = completed(commit);
            let commands =
                add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 1), &[("c", 0)]), T0 + 50);
            apply(&mut meta, &commands);
            assert_eq!(commands[1], Command::Reply(Ok(Answer::PartitionsAdded)));
            assert_eq!(meta.state, TxnState::Ongoing);
            assert_eq!(meta.txn(), Some(id(7, 1)));
            assert_eq!(meta.partitions, parts(&[("c", 0)]));
            assert_eq!(meta.txn_start_ms, Some(T0 + 50));
        }
    }

    #[test]
    fn t25_add_refuses_unknown_ids_and_wrong_identities() {
        // Proves: no record / a never-initialised record → TRANSACTIONAL_ID_
        // NOT_FOUND; older epoch → PRODUCER_FENCED; never-issued epoch →
        // INVALID_PRODUCER_EPOCH; another producer id → INVALID_PRODUCER_ID_
        // MAPPING; too many partitions → TOO_MANY_PARTITIONS.
        let req = add_req(id(7, 0), &[("a", 0)]);
        assert_eq!(
            add_partitions_to_txn(None, &req, T0),
            refused(CoordinatorError::TransactionalIdNotFound)
        );
        let mut fresh = TxnMetadata::new(TXN_ID, T0);
        assert_eq!(
            add_partitions_to_txn(Some(&mut fresh), &req, T0),
            refused(CoordinatorError::TransactionalIdNotFound)
        );
        let mut meta = completed(true);
        for (who, error) in [
            (id(7, 0), CoordinatorError::ProducerFenced),
            (id(7, 2), CoordinatorError::InvalidProducerEpoch),
            (id(9, 1), CoordinatorError::InvalidProducerIdMapping),
        ] {
            let commands = add_partitions_to_txn(Some(&mut meta), &add_req(who, &[("a", 0)]), T0);
            assert_eq!(commands, refused(error), "as {who}");
        }
        let many = AddPartitionsToTxn {
            partitions: (0..=TXN_PARTITIONS_MAX as u32).map(|p| tp("t", p)).collect(),
            ..add_req(id(7, 1), &[])
        };
        let commands = add_partitions_to_txn(Some(&mut meta), &many, T0);
        assert_eq!(commands, refused(CoordinatorError::TooManyPartitions));
        assert_eq!(meta.pending, None);
    }

    // ---- t30: EndTxn -------------------------------------------------------

    #[test]
    fn t30_commit_persists_prepare_answers_the_bumped_epoch_then_writes_markers() {
        // Proves: EndTxn(commit) from Ongoing returns exactly: persist
        // PrepareCommit (current 7/1, last = txn = 7/0), answer committed
        // with next = 7/1, commit markers carrying the txn's identity 7/0
        // to every partition. markers_written then persists CompleteCommit.
        let mut meta = ongoing();
        let before = meta.clone();
        let commands = end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 20, no_alloc);
        let expected = transition(&before, TxnState::PrepareCommit, |m| {
            m.state = TxnState::PrepareCommit;
            m.producer_epoch = ProducerEpoch(1);
            m.last_producer_id = ProducerId(7);
            m.last_producer_epoch = ProducerEpoch(0);
            m.last_update_ms = T0 + 20;
        });
        assert_eq!(
            commands,
            vec![
                Command::Persist(expected),
                Command::Reply(Ok(Answer::TxnEnded { committed: true, next: id(7, 1) })),
                markers(id(7, 0), true, &[("a", 0), ("b", 1)]),
            ]
        );
        apply(&mut meta, &commands);

        let before = meta.clone();
        let commands = markers_written(&mut meta, id(7, 0), T0 + 30);
        let expected = transition(&before, TxnState::CompleteCommit, |m| {
            m.state = TxnState::CompleteCommit;
            m.partitions.clear();
            m.last_update_ms = T0 + 30;
        });
        assert_eq!(commands, vec![Command::Persist(expected)]);
    }

    #[test]
    fn t31_abort_persists_prepare_abort_and_writes_abort_markers() {
        // Proves: EndTxn(abort) mirrors commit: PrepareAbort with the bump,
        // answer aborted with next = 7/1, abort markers under 7/0.
        let mut meta = ongoing();
        let commands = end_txn(Some(&mut meta), &end_req(id(7, 0), false), T0 + 20, no_alloc);
        assert_eq!(
            commands[1..],
            [
                Command::Reply(Ok(Answer::TxnEnded { committed: false, next: id(7, 1) })),
                markers(id(7, 0), false, &[("a", 0), ("b", 1)]),
            ]
        );
        apply(&mut meta, &commands);
        assert_eq!(meta.state, TxnState::PrepareAbort);
        let done = markers_written(&mut meta, id(7, 0), T0 + 30);
        apply(&mut meta, &done);
        assert_eq!(meta.state, TxnState::CompleteAbort);
        assert!(meta.partitions.is_empty());
    }

    #[test]
    fn t32_retried_end_txn_gets_the_same_answer_and_writes_nothing() {
        // Proves: EndTxn retried under the transaction's identity, while its
        // markers are in flight and after they landed, answers the same
        // outcome and the same next identity — no second bump, no persist.
        for commit in [true, false] {
            let answer =
                vec![Command::Reply(Ok(Answer::TxnEnded { committed: commit, next: id(7, 1) }))];
            let mut meta = prepared(commit);
            let retry = end_txn(Some(&mut meta), &end_req(id(7, 0), commit), T0 + 21, no_alloc);
            assert_eq!(retry, answer);
            let mut meta = completed(commit);
            let before = meta.clone();
            let retry = end_txn(Some(&mut meta), &end_req(id(7, 0), commit), T0 + 31, no_alloc);
            assert_eq!(retry, answer);
            assert_eq!(meta, before);
        }
    }

    #[test]
    fn t33_opposite_outcome_after_the_decision_is_invalid_txn_state() {
        // Proves: commit after abort, and abort after commit, of the same
        // transaction are INVALID_TXN_STATE, in Prepare* and Complete*.
        for commit in [true, false] {
            for mut meta in [prepared(commit), completed(commit)] {
                let flip = end_txn(Some(&mut meta), &end_req(id(7, 0), !commit), T0 + 40, no_alloc);
                assert_eq!(flip, refused(CoordinatorError::InvalidTxnState));
            }
        }
    }

    #[test]
    fn t34_ending_an_empty_txn_is_trivially_done() {
        // Proves: EndTxn with no partitions added (Empty, or Complete* with
        // the new identity) answers at once, identity unchanged: nothing
        // was written under it, so nothing needs fencing.
        for commit in [true, false] {
            let mut meta = ready();
            let commands = end_txn(Some(&mut meta), &end_req(id(7, 0), commit), T0, no_alloc);
            let answer = Answer::TxnEnded { committed: commit, next: id(7, 0) };
            assert_eq!(commands, vec![Command::Reply(Ok(answer))]);
            let mut meta = completed(true);
            let commands = end_txn(Some(&mut meta), &end_req(id(7, 1), commit), T0, no_alloc);
            let answer = Answer::TxnEnded { committed: commit, next: id(7, 1) };
            assert_eq!(commands, vec![Command::Reply(Ok(answer))]);
        }
    }

    #[test]
    fn t35_end_txn_from_a_fenced_or_unknown_identity_is_refused() {
        // Proves: EndTxn for an id without record → NOT_FOUND; with an old
        // epoch → PRODUCER_FENCED (including the previous transaction's
        // identity once the next one is open); other producer id → MAPPING;
        // a new epoch while markers fly → CONCURRENT.
        assert_eq!(
            end_txn(None, &end_req(id(7, 0), true), T0, no_alloc),
            refused(CoordinatorError::TransactionalIdNotFound)
        );
        let mut meta = completed(true);
        let next_txn =
            add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 1), &[("c", 0)]), T0 + 50);
        apply(&mut meta, &next_txn);
        for (who, error) in [
            (id(7, 0), CoordinatorError::ProducerFenced),
            (id(7, 2), CoordinatorError::InvalidProducerEpoch),
            (id(3, 1), CoordinatorError::InvalidProducerIdMapping),
        ] {
            let commands = end_txn(Some(&mut meta), &end_req(who, true), T0 + 51, no_alloc);
            assert_eq!(commands, refused(error), "as {who}");
        }
        let mut meta = prepared(true);
        let early = end_txn(Some(&mut meta), &end_req(id(7, 1), true), T0 + 21, no_alloc);
        assert_eq!(early, refused(CoordinatorError::ConcurrentTransactions));
    }

    #[test]
    fn t36_end_txn_past_the_epoch_limit_hands_out_a_fresh_producer_id() {
        // Proves: ending a transaction at PRODUCER_EPOCH_MAX answers with a
        // new producer id at epoch 0; its markers still carry the old
        // (id, epoch); a retry under the old identity gets the same new id.
        let mut meta = ready();
        meta.producer_epoch = PRODUCER_EPOCH_MAX;
        let at_max = meta.current();
        let add = add_partitions_to_txn(Some(&mut meta), &add_req(at_max, &[("a", 0)]), T0 + 1);
        apply(&mut meta, &add);
        let commands = end_txn(Some(&mut meta), &end_req(at_max, true), T0 + 2, || ProducerId(8));
        assert_eq!(
            commands[1..],
            [
                Command::Reply(Ok(Answer::TxnEnded { committed: true, next: id(8, 0) })),
                markers(at_max, true, &[("a", 0)]),
            ]
        );
        apply(&mut meta, &commands);
        let retry = end_txn(Some(&mut meta), &end_req(at_max, true), T0 + 3, no_alloc);
        assert_eq!(
            retry,
            vec![Command::Reply(Ok(Answer::TxnEnded { committed: true, next: id(8, 0) }))]
        );
    }

    #[test]
    fn t37_markers_written_for_anything_but_the_prepared_txn_decides_nothing() {
        // Proves: a duplicate or stale "markers written" (wrong identity,
        // already complete, completion already pending) returns no command.
        let mut meta = prepared(true);
        assert_eq!(markers_written(&mut meta, id(7, 1), T0 + 30), vec![]);
        let first = markers_written(&mut meta, id(7, 0), T0 + 30);
        assert_eq!(first.len(), 1);
        assert_eq!(markers_written(&mut meta, id(7, 0), T0 + 31), vec![]);
        apply(&mut meta, &first);
        assert_eq!(markers_written(&mut meta, id(7, 0), T0 + 32), vec![]);
        let mut meta = ongoing();
        assert_eq!(markers_written(&mut meta, id(7, 0), T0 + 32), vec![]);
    }

    #[test]
    fn t38_failed_prepare_write_is_rolled_back_and_the_retry_decides_again() {
        // Proves: if the PrepareCommit write fails, abort_pending restores
        // Ongoing and the client's retry produces the same decision again.
        let mut meta = ongoing();
        let before = meta.clone();
        let first = end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 20, no_alloc);
        meta.abort_pending();
        assert_eq!(meta, before);
        let again = end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 20, no_alloc);
        assert_eq!(again, first);
    }

    // ---- t40: timeouts and expiry -----------------------------------------

    #[test]
    fn t40_txn_past_its_timeout_is_aborted_and_its_producer_fenced() {
        // Proves: at start + timeout nothing happens; one ms later expire
        // returns exactly the fence (PrepareAbort, epoch 7/1, nobody
        // entitled) and abort markers under 7/0. Afterwards every request of
        // the old producer is PRODUCER_FENCED — EndTxn commit or abort,
        // AddPartitions, InitProducerId presenting 7/0.
        let mut meta = ongoing();
        let deadline = T0 + 10 + u64::from(TIMEOUT_MS);
        assert_eq!(expire(&mut meta, deadline, &config(), no_alloc), vec![]);
        let before = meta.clone();
        let commands = expire(&mut meta, deadline + 1, &config(), no_alloc);
        let fence = transition(&before, TxnState::PrepareEpochFence, |m| {
            m.state = TxnState::PrepareAbort;
            m.producer_epoch = ProducerEpoch(1);
            m.last_update_ms = deadline + 1;
        });
        assert_eq!(
            commands,
            vec![Command::Persist(fence), markers(id(7, 0), false, &[("a", 0), ("b", 1)]),]
        );
        apply(&mut meta, &commands);
        for settle in [false, true] {
            if settle {
                let done = markers_written(&mut meta, id(7, 0), deadline + 2);
                apply(&mut meta, &done);
                assert_eq!(meta.state, TxnState::CompleteAbort);
            }
            for commit in [true, false] {
                let late =
                    end_txn(Some(&mut meta), &end_req(id(7, 0), commit), deadline + 3, no_alloc);
                assert_eq!(late, refused(CoordinatorError::ProducerFenced));
            }
            let late = add_partitions_to_txn(
                Some(&mut meta),
                &add_req(id(7, 0), &[("a", 0)]),
                deadline + 3,
            );
            assert_eq!(late, refused(CoordinatorError::ProducerFenced));
            let late = init_producer_id(
                &mut meta,
                &init_req(Some(id(7, 0))),
                deadline + 3,
                &config(),
                no_alloc,
            );
            assert_eq!(late, refused(CoordinatorError::ProducerFenced));
        }
        // A new instance takes over with a further bump.
        let fresh = init_producer_id(&mut meta, &init_req(None), deadline + 4, &config(), no_alloc);
        assert_eq!(fresh[1], Command::Reply(Ok(Answer::ProducerId(id(7, 2)))));
    }

    #[test]
    fn t41_timeout_fence_at_the_epoch_limit_moves_to_a_fresh_producer_id() {
        // Proves: fencing a transaction at PRODUCER_EPOCH_MAX allocates a new
        // producer id rather than overflowing; the markers keep the old one.
        let mut meta = ready();
        meta.producer_epoch = PRODUCER_EPOCH_MAX;
        let at_max = meta.current();
        let add = add_partitions_to_txn(Some(&mut meta), &add_req(at_max, &[("a", 0)]), T0);
        apply(&mut meta, &add);
        let late = T0 + u64::from(TIMEOUT_MS) + 1;
        let commands = expire(&mut meta, late, &config(), || ProducerId(8));
        assert_eq!(commands[1], markers(at_max, false, &[("a", 0)]));
        apply(&mut meta, &commands);
        assert_eq!(meta.current(), id(8, 0));
        let stale = end_txn(Some(&mut meta), &end_req(at_max, false), late, no_alloc);
        assert_eq!(stale, refused(CoordinatorError::ProducerFenced));
    }

    #[test]
    fn t42_idle_ids_die_only_when_nothing_is_in_flight() {
        // Proves: Empty/Complete* idle past the expiry persist Dead; at the
        // limit, or in Ongoing/Prepare*, or with a write pending, nothing.
        let idle = config().transactional_id_idle_ms_max;
        for mut meta in [ready(), completed(true), completed(false)] {
            let limit = meta.last_update_ms + idle;
            assert_eq!(expire(&mut meta, limit, &config(), no_alloc), vec![]);
            let before = meta.clone();
            let commands = expire(&mut meta, limit + 1, &config(), no_alloc);
            let dead = transition(&before, TxnState::Dead, |m| {
                m.state = TxnState::Dead;
                m.last_update_ms = limit + 1;
            });
            assert_eq!(commands, vec![Command::Persist(dead)]);
            apply(&mut meta, &commands);
            let after = add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 1), &[]), limit + 2);
            assert_eq!(after, refused(CoordinatorError::TransactionalIdNotFound));
        }
        let far = T0 + idle * 2;
        let mut meta = prepared(true);
        assert_eq!(expire(&mut meta, far, &config(), no_alloc), vec![]);
        let mut meta = ready();
        let _pending = add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 0), &[("a", 0)]), T0);
        assert_eq!(expire(&mut meta, far, &config(), no_alloc), vec![]);
    }

    #[test]
    fn t43_operator_abort_fences_like_a_timeout_and_only_an_open_txn() {
        // Proves: AbortTransaction on an Ongoing transaction returns the same
        // fence a timeout does (PrepareAbort at 7/1, nobody entitled, abort
        // markers under 7/0); on Empty / Complete* it is INVALID_TXN_STATE,
        // on Prepare* CONCURRENT_TRANSACTIONS, on no record NOT_FOUND.
        let mut by_operator = ongoing();
        let mut by_timeout = ongoing();
        let late = T0 + 10 + u64::from(TIMEOUT_MS) + 1;
        let operator = operator_abort(Some(&mut by_operator), late, no_alloc);
        let timeout = expire(&mut by_timeout, late, &config(), no_alloc);
        assert_eq!(operator, timeout);
        apply(&mut by_operator, &operator);
        assert_eq!(by_operator.state, TxnState::PrepareAbort);
        assert_eq!((by_operator.current(), by_operator.last()), (id(7, 1), None));
        assert_eq!(
            operator_abort(Some(&mut by_operator), late, no_alloc),
            refused(CoordinatorError::ConcurrentTransactions)
        );
        for mut meta in [ready(), completed(true), completed(false)] {
            let before = meta.clone();
            let commands = operator_abort(Some(&mut meta), late, no_alloc);
            assert_eq!(commands, refused(CoordinatorError::InvalidTxnState));
            assert_eq!(meta, before);
        }
        assert_eq!(
            operator_abort(None, late, no_alloc),
            refused(CoordinatorError::TransactionalIdNotFound)
        );
    }

    // ---- t50: restart ------------------------------------------------------

    /// A record as a restarted coordinator loads it.
    fn reload(meta: &TxnMetadata) -> TxnMetadata {
        let stored = serde_json::to_vec(meta).unwrap();
        serde_json::from_slice(&stored).unwrap()
    }

    #[test]
    fn t50_restart_resends_markers_for_every_prepared_txn_and_nothing_else() {
        // Proves: after reload, exactly the PrepareCommit / PrepareAbort
        // records yield markers (right outcome, the txn's identity, all its
        // partitions); Empty, Ongoing and Complete* yield nothing.
        let cases = [
            (ready(), vec![]),
            (ongoing(), vec![]),
            (prepared(true), vec![markers(id(7, 0), true, &[("a", 0), ("b", 1)])]),
            (prepared(false), vec![markers(id(7, 0), false, &[("a", 0), ("b", 1)])]),
            (completed(true), vec![]),
            (completed(false), vec![]),
        ];
        for (meta, expected) in cases {
            assert_eq!(resume(&reload(&meta)), Ok(expected), "state {:?}", meta.state);
        }
        let mut fenced = ongoing();
        let fence = expire(&mut fenced, T0 + 10 + u64::from(TIMEOUT_MS) + 1, &config(), no_alloc);
        apply(&mut fenced, &fence);
        assert_eq!(
            resume(&reload(&fenced)),
            Ok(vec![markers(id(7, 0), false, &[("a", 0), ("b", 1)])])
        );
    }

    #[test]
    fn t51_restart_in_prepare_commit_completes_and_still_answers_retries() {
        // Proves: a coordinator that crashed after persisting PrepareCommit
        // resumes: resent markers complete the commit, and the client's
        // retried EndTxn (its answer was lost in the crash) gets success
        // with the same next identity before and after.
        let mut meta = reload(&prepared(true));
        let answer = vec![Command::Reply(Ok(Answer::TxnEnded { committed: true, next: id(7, 1) }))];
        assert_eq!(end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 60, no_alloc), answer);
        let Ok(commands) = resume(&meta) else { panic!("record must load") };
        let [Command::WriteMarkers { producer_id, producer_epoch, .. }] = commands[..] else {
            panic!("one marker set expected, got {commands:?}");
        };
        let done =
            markers_written(&mut meta, ProducerIdentity::new(producer_id, producer_epoch), T0 + 61);
        apply(&mut meta, &done);
        assert_eq!(meta.state, TxnState::CompleteCommit);
        assert_eq!(end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 62, no_alloc), answer);
    }

    #[test]
    fn t52_restart_refuses_corrupt_records() {
        // Proves: a loaded record that breaks the invariants (stored
        // PrepareEpochFence, a never-initialised record) is reported as
        // corrupt, not served.
        let mut bad = prepared(true);
        bad.state = TxnState::PrepareEpochFence;
        let err = resume(&bad).unwrap_err();
        assert_eq!(err.transactional_id, TXN_ID);
        assert!(resume(&TxnMetadata::new(TXN_ID, T0)).is_err());
    }

    // ---- t60: verification for partition servers --------------------------

    #[test]
    fn t60_partition_is_in_the_txn_only_while_ongoing_under_its_identity() {
        // Proves: true only for a durably added partition of the Ongoing
        // transaction under its exact identity (also while more partitions
        // are being added); false for other partitions, other identities,
        // an end being persisted, Prepare*, Complete*, Empty, no record.
        let a0 = tp("a", 0);
        let check = |meta: Option<&TxnMetadata>, who: ProducerIdentity, p: &TopicPartition| {
            is_partition_in_ongoing_txn(meta, who.producer_id, who.producer_epoch, p)
        };
        let mut meta = ongoing();
        assert!(check(Some(&meta), id(7, 0), &a0));
        assert!(check(Some(&meta), id(7, 0), &tp("b", 1)));
        assert!(!check(Some(&meta), id(7, 0), &tp("c", 0)));
        assert!(!check(Some(&meta), id(7, 1), &a0));
        assert!(!check(Some(&meta), id(6, 0), &a0));
        let _adding =
            add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 0), &[("c", 0)]), T0 + 11);
        assert!(check(Some(&meta), id(7, 0), &a0));
        assert!(!check(Some(&meta), id(7, 0), &tp("c", 0)), "not durable yet");
        let mut meta = ongoing();
        let _ending = end_txn(Some(&mut meta), &end_req(id(7, 0), true), T0 + 20, no_alloc);
        assert!(!check(Some(&meta), id(7, 0), &a0));
        for meta in [prepared(true), completed(true), ready()] {
            for who in [id(7, 0), id(7, 1)] {
                assert!(!check(Some(&meta), who, &a0), "{:?} as {who}", meta.state);
            }
        }
        assert!(!check(None, id(7, 0), &a0));
    }

    // ---- t70: fencing across handlers --------------------------------------

    #[test]
    fn t70_an_old_epoch_is_fenced_in_every_handler() {
        // Proves: after a new instance bumped 7/0 to 7/1, the 7/0 producer is
        // fenced everywhere: InitProducerId, AddPartitions and EndTxn answer
        // PRODUCER_FENCED, its stale "markers written" decides nothing, and
        // verification says no — and none of it changes the record.
        let mut meta = ready();
        let takeover = init_producer_id(&mut meta, &init_req(None), T0 + 1, &config(), no_alloc);
        apply(&mut meta, &takeover);
        let add = add_partitions_to_txn(Some(&mut meta), &add_req(id(7, 1), &[("a", 0)]), T0 + 2);
        apply(&mut meta, &add);
        let before = meta.clone();
        let old = id(7, 0);
        let fenced = refused(CoordinatorError::ProducerFenced);
        assert_eq!(
            init_producer_id(&mut meta, &init_req(Some(old)), T0 + 3, &config(), no_alloc),
            fenced
        );
        assert_eq!(
            add_partitions_to_txn(Some(&mut meta), &add_req(old, &[("b", 0)]), T0 + 3),
            fenced
        );
        assert_eq!(end_txn(Some(&mut meta), &end_req(old, true), T0 + 3, no_alloc), fenced);
        assert_eq!(end_txn(Some(&mut meta), &end_req(old, false), T0 + 3, no_alloc), fenced);
        assert_eq!(markers_written(&mut meta, old, T0 + 3), vec![]);
        assert!(!is_partition_in_ongoing_txn(
            Some(&meta),
            old.producer_id,
            old.producer_epoch,
            &tp("a", 0)
        ));
        assert_eq!(meta, before);
    }

    #[test]
    fn t71_each_transaction_has_its_own_identity_and_markers_name_it() {
        // Proves: three transactions in a row (commit, abort, commit) run
        // under 7/0, 7/1, 7/2; each one's markers carry its own identity and
        // each EndTxn answer hands out the next one.
        let mut meta = ready();
        let mut who = id(7, 0);
        for (round, commit) in [true, false, true].into_iter().enumerate() {
            let now = T0 + 100 * round as u64;
            let add = add_partitions_to_txn(Some(&mut meta), &add_req(who, &[("a", 0)]), now);
            apply(&mut meta, &add);
            let end = end_txn(Some(&mut meta), &end_req(who, commit), now + 1, no_alloc);
            let next = id(7, who.producer_epoch.0 + 1);
            assert_eq!(
                end[1..],
                [
                    Command::Reply(Ok(Answer::TxnEnded { committed: commit, next })),
                    markers(who, commit, &[("a", 0)]),
                ]
            );
            apply(&mut meta, &end);
            let done = markers_written(&mut meta, who, now + 2);
            apply(&mut meta, &done);
            who = next;
        }
        assert_eq!(meta.current(), id(7, 3));
    }
}
