//! The coordinator's durable state, in sled: transaction records, the
//! producer-id allocator, the coordinator epoch, topics and registered
//! partition servers.
//!
//! # Obligation
//!
//! Every method that changes state returns only once the change is flushed
//! to disk (a sled flush and an fdatasync awaited, see [`flush_db`]).
//! Callers rely on it: a transition is completed in memory, and a request is
//! answered, only after the write returned `Ok` — so anything a client, a
//! partition server or a marker was told survives a crash, power loss
//! included. One exception, see [`Store::put_txn`]: a `Complete*` record is
//! not waited for, because losing it loses nothing anyone was told. A failed write changes nothing the
//! caller can see: the caller rolls its decision back and answers with a
//! retriable error (the bytes may or may not have reached disk; every value
//! stored here is a whole record, so either is a state the system was
//! allowed to be in).
//!
//! Records are stored as JSON (serde), each checked right before it is
//! written and right after it is read back.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xo_proto::ProducerId;

use crate::txn_metadata::TxnMetadata;
use crate::txn_state::TxnState;

/// Producer ids are handed out from blocks of this many: the end of the
/// current block is persisted before its first id is used, so at most one
/// write per block, and a restart skips the rest of the block (ids are
/// plentiful; handing one out twice would merge two producers' state).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

const TREE_TXNS: &str = "txns";
const TREE_TOPICS: &str = "topics";
const TREE_SERVERS: &str = "servers";
const TREE_META: &str = "meta";
const KEY_COORDINATOR_EPOCH: &[u8] = b"coordinator_epoch";
const KEY_PRODUCER_ID_BLOCK_END: &[u8] = b"producer_id_block_end";

/// Why the store could not do what was asked. Environmental: the caller
/// answers with a retriable error (or, at start-up, exits).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Making sled's files durable after its flush failed.
    #[error("syncing the store's files: {0}")]
    Sync(#[from] std::io::Error),
    #[error("stored value under {key:?} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// What sled 0.34's own flush leaves undone. Its flush ends in
/// `sync_file_range` over the bytes it wrote, which pushes them to the
/// device but is not an fsync: the file's size and other metadata, and the
/// device's write cache, are not flushed, so a power loss could take back
/// writes sled reported flushed (a kill -9 cannot: the page cache keeps
/// them). Large values go to files under `blobs/` that sled writes without
/// any sync. After every sled flush the store therefore fsyncs blobs it has
/// not synced yet (and their folder), then fdatasyncs the `db` file — only
/// then is a write acknowledged.
struct SledFiles {
    db_file: std::fs::File,
    blobs_dir: PathBuf,
    /// Blob files already fsync'd, with the length they had then. sled
    /// names a blob by log sequence number, writes it once and never
    /// rewrites it; one seen while still being written (another writer's,
    /// whose own flush comes later) has grown by the next sync and is
    /// synced again.
    synced_blobs: Mutex<HashMap<OsString, u64>>,
}

impl SledFiles {
    /// Opens sled's files in `dir` (after sled created them) and makes their
    /// directory entries durable.
    fn open(dir: &Path) -> std::io::Result<SledFiles> {
        let db_file = std::fs::File::open(dir.join("db"))?;
        let blobs_dir = dir.join("blobs");
        sync_dir(dir)?;
        sync_dir(&blobs_dir)?;
        Ok(SledFiles { db_file, blobs_dir, synced_blobs: Mutex::new(HashMap::new()) })
    }

    /// Called right after a sled flush returned.
    fn sync(&self) -> std::io::Result<()> {
        let mut synced = self.synced_blobs.lock().expect("blob set poisoned");
        let mut present = HashMap::new();
        let mut new_blobs = false;
        for entry in std::fs::read_dir(&self.blobs_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            // The length before the fsync: the fsync covers at least that.
            let len = match entry.metadata() {
                Ok(meta) => meta.len(),
                // Collected by sled since the listing: nothing to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if synced.get(&name) != Some(&len) {
                match std::fs::File::open(entry.path()) {
                    Ok(file) => file.sync_all()?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new_blobs = true;
            }
            present.insert(name, len);
        }
        if new_blobs {
            sync_dir(&self.blobs_dir)?;
        }
        // Forget blobs sled has collected since.
        *synced = present;
        drop(synced);
        self.db_file.sync_data()
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Flushes `db` and then makes the flush durable (see [`SledFiles`]), on
/// tokio's blocking pool rather than with `flush_async` on sled's own pool,
/// so the thread that waits for the writes is never one of sled's IO threads
/// (the pool the note on `Store::flushed` is about). Under the deterministic
/// simulation it also keeps the flush out of simulated time: a running
/// blocking task holds the host's paused clock, as the partition servers'
/// fsyncs do, where a wait on sled's threads let the clock run on for however
/// much real time the flush took.
async fn flush_db(db: &sled::Db, files: &Arc<SledFiles>) -> Result<(), StoreError> {
    let db = db.clone();
    let files = Arc::clone(files);
    let flushed = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        db.flush()?;
        Ok(files.sync()?)
    });
    match flushed.await {
        Ok(flushed) => flushed,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Sync(std::io::Error::other(e.to_string()))),
    }
}

/// A topic as the coordinator records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub config: TopicSettings,
    /// Server id holding each partition, indexed by partition number.
    pub placement: Vec<String>,
    /// Internal topics (`__consumer_offsets`) are created by the
    /// coordinator itself.
    pub internal: bool,
}

