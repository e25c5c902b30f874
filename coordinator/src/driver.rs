//! The driver: runs [`txn_core`]'s decisions against the real world — the
//! sled [`Store`], the partition servers (markers, partition management) and
//! the clock — and keeps the cluster metadata. Handlers call it with domain
//! values; it never sees a gRPC type of its own service.
//!
//! Ordering: every transactional id has its own async lock, held from the
//! decision until its `Persist` is done, so the commands of one id run one
//! after the other in the order txn_core returned them (persist → reply →
//! markers). Markers are written by a spawned task without the lock; it
//! takes the lock again to persist `Complete*`. Different ids never wait
//! for each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use xo_proto::{ProducerEpoch, ProducerId};

use crate::error::{CoordinatorError, ServiceError};
use crate::failpoints;
use crate::groups::Groups;
use crate::markers::{MarkerSet, MarkerWriter, PartitionLocator, Placement};
use crate::partition_client::PartitionClients;
use crate::store::{ServerRecord, Store, TopicRecord, TopicSettings};
use crate::txn_core::{self, Answer, Command, TxnConfig};
use crate::txn_metadata::{PRODUCER_EPOCH_MAX, ProducerIdentity, TopicPartition, TxnMetadata};
use crate::txn_state::TxnState;

/// The internal, compacted topic holding consumer groups' offsets. Created
/// by the coordinator on first use.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Its partition count. Fixed forever: a group's partition is a hash of
/// the group id modulo this, so changing it would move every group.
pub const CONSUMER_OFFSETS_PARTITIONS: u32 = 16;
/// Most partitions one topic may have.
pub const TOPIC_PARTITIONS_MAX: u32 = 1_000;
/// Longest topic name (the partition servers' limit too).
pub const TOPIC_NAME_LEN_MAX: usize = 200;
/// Most partition servers the coordinator tracks.
pub const PARTITION_SERVERS_MAX: usize = 1_000;
/// The transaction timeout of a producer that asks for none (Kafka's
/// `transaction.timeout.ms` default).
pub const TXN_TIMEOUT_MS_DEFAULT: u32 = 60_000;
/// Waits between retries of a failed `Complete*` write.
const COMPLETE_RETRY_MS_MAX: u64 = 2_000;

/// Wall-clock milliseconds (the simulated clock under the simulation, see
/// [`crate::hooks`]).
pub fn now_ms() -> u64 {
    if let Some(now) = crate::hooks::now_ms() {
        return now;
    }
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The settings of a running coordinator.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub txn: TxnConfig,
    /// How often timeouts and idle expiry are checked.
    pub expiry_check_interval: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            txn: TxnConfig::default(),
            expiry_check_interval: Duration::from_secs(1),
        }
    }
}

/// A topic with the addresses of its partitions' servers (Metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicView {
    pub record: TopicRecord,
    /// Per partition: the server's address, empty if it is not registered.
    pub addresses: Vec<String>,
}

/// A transaction a partition is held back by that the coordinator cannot
/// account for (FindHanging).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hanging {
    pub partition: TopicPartition,
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub start_offset: i64,
    pub reason: String,
}

/// Counters that show what transactions cost (benchmark, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorStats {
    /// Store writes since start (including the start's own), each durable
    /// before anything depending on it happened.
    pub store_writes: u64,
    /// fsyncs those writes took (group commit shares them).
    pub store_flushes: u64,
    /// Partitions that acknowledged a marker.
    pub markers_acked: u64,
    /// WriteTxnMarkers requests sent.
    pub marker_requests: u64,
}

#[derive(Default)]
struct ClusterMetadata {
    topics: BTreeMap<String, TopicRecord>,
    servers: BTreeMap<String, ServerRecord>,
}

/// One transactional id's record, behind its own lock (`None`: no record).
type Slot = Arc<tokio::sync::Mutex<Option<TxnMetadata>>>;

pub struct Coordinator {
    store: Store,
    config: CoordinatorConfig,
    /// std Mutex: held only to find or insert a slot, never across an await.
    txns: Mutex<HashMap<String, Slot>>,
    /// Producer id → transactional id, for requests that carry only the
    /// producer id (VerifyTxnPartition, FindHanging). Every id a record
    /// names (current, last, transaction) is in it. std Mutex, as above.
    by_producer: Mutex<HashMap<ProducerId, String>>,
    /// std RwLock: read for lookups, written after a metadata write is
    /// flushed; never held across an await.
    metadata: RwLock<ClusterMetadata>,
    /// Serialises CreateTopic / DeleteTopic.
    topic_admin: tokio::sync::Mutex<()>,
    markers: MarkerWriter<PartitionClients>,
    /// Consumer groups and their offsets (told by the marker task when a
    /// transaction's markers are written: its pending offsets settle).
    groups: Groups,
}

