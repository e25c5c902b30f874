//! The idempotent producer, and the engine the transactional producer
//! shares with it.
//!
//! - [`accumulator`]: batching per partition (batch size, linger), as pure
//!   state.
//! - [`inflight`]: sequence numbers and the in-flight window per
//!   partition, as pure state: retries keep their sequences and order.
//! - `state`: every decision of the producer (what to send where, what an
//!   answer means), pure.
//! - `sender`: the background task that carries the decisions out.
//! - `supervisor`: fails the producer at once, saying why, when the sender
//!   or the appender task stops while the producer is open.

pub mod accumulator;
pub mod inflight;
pub(crate) mod sender;
pub(crate) mod state;
mod supervisor;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use xo_proto::coordinator::InitProducerIdRequest;
use xo_proto::{ProducerEpoch, ProducerId};

use self::accumulator::{BatchConfig, Delivery, RecordRef, Slot};
use self::inflight::InFlightConfig;
use self::state::{ProducerState, StateConfig, WaitingRecord};
use self::supervisor::{Task, supervise};
use crate::cluster::{Cluster, TopicMeta};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::partitioner::partition_for_key;
use crate::types::RecordMetadata;

pub use self::inflight::IN_FLIGHT_PER_PARTITION_MAX;

/// A record to send. Everything is borrowed: the producer copies the bytes
/// into its batch buffer when the record is appended.
///
/// ```
/// use xo_client::ProducerRecord;
/// let record = ProducerRecord::new("orders", "42 widgets").key("customer-7");
/// assert_eq!(record.key, Some(&b"customer-7"[..]));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ProducerRecord<'a> {
    pub topic: &'a str,
    /// Send to this partition instead of choosing one from the key.
    pub partition: Option<u32>,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone (deletes the key under compaction).
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Milliseconds since the Unix epoch; now when `None`.
    pub timestamp: Option<i64>,
}