/// The settings of a topic (the partitions' config).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    pub compact: bool,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
}

/// A registered partition server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub server_id: String,
    pub address: String,
}

/// The in-memory half of the producer-id allocator. std Mutex: held only
/// for arithmetic, never across the flush (see `claim_producer_id`).
#[derive(Debug)]
struct IdBlock {
    next: i64,
    /// Exclusive; persisted before any id below it is handed out.
    end: i64,
}

pub struct Store {
    db: sled::Db,
    files: Arc<SledFiles>,
    txns: sled::Tree,
    topics: sled::Tree,
    servers: sled::Tree,
    meta: sled::Tree,
    ids: Mutex<IdBlock>,
    /// Serialises block extensions so two claims never persist the same end.
    extend: tokio::sync::Mutex<()>,
    coordinator_epoch: i32,
    /// Writes done so far (transaction records, allocator blocks, metadata),
    /// each flushed before its caller went on (but `Complete*` records, see
    /// [`Store::put_txn`]). For the benchmark and tests:
    /// a transaction costs a constant number of these.
    writes: AtomicU64,
    /// Group commit of flushes: holds the number of writes the last flush
    /// covered. One flush at a time — sled 0.34 deadlocks when its IO pool
    /// fills up with concurrent flushes waiting for the writes they need —
    /// and a write already covered by a flush that started after it skips
    /// its own.
    flushed: tokio::sync::Mutex<u64>,
    /// Durable flushes (sled flush + fdatasync) done: at most `writes`.
    flushes: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts a new coordinator
    /// epoch: the stored one + 1, flushed before this returns, so markers of
    /// this instance fence every earlier instance's.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let txns = db.open_tree(TREE_TXNS)?;
        let topics = db.open_tree(TREE_TOPICS)?;
        let servers = db.open_tree(TREE_SERVERS)?;
        let meta = db.open_tree(TREE_META)?;
        let previous_epoch = match meta.get(KEY_COORDINATOR_EPOCH)? {
            Some(bytes) => i32::from_be_bytes(fixed(&bytes, KEY_COORDINATOR_EPOCH)?),
            None => -1,
        };
        assert!(previous_epoch < i32::MAX, "coordinator epoch exhausted");
        let coordinator_epoch = previous_epoch + 1;
        meta.insert(KEY_COORDINATOR_EPOCH, &coordinator_epoch.to_be_bytes())?;
        // Ids below the stored block end may have been handed out before the
        // restart: start past it.
        let block_end = match meta.get(KEY_PRODUCER_ID_BLOCK_END)? {
            Some(bytes) => i64::from_be_bytes(fixed(&bytes, KEY_PRODUCER_ID_BLOCK_END)?),
            None => 0,
        };
        assert!(block_end >= 0, "stored producer id block end {block_end} is negative");
        let files = Arc::new(SledFiles::open(dir)?);
        flush_db(&db, &files).await?;
        let store = Store {
            db,
            files,
            txns,
            topics,
            servers,
            meta,
            ids: Mutex::new(IdBlock { next: block_end, end: block_end }),
            extend: tokio::sync::Mutex::new(()),
            coordinator_epoch,
            writes: AtomicU64::new(1),
            flushed: tokio::sync::Mutex::new(1),
            flushes: AtomicU64::new(1),
        };
        Ok(store)
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// Writes so far (see the field).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// fsyncs so far (group commit makes them fewer than the writes).
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    /// Makes the caller's write (already applied to sled) durable. Called
    /// once per write, after it.
    async fn flush(&self) -> Result<(), StoreError> {
        // Counted after the write was applied: a flush that reads the count
        // later covers it.
        let mine = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= mine {
            return Ok(());
        }
        let covers = self.writes.load(Ordering::SeqCst);
        assert!(covers >= mine);
        flush_db(&self.db, &self.files).await?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        *flushed = covers;
        Ok(())
    }

