//! Consumer groups and their committed offsets, in the coordinator.
//!
//! **Membership** ([`membership`], pure) follows an eager protocol: any
//! change — a member joins, leaves, changes its subscription, misses its
//! session timeout, or a subscribed topic's partition count changes — bumps
//! the group's generation at once. JoinGroup answers immediately; the
//! coordinator computes the assignment itself ([`assignor`]: `range` or
//! `roundrobin`, over the partitions of the subscribed topics in its own
//! metadata) at the generation's first SyncGroup. Members of an older
//! generation hear REBALANCE_IN_PROGRESS from Heartbeat and rejoin; until
//! then their offset commits are refused with ILLEGAL_GENERATION (zombie
//! fencing, in the spirit of KIP-447). Membership lives in memory only: after
//! a coordinator restart every member hears UNKNOWN_MEMBER_ID and joins
//! afresh (member ids are random UUIDs, never reused, so a pre-restart
//! zombie stays fenced even though generations start again at 1).
//!
//! **Offsets** live in the compacted internal topic `__consumer_offsets`
//! on the partition servers (a group's partition: [`offsets_partition_of`]);
//! the coordinator keeps a mirror in memory ([`offsets`], pure) and writes
//! every commit as one record batch there ([`codec`] has the record
//! layout, [`offsets_log`] the calls):
//! - OffsetCommit: member id and generation are checked, a plain batch
//!   (producer id -1) is written, and the mirror is updated only once the
//!   partition server has acknowledged it.
//! - TxnOffsetCommit: the producer's Ongoing transaction must already hold
//!   the group's offsets partition (AddOffsetsToTxn) under its current
//!   identity, and the member its generation; the batch is transactional,
//!   with the producer's id and epoch and no sequence (epoch-fenced, not
//!   deduplicated, verified like any transactional write). Its offsets are
//!   *pending* for that transaction — from before the write is sent — and
//!   become committed or vanish when the transaction's markers have been
//!   written ([`Groups::txn_markers_written`], called by the driver's marker
//!   task).
//! - OffsetFetch answers UNSTABLE_OFFSET_COMMIT while any asked-for
//!   partition is pending, or while the group's offsets partition is
//!   *stale* (see below); otherwise the mirror.
//!
//! **Restart and doubt.** The mirror starts empty and every offsets
//! partition stale. A partition is read back with read_committed fetches
//! (the record with the highest log offset wins); it is fresh again once a
//! read-back reaches the high watermark seen when it started. That needs
//! the last stable offset to pass it, i.e. every transaction open in the
//! partition — a restart's Ongoing / Prepare* transactions holding group
//! offsets among them — to have ended; until then its groups are UNSTABLE,
//! which is what the client waits out. A write whose outcome is unknown (a
//! timeout) marks the partition stale the same way, so the mirror never
//! answers from a guess. Read-backs run on OffsetFetch and every second in
//! the background.
//!
//! Locking: one std Mutex over all groups, never held across an await (all
//! work under it is in memory); a tokio Mutex per offsets partition
//! serialises its read-backs. The marker hook runs under neither the
//! transaction's slot lock nor any await, so no lock order can form a cycle
//! with the partition servers' verification calls.

pub mod assignor;
pub mod codec;
pub mod error;
pub mod membership;
pub mod offsets;
pub mod offsets_log;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use xo_proto::batch::{BatchMeta, decode_batch};
use xo_proto::{Offset, Sequence};

use self::codec::{OFFSET_METADATA_LEN_MAX, OFFSETS_PER_COMMIT_MAX, OffsetValue};
pub use self::error::GroupError;
use self::membership::{GENERATION_UNMANAGED, JoinRequest, Joined, Membership, TopicCounts};
use self::offsets::{Committed, Followup, GroupOffsets, PartitionSync, WriteOutcome};
use self::offsets_log::{AppendFailure, FetchFailure, OffsetsLog};
use crate::driver::{
    CONSUMER_OFFSETS_PARTITIONS, CONSUMER_OFFSETS_TOPIC, Coordinator, now_ms, offsets_partition_of,
};
use crate::error::{CoordinatorError, ServiceError};
use crate::markers::{MarkerSet, PartitionLocator, Placement};
use crate::txn_metadata::{ProducerIdentity, TopicPartition};
use crate::txn_state::TxnState;