impl<'a> ProducerRecord<'a> {
    pub fn new(topic: &'a str, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        ProducerRecord {
            topic,
            partition: None,
            key: None,
            value: Some(value.as_ref()),
            headers: &[],
            timestamp: None,
        }
    }

    /// A record with no value: under compaction, deletes `key`.
    pub fn tombstone(topic: &'a str, key: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        ProducerRecord {
            topic,
            partition: None,
            key: Some(key.as_ref()),
            value: None,
            headers: &[],
            timestamp: None,
        }
    }

    pub fn key(mut self, key: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn headers(mut self, headers: &'a [(&'a str, Option<&'a [u8]>)]) -> Self {
        self.headers = headers;
        self
    }

    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// The machinery shared by [`Producer`] and
/// [`crate::TransactionalProducer`].
pub(crate) struct Engine {
    pub cluster: Arc<Cluster>,
    pub transactional_id: Option<String>,
    pub transaction_timeout: Duration,
    delivery_timeout: Duration,
    /// Most bytes of records copied into the waiting queue.
    waiting_bytes_max: usize,
    record_bytes_max: usize,
    /// std Mutex: nothing async happens while it is held.
    pub state: Mutex<ProducerState>,
    /// Wakes the sender.
    pub wake: Notify,
    /// Wakes the appender (a record joined the waiting queue).
    appender_wake: Notify,
    /// Signalled after the sender applied an answer or the appender
    /// appended a waiting record.
    pub changed: Notify,
    memory: Arc<Semaphore>,
}

/// What appending found.
enum Step {
    /// Appended; whether the sender must be woken.
    Appended(Delivery, bool),
    /// This many buffer bytes must be reserved first.
    NeedMemory(usize),
}

/// Where `send` put a record.
enum Enqueued {
    Appended(Delivery),
    /// In the waiting queue; the appender fills the slot.
    Waiting(Arc<Slot<Result<Delivery>>>),
}

impl Engine {
    pub(crate) fn start(
        cluster: Arc<Cluster>,
        config: ProducerConfig,
        transactional_id: Option<String>,
        identity: Option<(ProducerId, ProducerEpoch)>,
    ) -> Result<(Arc<Engine>, Vec<JoinHandle<()>>)> {
        let transaction_timeout = config.transaction_timeout;
        config.validate()?;
        let memory = Arc::new(Semaphore::new(config.buffer_bytes));
        let state_config = StateConfig {
            batch: BatchConfig {
                batch_bytes: config.batch_bytes,
                linger: config.linger,
                compression: config.compression,
                idempotent: config.idempotence || transactional_id.is_some(),
                transactional: transactional_id.is_some(),
            },
            in_flight: InFlightConfig {
                retry_backoff: config.client.retry_backoff,
                retry_backoff_max: config.client.retry_backoff_max,
                delivery_timeout: config.delivery_timeout,
                resequence_on_lost_state: config.idempotence && transactional_id.is_none(),
            },
            record_bytes_max: config.record_bytes_max,
            retry_backoff: config.client.retry_backoff,
            retry_backoff_max: config.client.retry_backoff_max,
            operation_timeout: config.client.operation_timeout,
        };
        let mut state =
            ProducerState::new(state_config, memory.clone(), transactional_id.is_some());
        state.identity = identity;
        let engine = Arc::new(Engine {
            cluster,
            transactional_id,
            transaction_timeout,
            delivery_timeout: config.delivery_timeout,
            waiting_bytes_max: config.buffer_bytes,
            record_bytes_max: config.record_bytes_max,
            state: Mutex::new(state),
            wake: Notify::new(),
            appender_wake: Notify::new(),
            changed: Notify::new(),
            memory,
        });
        let tasks = vec![
            tokio::spawn(supervise(engine.clone(), Task::Sender, sender::run(engine.clone()))),
            tokio::spawn(supervise(engine.clone(), Task::Appender, appender(engine.clone()))),
        ];
        Ok((engine, tasks))
    }

    /// Appends the record now if nothing waits before it, its topic's
    /// metadata is cached and buffer space is free; otherwise copies it into
    /// the waiting queue; if that is full too, refuses it.
    fn enqueue(&self, record: &ProducerRecord<'_>) -> Result<Enqueued> {
        let meta = self.cluster.cached_topic(record.topic);
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let record_ref =
            RecordRef { timestamp, key: record.key, value: record.value, headers: record.headers };
        let size = record_ref.size_estimate();
        if size > self.record_bytes_max {
            return Err(Error::RecordTooLarge { size, limit: self.record_bytes_max });
        }
        let mut state = self.state.lock().unwrap();
        state.check_send()?;
        if state.waiting_is_empty()
            && let Some(meta) = &meta
        {
            match self.append_locked(&mut state, meta, record.partition, &record_ref, 0)? {
                Step::Appended(delivery, wake) => {
                    drop(state);
                    if wake {
                        self.wake.notify_one();
                    }
                    return Ok(Enqueued::Appended(delivery));
                }
                Step::NeedMemory(_) => {}
            }
        }
        if state.waiting_bytes() + size > self.waiting_bytes_max {
            let full = Error::QueueFull { bytes: self.waiting_bytes_max };
            if state.txn.is_some() {
                // The transaction would commit without this record unless
                // the application notices in time: make sure it cannot.
                state.poison(full.clone());
            }
            return Err(full);
        }
        let slot = Arc::new(Slot::default());
        state.push_waiting(WaitingRecord {
            id: 0,
            topic: record.topic.to_string(),
            partition: record.partition,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
            timestamp,
            sent_at: Instant::now(),
            size,
            slot: slot.clone(),
        });
        drop(state);
        self.appender_wake.notify_one();
        Ok(Enqueued::Waiting(slot))
    }

    /// One attempt to append under the state lock, with `held` buffer
    /// bytes already reserved by the caller (the excess is given back; on
    /// an error, the caller gives back what it holds).
    fn append_locked(
        &self,
        state: &mut ProducerState,
        meta: &TopicMeta,
        explicit_partition: Option<u32>,
        record: &RecordRef<'_>,
        held: usize,
    ) -> Result<Step> {
        state.check_append()?;
        let partitions = meta.partitions();
        if partitions == 0 {
            return Err(Error::UnknownTopic(meta.name.to_string()));
        }
        let partition = match (explicit_partition, record.key) {
            (Some(p), _) if p >= partitions => {
                return Err(Error::UnknownPartition {
                    topic: meta.name.to_string(),
                    partition: p,
                    partitions,
                });
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => state.sticky_partition(&meta.name, partitions),
        };
        let needed = state.reservation_for(&meta.name, partitions, partition, record)?;
        let reserved = if needed <= held {
            self.memory.add_permits(held - needed);
            needed
        } else {
            match self.memory.try_acquire_many((needed - held) as u32) {
                Ok(permit) => {
                    permit.forget();
                    needed
                }
                Err(_) => return Ok(Step::NeedMemory(needed)),
            }
        };
        let (appended, wake) =
            state.append(&meta.name, partitions, partition, record, reserved, Instant::now());
        Ok(Step::Appended(
            Delivery {
                completion: appended.completion,
                offset_delta: appended.offset_delta,
                topic: meta.name.clone(),
                partition,
                timestamp: record.timestamp,
            },
            wake,
        ))
    }

    pub(crate) fn send<'a>(
        &'a self,
        record: ProducerRecord<'a>,
    ) -> impl Future<Output = Result<RecordMetadata>> + Send + 'a {
        // Appended or queued here, before the future is first polled:
        // records keep the order of the `send` calls, and a commit or flush
        // includes every record sent before it, whenever (or whether) the
        // futures are awaited.
        let enqueued = self.enqueue(&record);
        async move {
            match enqueued? {
                Enqueued::Appended(delivery) => delivery.wait().await,
                Enqueued::Waiting(slot) => {
                    let delivery = slot.wait().await.clone()?;
                    delivery.wait().await
                }
            }
        }
    }

    /// Sends every buffered record now and waits until each record sent
    /// before the call is acknowledged or failed.
    pub(crate) async fn flush(&self) {
        let deadline =
            Instant::now() + self.delivery_timeout + self.cluster.config.operation_timeout;
        self.wait_until(deadline, |s| s.waiting_is_empty()).await;
        let completions = self.state.lock().unwrap().flush();
        self.wake.notify_one();
        for completion in completions {
            completion.wait().await;
        }
    }

    /// Waits until `done` holds for the state (checked after every answer
    /// the sender applies), or the deadline passes.
    pub(crate) async fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&ProducerState) -> bool,
    ) -> bool {
        loop {
            let changed = self.changed.notified();
            if done(&self.state.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(&self.state.lock().unwrap());
            }
        }
    }

    pub(crate) fn identity(&self) -> Option<(ProducerId, ProducerEpoch)> {
        self.state.lock().unwrap().identity
    }

    pub(crate) fn shut_down(&self) {
        self.state.lock().unwrap().closing = true;
        self.wake.notify_one();
        self.appender_wake.notify_one();
    }
}