impl Coordinator {
    /// Opens the store (starting a new coordinator epoch), loads the
    /// metadata and every transaction record, and resumes the markers of
    /// every PrepareCommit / PrepareAbort. A corrupt record is an error:
    /// the caller exits rather than serve a guess.
    pub async fn open(
        data_dir: &Path,
        config: CoordinatorConfig,
    ) -> Result<Arc<Coordinator>, String> {
        let store = Store::open(data_dir).await.map_err(|e| e.to_string())?;
        let topics = store.load_topics().map_err(|e| e.to_string())?;
        let servers = store.load_servers().map_err(|e| e.to_string())?;
        let records = store.load_txns().map_err(|e| e.to_string())?;
        let epoch = store.coordinator_epoch();
        let coordinator = Arc::new(Coordinator {
            store,
            config,
            txns: Mutex::new(HashMap::new()),
            by_producer: Mutex::new(HashMap::new()),
            metadata: RwLock::new(ClusterMetadata { topics, servers }),
            topic_admin: tokio::sync::Mutex::new(()),
            markers: MarkerWriter::new(PartitionClients::new(), epoch),
            groups: Groups::new(),
        });
        let mut resumed = 0;
        for record in records {
            let commands = txn_core::resume(&record).map_err(|e| e.to_string())?;
            coordinator.reindex(&record.transactional_id, &[], Some(&record));
            coordinator.txns.lock().unwrap().insert(
                record.transactional_id.clone(),
                Arc::new(tokio::sync::Mutex::new(Some(record))),
            );
            for command in commands {
                let Command::WriteMarkers { .. } = command else {
                    unreachable!("resume only returns markers, got {command:?}")
                };
                coordinator.spawn_markers(command);
                resumed += 1;
            }
        }
        tracing::info!(
            coordinator_epoch = epoch,
            transactional_ids = coordinator.txns.lock().unwrap().len(),
            resumed,
            "coordinator state loaded"
        );
        Ok(coordinator)
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.store.coordinator_epoch()
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    pub fn stats(&self) -> CoordinatorStats {
        let (markers_acked, marker_requests) = self.markers.counters();
        CoordinatorStats {
            store_writes: self.store.write_count(),
            store_flushes: self.store.flush_count(),
            markers_acked,
            marker_requests,
        }
    }

    // ---- metadata --------------------------------------------------------

    /// A partition server announces itself (at every start). Written only
    /// when new or moved, so a restart loop does not cost writes.
    pub async fn register_server(
        &self,
        server_id: &str,
        address: &str,
    ) -> Result<i32, ServiceError> {
        if server_id.is_empty() || address.is_empty() {
            return Err(ServiceError::InvalidRequest("server id and address are required".into()));
        }
        let record = ServerRecord { server_id: server_id.into(), address: address.into() };
        {
            let metadata = self.metadata.read().unwrap();
            if metadata.servers.get(server_id) == Some(&record) {
                return Ok(self.coordinator_epoch());
            }
            if !metadata.servers.contains_key(server_id)
                && metadata.servers.len() >= PARTITION_SERVERS_MAX
            {
                return Err(ServiceError::InvalidRequest(format!(
                    "already {PARTITION_SERVERS_MAX} partition servers registered"
                )));
            }
        }
        self.store.put_server(&record).await?;
        tracing::info!(server_id, address, "partition server registered");
        self.metadata.write().unwrap().servers.insert(server_id.into(), record);
        Ok(self.coordinator_epoch())
    }

    /// Creates a topic: places its partitions round-robin over the
    /// registered servers, creates each on its server, and records the
    /// topic only once all exist. A retry after a partial failure places
    /// the same way and CreatePartition is idempotent, so it completes.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: TopicSettings,
    ) -> Result<TopicView, ServiceError> {
        validate_topic_name(name, false)?;
        self.create_topic_unchecked(name, partitions, settings, false).await
    }