pub use self::codec::GROUP_ID_LEN_MAX;

/// Most groups requests may create (groups read back from the log are
/// never dropped: the log is the truth, and was bounded when written).
pub const GROUPS_MAX: usize = 100_000;
/// How often sessions are checked for expiry.
pub const SESSION_CHECK_MS: u64 = 100;
/// How often the slower chores run: metadata changes, read-backs of stale
/// offsets partitions, pending offsets whose transaction the coordinator
/// no longer has open.
pub const GROUP_CHORES_MS: u64 = 1_000;
/// Most fetches one read-back makes before it yields (the next one resumes
/// where it stopped).
pub const READ_BACK_FETCHES_MAX: usize = 256;

/// One offset of a commit request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOffset {
    pub partition: TopicPartition,
    pub offset: i64,
    pub metadata: String,
}

/// OffsetCommit, or the group half of TxnOffsetCommit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group_id: String,
    /// Empty with generation -1: a consumer outside group management.
    pub member_id: String,
    pub generation: i32,
    pub offsets: Vec<CommitOffset>,
}

#[derive(Default)]
struct Group {
    membership: Membership,
    offsets: GroupOffsets,
}

impl Group {
    fn is_idle(&self) -> bool {
        self.membership.is_empty() && self.offsets.is_empty()
    }
}

struct State {
    groups: HashMap<String, Group>,
    /// Indexed by `__consumer_offsets` partition.
    partitions: Vec<PartitionSync>,
    /// Transactions with pending offsets → the groups holding them, so the
    /// marker hook finds them without a scan.
    txn_groups: HashMap<ProducerIdentity, BTreeSet<String>>,
}

impl State {
    /// The group, created if `create` and the bound allows.
    fn group(&mut self, group_id: &str, create: bool) -> Result<&mut Group, GroupError> {
        if !self.groups.contains_key(group_id) {
            if !create {
                return Err(GroupError::UnknownMemberId(String::new()));
            }
            if self.groups.len() >= GROUPS_MAX {
                return Err(GroupError::InvalidRequest(format!(
                    "the coordinator already holds {GROUPS_MAX} groups"
                )));
            }
            self.groups.insert(group_id.to_string(), Group::default());
        }
        Ok(self.groups.get_mut(group_id).expect("just ensured"))
    }

    /// Drops the group's index entry for `txn` once it holds nothing of it.
    fn settle_index(&mut self, txn: ProducerIdentity, group_id: &str) {
        let holds = self.groups.get(group_id).is_some_and(|g| g.offsets.has_pending(txn));
        if holds {
            return;
        }
        if let Some(groups) = self.txn_groups.get_mut(&txn) {
            groups.remove(group_id);
            if groups.is_empty() {
                self.txn_groups.remove(&txn);
            }
        }
    }

    fn forget_if_idle(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(Group::is_idle) {
            self.groups.remove(group_id);
        }
    }

    fn mark_stale(&mut self, group_id: &str) {
        self.partitions[offsets_partition_of(group_id) as usize].mark_stale();
    }
}

/// The groups of one coordinator; owned by [`Coordinator`].
pub struct Groups {
    /// std Mutex: membership, offsets and read-back state of every group;
    /// only in-memory work happens under it, never an await.
    state: Mutex<State>,
    /// One per offsets partition: serialises its read-backs (tokio Mutex:
    /// held across the fetches).
    readers: Vec<tokio::sync::Mutex<()>>,
    log: OffsetsLog,
    next_write: AtomicU64,
}

impl Default for Groups {
    fn default() -> Self {
        Groups::new()
    }
}