/// The appender task: appends the waiting records in order, each once its
/// topic's metadata is known and buffer space is free (or fails it when
/// its delivery timeout passes first).
async fn appender(engine: Arc<Engine>) {
    loop {
        let wake = engine.appender_wake.notified();
        let (front, closing) = {
            let state = engine.state.lock().unwrap();
            (state.waiting_front(), state.closing)
        };
        let Some((id, topic, sent_at)) = front else {
            if closing {
                break;
            }
            wake.await;
            continue;
        };
        let deadline = sent_at + engine.delivery_timeout;
        let lookup = engine.cluster.retry("metadata", deadline, || engine.cluster.topic(&topic));
        // A fatal error or an abort may fail the record meanwhile: stop
        // looking then, or `close` would wait out the delivery timeout.
        let failed = engine.wait_until(deadline, |s| s.waiting_front_id() != Some(id));
        let meta = tokio::select! {
            meta = lookup => meta,
            true = failed => continue,
        };
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                finish_waiting(&engine, id, Err(e));
                continue;
            }
        };
        let mut held = 0usize;
        loop {
            // Under the lock, no await: append, or learn how much buffer
            // space to wait for.
            let needed = {
                let mut state = engine.state.lock().unwrap();
                // Gone if an abort or a fatal error failed the queue meanwhile.
                let Some(record) = state.take_waiting(id) else {
                    engine.memory.add_permits(held);
                    break;
                };
                let headers = record.header_refs();
                let step = engine.append_locked(
                    &mut state,
                    &meta,
                    record.partition,
                    &record.record_ref(&headers),
                    held,
                );
                drop(headers);
                match step {
                    Ok(Step::Appended(delivery, wake)) => {
                        drop(state);
                        record.slot.complete(Ok(delivery));
                        if wake {
                            engine.wake.notify_one();
                        }
                        engine.changed.notify_waiters();
                        break;
                    }
                    Ok(Step::NeedMemory(needed)) => {
                        state.untake_waiting(record);
                        needed
                    }
                    Err(e) => {
                        poison_open_txn(&mut state, &e);
                        drop(state);
                        engine.memory.add_permits(held);
                        record.slot.complete(Err(e));
                        engine.changed.notify_waiters();
                        break;
                    }
                }
            };
            engine.memory.add_permits(held);
            let acquire = engine.memory.acquire_many(needed as u32);
            match tokio::time::timeout_at(deadline, acquire).await {
                Ok(Ok(permit)) => {
                    permit.forget();
                    held = needed;
                }
                _ => {
                    let after = engine.delivery_timeout;
                    let e = Error::Timeout { what: "waiting for producer buffer space", after };
                    finish_waiting(&engine, id, Err(e));
                    break;
                }
            }
        }
    }
    tracing::debug!("producer appender stopped");
}

