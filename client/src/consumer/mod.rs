//! The consumer: partitions assigned by hand or by a consumer group, a
//! background long-poll fetcher per partition, read_committed by default,
//! offsets committed to the group.
//!
//! - [`decode`]: fetched batches → records (pure).
//! - `fetcher`: one task per partition.
//! - `group`: JoinGroup / SyncGroup / Heartbeat.

pub mod decode;
pub(crate) mod fetcher;
pub(crate) mod group;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use xo_proto::Offset;
use xo_proto::coordinator::{self as pb, OffsetCommitRequest, OffsetFetchRequest, PartitionOffset};
use xo_proto::partition::{self as ppb, ListOffsetsRequest, list_offsets_request::Spec};

pub use self::decode::ConsumerRecord;
use self::decode::decode_records;
use self::fetcher::{FETCH_ANSWERS_BUFFERED_MAX, FetchChunk, FetchSettings};
use self::group::Membership;
use crate::cluster::Cluster;
use crate::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use crate::error::{Error, Result};
use crate::types::{ConsumerGroupMetadata, MemberLink, TopicPartition};

/// A change of the consumer's partitions, given to the rebalance listener
/// inside `poll` (revocation before the member rejoins, assignment after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rebalance<'a> {
    /// These partitions are no longer this consumer's: finish (commit or
    /// abort) whatever work on them is open.
    Revoked(&'a [TopicPartition]),
    /// These partitions are now this consumer's; positions start at the
    /// group's committed offsets.
    Assigned(&'a [TopicPartition]),
}

type Listener = Box<dyn FnMut(Rebalance<'_>) + Send + Sync>;

/// Where the consumer stands on one assigned partition.
struct Cursor {
    topic: Arc<str>,
    /// The next offset `poll` returns; `None` until looked up (committed
    /// offset, or the reset policy).
    position: Option<Offset>,
    /// The committed offset is not to be used (it was out of range).
    reset: bool,
    /// Generation of the fetcher: bumped by every seek.
    epoch: u64,
    fetcher: Option<JoinHandle<()>>,
    /// Decoded records not yet returned, from `position` on.
    buffered: VecDeque<ConsumerRecord>,
    /// Where the fetcher's last answer ended.
    fetched_end: Option<Offset>,
}

impl Cursor {
    fn new(topic: &str) -> Cursor {
        Cursor {
            topic: Arc::from(topic),
            position: None,
            reset: false,
            epoch: 0,
            fetcher: None,
            buffered: VecDeque::new(),
            fetched_end: None,
        }
    }

    /// Drops whatever was fetched; a new fetcher starts at `position`.
    fn restart(&mut self, position: Option<Offset>) {
        if let Some(f) = self.fetcher.take() {
            f.abort();
        }
        self.position = position;
        self.buffered.clear();
        self.fetched_end = None;
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if let Some(f) = self.fetcher.take() {
            f.abort();
        }
    }
}

/// Reads records from assigned partitions.
///
/// `assign` takes partitions by hand; `subscribe` joins a consumer group,
/// whose coordinator spreads the topics' partitions over its members.
/// Group membership changes only inside [`Consumer::poll`], so the records
/// a `poll` returned stay this consumer's until the next `poll`. With the
/// default read_committed isolation, only records of committed
/// transactions are returned, and never a commit or abort marker.
///
/// ```no_run
/// use std::time::Duration;
/// use xo_client::{ClientConfig, Consumer, ConsumerConfig, OffsetReset};
///
/// # async fn run() -> xo_client::Result<()> {
/// let mut config = ConsumerConfig::new(ClientConfig::new("127.0.0.1:7070")).group("billing");
/// config.offset_reset = OffsetReset::Earliest;
/// let mut consumer = Consumer::new(config)?;
/// consumer.subscribe(&["orders"], "billing")?;
/// loop {
///     for record in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{}/{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
///     }
///     consumer.commit().await?;
/// }
/// # }
/// ```
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    cursors: BTreeMap<TopicPartition, Cursor>,
    tx: mpsc::Sender<FetchChunk>,
    rx: mpsc::Receiver<FetchChunk>,
    next_epoch: u64,
    membership: Option<Membership>,
    listener: Option<Listener>,
    /// Where the next `poll` starts taking records, so no partition starves.
    rotation: usize,
    closed: bool,
}

impl Consumer {
    /// Makes a consumer; nothing is fetched before `assign` or `subscribe`.
    /// Must be called inside a Tokio runtime.
    pub fn new(config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let cluster = Cluster::new(config.client.clone())?;
        let (tx, rx) = mpsc::channel(FETCH_ANSWERS_BUFFERED_MAX);
        Ok(Consumer {
            cluster,
            config,
            cursors: BTreeMap::new(),
            tx,
            rx,
            next_epoch: 0,
            membership: None,
            listener: None,
            rotation: 0,
            closed: false,
        })
    }

    /// Takes exactly these partitions (replacing any earlier assignment),
    /// outside group management. Positions start at the group's committed
    /// offsets if a `group_id` is configured, else by the reset policy.
    ///
    /// ```no_run
    /// # fn run(consumer: &mut xo_client::Consumer) -> xo_client::Result<()> {
    /// use xo_client::TopicPartition;
    /// consumer.assign(&[TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.check_open()?;
        if self.membership.is_some() {
            return Err(Error::State("the consumer is subscribed; it cannot also assign".into()));
        }
        self.set_assignment(partitions);
        Ok(())
    }

    fn set_assignment(&mut self, partitions: &[TopicPartition]) {
        self.cursors.retain(|tp, _| partitions.contains(tp));
        for tp in partitions {
            self.cursors.entry(tp.clone()).or_insert_with(|| Cursor::new(&tp.topic));
        }
    }

    /// Joins consumer group `group_id` for `topics`. The group's
    /// coordinator assigns partitions; the first `poll` joins.
    ///
    /// ```no_run
    /// # fn run(consumer: &mut xo_client::Consumer) -> xo_client::Result<()> {
    /// consumer.subscribe(&["orders", "refunds"], "billing")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(&mut self, topics: &[&str], group_id: &str) -> Result<()> {
        self.check_open()?;
        if topics.is_empty() || group_id.is_empty() {
            return Err(Error::Config("subscribe needs topics and a group id".into()));
        }
        if !self.cursors.is_empty() && self.membership.is_none() {
            return Err(Error::State(
                "the consumer has assigned partitions; it cannot subscribe".into(),
            ));
        }
        self.config.group_id = Some(group_id.to_string());
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        self.membership = Some(Membership::new(group_id, topics));
        self.cursors.clear();
        Ok(())
    }

    /// Calls `listener` inside `poll` when partitions are revoked or
    /// assigned by the group.
    ///
    /// ```no_run
    /// # fn run(consumer: &mut xo_client::Consumer) {
    /// use xo_client::Rebalance;
    /// consumer.set_rebalance_listener(|change| match change {
    ///     Rebalance::Revoked(p) => println!("lost {p:?}"),
    ///     Rebalance::Assigned(p) => println!("got {p:?}"),
    /// });
    /// # }
    /// ```
    pub fn set_rebalance_listener(
        &mut self,
        listener: impl FnMut(Rebalance<'_>) + Send + Sync + 'static,
    ) {
        self.listener = Some(Box::new(listener));
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.cursors.keys().cloned().collect()
    }

    /// Returns the next records (at most `poll_records`), waiting up to
    /// `timeout` for some to arrive; an empty vector when none did. In a
    /// group, a pending rebalance is carried out first (which may take
    /// longer than `timeout`).
    ///
    /// ```no_run
    /// # async fn run(consumer: &mut xo_client::Consumer) -> xo_client::Result<()> {
    /// for record in consumer.poll(std::time::Duration::from_millis(500)).await? {
    ///     println!("{:?}", record.value);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            if self.membership.as_ref().is_some_and(Membership::needs_rejoin) {
                self.rejoin().await?;
            }
            self.resolve_positions().await?;
            self.start_fetchers();
            while let Ok(chunk) = self.rx.try_recv() {
                self.absorb(chunk)?;
            }
            let records = self.take_records();
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
            let rejoin = self.membership.as_ref().map(|m| m.signal.clone());
            let rejoin_wait = async {
                match &rejoin {
                    Some(signal) => signal.changed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                chunk = self.rx.recv() => {
                    if let Some(chunk) = chunk {
                        self.absorb(chunk)?;
                    }
                }
                _ = rejoin_wait => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed { Err(Error::Closed) } else { Ok(()) }
    }

    /// Revokes the old assignment, rejoins, takes the new one.
    async fn rejoin(&mut self) -> Result<()> {
        let revoked = self.assignment();
        if !revoked.is_empty() {
            if let Some(listener) = &mut self.listener {
                listener(Rebalance::Revoked(&revoked));
            }
            self.cursors.clear();
        }
        let deadline = self.cluster.operation_deadline();
        let membership = self.membership.as_mut().expect("rejoin only in a group");
        let assigned = membership.join(&self.cluster, &self.config, deadline).await?;
        self.set_assignment(&assigned);
        if let Some(listener) = &mut self.listener {
            listener(Rebalance::Assigned(&assigned));
        }
        Ok(())
    }

    /// Looks up the start position of every partition that has none: the
    /// group's committed offset (waiting while a transaction holds the
    /// group's offsets), else the reset policy.
    async fn resolve_positions(&mut self) -> Result<()> {
        let unknown: Vec<TopicPartition> = self
            .cursors
            .iter()
            .filter(|(_, c)| c.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let use_committed: Vec<TopicPartition> =
            unknown.iter().filter(|tp| !self.cursors[*tp].reset).cloned().collect();
        let committed = match (&self.config.group_id, use_committed.is_empty()) {
            (Some(_), false) => self.committed(&use_committed).await?,
            _ => BTreeMap::new(),
        };
        for tp in unknown {
            let position = match committed.get(&tp).copied().flatten() {
                Some(offset) => offset,
                None => {
                    let spec = match self.config.offset_reset {
                        OffsetReset::Earliest => Spec::Earliest(true),
                        OffsetReset::Latest => Spec::Latest(true),
                    };
                    self.list_offset(&tp, spec).await?
                }
            };
            if let Some(cursor) = self.cursors.get_mut(&tp) {
                cursor.position = Some(position);
                cursor.reset = false;
            }
        }
        Ok(())
    }

    fn isolation(&self) -> i32 {
        match self.config.isolation {
            IsolationLevel::ReadCommitted => ppb::IsolationLevel::ReadCommitted as i32,
            IsolationLevel::ReadUncommitted => ppb::IsolationLevel::ReadUncommitted as i32,
        }
    }

    fn start_fetchers(&mut self) {
        let settings = FetchSettings {
            isolation: self.isolation(),
            fetch_bytes: self.config.fetch_bytes,
            fetch_wait: self.config.fetch_wait,
        };
        for (tp, cursor) in &mut self.cursors {
            let Some(position) = cursor.position else { continue };
            if cursor.fetcher.is_some() {
                continue;
            }
            self.next_epoch += 1;
            cursor.epoch = self.next_epoch;
            let start = cursor.fetched_end.unwrap_or(position);
            cursor.fetcher = Some(fetcher::spawn(
                self.cluster.clone(),
                cursor.topic.clone(),
                tp.partition,
                start,
                cursor.epoch,
                settings,
                self.tx.clone(),
            ));
        }
    }

    /// Takes one fetcher answer into the partition's buffer.
    fn absorb(&mut self, chunk: FetchChunk) -> Result<()> {
        let tp = TopicPartition { topic: chunk.topic.to_string(), partition: chunk.partition };
        let Some(cursor) = self.cursors.get_mut(&tp) else {
            return Ok(()); // no longer assigned
        };
        if cursor.epoch != chunk.epoch || cursor.position.is_none() {
            return Ok(()); // from before a seek
        }
        match chunk.result {
            Ok(response) => {
                let position = cursor.position.expect("checked above");
                let from = chunk.requested.max(position);
                decode_records(
                    &cursor.topic,
                    chunk.partition,
                    &response.batches,
                    from,
                    &mut cursor.buffered,
                )
                .map_err(Error::Corrupt)?;
                let end = Offset(response.next_offset);
                cursor.fetched_end = Some(end);
                if cursor.buffered.is_empty() && end > position {
                    // Only markers or aborted batches: step over them.
                    cursor.position = Some(end);
                }
                Ok(())
            }
            Err(e) if e.partition_code() == Some(ppb::ErrorCode::OffsetOutOfRange) => {
                tracing::warn!(partition = %tp, error = %e, "position out of range; resetting");
                cursor.restart(None);
                cursor.reset = true;
                Ok(())
            }
            Err(e) => {
                cursor.fetcher = None;
                Err(e)
            }
        }
    }

    /// Up to `poll_records` buffered records, a fair share from each
    /// partition in turn; advances positions past them.
    fn take_records(&mut self) -> Vec<ConsumerRecord> {
        let max = self.config.poll_records;
        let mut out = Vec::new();
        let count = self.cursors.len();
        if count == 0 {
            return out;
        }
        self.rotation = (self.rotation + 1) % count;
        let share = max.div_ceil(count);
        let mut cursors: Vec<&mut Cursor> = self.cursors.values_mut().collect();
        cursors.rotate_left(self.rotation);
        for pass in 0..2 {
            for cursor in cursors.iter_mut() {
                let limit = if pass == 0 { share } else { max };
                let mut taken = 0;
                while out.len() < max && taken < limit {
                    let Some(record) = cursor.buffered.pop_front() else { break };
                    cursor.position = Some(record.offset.next());
                    out.push(record);
                    taken += 1;
                }
                if cursor.buffered.is_empty()
                    && let (Some(end), Some(position)) = (cursor.fetched_end, cursor.position)
                    && end > position
                {
                    cursor.position = Some(end);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// Moves the partition's position: the next `poll` returns records
    /// from `offset` on.
    ///
    /// ```no_run
    /// # fn run(consumer: &mut xo_client::Consumer) -> xo_client::Result<()> {
    /// use xo_client::{Offset, TopicPartition};
    /// consumer.seek(&TopicPartition::new("orders", 0), Offset(42))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn seek(&mut self, partition: &TopicPartition, offset: Offset) -> Result<()> {
        let cursor = self.cursors.get_mut(partition).ok_or_else(|| {
            Error::State(format!("partition {partition} is not assigned to this consumer"))
        })?;
        cursor.restart(Some(offset));
        cursor.reset = false;
        Ok(())
    }

    /// Moves each partition to the first offset still in its log.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            let offset = self.list_offset(tp, Spec::Earliest(true)).await?;
            self.seek(tp, offset)?;
        }
        Ok(())
    }

    /// Moves each partition to its end (the last stable offset under
    /// read_committed).
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            let offset = self.list_offset(tp, Spec::Latest(true)).await?;
            self.seek(tp, offset)?;
        }
        Ok(())
    }

    /// Moves every assigned partition back to the group's committed offset
    /// (or the reset policy where none is): what an exactly-once pipeline
    /// does after aborting a transaction, so the aborted work is redone.
    pub fn seek_to_committed(&mut self) {
        for cursor in self.cursors.values_mut() {
            cursor.restart(None);
            cursor.reset = false;
        }
    }

    /// The next offset `poll` returns for the partition, if known.
    pub fn position(&self, partition: &TopicPartition) -> Option<Offset> {
        self.cursors.get(partition)?.position
    }

    /// Every assigned partition's position (those known): the offsets to
    /// commit, or to hand to `send_offsets_to_transaction`.
    pub fn positions(&self) -> Vec<(TopicPartition, Offset)> {
        self.cursors.iter().filter_map(|(tp, c)| Some((tp.clone(), c.position?))).collect()
    }

    /// This consumer's identity in its group, for
    /// [`crate::TransactionalProducer::send_offsets_to_transaction`].
    pub fn group_metadata(&self) -> ConsumerGroupMetadata {
        match &self.membership {
            Some(m) => ConsumerGroupMetadata {
                group_id: m.group_id.clone(),
                member_id: m.member_id.clone(),
                generation_id: m.generation_id,
                member: MemberLink(Some(m.signal.clone())),
            },
            None => ConsumerGroupMetadata::unmanaged(self.config.group_id.as_deref().unwrap_or("")),
        }
    }

    fn group_id(&self) -> Result<&str> {
        self.config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::Config("the consumer has no group_id".into()))
    }

    /// The group's committed offsets for `partitions` (`None`: nothing
    /// committed). While a transaction holding offsets of the group is open
    /// the coordinator answers UNSTABLE_OFFSET_COMMIT; this retries until
    /// the operation timeout, then returns that (retriable) error.
    ///
    /// ```no_run
    /// # async fn run(consumer: &xo_client::Consumer) -> xo_client::Result<()> {
    /// use xo_client::TopicPartition;
    /// let committed = consumer.committed(&[TopicPartition::new("orders", 0)]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<Offset>>> {
        let group_id = self.group_id()?.to_string();
        let request = OffsetFetchRequest {
            group_id,
            partitions: partitions
                .iter()
                .map(|tp| pb::TopicPartition { topic: tp.topic.clone(), partition: tp.partition })
                .collect(),
        };
        let cluster = &self.cluster;
        let response = cluster
            .retry("OffsetFetch", cluster.operation_deadline(), || {
                let request = request.clone();
                async move {
                    let r = cluster
                        .coordinator_once(|mut c| async move { c.offset_fetch(request).await })
                        .await?;
                    match Error::from_coordinator(r.error, r.error_message.clone()) {
                        None => Ok(r),
                        Some(e) => Err(e),
                    }
                }
            })
            .await?;
        let mut out: BTreeMap<TopicPartition, Option<Offset>> =
            partitions.iter().map(|tp| (tp.clone(), None)).collect();
        for po in response.offsets {
            let Some(tp) = po.partition else { continue };
            let tp = TopicPartition { topic: tp.topic, partition: tp.partition };
            if po.offset >= 0 && (partitions.is_empty() || out.contains_key(&tp)) {
                out.insert(tp, Some(Offset(po.offset)));
            }
        }
        Ok(out)
    }

    /// Commits the position of every assigned partition to the group.
    ///
    /// ```no_run
    /// # async fn run(consumer: &mut xo_client::Consumer) -> xo_client::Result<()> {
    /// let _ = consumer.poll(std::time::Duration::from_secs(1)).await?;
    /// consumer.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.positions();
        self.commit_offsets(&offsets).await
    }

    /// Commits these offsets (the next offsets to consume) to the group,
    /// with this member's generation: a member that lost its partitions in
    /// a rebalance is refused (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID /
    /// REBALANCE_IN_PROGRESS, abortable) and rejoins at the next poll.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, Offset)]) -> Result<()> {
        self.check_open()?;
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.group_metadata();
        self.group_id()?;
        let request = OffsetCommitRequest {
            group_id: group.group_id,
            member_id: group.member_id,
            generation_id: group.generation_id,
            offsets: offsets
                .iter()
                .map(|(tp, offset)| PartitionOffset {
                    partition: Some(pb::TopicPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    }),
                    offset: offset.0,
                    metadata: String::new(),
                })
                .collect(),
        };
        let cluster = &self.cluster;
        let result = cluster
            .retry("OffsetCommit", cluster.operation_deadline(), || {
                let request = request.clone();
                async move {
                    let r = cluster
                        .coordinator_once(|mut c| async move { c.offset_commit(request).await })
                        .await?;
                    Error::from_coordinator(r.error, r.error_message).map_or(Ok(()), Err)
                }
            })
            .await;
        if let Err(e) = &result
            && matches!(
                e.coordinator_code(),
                Some(
                    pb::ErrorCode::IllegalGeneration
                        | pb::ErrorCode::UnknownMemberId
                        | pb::ErrorCode::RebalanceInProgress
                )
            )
        {
            self.enforce_rebalance();
        }
        result
    }

    /// Makes this member rejoin its group at the next `poll` (revoking its
    /// partitions first), as Kafka's `enforceRebalance` does. A refused
    /// `commit` and a `send_offsets_to_transaction` refused with
    /// ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID do this already; this is for
    /// a caller that learnt otherwise that the member should rejoin. Does
    /// nothing outside a group.
    pub fn enforce_rebalance(&self) {
        if let Some(m) = &self.membership {
            m.request_rejoin();
        }
    }

    /// ListOffsets for one partition, retried.
    async fn list_offset(&self, tp: &TopicPartition, spec: Spec) -> Result<Offset> {
        let cluster = &self.cluster;
        let isolation = self.isolation();
        cluster
            .retry("ListOffsets", cluster.operation_deadline(), || async {
                let addr = cluster.address(&tp.topic, tp.partition).await?;
                let mut client = cluster.partition_client(&addr)?;
                let request = ListOffsetsRequest {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    spec: Some(spec),
                    isolation,
                };
                let timeout = cluster.config.request_timeout;
                let response =
                    match tokio::time::timeout(timeout, client.list_offsets(request)).await {
                        Ok(Ok(r)) => r.into_inner(),
                        Ok(Err(status)) => return Err(Error::from_status(&addr, status)),
                        Err(_) => {
                            return Err(Error::Transport {
                                addr: addr.to_string(),
                                message: format!("no answer within {timeout:?}"),
                            });
                        }
                    };
                if let Some(e) = Error::from_partition(
                    &tp.topic,
                    tp.partition,
                    response.error,
                    response.error_message,
                ) {
                    if e.invalidates_metadata() {
                        let _ = cluster.refresh(&[&tp.topic]).await;
                    }
                    return Err(e);
                }
                Ok(Offset(response.offset))
            })
            .await
    }

    /// Stops fetching and leaves the group (its partitions move to the
    /// other members at once).
    pub async fn close(&mut self) -> Result<()> {
        self.cursors.clear();
        if let Some(m) = &mut self.membership {
            m.leave(&self.cluster).await;
        }
        self.closed = true;
        Ok(())
    }
}