impl Groups {
    /// No groups, every offsets partition still to be read back.
    pub fn new() -> Groups {
        let partitions = CONSUMER_OFFSETS_PARTITIONS as usize;
        Groups {
            state: Mutex::new(State {
                groups: HashMap::new(),
                partitions: (0..partitions).map(|_| PartitionSync::unread()).collect(),
                txn_groups: HashMap::new(),
            }),
            readers: (0..partitions).map(|_| tokio::sync::Mutex::new(())).collect(),
            log: OffsetsLog::new(),
            next_write: AtomicU64::new(1),
        }
    }

    /// The driver's hook: every partition of the transaction, its
    /// `__consumer_offsets` partitions included, has acknowledged the
    /// commit or abort marker. The transaction's pending offsets become
    /// committed (commit) or are dropped (abort).
    pub fn txn_markers_written(&self, set: &MarkerSet) {
        if !set.partitions.iter().any(|tp| tp.topic == CONSUMER_OFFSETS_TOPIC) {
            return;
        }
        let txn = set.txn();
        let mut state = self.state.lock().unwrap();
        let Some(group_ids) = state.txn_groups.get(&txn).cloned() else { return };
        for group_id in &group_ids {
            if let Some(group) = state.groups.get_mut(group_id) {
                group.offsets.txn_ended(txn, set.commit);
            }
            state.settle_index(txn, group_id);
        }
        tracing::debug!(%txn, commit = set.commit, groups = group_ids.len(), "transactional offsets settled");
    }

    /// (group id, member count, generation) of every group with members.
    pub fn describe(&self) -> Vec<(String, usize, i32)> {
        let state = self.state.lock().unwrap();
        let mut out: Vec<(String, usize, i32)> = state
            .groups
            .iter()
            .filter(|(_, g)| !g.membership.is_empty())
            .map(|(id, g)| (id.clone(), g.membership.members().len(), g.membership.generation()))
            .collect();
        out.sort();
        out
    }
}

// ---- membership ------------------------------------------------------------

fn check_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_LEN_MAX {
        return Err(GroupError::InvalidRequest(format!(
            "group id must be 1 to {GROUP_ID_LEN_MAX} bytes"
        )));
    }
    Ok(())
}

/// Session expiry before every event, so timing does not depend on the
/// background check.
fn expire(group_id: &str, membership: &mut Membership, now: u64) {
    for member in membership.expire(now) {
        tracing::info!(group = group_id, %member, generation = membership.generation(),
            "member's session expired: evicted");
    }
}

pub fn join_group(
    c: &Coordinator,
    group_id: &str,
    request: JoinRequest,
) -> Result<Joined, GroupError> {
    check_group_id(group_id)?;
    let now = now_ms();
    let mut state = c.groups().state.lock().unwrap();
    let group = state.group(group_id, true)?;
    expire(group_id, &mut group.membership, now);
    let joined = group.membership.join(request, || uuid::Uuid::new_v4().to_string(), now);
    if let Ok(joined) = &joined
        && joined.rebalanced
    {
        tracing::info!(group = group_id, member = %joined.member_id, generation = joined.generation,
            members = group.membership.members().len(), "group rebalanced on join");
    }
    state.forget_if_idle(group_id);
    joined
}

pub fn sync_group(
    c: &Coordinator,
    group_id: &str,
    member_id: &str,
    generation: i32,
) -> Result<Vec<TopicPartition>, GroupError> {
    check_group_id(group_id)?;
    let topics = topic_counts(c);
    let now = now_ms();
    let mut state = c.groups().state.lock().unwrap();
    let group = state.group(group_id, false).map_err(|_| unknown(member_id))?;
    expire(group_id, &mut group.membership, now);
    group.membership.sync(member_id, generation, &topics, now)
}