/// Poisons the open transaction, if any, for a record that failed.
fn poison_open_txn(state: &mut state::ProducerState, e: &Error) {
    if state.txn.as_ref().is_some_and(|t| {
        matches!(t.phase, state::TxnPhase::InTransaction | state::TxnPhase::Committing)
    }) {
        state.poison(e.clone());
    }
}

/// Fails the waiting record `id` (if it is still first in the queue). A record
/// of an open transaction that fails before it is appended poisons the
/// transaction, as a failed batch does: otherwise a commit would succeed
/// without it (found by the jepsen queue workload: commits acknowledged with
/// a send missing, when metadata was unavailable during a coordinator restart).
fn finish_waiting(engine: &Engine, id: u64, result: Result<Delivery>) {
    let record = {
        let mut state = engine.state.lock().unwrap();
        let record = state.take_waiting(id);
        if record.is_some()
            && let Err(e) = &result
        {
            poison_open_txn(&mut state, e);
        }
        record
    };
    if let Some(record) = record {
        record.slot.complete(result);
    }
    engine.changed.notify_waiters();
}

/// InitProducerId, one attempt. Under static metadata an idempotent
/// producer uses the configured producer id at epoch 0.
pub(crate) async fn init_producer_id(
    cluster: &Cluster,
    transactional_id: &str,
    transaction_timeout_ms: i64,
    expected: Option<(ProducerId, ProducerEpoch)>,
) -> Result<(ProducerId, ProducerEpoch)> {
    if let Some(static_metadata) = &cluster.config.static_metadata {
        return match static_metadata.producer_id {
            Some(id) if transactional_id.is_empty() => Ok((ProducerId(id), ProducerEpoch(0))),
            _ => Err(Error::NoCoordinator),
        };
    }
    let (producer_id, producer_epoch) =
        expected.map_or((-1, -1), |(id, epoch)| (id.0, epoch.0 as i32));
    let request = InitProducerIdRequest {
        transactional_id: transactional_id.to_string(),
        transaction_timeout_ms,
        producer_id,
        producer_epoch,
    };
    let response =
        cluster.coordinator_once(|mut c| async move { c.init_producer_id(request).await }).await?;
    if let Some(e) = Error::from_coordinator(response.error, response.error_message) {
        return Err(e);
    }
    producer_identity(response.producer_id, response.producer_epoch)
}

