//! One partition: its log on disk plus the state derived from it (producer
//! state, high watermark, last stable offset), and the produce and fetch
//! paths that keep them consistent.
//!
//! Locking: `state` is a std `RwLock` held only for CPU work and the write
//! syscall of an append, never across an `.await`. The fsync of group commit
//! and a fetch's long-poll wait both happen with no lock held.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use xo_proto::batch::control::{
    ControlRecord, ControlType, decode_control_record, encode_control_batch,
};
use xo_proto::batch::{BatchError, BatchHeader};
use xo_proto::{Offset, ProducerEpoch, ProducerId};

use crate::config::{FsyncPolicy, ServerConfig};
use crate::group_commit::GroupCommit;
use crate::log::{Log, LogConfig, ReadError, StoredBatch};
// Re-exported for the server's other files (registry, server id) that
// replace a file whole.
use crate::log::segment::write_atomically;
use crate::producer_snapshot;
use crate::producer_state::{AppendDecision, MarkerDecision, ProducerStateError, ProducerStateMap};
use crate::txn_index::{AbortedTxn, AbortedTxnIndex};
use crate::watermark::Watermark;

/// Snapshots of producer state kept per partition; older ones are deleted.
const PRODUCER_SNAPSHOTS_KEPT_MAX: usize = 2;
const SNAPSHOT_SUFFIX: &str = ".snapshot";
pub const CONFIG_FILE: &str = "partition.json";
const ABORTED_INDEX_FILE: &str = "aborted.txnindex";

/// Asks the transaction coordinator whether a partition was added to a
/// producer's ongoing transaction, before the transaction's first write to
/// the partition is accepted. Without that check a write could open a
/// transaction that no marker will ever end (a hanging transaction).
#[tonic::async_trait]
pub trait TxnVerifier: Send + Sync {
    async fn verify(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        topic: &str,
        partition: u32,
    ) -> Result<(), PartitionError>;
}

/// The verifier of a server with no coordinator: refuses every transactional write.
pub struct NoCoordinator;

#[tonic::async_trait]
impl TxnVerifier for NoCoordinator {
    async fn verify(
        &self,
        _: ProducerId,
        _: ProducerEpoch,
        _: &str,
        _: u32,
    ) -> Result<(), PartitionError> {
        Err(PartitionError::TransactionNotVerified(
            "this partition server has no transaction coordinator configured".into(),
        ))
    }
}

/// A partition's settings, stored beside its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PartitionConfig {
    pub compact: bool,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    /// 0: the server's default.
    pub segment_bytes: u64,
    /// 0: the server's default.
    pub segment_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Producer(#[from] ProducerStateError),
    #[error("control batches (commit/abort markers) are written by the coordinator, not producers")]
    ControlBatchFromProducer,
    #[error("transactional write not verified: {0}")]
    TransactionNotVerified(String),
    #[error("marker rejected: {0}")]
    InvalidMarker(String),
    #[error("offset {offset} is out of range: the log holds [{start}, {end})")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<std::io::Error> for PartitionError {
    fn from(e: std::io::Error) -> Self {
        PartitionError::Storage(e.to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

/// Result of an accepted produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceOutcome {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub duplicate: bool,
    pub log_start_offset: Offset,
}

#[derive(Clone, Debug, Default)]
pub struct FetchOutcome {
    pub batches: Vec<Bytes>,
    pub next_offset: Offset,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
}

/// Offsets describing the partition right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_end_offset: Offset,
}

struct PartitionState {
    log: Log,
    producers: ProducerStateMap,
    aborted: AbortedTxnIndex,
    /// Append handle of the aborted-transaction index file.
    aborted_file: std::fs::File,
}

pub struct Partition {
    pub topic: String,
    pub partition: u32,
    pub config: PartitionConfig,
    dir: PathBuf,
    state: RwLock<PartitionState>,
    /// End of the data readers may see: durable data under `fsync always`,
    /// written data otherwise.
    high_watermark: Arc<Watermark>,
    /// Woken whenever the high watermark or the LSO moves.
    data_arrived: Arc<Notify>,
    group_commit: Arc<GroupCommit>,
    fsync: FsyncPolicy,
    batch_bytes_max: usize,
    verifier: Arc<dyn TxnVerifier>,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

fn snapshot_path(dir: &Path, offset: Offset) -> PathBuf {
    dir.join(format!("{:020}{SNAPSHOT_SUFFIX}", offset.0))
}

/// Snapshot offsets found in `dir`, oldest first.
fn snapshot_offsets(dir: &Path) -> std::io::Result<Vec<Offset>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(Ok(offset)) = name.strip_suffix(SNAPSHOT_SUFFIX).map(str::parse::<i64>) {
            offsets.push(Offset(offset));
        }
    }
    offsets.sort();
    Ok(offsets)
}