pub fn heartbeat(
    c: &Coordinator,
    group_id: &str,
    member_id: &str,
    generation: i32,
) -> Result<(), GroupError> {
    check_group_id(group_id)?;
    let now = now_ms();
    let mut state = c.groups().state.lock().unwrap();
    let group = state.group(group_id, false).map_err(|_| unknown(member_id))?;
    expire(group_id, &mut group.membership, now);
    group.membership.heartbeat(member_id, generation, now)
}

pub fn leave_group(c: &Coordinator, group_id: &str, member_id: &str) -> Result<(), GroupError> {
    check_group_id(group_id)?;
    let now = now_ms();
    let mut state = c.groups().state.lock().unwrap();
    let group = state.group(group_id, false).map_err(|_| unknown(member_id))?;
    expire(group_id, &mut group.membership, now);
    let left = group.membership.leave(member_id);
    if left.is_ok() {
        tracing::info!(
            group = group_id,
            member = member_id,
            generation = group.membership.generation(),
            "member left the group"
        );
    }
    state.forget_if_idle(group_id);
    left
}

fn unknown(member_id: &str) -> GroupError {
    GroupError::UnknownMemberId(member_id.to_string())
}

/// Partition counts of every (non-internal) topic.
fn topic_counts(c: &Coordinator) -> TopicCounts {
    let (views, _, _) = c.metadata(&[]);
    views
        .into_iter()
        .filter(|v| !v.record.internal)
        .map(|v| (v.record.name, v.record.placement.len() as u32))
        .collect()
}

// ---- offsets -------------------------------------------------------------

/// Checks a commit's group, offsets and partitions; the values to write.
fn commit_values(
    c: &Coordinator,
    commit: &OffsetCommit,
    now: u64,
) -> Result<Vec<(TopicPartition, OffsetValue)>, GroupError> {
    check_group_id(&commit.group_id)?;
    let invalid = |why: String| Err(GroupError::InvalidRequest(why));
    if commit.offsets.len() > OFFSETS_PER_COMMIT_MAX {
        return invalid(format!("at most {OFFSETS_PER_COMMIT_MAX} offsets per commit"));
    }
    let topics = topic_counts(c);
    let mut values = Vec::with_capacity(commit.offsets.len());
    for o in &commit.offsets {
        if o.offset < 0 {
            return invalid(format!("offset {} for {} is negative", o.offset, o.partition));
        }
        if o.metadata.len() > OFFSET_METADATA_LEN_MAX {
            return invalid(format!(
                "offset metadata is limited to {OFFSET_METADATA_LEN_MAX} bytes"
            ));
        }
        if topics.get(&o.partition.topic).is_none_or(|n| o.partition.partition >= *n) {
            return Err(ServiceError::UnknownTopicOrPartition(o.partition.to_string()).into());
        }
        let value =
            OffsetValue { offset: o.offset, metadata: o.metadata.clone(), commit_time_ms: now };
        values.push((o.partition.clone(), value));
    }
    Ok(values)
}

/// The membership check of a commit (creating the group for an unmanaged
/// consumer's first commit).
fn check_member(state: &mut State, commit: &OffsetCommit, now: u64) -> Result<(), GroupError> {
    let unmanaged = commit.member_id.is_empty() && commit.generation == GENERATION_UNMANAGED;
    let group = state
        .group(&commit.group_id, unmanaged)
        .map_err(|e| if unmanaged { e } else { unknown(&commit.member_id) })?;
    expire(&commit.group_id, &mut group.membership, now);
    group.membership.check_commit(&commit.member_id, commit.generation, now)
}

fn address_of(c: &Coordinator, tp: &TopicPartition) -> Result<String, GroupError> {
    match c.locate(tp) {
        Placement::Server { address, .. } => Ok(address),
        Placement::TopicGone => Err(ServiceError::UnknownTopicOrPartition(tp.to_string()).into()),
        Placement::Unplaced => Err(CoordinatorError::CoordinatorNotAvailable.into()),
    }
}