/// A (producer id, epoch) from the wire, checked.
pub(crate) fn producer_identity(id: i64, epoch: i32) -> Result<(ProducerId, ProducerEpoch)> {
    match i16::try_from(epoch) {
        Ok(epoch) if id >= 0 && epoch >= 0 => Ok((ProducerId(id), ProducerEpoch(epoch))),
        _ => Err(Error::Rpc {
            code: tonic::Code::OutOfRange,
            message: format!("coordinator returned an invalid producer identity ({id}, {epoch})"),
        }),
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Stops the sender once the last handle is gone (it first sends what is
/// buffered).
pub(crate) struct Handle {
    pub engine: Arc<Engine>,
    /// The sender and appender tasks.
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Handle {
    /// Flushes, then stops the sender and waits for it.
    pub async fn close(&self) {
        self.engine.flush().await;
        self.engine.shut_down();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.engine.shut_down();
    }
}

/// An idempotent producer (or, with `idempotence` off, a plain one).
///
/// Records are batched per partition and sent by a background task; each
/// partition drops the duplicates a retry could create, and retries never
/// reorder records of a partition. Cloning gives another handle to the same
/// producer. Must be created and used inside a Tokio runtime.
///
/// ```no_run
/// use xo_client::{ClientConfig, Producer, ProducerConfig, ProducerRecord};
///
/// # async fn run() -> xo_client::Result<()> {
/// let producer = Producer::new(ProducerConfig::new(ClientConfig::new("127.0.0.1:7070"))).await?;
/// // Send many records, then await their acknowledgements.
/// let pending: Vec<_> = (0..100)
///     .map(|i| producer.send(ProducerRecord::new("events", "hello").key(if i % 2 == 0 { "a" } else { "b" })))
///     .collect();
/// for ack in futures::future::join_all(pending).await {
///     let meta = ack?;
///     println!("{}/{} at offset {}", meta.topic, meta.partition, meta.offset);
/// }
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl Producer {
    /// Connects, gets a producer id from the coordinator (idempotence), and
    /// starts the sender task.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let cluster = Cluster::new(config.client.clone())?;
        let identity = if config.idempotence {
            let timeout_ms = config.transaction_timeout.as_millis() as i64;
            let deadline = cluster.operation_deadline();
            let identity = cluster
                .retry("InitProducerId", deadline, || {
                    init_producer_id(&cluster, "", timeout_ms, None)
                })
                .await?;
            tracing::debug!(producer_id = %identity.0, epoch = %identity.1, "idempotent producer ready");
            Some(identity)
        } else {
            None
        };
        let (engine, tasks) = Engine::start(cluster, config, None, identity)?;
        Ok(Producer { handle: Arc::new(Handle { engine, tasks: Mutex::new(tasks) }) })
    }

    /// Sends a record; the future resolves when the record's batch is
    /// acknowledged, with the record's offset.
    ///
    /// The record is taken in by the call itself, not when the future is
    /// polled: appended to its partition's batch at once when the topic is
    /// known and buffer space is free, else copied into an ordered queue
    /// that a background task appends from. Records of a partition are
    /// therefore written in the order of the `send` calls, and a later
    /// `flush` (or a transaction's commit) includes them, whether or not the
    /// futures were awaited. When the buffer and that queue are both full
    /// (`buffer_bytes` each), the future fails at once with
    /// [`Error::QueueFull`] (retriable; nothing was sent).
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::Producer) -> xo_client::Result<()> {
    /// use xo_client::ProducerRecord;
    /// let meta = producer.send(ProducerRecord::new("events", b"payload").partition(0)).await?;
    /// assert_eq!(meta.partition, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn send<'a>(
        &'a self,
        record: ProducerRecord<'a>,
    ) -> impl Future<Output = Result<RecordMetadata>> + Send + 'a {
        self.handle.engine.send(record)
    }

    /// Sends every buffered record without waiting for the linger, and
    /// waits until each record sent before the call is acknowledged or has
    /// failed (the failures are in the records' futures).
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::Producer) {
    /// use xo_client::ProducerRecord;
    /// let _ = producer.send(ProducerRecord::new("events", "x"));
    /// producer.flush().await;
    /// # }
    /// ```
    pub async fn flush(&self) {
        self.handle.engine.flush().await
    }

    /// Flushes, then stops the sender. Later sends fail with
    /// [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        self.handle.close().await;
        Ok(())
    }

    /// The producer id and epoch batches are stamped with (`None` for a
    /// non-idempotent producer, or while a new id is being fetched).
    pub fn producer_id(&self) -> Option<(ProducerId, ProducerEpoch)> {
        self.handle.engine.identity()
    }
}