    async fn create_topic_unchecked(
        &self,
        name: &str,
        partitions: u32,
        settings: TopicSettings,
        internal: bool,
    ) -> Result<TopicView, ServiceError> {
        if partitions == 0 || partitions > TOPIC_PARTITIONS_MAX {
            return Err(ServiceError::InvalidRequest(format!(
                "a topic has 1 to {TOPIC_PARTITIONS_MAX} partitions"
            )));
        }
        if settings.retention_ms < 0 || settings.retention_bytes < 0 || settings.segment_bytes < 0 {
            return Err(ServiceError::InvalidRequest("limits must not be negative".into()));
        }
        let _admin = self.topic_admin.lock().await;
        let (servers, placed_so_far) = {
            let metadata = self.metadata.read().unwrap();
            if metadata.topics.contains_key(name) {
                return Err(ServiceError::TopicAlreadyExists(name.into()));
            }
            let servers: Vec<ServerRecord> = metadata.servers.values().cloned().collect();
            let placed: usize = metadata.topics.values().map(|t| t.placement.len()).sum();
            (servers, placed)
        };
        if servers.is_empty() {
            return Err(ServiceError::NoPartitionServers);
        }
        // Continue the round-robin where earlier topics left it, so small
        // topics do not all start on the first server.
        let placement: Vec<&ServerRecord> = (0..partitions as usize)
            .map(|p| &servers[(placed_so_far + p) % servers.len()])
            .collect();
        let clients = self.markers.sender();
        let creates = placement.iter().enumerate().map(|(p, server)| {
            clients.create_partition(&server.address, name, p as u32, &settings)
        });
        let failures: Vec<String> =
            futures::future::join_all(creates).await.into_iter().filter_map(Result::err).collect();
        if !failures.is_empty() {
            return Err(ServiceError::PartitionServer(failures.join("; ")));
        }
        let record = TopicRecord {
            name: name.into(),
            config: settings,
            placement: placement.iter().map(|s| s.server_id.clone()).collect(),
            internal,
        };
        self.store.put_topic(&record).await?;
        tracing::info!(topic = name, partitions, "topic created");
        self.metadata.write().unwrap().topics.insert(name.into(), record.clone());
        Ok(self.view(record))
    }

    /// Deletes a topic's partitions on their servers, then its record.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ServiceError> {
        let _admin = self.topic_admin.lock().await;
        let (record, addresses) = {
            let metadata = self.metadata.read().unwrap();
            let Some(record) = metadata.topics.get(name).cloned() else {
                return Err(ServiceError::UnknownTopicOrPartition(name.into()));
            };
            let addresses: Vec<Option<String>> = record
                .placement
                .iter()
                .map(|id| metadata.servers.get(id).map(|s| s.address.clone()))
                .collect();
            (record, addresses)
        };
        let clients = self.markers.sender();
        let deletes = addresses.iter().enumerate().map(|(p, address)| async move {
            match address {
                Some(address) => clients.delete_partition(address, name, p as u32).await,
                None => Err(format!("{name}-{p}: its server is not registered")),
            }
        });
        let failures: Vec<String> =
            futures::future::join_all(deletes).await.into_iter().filter_map(Result::err).collect();
        if !failures.is_empty() {
            return Err(ServiceError::PartitionServer(failures.join("; ")));
        }
        self.store.delete_topic(&record.name).await?;
        self.metadata.write().unwrap().topics.remove(name);
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// The named topics (every topic if `names` is empty), the names not
    /// found, and every registered server.
    pub fn metadata(&self, names: &[String]) -> (Vec<TopicView>, Vec<String>, Vec<ServerRecord>) {
        let (records, missing, servers) = {
            let metadata = self.metadata.read().unwrap();
            let mut records = Vec::new();
            let mut missing = Vec::new();
            if names.is_empty() {
                records.extend(metadata.topics.values().cloned());
            }
            for name in names {
                match metadata.topics.get(name) {
                    Some(record) => records.push(record.clone()),
                    None => missing.push(name.clone()),
                }
            }
            (records, missing, metadata.servers.values().cloned().collect())
        };
        (records.into_iter().map(|r| self.view(r)).collect(), missing, servers)
    }

    fn view(&self, record: TopicRecord) -> TopicView {
        let metadata = self.metadata.read().unwrap();
        let addresses = record
            .placement
            .iter()
            .map(|id| metadata.servers.get(id).map(|s| s.address.clone()).unwrap_or_default())
            .collect();
        TopicView { record, addresses }
    }

    fn check_partitions_exist(
        &self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<(), ServiceError> {
        let metadata = self.metadata.read().unwrap();
        let missing: Vec<String> = partitions
            .iter()
            .filter(|tp| {
                metadata
                    .topics
                    .get(&tp.topic)
                    .is_none_or(|t| tp.partition as usize >= t.placement.len())
            })
            .map(|tp| tp.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::UnknownTopicOrPartition(missing.join(", ")))
        }
    }