/// Appends an offsets batch to its `__consumer_offsets` partition: the
/// outcome the group's offsets apply, and the client's answer.
async fn write_offsets(
    groups: &Groups,
    address: &str,
    partition: &TopicPartition,
    batch: bytes::Bytes,
) -> (WriteOutcome, Result<(), GroupError>) {
    match groups.log.append(address, &partition.topic, partition.partition, batch).await {
        Ok(base_offset) => (WriteOutcome::Appended { base_offset }, Ok(())),
        Err(failure) => (failure.outcome, Err(append_error(failure))),
    }
}

/// The client's view of a failed write: fenced and unverified writes are
/// the transaction's problem, anything else is worth a retry.
fn append_error(failure: AppendFailure) -> GroupError {
    use xo_proto::partition::ErrorCode;
    match failure.code {
        Some(ErrorCode::InvalidProducerEpoch) => CoordinatorError::ProducerFenced.into(),
        Some(ErrorCode::TransactionNotVerified | ErrorCode::InvalidTxnState) => {
            CoordinatorError::InvalidTxnState.into()
        }
        _ => ServiceError::PartitionServer(failure.message).into(),
    }
}

/// OffsetCommit: written (plain batch) before it is applied.
pub async fn offset_commit(c: &Coordinator, commit: OffsetCommit) -> Result<(), GroupError> {
    let now = now_ms();
    let values = commit_values(c, &commit, now)?;
    check_member(&mut c.groups().state.lock().unwrap(), &commit, now)?;
    if values.is_empty() {
        return Ok(());
    }
    let partition = c.offsets_partition(&commit.group_id).await?;
    let address = address_of(c, &partition)?;
    let batch = codec::offsets_batch(BatchMeta::plain(now as i64), &commit.group_id, &values)
        .map_err(|e| GroupError::InvalidRequest(e.to_string()))?;
    let groups = c.groups();
    let (outcome, result) = write_offsets(groups, &address, &partition, batch).await;
    let mut state = groups.state.lock().unwrap();
    let group = state.groups.entry(commit.group_id.clone()).or_default();
    if group.offsets.plain_write_done(&values, outcome) == Followup::MarkStale {
        state.mark_stale(&commit.group_id);
    }
    state.forget_if_idle(&commit.group_id);
    result
}

/// TxnOffsetCommit: the offsets are pending in the producer's transaction
/// from before the write is sent until its markers are written.
pub async fn txn_offset_commit(
    c: &Coordinator,
    transactional_id: &str,
    who: ProducerIdentity,
    commit: OffsetCommit,
) -> Result<(), GroupError> {
    let now = now_ms();
    let values = commit_values(c, &commit, now)?;
    let partition = c.offsets_partition(&commit.group_id).await?;
    offsets::check_txn(c.describe(transactional_id).await, who, &partition, now)?;
    if values.is_empty() {
        return check_member(&mut c.groups().state.lock().unwrap(), &commit, now);
    }
    let address = address_of(c, &partition)?;
    let meta = BatchMeta {
        producer_id: who.producer_id,
        producer_epoch: who.producer_epoch,
        base_sequence: Sequence::NONE,
        transactional: true,
        ..BatchMeta::plain(now as i64)
    };
    let batch = codec::offsets_batch(meta, &commit.group_id, &values)
        .map_err(|e| GroupError::InvalidRequest(e.to_string()))?;
    let groups = c.groups();
    let write = groups.next_write.fetch_add(1, Ordering::Relaxed);
    {
        let mut state = groups.state.lock().unwrap();
        check_member(&mut state, &commit, now)?;
        let group = state.groups.get_mut(&commit.group_id).expect("check_member keeps it");
        group.offsets.begin_txn_write(who, transactional_id, write, values);
        state.txn_groups.entry(who).or_default().insert(commit.group_id.clone());
    }
    let (outcome, result) = write_offsets(groups, &address, &partition, batch).await;
    let mut state = groups.state.lock().unwrap();
    let group = state.groups.get_mut(&commit.group_id).expect("a write in flight keeps its group");
    let followup = group.offsets.txn_write_done(who, write, outcome);
    state.settle_index(who, &commit.group_id);
    if followup == Followup::MarkStale {
        state.mark_stale(&commit.group_id);
    }
    state.forget_if_idle(&commit.group_id);
    result
}