    // ---- producer ids ----------------------------------------------------

    /// A producer id never handed out before, by this instance or an earlier
    /// one. Costs a flushed write once per [`PRODUCER_ID_BLOCK_SIZE`] ids.
    pub async fn claim_producer_id(&self) -> Result<ProducerId, StoreError> {
        loop {
            if let Some(id) = self.take_from_block() {
                return Ok(id);
            }
            let _extending = self.extend.lock().await;
            // Another claim may have extended the block while we waited.
            if let Some(id) = self.take_from_block() {
                return Ok(id);
            }
            let end = self.ids.lock().unwrap().end;
            let new_end = end.checked_add(PRODUCER_ID_BLOCK_SIZE).expect("producer ids exhausted");
            self.meta.insert(KEY_PRODUCER_ID_BLOCK_END, &new_end.to_be_bytes())?;
            self.flush().await?;
            let mut ids = self.ids.lock().unwrap();
            assert_eq!(ids.end, end, "block end moved while its extension was written");
            ids.end = new_end;
        }
    }

    /// Gives back an id from [`Store::claim_producer_id`] that was not
    /// used, if it is the latest one claimed (otherwise it is simply
    /// skipped: a gap in the id space is harmless).
    pub fn release_producer_id(&self, id: ProducerId) {
        let mut ids = self.ids.lock().unwrap();
        if ids.next == id.0 + 1 {
            ids.next = id.0;
        }
    }

    fn take_from_block(&self) -> Option<ProducerId> {
        let mut ids = self.ids.lock().unwrap();
        if ids.next < ids.end {
            let id = ids.next;
            ids.next += 1;
            Some(ProducerId(id))
        } else {
            None
        }
    }

    // ---- transaction records ----------------------------------------------

    /// Writes the record of its transactional id (flushed). A `Dead` record
    /// is deleted instead.
    ///
    /// `CompleteCommit` / `CompleteAbort` are written without waiting for a
    /// flush. The outcome was already durable in the `Prepare*` record and
    /// in every partition's marker; if a crash takes the `Complete*` record
    /// back, the restart finds `Prepare*` and resumes it — the same markers
    /// again (a partition acknowledges a marker it already holds) and the
    /// same `Complete*` record — so every answer given from the lost record
    /// (a retried EndTxn, a describe) stays true. The next flushed write of
    /// any record makes it durable too (sled's log is flushed in order), and
    /// anything that builds on it — the next transaction's `Ongoing`, a new
    /// producer epoch — is such a write. This saves one of the three fsyncs
    /// of a transaction, on the path between its commit and the next
    /// transaction's first AddPartitions.
    pub async fn put_txn(&self, record: &TxnMetadata) -> Result<(), StoreError> {
        if let Err(reason) = record.check_invariants() {
            panic!("refusing to store an invalid transaction record ({reason}): {record:?}");
        }
        let key = record.transactional_id.as_bytes();
        if record.state == TxnState::Dead {
            self.txns.remove(key)?;
        } else {
            assert!(record.has_producer_id(), "a stored record has a producer id: {record:?}");
            let bytes = serde_json::to_vec(record).expect("a transaction record serialises");
            self.txns.insert(key, bytes)?;
        }
        if matches!(record.state, TxnState::CompleteCommit | TxnState::CompleteAbort) {
            self.writes.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        self.flush().await
    }

    /// Every stored transaction record, each checked.
    pub fn load_txns(&self) -> Result<Vec<TxnMetadata>, StoreError> {
        let mut records = Vec::new();
        for entry in self.txns.iter() {
            let (key, value) = entry?;
            let key = String::from_utf8_lossy(&key).to_string();
            let record: TxnMetadata = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
            if record.transactional_id != key {
                return Err(StoreError::Corrupt { key, reason: "key and record disagree".into() });
            }
            if let Err(reason) = record.check_invariants() {
                return Err(StoreError::Corrupt { key, reason: reason.into() });
            }
            records.push(record);
        }
        Ok(records)
    }

    // ---- topics ------------------------------------------------------------

    pub async fn put_topic(&self, topic: &TopicRecord) -> Result<(), StoreError> {
        assert!(!topic.placement.is_empty(), "a topic has at least one partition");
        let bytes = serde_json::to_vec(topic).expect("a topic record serialises");
        self.topics.insert(topic.name.as_bytes(), bytes)?;
        self.flush().await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        self.topics.remove(name.as_bytes())?;
        self.flush().await
    }

    pub fn load_topics(&self) -> Result<BTreeMap<String, TopicRecord>, StoreError> {
        load_all(&self.topics, |r: &TopicRecord| &r.name)
    }

    // ---- partition servers -------------------------------------------------

    pub async fn put_server(&self, server: &ServerRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(server).expect("a server record serialises");
        self.servers.insert(server.server_id.as_bytes(), bytes)?;
        self.flush().await
    }

    pub fn load_servers(&self) -> Result<BTreeMap<String, ServerRecord>, StoreError> {
        load_all(&self.servers, |r: &ServerRecord| &r.server_id)
    }
}

fn load_all<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key_of: impl Fn(&T) -> &String,
) -> Result<BTreeMap<String, T>, StoreError> {
    let mut all = BTreeMap::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        let key = String::from_utf8_lossy(&key).to_string();
        let record: T = serde_json::from_slice(&value)
            .map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
        if *key_of(&record) != key {
            return Err(StoreError::Corrupt { key, reason: "key and record disagree".into() });
        }
        all.insert(key, record);
    }
    Ok(all)
}