    /// The `__consumer_offsets` partition of a group, creating the topic on
    /// first use.
    pub async fn offsets_partition(&self, group_id: &str) -> Result<TopicPartition, ServiceError> {
        if group_id.is_empty() {
            return Err(ServiceError::InvalidRequest("group id is required".into()));
        }
        let exists = self.metadata.read().unwrap().topics.contains_key(CONSUMER_OFFSETS_TOPIC);
        if !exists {
            let settings = TopicSettings { compact: true, ..TopicSettings::default() };
            match self
                .create_topic_unchecked(
                    CONSUMER_OFFSETS_TOPIC,
                    CONSUMER_OFFSETS_PARTITIONS,
                    settings,
                    true,
                )
                .await
            {
                Ok(_) | Err(ServiceError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(TopicPartition::new(CONSUMER_OFFSETS_TOPIC, offsets_partition_of(group_id)))
    }

    // ---- transactions ------------------------------------------------------

    /// InitProducerId. An empty transactional id asks for an idempotent
    /// producer: a fresh producer id at epoch 0, nothing else kept.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        txn_timeout_ms: u32,
        expected: Option<ProducerIdentity>,
    ) -> Result<ProducerIdentity, ServiceError> {
        if transactional_id.is_empty() {
            let producer_id = self.store.claim_producer_id().await?;
            return Ok(ProducerIdentity::new(producer_id, ProducerEpoch(0)));
        }
        let slot = self.slot(transactional_id);
        let mut guard = slot.lock().await;
        let meta = guard.get_or_insert_with(|| TxnMetadata::new(transactional_id, now_ms()));
        let request = txn_core::InitProducerId { txn_timeout_ms, expected };
        let fresh = self.spare_producer_id(meta).await?;
        let commands =
            txn_core::init_producer_id(meta, &request, now_ms(), &self.config.txn, || fresh.take());
        fresh.release(&self.store);
        match self.execute(&mut guard, commands).await? {
            Some(Answer::ProducerId(identity)) => Ok(identity),
            other => unreachable!("InitProducerId answered {other:?}"),
        }
    }

    /// AddPartitionsToTxn (the partitions must exist).
    pub async fn add_partitions(
        self: &Arc<Self>,
        transactional_id: &str,
        who: ProducerIdentity,
        partitions: BTreeSet<TopicPartition>,
    ) -> Result<(), ServiceError> {
        self.check_partitions_exist(&partitions)?;
        let slot = self
            .existing_slot(transactional_id)
            .ok_or(CoordinatorError::TransactionalIdNotFound)?;
        let mut guard = slot.lock().await;
        let request = txn_core::AddPartitionsToTxn {
            producer_id: who.producer_id,
            producer_epoch: who.producer_epoch,
            partitions,
        };
        let commands = txn_core::add_partitions_to_txn(guard.as_mut(), &request, now_ms());
        match self.execute(&mut guard, commands).await? {
            Some(Answer::PartitionsAdded) => Ok(()),
            other => unreachable!("AddPartitionsToTxn answered {other:?}"),
        }
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins
    /// the transaction.
    pub async fn add_offsets(
        self: &Arc<Self>,
        transactional_id: &str,
        who: ProducerIdentity,
        group_id: &str,
    ) -> Result<(), ServiceError> {
        let partition = self.offsets_partition(group_id).await?;
        self.add_partitions(transactional_id, who, BTreeSet::from([partition])).await
    }

    /// EndTxn: (committed, the identity for the next transaction).
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        who: ProducerIdentity,
        commit: bool,
    ) -> Result<(bool, ProducerIdentity), ServiceError> {
        let slot = self
            .existing_slot(transactional_id)
            .ok_or(CoordinatorError::TransactionalIdNotFound)?;
        let mut guard = slot.lock().await;
        let request = txn_core::EndTxn {
            producer_id: who.producer_id,
            producer_epoch: who.producer_epoch,
            commit,
        };
        let fresh = match guard.as_ref() {
            Some(meta) => self.spare_producer_id(meta).await?,
            None => Spare::none(),
        };
        let commands = txn_core::end_txn(guard.as_mut(), &request, now_ms(), || fresh.take());
        fresh.release(&self.store);
        match self.execute(&mut guard, commands).await? {
            Some(Answer::TxnEnded { committed, next }) => Ok((committed, next)),
            other => unreachable!("EndTxn answered {other:?}"),
        }
    }

    /// VerifyTxnPartition: may (producer id, epoch) write its transaction's
    /// first batch to `partition`?
    pub async fn verify(&self, who: ProducerIdentity, partition: &TopicPartition) -> bool {
        let Some(transactional_id) = self.transactional_id_of(who.producer_id) else {
            return false;
        };
        let Some(slot) = self.existing_slot(&transactional_id) else {
            return false;
        };
        let guard = slot.lock().await;
        txn_core::is_partition_in_ongoing_txn(
            guard.as_ref(),
            who.producer_id,
            who.producer_epoch,
            partition,
        )
    }

    /// Every record (a snapshot), in transactional id order.
    pub async fn list(&self) -> Vec<TxnMetadata> {
        let slots: Vec<Slot> = self.txns.lock().unwrap().values().cloned().collect();
        let mut records = Vec::new();
        for slot in slots {
            if let Some(meta) = slot.lock().await.as_ref()
                && meta.has_producer_id()
            {
                records.push(meta.clone());
            }
        }
        records.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        records
    }

    pub async fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        let slot = self.existing_slot(transactional_id)?;
        let guard = slot.lock().await;
        guard.as_ref().filter(|m| m.has_producer_id()).cloned()
    }

    /// AbortTransaction: fences and aborts the open transaction, like a
    /// timeout would.
    pub async fn abort(self: &Arc<Self>, transactional_id: &str) -> Result<(), ServiceError> {
        let slot = self
            .existing_slot(transactional_id)
            .ok_or(CoordinatorError::TransactionalIdNotFound)?;
        let mut guard = slot.lock().await;
        let fresh = match guard.as_ref() {
            Some(meta) => self.spare_producer_id(meta).await?,
            None => Spare::none(),
        };
        let commands = txn_core::operator_abort(guard.as_mut(), now_ms(), || fresh.take());
        fresh.release(&self.store);
        self.execute(&mut guard, commands).await?;
        tracing::info!(transactional_id, "transaction aborted by an operator");
        Ok(())
    }

    /// FindHanging: asks every partition (of `topics`, or all) which
    /// producers hold an open transaction there, and reports those the
    /// coordinator cannot account for.
    pub async fn find_hanging(&self, topics: &[String]) -> Result<Vec<Hanging>, ServiceError> {
        let (views, missing, _) = self.metadata(topics);
        if !missing.is_empty() {
            return Err(ServiceError::UnknownTopicOrPartition(missing.join(", ")));
        }
        let clients = self.markers.sender();
        let asks = views.iter().flat_map(|view| {
            view.addresses.iter().enumerate().map(move |(p, address)| async move {
                let partition = TopicPartition::new(view.record.name.clone(), p as u32);
                let producers = if address.is_empty() {
                    Err(format!("{partition}: its server is not registered"))
                } else {
                    clients.describe_producers(address, &partition).await
                };
                (partition, producers)
            })
        });
        let answers = futures::future::join_all(asks).await;
        let now = now_ms();
        let mut hanging = Vec::new();
        let mut failures = Vec::new();
        for (partition, producers) in answers {
            let producers = match producers {
                Ok(producers) => producers,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            for producer in producers {
                let Some(start_offset) = producer.txn_start_offset else { continue };
                let who = ProducerIdentity::new(
                    ProducerId(producer.producer_id),
                    ProducerEpoch(producer.producer_epoch as i16),
                );
                let record = match self.transactional_id_of(who.producer_id) {
                    Some(id) => self.describe(&id).await,
                    None => None,
                };
                if let Some(reason) = hanging_reason(record.as_ref(), who, &partition, now) {
                    hanging.push(Hanging {
                        partition: partition.clone(),
                        producer_id: producer.producer_id,
                        producer_epoch: producer.producer_epoch,
                        start_offset,
                        reason,
                    });
                }
            }
        }
        if !failures.is_empty() {
            return Err(ServiceError::PartitionServer(failures.join("; ")));
        }
        Ok(hanging)
    }

    /// One pass of timeouts and idle expiry over every transactional id.
    pub async fn expire_once(self: &Arc<Self>) {
        let ids: Vec<String> = self.txns.lock().unwrap().keys().cloned().collect();
        for transactional_id in ids {
            let Some(slot) = self.existing_slot(&transactional_id) else { continue };
            let mut guard = slot.lock().await;
            let Some(meta) = guard.as_mut() else {
                // A slot whose first InitProducerId failed to persist.
                drop(guard);
                self.forget_if_dead(&transactional_id, &slot);
                continue;
            };
            if !meta.has_producer_id() {
                continue;
            }
            let fresh = match self.spare_producer_id(meta).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry: no producer id available; later");
                    continue;
                }
            };
            let now = now_ms();
            let commands = txn_core::expire(meta, now, &self.config.txn, || fresh.take());
            fresh.release(&self.store);
            if commands.is_empty() {
                continue;
            }
            let state_before = meta.state;
            match self.execute(&mut guard, commands).await {
                Ok(_) if guard.is_none() => {
                    tracing::info!(%transactional_id, "idle transactional id expired");
                }
                Ok(_) => tracing::info!(
                    %transactional_id, from = state_before.name(), "transaction timed out: aborted"
                ),
                Err(e) => {
                    tracing::warn!(%transactional_id, error = %e, "expiry write failed; later")
                }
            }
            drop(guard);
            self.forget_if_dead(&transactional_id, &slot);
        }
    }