/// OffsetFetch: `partitions` (every committed one, if empty) with their
/// committed offsets, or UNSTABLE_OFFSET_COMMIT.
pub async fn offset_fetch(
    c: &Coordinator,
    group_id: &str,
    partitions: Vec<TopicPartition>,
) -> Result<Vec<(TopicPartition, Option<Committed>)>, GroupError> {
    check_group_id(group_id)?;
    let p = offsets_partition_of(group_id);
    read_back(c, p).await?;
    let state = c.groups().state.lock().unwrap();
    if state.partitions[p as usize].is_stale() {
        return Err(GroupError::UnstableOffsetCommit);
    }
    match state.groups.get(group_id) {
        None => Ok(partitions.into_iter().map(|tp| (tp, None)).collect()),
        Some(group) => {
            group.offsets.fetch(&partitions).map_err(|_| GroupError::UnstableOffsetCommit)
        }
    }
}

/// Reads a stale offsets partition back into the mirror, as far as its
/// last stable offset allows; `Ok` also when it stays stale for now.
async fn read_back(c: &Coordinator, p: u32) -> Result<(), GroupError> {
    let groups = c.groups();
    if !groups.state.lock().unwrap().partitions[p as usize].is_stale() {
        return Ok(());
    }
    let _reader = groups.readers[p as usize].lock().await;
    let tp = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, p);
    for _ in 0..READ_BACK_FETCHES_MAX {
        let (marks, from) = {
            let state = groups.state.lock().unwrap();
            let sync = &state.partitions[p as usize];
            if !sync.is_stale() {
                return Ok(());
            }
            (sync.marks(), sync.read_to())
        };
        let (_, missing, _) = c.metadata(&[CONSUMER_OFFSETS_TOPIC.to_string()]);
        if !missing.is_empty() {
            groups.state.lock().unwrap().partitions[p as usize].no_topic(marks);
            continue;
        }
        let address = address_of(c, &tp)?;
        let chunk = match groups.log.fetch(&address, &tp.topic, p, from).await {
            Ok(chunk) => chunk,
            Err(FetchFailure::OutOfRange) => {
                let start = groups
                    .log
                    .log_start(&address, &tp.topic, p)
                    .await
                    .map_err(ServiceError::PartitionServer)?;
                if start <= from {
                    return Err(ServiceError::PartitionServer(format!(
                        "{tp}: offset {from} out of range, log starts at {}",
                        start.0
                    ))
                    .into());
                }
                groups.state.lock().unwrap().partitions[p as usize].skip_to(start);
                continue;
            }
            Err(FetchFailure::Other(e)) => return Err(ServiceError::PartitionServer(e).into()),
        };
        let records = decode_records(&tp, &chunk.batches);
        let mut state = groups.state.lock().unwrap();
        for (group_id, partition, value, log_offset) in records {
            state.groups.entry(group_id).or_default().offsets.apply(partition, value, log_offset);
        }
        let fresh =
            state.partitions[p as usize].read_done(marks, chunk.next_offset, chunk.high_watermark);
        if fresh {
            tracing::info!(partition = %tp, read_to = chunk.next_offset.0, "offsets read back");
            return Ok(());
        }
        if chunk.next_offset <= from {
            // Held at the last stable offset: an open transaction must end.
            return Ok(());
        }
    }
    Ok(())
}

type LogRecord = (String, TopicPartition, Option<OffsetValue>, Offset);