impl Partition {
    /// Opens (recovering) or creates the partition's log in its directory.
    pub fn open(
        server: &ServerConfig,
        topic: &str,
        partition: u32,
        config: PartitionConfig,
        verifier: Arc<dyn TxnVerifier>,
    ) -> Result<Arc<Partition>, PartitionError> {
        let dir = partition_dir(&server.data_dir, topic, partition);
        std::fs::create_dir_all(&dir)?;
        let log_config = LogConfig {
            segment_bytes_max: if config.segment_bytes > 0 {
                config.segment_bytes
            } else {
                server.segment_bytes_default
            },
            segment_ms_max: if config.segment_ms > 0 {
                config.segment_ms
            } else {
                server.segment_ms_default
            },
            batch_bytes_max: server.batch_bytes_max,
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            compact: config.compact,
            ..LogConfig::default()
        };
        let (log, report) = Log::open(&dir, log_config)?;
        if report.truncated_bytes > 0 {
            tracing::warn!(
                topic, partition, bytes = report.truncated_bytes, reason = ?report.reason,
                "truncated a torn or corrupt log tail on recovery"
            );
        }
        let (producers, aborted) = recover_txn_state(&dir, &log)?;
        // Rewritten whole: recovery may have dropped entries past the snapshot.
        write_atomically(&dir.join(ABORTED_INDEX_FILE), &aborted.encode_file())?;
        let aborted_file =
            std::fs::OpenOptions::new().append(true).open(dir.join(ABORTED_INDEX_FILE))?;
        // Whatever survived in the page cache after a process crash is made
        // durable before it is served as durable.
        log.sync()?;
        let end = log.next_offset().0;
        let high_watermark = Arc::new(Watermark::new(end));
        let data_arrived = Arc::new(Notify::new());
        let state = RwLock::new(PartitionState { log, producers, aborted, aborted_file });
        Ok(Arc::new_cyclic(|weak: &std::sync::Weak<Partition>| {
            let weak = weak.clone();
            let syncer = Arc::new(move || {
                let Some(partition) = weak.upgrade() else {
                    return Ok(i64::MAX);
                };
                partition.sync_written()
            });
            Partition {
                topic: topic.to_string(),
                partition,
                config,
                dir,
                state,
                high_watermark,
                data_arrived,
                group_commit: GroupCommit::new(end, syncer),
                fsync: server.fsync,
                batch_bytes_max: server.batch_bytes_max,
                verifier,
            }
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// fsyncs the active segment and publishes what it covered. Runs on the
    /// blocking pool (group commit) or a housekeeping task.
    fn sync_written(&self) -> std::io::Result<i64> {
        let (upto, file) = {
            let state = self.state.read().unwrap();
            (state.log.next_offset().0, state.log.active_file())
        };
        // Segments before the active one were fsync'd when they rolled, so
        // syncing the active file covers everything below `upto`.
        file.sync_data()?;
        if self.high_watermark.advance(upto) {
            self.data_arrived.notify_waiters();
        }
        Ok(upto)
    }

    /// Validates, dedupes and appends one producer batch, and returns once it
    /// is as durable as the fsync policy promises.
    pub async fn produce(&self, batch: Bytes) -> Result<ProduceOutcome, PartitionError> {
        if BatchHeader::parse(&batch).is_ok_and(|h| h.is_control()) {
            return Err(PartitionError::ControlBatchFromProducer);
        }
        let mut header = BatchHeader::validate_for_append(&batch, self.batch_bytes_max)?;
        if header.is_transactional() && self.needs_verification(&header)? {
            self.verifier
                .verify(header.producer_id, header.producer_epoch, &self.topic, self.partition)
                .await?;
        }
        let now = now_ms();
        let (outcome, end) = {
            let mut state = self.state.write().unwrap();
            let log_start_offset = state.log.log_start_offset();
            match state.producers.check_batch(&header)? {
                AppendDecision::Duplicate { first_offset, last_offset } => (
                    ProduceOutcome {
                        base_offset: first_offset,
                        last_offset,
                        duplicate: true,
                        log_start_offset,
                    },
                    last_offset.next(),
                ),
                AppendDecision::Append => {
                    let state = &mut *state;
                    self.roll_if_needed(state, batch.len(), now)?;
                    let info = state.log.append(&batch, &header)?;
                    header.base_offset = info.base_offset;
                    debug_assert_eq!(info.last_offset, header.last_offset());
                    state.producers.record_batch(&header, now);
                    (
                        ProduceOutcome {
                            base_offset: info.base_offset,
                            last_offset: info.last_offset,
                            duplicate: false,
                            log_start_offset,
                        },
                        info.last_offset.next(),
                    )
                }
            }
        };
        // A duplicate waits too: its original may not be durable yet.
        self.make_visible(end).await?;
        Ok(outcome)
    }

    /// Whether this transactional batch would be the first of its
    /// transaction here, and so must be verified with the coordinator. A
    /// batch of an epoch this partition has already closed is refused here
    /// as fenced, before asking the coordinator: the answer is certain, and
    /// the producer must learn it was fenced, not that it forgot to add the
    /// partition (the append path checks the same again under the lock).
    fn needs_verification(&self, header: &BatchHeader) -> Result<bool, PartitionError> {
        let state = self.state.read().unwrap();
        let Some(entry) = state.producers.get(header.producer_id) else {
            return Ok(true);
        };
        if header.producer_epoch < entry.epoch {
            return Err(ProducerStateError::FencedEpoch {
                producer_id: header.producer_id,
                current: entry.epoch,
                got: header.producer_epoch,
            }
            .into());
        }
        Ok(!(entry.epoch == header.producer_epoch && entry.txn_first_offset.is_some()))
    }

    fn roll_if_needed(
        &self,
        state: &mut PartitionState,
        incoming_len: usize,
        now: i64,
    ) -> Result<(), PartitionError> {
        if let Some(new_base) = state.log.roll_if_needed(incoming_len, now)? {
            // Everything below the snapshot must be durable with it: the
            // aborted index is only re-derived for markers after it.
            state.aborted_file.sync_data()?;
            self.write_producer_snapshot(&state.producers, new_base)?;
        }
        Ok(())
    }

    /// Waits until everything below `end` is as durable as the fsync policy
    /// promises, and lets readers see it.
    async fn make_visible(&self, end: Offset) -> Result<(), PartitionError> {
        match self.fsync {
            FsyncPolicy::Always => self.group_commit.wait_durable(end.0).await?,
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => {
                self.high_watermark.advance(end.0);
            }
        }
        // Also when the watermark did not move: a marker moves the LSO.
        self.data_arrived.notify_waiters();
        Ok(())
    }

    /// Appends a COMMIT or ABORT marker for the transaction that
    /// (`producer_id`, `producer_epoch`) wrote here, ends it, and returns once
    /// the marker is durable. A retried marker succeeds without a second append.
    pub async fn write_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<(), PartitionError> {
        if producer_id.is_none() || producer_epoch.0 < 0 || producer_epoch.0 == i16::MAX {
            return Err(PartitionError::InvalidMarker(format!(
                "producer id {producer_id} epoch {producer_epoch} cannot have a transaction"
            )));
        }
        let now = now_ms();
        let end = {
            let mut state = self.state.write().unwrap();
            let state = &mut *state;
            match state.producers.check_marker(producer_id, producer_epoch, coordinator_epoch)? {
                // The first marker may still await its fsync: wait for all.
                MarkerDecision::AlreadyApplied => state.log.next_offset(),
                MarkerDecision::Append => {
                    let kind = if commit { ControlType::Commit } else { ControlType::Abort };
                    let batch = encode_control_batch(
                        producer_id,
                        producer_epoch,
                        ControlRecord { kind, coordinator_epoch },
                        now,
                    );
                    let header = BatchHeader::parse(&batch)?;
                    self.roll_if_needed(state, batch.len(), now)?;
                    let info = state.log.append(&batch, &header)?;
                    crate::failpoints::crash_at("partition::after_marker_append");
                    let completed = state.producers.record_marker(
                        producer_id,
                        producer_epoch,
                        coordinator_epoch,
                        commit,
                        info.base_offset,
                        now,
                    );
                    if let Some(txn) = completed.filter(|t| !t.committed) {
                        let entry = AbortedTxn {
                            producer_id,
                            first_offset: txn.first_offset,
                            marker_offset: txn.marker_offset,
                        };
                        state.aborted.push(entry);
                        use std::io::Write;
                        state.aborted_file.write_all(&entry.encode())?;
                    }
                    info.last_offset.next()
                }
            }
        };
        self.make_visible(end).await
    }

    fn write_producer_snapshot(
        &self,
        producers: &ProducerStateMap,
        offset: Offset,
    ) -> std::io::Result<()> {
        write_atomically(
            &snapshot_path(&self.dir, offset),
            &producer_snapshot::encode(producers, offset),
        )?;
        let offsets = snapshot_offsets(&self.dir)?;
        if offsets.len() > PRODUCER_SNAPSHOTS_KEPT_MAX {
            for old in &offsets[..offsets.len() - PRODUCER_SNAPSHOTS_KEPT_MAX] {
                std::fs::remove_file(snapshot_path(&self.dir, *old))?;
            }
        }
        Ok(())
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let state = self.state.read().unwrap();
        self.offsets_locked(&state)
    }

    fn offsets_locked(&self, state: &PartitionState) -> PartitionOffsets {
        let high_watermark = Offset(self.high_watermark.get());
        let last_stable_offset = state
            .producers
            .first_open_txn_offset()
            .map_or(high_watermark, |first| first.min(high_watermark));
        PartitionOffsets {
            log_start_offset: state.log.log_start_offset(),
            high_watermark,
            last_stable_offset,
            log_end_offset: state.log.next_offset(),
        }
    }

    /// Reads whole batches from `offset`, waiting up to `max_wait` for data to
    /// become visible at that offset.
    pub async fn fetch(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_wait: Duration,
        isolation: Isolation,
    ) -> Result<FetchOutcome, PartitionError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.data_arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let outcome = self.read_visible(offset, max_bytes, isolation)?;
            if !outcome.batches.is_empty() || outcome.next_offset != offset {
                return Ok(outcome);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(outcome);
            }
        }
    }

    fn read_visible(
        &self,
        offset: Offset,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<FetchOutcome, PartitionError> {
        let state = self.state.read().unwrap();
        let offsets = self.offsets_locked(&state);
        let visible_end = match isolation {
            Isolation::ReadCommitted => offsets.last_stable_offset,
            Isolation::ReadUncommitted => offsets.high_watermark,
        };
        let mut outcome = FetchOutcome {
            batches: Vec::new(),
            next_offset: offset,
            high_watermark: offsets.high_watermark,
            last_stable_offset: offsets.last_stable_offset,
            log_start_offset: offsets.log_start_offset,
        };
        if offset.0 < 0 || offset < offsets.log_start_offset || offset > offsets.log_end_offset {
            return Err(PartitionError::OffsetOutOfRange {
                offset: offset.0,
                start: offsets.log_start_offset.0,
                end: offsets.log_end_offset.0,
            });
        }
        if offset >= visible_end {
            return Ok(outcome);
        }
        let stored = state.log.read(offset, visible_end, max_bytes).map_err(|e| match e {
            ReadError::OutOfRange { .. } => PartitionError::OffsetOutOfRange {
                offset: offset.0,
                start: offsets.log_start_offset.0,
                end: offsets.log_end_offset.0,
            },
            ReadError::Io(e) => PartitionError::Storage(e.to_string()),
        })?;
        let aborted = state.aborted.ranges_from(offset);
        for StoredBatch { header, bytes } in stored {
            outcome.next_offset = header.next_offset();
            // Markers are for the partition's bookkeeping, never for applications.
            if header.is_control() {
                continue;
            }
            if isolation == Isolation::ReadCommitted
                && header.is_transactional()
                && aborted.covers(header.producer_id, header.base_offset)
            {
                continue;
            }
            outcome.batches.push(bytes);
        }
        Ok(outcome)
    }

    /// First offset whose timestamp is at or after `timestamp_ms`, among
    /// data visible at `isolation`; `None` if there is none.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
        isolation: Isolation,
    ) -> Result<Option<Offset>, PartitionError> {
        let state = self.state.read().unwrap();
        let offsets = self.offsets_locked(&state);
        let visible_end = match isolation {
            Isolation::ReadCommitted => offsets.last_stable_offset,
            Isolation::ReadUncommitted => offsets.high_watermark,
        };
        Ok(state.log.offset_for_timestamp(timestamp_ms)?.filter(|o| *o < visible_end))
    }

    /// Producer state, for DescribeProducers.
    pub fn producers(&self) -> ProducerStateMap {
        self.state.read().unwrap().producers.clone()
    }

    pub fn size_and_segments(&self) -> (u64, usize) {
        let state = self.state.read().unwrap();
        (state.log.size_bytes(), state.log.segment_count())
    }

    /// Retention, compaction and producer expiry; run periodically.
    pub fn housekeeping(&self, producer_expiry: Duration) -> Result<(), PartitionError> {
        let now = now_ms();
        if self.config.compact {
            // The expensive part reads sealed segments only, so appends go on;
            // the write lock is held just for the renames.
            let plan = self.state.read().unwrap().log.prepare_compaction()?;
            let report = self.state.write().unwrap().log.install_compaction(plan)?;
            tracing::debug!(topic = %self.topic, partition = self.partition, ?report, "compaction");
        }
        let mut state = self.state.write().unwrap();
        let retention = state.log.apply_retention(now)?;
        let log_start = state.log.log_start_offset();
        state.aborted.drop_before(log_start);
        if retention.segments_deleted > 0 {
            tracing::info!(topic = %self.topic, partition = self.partition, ?retention, "retention");
        }
        let expired = state.producers.expire_idle(now, producer_expiry.as_millis() as i64);
        if !expired.is_empty() {
            tracing::info!(topic = %self.topic, partition = self.partition, count = expired.len(), "expired idle producers");
        }
        Ok(())
    }

    /// fsync for the `interval` policy's background flush and shutdown.
    pub fn flush(&self) -> Result<(), PartitionError> {
        self.group_commit.sync_now()?;
        Ok(())
    }

    /// Writes a producer snapshot at the log end so the next start replays
    /// nothing.
    pub fn close(&self) -> Result<(), PartitionError> {
        self.flush()?;
        let state = self.state.read().unwrap();
        self.write_producer_snapshot(&state.producers, state.log.next_offset())?;
        Ok(())
    }

    pub fn fsync_count(&self) -> u64 {
        self.group_commit.syncs()
    }
}

/// Rebuilds producer state and the aborted-transaction index: the newest
/// readable snapshot that the log still covers, the index entries before it,
/// and a replay of every batch after it.
fn recover_txn_state(
    dir: &Path,
    log: &Log,
) -> Result<(ProducerStateMap, AbortedTxnIndex), PartitionError> {
    let mut offsets = snapshot_offsets(dir)?;
    offsets.retain(|o| *o <= log.next_offset());
    let mut start = None;
    while let Some(offset) = offsets.pop() {
        let path = snapshot_path(dir, offset);
        let decoded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| producer_snapshot::decode(&bytes).map_err(|e| e.to_string()));
        match decoded {
            Ok((state, at)) if at == offset => {
                start = Some((state, at));
                break;
            }
            _ => tracing::warn!(path = %path.display(), "ignoring unreadable producer snapshot"),
        }
    }
    let (mut producers, from) =
        start.unwrap_or_else(|| (ProducerStateMap::new(), log.log_start_offset()));
    let from = from.max(log.log_start_offset());
    let mut aborted = match std::fs::read(dir.join(ABORTED_INDEX_FILE)) {
        Ok(bytes) => AbortedTxnIndex::decode_file(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AbortedTxnIndex::new(),
        Err(e) => return Err(e.into()),
    };
    aborted.truncate_from(from);
    aborted.drop_before(log.log_start_offset());
    let mut replay_error = None;
    // Idle time is measured on the server's clock, and batch timestamps are
    // the clients': replayed producers count as active at recovery.
    let now = now_ms();
    log.for_each_batch(from, |batch| {
        let header = &batch.header;
        if !header.is_control() {
            producers.record_batch(header, now);
            return;
        }
        match decode_control_record(&batch.bytes) {
            Ok(control) => {
                let completed = producers.record_marker(
                    header.producer_id,
                    header.producer_epoch,
                    control.coordinator_epoch,
                    control.kind == ControlType::Commit,
                    header.base_offset,
                    now,
                );
                if let Some(txn) = completed.filter(|t| !t.committed) {
                    aborted.push(AbortedTxn {
                        producer_id: txn.producer_id,
                        first_offset: txn.first_offset,
                        marker_offset: txn.marker_offset,
                    });
                }
            }
            Err(e) => replay_error = Some(e),
        }
    })?;
    if let Some(e) = replay_error {
        return Err(PartitionError::Storage(format!("unreadable marker in the log: {e}")));
    }
    Ok((producers, aborted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_proto::Sequence;
    use xo_proto::batch::header::store_crc;
    use xo_proto::batch::records::{BatchBuilder, BatchMeta, decode_batch};

    /// A coordinator that vouches for every transactional write.
    struct AllowAll;

    #[tonic::async_trait]
    impl TxnVerifier for AllowAll {
        async fn verify(
            &self,
            _: ProducerId,
            _: ProducerEpoch,
            _: &str,
            _: u32,
        ) -> Result<(), PartitionError> {
            Ok(())
        }
    }

    fn open(dir: &Path, verifier: Arc<dyn TxnVerifier>) -> Arc<Partition> {
        let mut config = ServerConfig::new(dir.to_path_buf());
        config.batch_bytes_max = 64 * 1024;
        Partition::open(&config, "t", 0, PartitionConfig::default(), verifier).unwrap()
    }

    fn batch(pid: i64, epoch: i16, seq: i32, transactional: bool, values: &[&str]) -> Bytes {
        let mut meta = BatchMeta::plain(1_000);
        meta.producer_id = ProducerId(pid);
        meta.producer_epoch = ProducerEpoch(epoch);
        meta.base_sequence = Sequence(seq);
        meta.transactional = transactional;
        let mut b = BatchBuilder::new(meta);
        for v in values {
            b.push(1_000, None, Some(v.as_bytes()), &[]);
        }
        b.finish().unwrap()
    }

    async fn values(p: &Partition, isolation: Isolation) -> Vec<String> {
        let out = p.fetch(Offset(0), 1 << 20, Duration::ZERO, isolation).await.unwrap();
        out.batches
            .iter()
            .flat_map(|b| decode_batch(b).unwrap().records)
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn bad_batches_get_clear_errors_and_change_nothing() {
        // Proves every malformed produce is refused with its own error and the log stays as it was.
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), Arc::new(NoCoordinator));
        p.produce(batch(-1, -1, -1, false, &["ok"])).await.unwrap();
        let good = batch(-1, -1, -1, false, &["a", "b"]);

        let mut bad_crc = good.to_vec();
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut bad_magic = good.to_vec();
        bad_magic[16] = 1;
        let mut bad_count = good.to_vec();
        bad_count[57..61].copy_from_slice(&3i32.to_be_bytes());
        bad_count[23..27].copy_from_slice(&2i32.to_be_bytes());
        store_crc(&mut bad_count);
        let huge: Vec<String> = (0..100).map(|i| format!("{i:01000}")).collect();
        let huge: Vec<&str> = huge.iter().map(String::as_str).collect();
        let control = encode_control_batch(
            ProducerId(5),
            ProducerEpoch(0),
            ControlRecord { kind: ControlType::Commit, coordinator_epoch: 0 },
            0,
        );
        type Expect = fn(&PartitionError) -> bool;
        let cases: Vec<(Bytes, Expect)> = vec![
            (Bytes::from(bad_crc), |e| {
                matches!(e, PartitionError::Batch(BatchError::CrcMismatch { .. }))
            }),
            (Bytes::from(bad_magic), |e| {
                matches!(e, PartitionError::Batch(BatchError::BadMagic(1)))
            }),
            (Bytes::from(bad_count), |e| {
                matches!(e, PartitionError::Batch(BatchError::RecordCountMismatch(_)))
            }),
            (batch(-1, -1, -1, false, &huge), |e| {
                matches!(e, PartitionError::Batch(BatchError::TooLarge { .. }))
            }),
            (good.slice(..40), |e| {
                matches!(e, PartitionError::Batch(BatchError::Truncated { .. }))
            }),
            (control, |e| matches!(e, PartitionError::ControlBatchFromProducer)),
            (batch(9, 0, 0, true, &["t"]), |e| {
                matches!(e, PartitionError::TransactionNotVerified(_))
            }),
            (batch(9, 0, 5, false, &["gap"]), |e| {
                matches!(e, PartitionError::Producer(ProducerStateError::UnknownProducer { .. }))
            }),
        ];
        for (i, (bytes, expected)) in cases.into_iter().enumerate() {
            let err = p.produce(bytes).await.unwrap_err();
            assert!(expected(&err), "case {i}: unexpected error {err:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(p.offsets().log_end_offset, Offset(1), "a refused batch changed the log");
        assert_eq!(values(&p, Isolation::ReadUncommitted).await, vec!["ok"]);
        for bad in [-1, 2] {
            assert!(matches!(
                p.fetch(Offset(bad), 1024, Duration::ZERO, Isolation::ReadCommitted).await,
                Err(PartitionError::OffsetOutOfRange { .. })
            ));
        }
    }

    #[tokio::test]
    async fn retried_batch_gets_original_offsets_before_and_after_restart() {
        // Proves dedupe through the partition, and that producer state is rebuilt from disk.
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), Arc::new(NoCoordinator));
        let first = p.produce(batch(3, 0, 0, false, &["a", "b"])).await.unwrap();
        let second = p.produce(batch(3, 0, 2, false, &["c"])).await.unwrap();
        let retry = p.produce(batch(3, 0, 0, false, &["a", "b"])).await.unwrap();
        assert!(retry.duplicate && !first.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (Offset(0), Offset(1)));
        drop(p);
        let p = open(dir.path(), Arc::new(NoCoordinator));
        let retry = p.produce(batch(3, 0, 2, false, &["c"])).await.unwrap();
        assert_eq!((retry.duplicate, retry.base_offset), (true, second.base_offset));
        assert_eq!(values(&p, Isolation::ReadUncommitted).await, vec!["a", "b", "c"]);
    }

    #[tokio::test]
    async fn lso_and_aborted_index_follow_interleaved_transactions_and_survive_restart() {
        // Proves read_committed sees committed data only once its marker lands, never aborted data, and that this holds after a restart.
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), Arc::new(AllowAll));
        p.produce(batch(1, 0, 0, true, &["a1"])).await.unwrap(); // offset 0
        p.produce(batch(2, 0, 0, true, &["b1"])).await.unwrap(); // offset 1
        p.produce(batch(1, 0, 1, true, &["a2"])).await.unwrap(); // offset 2
        p.produce(batch(7, 0, 0, false, &["plain"])).await.unwrap(); // offset 3
        assert_eq!(p.offsets().last_stable_offset, Offset(0));
        assert!(values(&p, Isolation::ReadCommitted).await.is_empty());
        assert_eq!(values(&p, Isolation::ReadUncommitted).await.len(), 4);

        p.write_marker(ProducerId(1), ProducerEpoch(0), 0, true).await.unwrap(); // offset 4
        assert_eq!(p.offsets().last_stable_offset, Offset(1), "held by producer 2");
        assert_eq!(values(&p, Isolation::ReadCommitted).await, vec!["a1"]);

        p.write_marker(ProducerId(2), ProducerEpoch(0), 0, false).await.unwrap(); // offset 5
        let offsets = p.offsets();
        assert_eq!(offsets.last_stable_offset, offsets.high_watermark);
        assert_eq!(values(&p, Isolation::ReadCommitted).await, vec!["a1", "a2", "plain"]);
        // A retried marker appends nothing.
        p.write_marker(ProducerId(2), ProducerEpoch(0), 0, false).await.unwrap();
        assert_eq!(p.offsets().log_end_offset, Offset(6));
        // A delayed write of the ended transaction is fenced.
        assert!(matches!(
            p.produce(batch(1, 0, 2, true, &["late"])).await,
            Err(PartitionError::Producer(ProducerStateError::FencedEpoch { .. }))
        ));
        // A stale coordinator's marker is refused.
        p.produce(batch(1, 1, 0, true, &["next"])).await.unwrap();
        p.write_marker(ProducerId(1), ProducerEpoch(1), 5, true).await.unwrap();
        assert!(matches!(
            p.write_marker(ProducerId(1), ProducerEpoch(2), 4, false).await,
            Err(PartitionError::Producer(ProducerStateError::CoordinatorFenced { .. }))
        ));
        let before = values(&p, Isolation::ReadCommitted).await;
        let lso_before = p.offsets().last_stable_offset;
        drop(p);
        let p = open(dir.path(), Arc::new(AllowAll));
        assert_eq!(values(&p, Isolation::ReadCommitted).await, before);
        assert_eq!(p.offsets().last_stable_offset, lso_before);
        assert_eq!(before, vec!["a1", "a2", "plain", "next"]);
    }

    #[tokio::test]
    async fn non_transactional_write_inside_an_open_transaction_is_refused() {
        // Proves a producer cannot mix plain writes into its open transaction.
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), Arc::new(AllowAll));
        p.produce(batch(1, 0, 0, true, &["t"])).await.unwrap();
        assert!(matches!(
            p.produce(batch(1, 0, 1, false, &["plain"])).await,
            Err(PartitionError::Producer(
                ProducerStateError::NonTransactionalWriteInTransaction { .. }
            ))
        ));
    }

    #[tokio::test]
    async fn long_poll_fetch_wakes_when_data_arrives() {
        // Proves a waiting fetch returns as soon as a write becomes visible, not at its deadline.
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), Arc::new(NoCoordinator));
        let reader = {
            let p = p.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let out = p
                    .fetch(Offset(0), 1024, Duration::from_secs(20), Isolation::ReadCommitted)
                    .await
                    .unwrap();
                (out.batches.len(), started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        p.produce(batch(-1, -1, -1, false, &["x"])).await.unwrap();
        let (batches, waited) = reader.await.unwrap();
        assert_eq!(batches, 1);
        assert!(waited < Duration::from_secs(10), "woke only after {waited:?}");
    }
}