    /// Runs [`Coordinator::expire_once`] forever at the configured interval.
    pub async fn run_expiry(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.expiry_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire_once().await;
        }
    }

    // ---- executing decisions ---------------------------------------------

    /// Carries out txn_core's commands in order, with the id's lock held
    /// (the caller's `slot` guard). Returns the request's answer: `Ok(None)`
    /// when the list had no `Reply` and every write succeeded.
    async fn execute(
        self: &Arc<Self>,
        slot: &mut Option<TxnMetadata>,
        commands: Vec<Command>,
    ) -> Result<Option<Answer>, ServiceError> {
        let mut answer = None;
        for command in commands {
            match command {
                Command::Persist(transition) => {
                    let to = transition.to();
                    if matches!(to, TxnState::CompleteCommit | TxnState::CompleteAbort) {
                        failpoints::crash_at(failpoints::BEFORE_COMPLETE_PERSISTED);
                    }
                    // The request's future may be dropped at this await (tonic
                    // drops it when the client gives up): the guard then takes
                    // the prepare back as a failed write does, or its pending
                    // mark would refuse every later request on the id — the
                    // transaction's timeout included — forever.
                    let write = PendingWrite::new(slot);
                    let written = self.store.put_txn(transition.next()).await;
                    let slot = write.settled();
                    if let Err(e) = written {
                        let meta = slot.as_ref().expect("a decision was made on a record");
                        tracing::error!(
                            transactional_id = %meta.transactional_id, error = %e,
                            "persisting a transaction record failed"
                        );
                        unwind_pending(slot);
                        return Err(CoordinatorError::CoordinatorNotAvailable.into());
                    }
                    let meta = slot.as_mut().expect("a decision was made on a record");
                    let before = producer_ids(meta);
                    meta.complete(transition);
                    assert_eq!(meta.state, to);
                    let transactional_id = meta.transactional_id.clone();
                    if to == TxnState::Dead {
                        *slot = None;
                    }
                    self.reindex(&transactional_id, &before, slot.as_ref());
                    if to.is_prepared() {
                        failpoints::crash_at(failpoints::AFTER_PREPARE_PERSISTED);
                    }
                }
                Command::Reply(reply) => answer = Some(reply),
                markers @ Command::WriteMarkers { .. } => self.spawn_markers(markers),
            }
        }
        match answer {
            Some(Ok(answer)) => Ok(Some(answer)),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// Writes the markers in the background, then persists `Complete*`.
    fn spawn_markers(self: &Arc<Self>, command: Command) {
        let Command::WriteMarkers {
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
            partitions,
        } = command
        else {
            unreachable!("spawn_markers takes markers")
        };
        let set = MarkerSet { transactional_id, producer_id, producer_epoch, commit, partitions };
        let this = self.clone();
        tokio::spawn(async move {
            let report = this.markers.write(&*this, &set).await;
            tracing::debug!(txn = %set.txn(), ?report, "markers written");
            // The outcome is in every partition's log now, `__consumer_offsets`
            // included: the transaction's pending group offsets settle.
            this.groups.txn_markers_written(&set);
            this.complete_markers(&set).await;
        });
    }

    /// Every partition acknowledged `set`: persist `Complete*`, retrying a
    /// failed write (a restart would resume the markers instead).
    async fn complete_markers(self: &Arc<Self>, set: &MarkerSet) {
        let mut wait_ms = 10;
        loop {
            let Some(slot) = self.existing_slot(&set.transactional_id) else { return };
            let mut guard = slot.lock().await;
            let Some(meta) = guard.as_mut() else { return };
            let commands = txn_core::markers_written(meta, set.txn(), now_ms());
            if commands.is_empty() {
                return;
            }
            match self.execute(&mut guard, commands).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(txn = %set.txn(), error = %e, "completing failed; retrying")
                }
            }
            drop(guard);
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            wait_ms = (wait_ms * 2).min(COMPLETE_RETRY_MS_MAX);
        }
    }

    // ---- slots and indexes ---------------------------------------------------

    fn slot(&self, transactional_id: &str) -> Slot {
        self.txns.lock().unwrap().entry(transactional_id.to_string()).or_default().clone()
    }

    fn existing_slot(&self, transactional_id: &str) -> Option<Slot> {
        self.txns.lock().unwrap().get(transactional_id).cloned()
    }

    /// Drops the slot of a deleted record unless someone else is using it
    /// (who then finds `None`, i.e. an unknown id, as a fresh slot would).
    fn forget_if_dead(&self, transactional_id: &str, slot: &Slot) {
        let mut txns = self.txns.lock().unwrap();
        // Two holders: the map and our `slot`; anybody else cloned it.
        if Arc::strong_count(slot) == 2
            && slot.try_lock().is_ok_and(|record| record.is_none())
            && txns.get(transactional_id).is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            txns.remove(transactional_id);
        }
    }

    fn transactional_id_of(&self, producer_id: ProducerId) -> Option<String> {
        self.by_producer.lock().unwrap().get(&producer_id).cloned()
    }

    fn reindex(&self, transactional_id: &str, before: &[ProducerId], after: Option<&TxnMetadata>) {
        let after = after.map(producer_ids).unwrap_or_default();
        let mut index = self.by_producer.lock().unwrap();
        for gone in before.iter().filter(|id| !after.contains(id)) {
            if index.get(gone).is_some_and(|t| t == transactional_id) {
                index.remove(gone);
            }
        }
        for id in after {
            let previous = index.insert(id, transactional_id.to_string());
            // The allocator never hands an id out twice, so an id names one
            // transactional id for ever.
            assert!(
                previous.as_deref().is_none_or(|p| p == transactional_id),
                "producer id {id} claimed by {previous:?} and {transactional_id}"
            );
        }
    }

    /// A fresh producer id for txn_core, claimed only when the decision may
    /// need one (no id yet, or a bump past the epoch limit).
    async fn spare_producer_id(&self, meta: &TxnMetadata) -> Result<Spare, ServiceError> {
        if meta.has_producer_id() && meta.producer_epoch < PRODUCER_EPOCH_MAX {
            return Ok(Spare::none());
        }
        Ok(Spare::some(self.store.claim_producer_id().await?))
    }
}