/// The offset records of fetched batches. Records this version cannot read
/// are skipped with a warning, never guessed at.
fn decode_records(tp: &TopicPartition, batches: &[bytes::Bytes]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for bytes in batches {
        let batch = match decode_batch(bytes) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "unreadable batch in the offsets log");
                continue;
            }
        };
        for record in &batch.records {
            let log_offset = record.offset(&batch.header);
            let Some(key) = record.key.as_deref() else { continue };
            let (group_id, partition) = match codec::decode_key(key) {
                Ok(decoded) => decoded,
                Err(e) => {
                    tracing::warn!(partition = %tp, offset = log_offset.0, error = %e, "skipping offsets record");
                    continue;
                }
            };
            let value = match record.value.as_deref().map(codec::decode_value) {
                None => None,
                Some(Ok(value)) => Some(value),
                Some(Err(e)) => {
                    tracing::warn!(partition = %tp, offset = log_offset.0, error = %e, "skipping offsets record");
                    continue;
                }
            };
            out.push((group_id, partition, value, log_offset));
        }
    }
    out
}

// ---- background ------------------------------------------------------------

/// Runs forever: session expiry every [`SESSION_CHECK_MS`], the chores every
/// [`GROUP_CHORES_MS`]. Started by the service next to transaction expiry.
pub async fn run(c: Arc<Coordinator>) {
    let mut tick = tokio::time::interval(Duration::from_millis(SESSION_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut chores_due = Instant::now();
    loop {
        tick.tick().await;
        expire_sessions(&c);
        if Instant::now() >= chores_due {
            chores(&c).await;
            chores_due = Instant::now() + Duration::from_millis(GROUP_CHORES_MS);
        }
    }
}

/// Evicts members whose session timed out (each such group rebalances).
pub fn expire_sessions(c: &Coordinator) {
    let now = now_ms();
    let mut state = c.groups().state.lock().unwrap();
    for (group_id, group) in state.groups.iter_mut() {
        expire(group_id, &mut group.membership, now);
    }
    state.groups.retain(|_, g| !g.is_idle());
}

/// Rebalances groups whose subscribed topics changed, reads stale offsets
/// partitions back, and drops pending offsets of transactions the
/// coordinator no longer has open (their end was missed: the log decides).
pub async fn chores(c: &Coordinator) {
    let topics = topic_counts(c);
    {
        let mut state = c.groups().state.lock().unwrap();
        for (group_id, group) in state.groups.iter_mut() {
            if group.membership.metadata_changed(&topics) {
                tracing::info!(group = %group_id, generation = group.membership.generation(),
                    "subscribed topics changed: group rebalanced");
            }
        }
    }
    for p in 0..CONSUMER_OFFSETS_PARTITIONS {
        if let Err(e) = read_back(c, p).await {
            tracing::debug!(partition = p, error = %e, "offsets read-back failed; later");
        }
    }
    let candidates: Vec<(ProducerIdentity, String)> = {
        let state = c.groups().state.lock().unwrap();
        let mut seen = BTreeSet::new();
        state
            .groups
            .values()
            .flat_map(|g| g.offsets.pending_txns())
            .filter(|(txn, _, in_flight)| {
                !in_flight && seen.insert((txn.producer_id, txn.producer_epoch))
            })
            .map(|(txn, tid, _)| (txn, tid.to_string()))
            .collect()
    };
    for (txn, transactional_id) in candidates {
        let open = c.describe(&transactional_id).await.is_some_and(|meta| {
            meta.txn() == Some(txn)
                && matches!(
                    meta.state,
                    TxnState::Ongoing
                        | TxnState::PrepareCommit
                        | TxnState::PrepareAbort
                        | TxnState::PrepareEpochFence
                )
        });
        if open {
            continue;
        }
        let mut state = c.groups().state.lock().unwrap();
        let Some(group_ids) = state.txn_groups.get(&txn).cloned() else { continue };
        for group_id in &group_ids {
            if let Some(group) = state.groups.get_mut(group_id) {
                group.offsets.drop_txn(txn);
                state.mark_stale(group_id);
            }
            state.settle_index(txn, group_id);
        }
        tracing::warn!(%txn, %transactional_id,
            "pending offsets of a transaction that is no longer open: reading them back from the log");
    }
}