fn fixed<const N: usize>(bytes: &[u8], key: &[u8]) -> Result<[u8; N], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).to_string(),
        reason: format!("expected {N} bytes, found {}", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use xo_proto::ProducerEpoch;

    use super::*;
    use crate::txn_metadata::{ProducerIdentity, TopicPartition};

    /// sled releases its lock on the directory a moment after the last
    /// handle is dropped; reopen with a short, bounded retry.
    async fn reopen(dir: &Path) -> Store {
        for _ in 0..50 {
            match Store::open(dir).await {
                Ok(store) => return store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        Store::open(dir).await.expect("store reopens")
    }

    fn record(name: &str, pid: i64) -> TxnMetadata {
        let mut meta = TxnMetadata::new(name, 1_000);
        let identity = ProducerIdentity::new(ProducerId(pid), ProducerEpoch(0));
        let t = meta.prepare_init(identity, None, 60_000, 1_000).unwrap();
        meta.complete(t);
        let parts: BTreeSet<_> = [TopicPartition::new("a", 1)].into();
        let t = meta.prepare_add_partitions(&parts, 1_001).unwrap();
        meta.complete(t);
        meta
    }

    #[tokio::test]
    async fn t10_records_topics_and_servers_survive_reopen() {
        // Proves: everything written is read back field for field after the
        // store is closed and reopened, and a Dead record is deleted.
        let dir = tempfile::tempdir().unwrap();
        let (ongoing, dead) = (record("app-1", 3), record("app-2", 4));
        let topic = TopicRecord {
            name: "orders".into(),
            config: TopicSettings { compact: true, retention_ms: 5, ..Default::default() },
            placement: vec!["s1".into(), "s2".into()],
            internal: false,
        };
        let server = ServerRecord { server_id: "s1".into(), address: "127.0.0.1:1".into() };
        {
            let store = Store::open(dir.path()).await.unwrap();
            store.put_txn(&ongoing).await.unwrap();
            store.put_txn(&dead).await.unwrap();
            let mut gone = dead.clone();
            gone.state = TxnState::Dead;
            gone.partitions.clear();
            store.put_txn(&gone).await.unwrap();
            store.put_topic(&topic).await.unwrap();
            store.put_server(&server).await.unwrap();
        }
        let store = reopen(dir.path()).await;
        assert_eq!(store.load_txns().unwrap(), vec![ongoing]);
        assert_eq!(store.load_topics().unwrap().get("orders"), Some(&topic));
        assert_eq!(store.load_servers().unwrap().get("s1"), Some(&server));
        store.delete_topic("orders").await.unwrap();
        assert!(store.load_topics().unwrap().is_empty());
    }

    #[tokio::test]
    async fn t16_large_record_goes_to_a_synced_blob_and_survives_reopen() {
        // Proves: a transaction record too large for sled's log segments
        // (sled writes those to `blobs/` without any sync of its own) is
        // fsync'd by the store before put_txn returns, and read back whole.
        let dir = tempfile::tempdir().unwrap();
        let mut big = record("app-big", 7);
        // The largest record the coordinator writes: the most partitions,
        // each with a long topic name (about 250 KB of JSON).
        let topic = "t".repeat(200);
        big.partitions = (0..crate::txn_metadata::TXN_PARTITIONS_MAX as u32)
            .map(|p| TopicPartition::new(topic.as_str(), p))
            .collect();
        {
            let store = Store::open(dir.path()).await.unwrap();
            store.put_txn(&big).await.unwrap();
            let blobs: HashSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(!blobs.is_empty(), "the record should have been stored as a blob");
            let synced = store.files.synced_blobs.lock().unwrap();
            let synced: HashSet<OsString> = synced.keys().cloned().collect();
            assert!(blobs.is_subset(&synced), "blobs {blobs:?} not all synced: {synced:?}");
        }
        let store = reopen(dir.path()).await;
        assert_eq!(store.load_txns().unwrap(), vec![big]);
    }

    #[tokio::test]
    async fn t17_complete_records_ride_on_the_next_flush() {
        // Proves: a Complete* write costs no flush of its own, and the next
        // flushed write makes it durable (read back after reopen).
        let dir = tempfile::tempdir().unwrap();
        let mut done = record("app-done", 8);
        let next = ProducerIdentity::new(ProducerId(8), ProducerEpoch(1));
        let t = done.prepare_end(true, next, 1_002).unwrap();
        done.complete(t);
        let t = done.prepare_complete(1_003).unwrap();
        done.complete(t);
        assert_eq!(done.state, TxnState::CompleteCommit);
        let other = record("app-other", 9);
        {
            let store = Store::open(dir.path()).await.unwrap();
            let flushes = store.flush_count();
            store.put_txn(&done).await.unwrap();
            assert_eq!(store.flush_count(), flushes, "Complete* waited for a flush");
            store.put_txn(&other).await.unwrap();
            assert_eq!(store.flush_count(), flushes + 1);
        }
        let store = reopen(dir.path()).await;
        let mut loaded = store.load_txns().unwrap();
        loaded.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        assert_eq!(loaded, vec![done, other]);
    }

    #[tokio::test]
    async fn t11_coordinator_epoch_grows_at_every_open() {
        // Proves: each start gets a strictly higher, durable coordinator epoch.
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = Vec::new();
        for _ in 0..3 {
            let store = reopen(dir.path()).await;
            epochs.push(store.coordinator_epoch());
        }
        assert_eq!(epochs, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn t12_producer_ids_never_repeat_across_reopen() {
        // Proves: ids claimed across several opens (each ending mid-block)
        // are all distinct, and a block costs one write, not one per id.
        let dir = tempfile::tempdir().unwrap();
        let mut seen = BTreeSet::new();
        for round in 0..3 {
            let store = reopen(dir.path()).await;
            let writes_before = store.write_count();
            let claims = 10 + round * 700;
            for _ in 0..claims {
                let id = store.claim_producer_id().await.unwrap();
                assert!(seen.insert(id.0), "producer id {id} handed out twice");
            }
            let blocks = (claims as u64).div_ceil(PRODUCER_ID_BLOCK_SIZE as u64);
            assert_eq!(store.write_count() - writes_before, blocks);
        }
        assert_eq!(seen.len(), 10 + 710 + 1410);
    }

    #[tokio::test]
    async fn t13_released_id_is_reused_only_if_latest() {
        // Proves: an unused claim is given back when nothing was claimed
        // after it, and skipped otherwise (never handed out twice).
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let a = store.claim_producer_id().await.unwrap();
        store.release_producer_id(a);
        assert_eq!(store.claim_producer_id().await.unwrap(), a);
        let b = store.claim_producer_id().await.unwrap();
        store.release_producer_id(a);
        let c = store.claim_producer_id().await.unwrap();
        assert!(c != a && c != b);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn t15_concurrent_writes_share_flushes_and_all_survive() {
        // Proves: 64 writers at once all complete (sled 0.34 deadlocks on
        // unbounded concurrent flushes; ours are serialised), no write is
        // lost across reopen, and group commit needs at most one fsync per
        // write.
        let dir = tempfile::tempdir().unwrap();
        {
            let store = std::sync::Arc::new(Store::open(dir.path()).await.unwrap());
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store.put_txn(&record(&format!("app-{i}"), i)).await.unwrap()
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            assert!(store.flush_count() <= store.write_count());
        }
        let store = reopen(dir.path()).await;
        assert_eq!(store.load_txns().unwrap().len(), 64);
    }

    #[tokio::test]
    async fn t14_concurrent_claims_are_distinct() {
        // Proves: claims racing across a block boundary never collide.
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).await.unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for _ in 0..300 {
                        ids.push(store.claim_producer_id().await.unwrap().0);
                    }
                    ids
                })
            })
            .collect();
        let mut all = BTreeSet::new();
        for task in tasks {
            for id in task.await.unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 2400);
    }
}