/// A transition's write in flight. Dropped before [`PendingWrite::settled`]
/// (its request was cancelled during the write), it takes the prepare back,
/// as a failed write does: see [`TxnMetadata::abort_pending`] on why a
/// write that reached disk after all is harmless.
struct PendingWrite<'s> {
    slot: Option<&'s mut Option<TxnMetadata>>,
}

impl<'s> PendingWrite<'s> {
    fn new(slot: &'s mut Option<TxnMetadata>) -> PendingWrite<'s> {
        assert!(
            slot.as_ref().is_some_and(|meta| meta.pending.is_some()),
            "a write follows a prepare"
        );
        PendingWrite { slot: Some(slot) }
    }

    /// The write's outcome is known: the caller completes or unwinds.
    fn settled(mut self) -> &'s mut Option<TxnMetadata> {
        self.slot.take().expect("settled once")
    }
}

impl Drop for PendingWrite<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let meta = slot.as_ref().expect("a write is made for a record");
            tracing::warn!(
                transactional_id = %meta.transactional_id,
                "a transaction write was cancelled with its request: taken back as failed"
            );
            unwind_pending(slot);
        }
    }
}

/// Forgets the pending prepare of a write that failed (or was cancelled);
/// a record that never got a producer id goes.
fn unwind_pending(slot: &mut Option<TxnMetadata>) {
    let meta = slot.as_mut().expect("a write is made for a record");
    meta.abort_pending();
    if !meta.has_producer_id() {
        *slot = None;
    }
}

impl PartitionLocator for Coordinator {
    fn locate(&self, partition: &TopicPartition) -> Placement {
        let metadata = self.metadata.read().unwrap();
        let Some(topic) = metadata.topics.get(&partition.topic) else {
            return Placement::TopicGone;
        };
        let Some(server_id) = topic.placement.get(partition.partition as usize) else {
            return Placement::TopicGone;
        };
        match metadata.servers.get(server_id) {
            Some(server) => {
                Placement::Server { server_id: server_id.clone(), address: server.address.clone() }
            }
            None => Placement::Unplaced,
        }
    }
}

/// A producer id claimed ahead of a decision that may need one.
struct Spare {
    id: Option<ProducerId>,
    used: std::cell::Cell<bool>,
}

impl Spare {
    fn none() -> Spare {
        Spare { id: None, used: std::cell::Cell::new(false) }
    }

    fn some(id: ProducerId) -> Spare {
        Spare { id: Some(id), used: std::cell::Cell::new(false) }
    }

    fn take(&self) -> ProducerId {
        let id =
            self.id.expect("txn_core asked for a fresh producer id the driver did not foresee");
        assert!(!self.used.replace(true), "one decision takes at most one fresh producer id");
        id
    }

    /// Gives an unused claim back to the allocator.
    fn release(self, store: &Store) {
        if let Some(id) = self.id
            && !self.used.get()
        {
            store.release_producer_id(id);
        }
    }
}

fn producer_ids(meta: &TxnMetadata) -> Vec<ProducerId> {
    let mut ids: Vec<ProducerId> = [Some(meta.current()), meta.last(), meta.txn()]
        .into_iter()
        .flatten()
        .map(|identity| identity.producer_id)
        .filter(|id| !id.is_none())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Why a producer's open transaction in `partition` is hanging, if it is.
fn hanging_reason(
    record: Option<&TxnMetadata>,
    who: ProducerIdentity,
    partition: &TopicPartition,
    now_ms: u64,
) -> Option<String> {
    let Some(record) = record else {
        return Some("producer id unknown to the coordinator".into());
    };
    let open = matches!(
        record.state,
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
    );
    if !open || record.txn() != Some(who) || !record.partitions.contains(partition) {
        return Some(format!(
            "no open transaction of {} ({}, {}) contains this partition",
            record.transactional_id,
            who,
            record.state.name()
        ));
    }
    let started = record.txn_start_ms.unwrap_or(now_ms);
    if record.state == TxnState::Ongoing
        && now_ms.saturating_sub(started) > u64::from(record.timeout_ms)
    {
        return Some(format!(
            "transaction of {} outlived its timeout of {} ms",
            record.transactional_id, record.timeout_ms
        ));
    }
    None
}

/// Stable partition of a group in `__consumer_offsets`: FNV-1a of the
/// group id (a fixed function, unlike std's randomly seeded hasher).
pub fn offsets_partition_of(group_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % CONSUMER_OFFSETS_PARTITIONS
}

/// Topic names are safe directory names on the partition servers; names
/// starting with `__` are reserved for internal topics.
pub fn validate_topic_name(name: &str, internal: bool) -> Result<(), ServiceError> {
    let invalid = |why: String| Err(ServiceError::InvalidRequest(why));
    if name.is_empty() || name.len() > TOPIC_NAME_LEN_MAX {
        return invalid(format!("topic name must be 1 to {TOPIC_NAME_LEN_MAX} bytes"));
    }
    if name == "." || name == ".." {
        return invalid("topic name cannot be '.' or '..'".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return invalid(format!(
            "topic name {name:?} has {c:?}: use letters, digits, '.', '_', '-'"
        ));
    }
    if name.starts_with("__") && !internal {
        return invalid(format!("topic names starting with '__' are internal: {name:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_group_partition_is_stable_and_in_range() {
        // Proves: the same group always maps to the same partition (a fixed
        // hash: these values must never change), and every group maps into
        // the topic.
        assert_eq!(offsets_partition_of("group-a"), offsets_partition_of("group-a"));
        let fixed: Vec<u32> =
            ["", "a", "orders-consumers"].iter().map(|g| offsets_partition_of(g)).collect();
        assert_eq!(fixed, vec![0x811c_9dc5 % 16, 0xe40c_292c % 16, fixed[2]]);
        for g in 0..1000 {
            assert!(offsets_partition_of(&format!("g{g}")) < CONSUMER_OFFSETS_PARTITIONS);
        }
    }

    #[test]
    fn t11_topic_names_are_checked() {
        // Proves: bad names are refused, `__` is reserved for internal topics.
        assert!(validate_topic_name("orders.v2_eu-1", false).is_ok());
        assert!(validate_topic_name(CONSUMER_OFFSETS_TOPIC, true).is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "__x"] {
            assert!(validate_topic_name(bad, false).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn t12_hanging_reasons() {
        // Proves: a partition's open transaction is hanging when no record
        // maps its producer, when the record's open transaction is another
        // identity or lacks the partition, or when it outlived its timeout;
        // not when it is the record's live Ongoing / Prepare* transaction.
        let who = ProducerIdentity::new(ProducerId(7), ProducerEpoch(0));
        let a0 = TopicPartition::new("a", 0);
        let mut meta = TxnMetadata::new("app", 1_000);
        let t = meta.prepare_init(who, None, 10_000, 1_000).unwrap();
        meta.complete(t);
        let t = meta.prepare_add_partitions(&BTreeSet::from([a0.clone()]), 1_000).unwrap();
        meta.complete(t);
        assert_eq!(hanging_reason(Some(&meta), who, &a0, 5_000), None);
        assert!(hanging_reason(None, who, &a0, 5_000).unwrap().contains("unknown"));
        assert!(hanging_reason(Some(&meta), who, &TopicPartition::new("b", 0), 5_000).is_some());
        let older = ProducerIdentity::new(ProducerId(7), ProducerEpoch(1));
        assert!(hanging_reason(Some(&meta), older, &a0, 5_000).is_some());
        assert!(hanging_reason(Some(&meta), who, &a0, 20_000).unwrap().contains("timeout"));
    }
}
