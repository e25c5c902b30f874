//! The transactional producer, with Kafka's API shape.
//!
//! ```text
//!   new ─▶ init_transactions ─▶ Ready ◀──────────────────────────────┐
//!                                 │ begin_transaction                │
//!                                 ▼                                  │
//!                           InTransaction ── send / send_offsets_… ──┤
//!                             │       │                              │
//!             commit_transaction      └─ a failure ─▶ Abortable      │
//!                             │                          │           │
//!                             ▼                 abort_transaction ───┤
//!                       EndTxn(commit) ─────────────────────────────┘
//!   PRODUCER_FENCED / INVALID_PRODUCER_EPOCH anywhere ─▶ fatal (unusable)
//! ```
//!
//! Every commit and abort bumps the producer's epoch at the coordinator;
//! EndTxn's answer carries the identity for the next transaction, which
//! the producer adopts (sequences restart at 0), so nothing delayed from
//! one transaction can land in the next.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use xo_proto::coordinator::{
    self as pb, AddOffsetsToTxnRequest, EndTxnRequest, PartitionOffset, TxnOffsetCommitRequest,
};
use xo_proto::{Offset, ProducerEpoch, ProducerId};

use crate::cluster::Cluster;
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::producer::state::TxnPhase;
use crate::producer::{Engine, Handle, ProducerRecord, init_producer_id, producer_identity};
use crate::types::{ConsumerGroupMetadata, RecordMetadata, TopicPartition};

/// Longest transactional id accepted.
pub const TRANSACTIONAL_ID_LEN_MAX: usize = 255;

/// A producer whose writes to any number of partitions, and the consumer
/// offsets it sends along, become visible all at once or never.
///
/// Errors follow [`crate::ErrorClass`]: retriable ones were already
/// retried; on an abortable one call [`TransactionalProducer::abort_transaction`],
/// rewind your input and redo the transaction; a fatal one (`is_fenced()`:
/// a newer instance with the same transactional id exists) means this
/// producer must be dropped.
///
/// ```no_run
/// use xo_client::{ClientConfig, ProducerConfig, ProducerRecord, TransactionalProducer};
///
/// # async fn run() -> xo_client::Result<()> {
/// let config = ProducerConfig::new(ClientConfig::new("127.0.0.1:7070"));
/// let producer = TransactionalProducer::new(config, "payments-1")?;
/// producer.init_transactions().await?;
/// producer.begin_transaction()?;
/// let a = producer.send(ProducerRecord::new("debits", "alice -5"));
/// let b = producer.send(ProducerRecord::new("credits", "bob +5"));
/// match producer.commit_transaction().await {
///     Ok(()) => {}
///     Err(e) if e.is_abortable() => producer.abort_transaction().await?,
///     Err(e) => return Err(e),
/// }
/// let (_, _) = (a.await, b.await);
/// # Ok(())
/// # }
/// ```
pub struct TransactionalProducer {
    handle: Arc<Handle>,
    transactional_id: String,
    /// Serialises the transaction-level calls (init, offsets, commit,
    /// abort): one of them at a time, as in Kafka. A tokio Mutex since it
    /// is held across awaits.
    control: tokio::sync::Mutex<()>,
}

impl TransactionalProducer {
    /// Makes the producer and starts its sender; call
    /// [`TransactionalProducer::init_transactions`] next. Must be called
    /// inside a Tokio runtime.
    pub fn new(config: ProducerConfig, transactional_id: &str) -> Result<TransactionalProducer> {
        if transactional_id.is_empty() || transactional_id.len() > TRANSACTIONAL_ID_LEN_MAX {
            return Err(Error::Config(format!(
                "transactional id must be 1..={TRANSACTIONAL_ID_LEN_MAX} bytes"
            )));
        }
        let cluster = Cluster::new(config.client.clone())?;
        let (engine, tasks) =
            Engine::start(cluster, config, Some(transactional_id.to_string()), None)?;
        Ok(TransactionalProducer {
            handle: Arc::new(Handle { engine, tasks: Mutex::new(tasks) }),
            transactional_id: transactional_id.to_string(),
            control: tokio::sync::Mutex::new(()),
        })
    }

    fn engine(&self) -> &Engine {
        &self.handle.engine
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// The producer id and epoch of the current (or next) transaction.
    pub fn producer_id(&self) -> Option<(ProducerId, ProducerEpoch)> {
        self.engine().identity()
    }

    /// Registers the transactional id with the coordinator and gets this
    /// instance's producer id and epoch. This fences every older instance
    /// with the same transactional id and aborts (or completes) whatever
    /// transaction it left open; while that is under way the coordinator
    /// answers `CONCURRENT_TRANSACTIONS`, which is retried here.
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::TransactionalProducer) -> xo_client::Result<()> {
    /// producer.init_transactions().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn init_transactions(&self) -> Result<()> {
        let _control = self.control.lock().await;
        {
            let state = self.engine().state.lock().unwrap();
            if let Some(e) = &state.fatal {
                return Err(e.clone());
            }
            if !matches!(phase(&state), TxnPhase::Uninitialized) {
                return Err(Error::State("init_transactions was already called".into()));
            }
        }
        let cluster = &self.engine().cluster;
        let timeout_ms = self.engine().transaction_timeout.as_millis() as i64;
        let answer = cluster
            .retry("InitProducerId", cluster.operation_deadline(), || {
                init_producer_id(cluster, &self.transactional_id, timeout_ms, None)
            })
            .await;
        let mut state = self.engine().state.lock().unwrap();
        match answer {
            Ok(identity) => {
                tracing::info!(transactional_id = %self.transactional_id, producer_id = %identity.0,
                    epoch = %identity.1, "transactions initialised");
                state.adopt_identity(identity);
                state.clear_txn_partitions();
                set_phase(&mut state, TxnPhase::Ready);
                Ok(())
            }
            Err(e) => {
                if e.is_fatal() {
                    state.set_fatal(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Opens a transaction (locally: the coordinator learns of it with the
    /// first partition or offsets added).
    pub fn begin_transaction(&self) -> Result<()> {
        let mut state = self.engine().state.lock().unwrap();
        if let Some(e) = &state.fatal {
            return Err(e.clone());
        }
        match phase(&state) {
            TxnPhase::Ready => {
                set_phase(&mut state, TxnPhase::InTransaction);
                Ok(())
            }
            TxnPhase::Uninitialized => {
                Err(Error::State("call init_transactions before begin_transaction".into()))
            }
            TxnPhase::Abortable(e) => Err(e.clone()),
            other => Err(Error::State(format!("a transaction is already open ({other:?})"))),
        }
    }

    /// Sends a record inside the open transaction. Before the first record
    /// to a partition, the producer adds the partition to the transaction
    /// at the coordinator (one request for all new partitions); the future
    /// resolves when the record's batch is acknowledged — it becomes
    /// visible to read_committed consumers only when the transaction
    /// commits.
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::TransactionalProducer) -> xo_client::Result<()> {
    /// use xo_client::ProducerRecord;
    /// producer.begin_transaction()?;
    /// let ack = producer.send(ProducerRecord::new("out", "v").key("k"));
    /// producer.commit_transaction().await?;
    /// ack.await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send<'a>(
        &'a self,
        record: ProducerRecord<'a>,
    ) -> impl Future<Output = Result<RecordMetadata>> + Send + 'a {
        self.engine().send(record)
    }

    /// Commits `offsets` for the consumer group as part of the open
    /// transaction: they become the group's committed offsets exactly when
    /// the transaction commits. `offsets` are the next offsets to consume
    /// (last processed + 1), as [`crate::Consumer::positions`] gives them;
    /// `group` comes from [`crate::Consumer::group_metadata`], so that the
    /// coordinator refuses offsets of a consumer that has lost its
    /// partitions in a rebalance (the error is abortable).
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::TransactionalProducer, consumer: xo_client::Consumer) -> xo_client::Result<()> {
    /// producer.send_offsets_to_transaction(consumer.positions(), &consumer.group_metadata()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, Offset)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let offsets: Vec<PartitionOffset> = offsets
            .into_iter()
            .map(|(tp, offset)| PartitionOffset {
                partition: Some(pb::TopicPartition { topic: tp.topic, partition: tp.partition }),
                offset: offset.0,
                metadata: String::new(),
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let _control = self.control.lock().await;
        let (producer_id, epoch) = {
            let mut state = self.engine().state.lock().unwrap();
            state.check_send()?;
            let identity = state.identity.expect("an initialised producer has an identity");
            state.txn.as_mut().expect("transactional").coordinator_touched = true;
            identity
        };
        let cluster = &self.engine().cluster;
        let tid = &self.transactional_id;
        let add = cluster
            .retry("AddOffsetsToTxn", cluster.operation_deadline(), || async {
                let request = AddOffsetsToTxnRequest {
                    transactional_id: tid.clone(),
                    producer_id: producer_id.0,
                    producer_epoch: epoch.0 as i32,
                    group_id: group.group_id.clone(),
                };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.add_offsets_to_txn(request).await })
                    .await?;
                Error::from_coordinator(r.error, r.error_message).map_or(Ok(()), Err)
            })
            .await;
        if let Err(e) = add {
            return Err(self.fail_txn(e));
        }
        let commit = cluster
            .retry("TxnOffsetCommit", cluster.operation_deadline(), || async {
                let request = TxnOffsetCommitRequest {
                    transactional_id: tid.clone(),
                    producer_id: producer_id.0,
                    producer_epoch: epoch.0 as i32,
                    group_id: group.group_id.clone(),
                    member_id: group.member_id.clone(),
                    generation_id: group.generation_id,
                    offsets: offsets.clone(),
                };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.txn_offset_commit(request).await })
                    .await?;
                Error::from_coordinator(r.error, r.error_message).map_or(Ok(()), Err)
            })
            .await;
        if let Err(e) = &commit
            && e.is_stale_group_member()
        {
            // Rejoin at the consumer's next poll, not after its next heartbeat.
            group.request_rejoin();
        }
        commit.map_err(|e| self.fail_txn(e))
    }

    /// A failure of something the transaction depends on: fatal ones make
    /// the producer unusable, any other one makes the transaction abortable.
    fn fail_txn(&self, e: Error) -> Error {
        let mut state = self.engine().state.lock().unwrap();
        if e.is_fatal() {
            state.set_fatal(e.clone());
            e
        } else {
            state.poison(e.clone());
            e.into_abortable()
        }
    }

    /// Flushes every record of the transaction, then asks the coordinator
    /// to commit (EndTxn) and adopts the producer identity its answer
    /// carries for the next transaction. If any record failed, nothing is
    /// committed and an abortable error is returned. A retriable error
    /// (the coordinator kept answering "retry" past the operation timeout)
    /// leaves the outcome in doubt: call `commit_transaction` again, which
    /// gets the same answer as the first attempt.
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::TransactionalProducer) -> xo_client::Result<()> {
    /// if let Err(e) = producer.commit_transaction().await {
    ///     if e.is_abortable() {
    ///         producer.abort_transaction().await?;
    ///     } else {
    ///         return Err(e);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit_transaction(&self) -> Result<()> {
        let _control = self.control.lock().await;
        {
            let mut state = self.engine().state.lock().unwrap();
            if let Some(e) = &state.fatal {
                return Err(e.clone());
            }
            match phase(&state) {
                TxnPhase::InTransaction | TxnPhase::Committing => {
                    set_phase(&mut state, TxnPhase::Committing)
                }
                TxnPhase::Abortable(e) => return Err(e.clone()),
                other => {
                    return Err(Error::State(format!("no transaction to commit ({other:?})")));
                }
            }
        }
        self.engine().flush().await;
        let deadline = self.engine().cluster.operation_deadline();
        let touched = {
            let state = self.engine().state.lock().unwrap();
            if let Some(e) = &state.fatal {
                return Err(e.clone());
            }
            if let TxnPhase::Abortable(e) = phase(&state) {
                return Err(e.clone());
            }
            state.txn.as_ref().is_some_and(|t| t.coordinator_touched)
        };
        if !touched {
            // Nothing reached the coordinator: an empty transaction.
            let mut state = self.engine().state.lock().unwrap();
            state.clear_txn_partitions();
            set_phase(&mut state, TxnPhase::Ready);
            return Ok(());
        }
        self.engine().state.lock().unwrap().txn.as_mut().expect("transactional").commit_attempted =
            true;
        match self.end_txn(true, deadline).await {
            Ok(next) => {
                self.finish_txn(next, deadline).await?;
                tracing::debug!(transactional_id = %self.transactional_id, "transaction committed");
                Ok(())
            }
            Err(e) if e.is_retriable() => Err(e),
            Err(e) => Err(self.fail_txn(e)),
        }
    }

    /// Aborts the open transaction: records not yet sent fail with
    /// [`Error::TransactionAborted`], records in flight are waited for
    /// (without retries), then the coordinator writes abort markers
    /// (EndTxn) and the producer adopts its next identity. Allowed after an
    /// abortable error; not after a commit whose outcome is in doubt (call
    /// `commit_transaction` again instead).
    ///
    /// ```no_run
    /// # async fn run(producer: xo_client::TransactionalProducer) -> xo_client::Result<()> {
    /// producer.abort_transaction().await?;
    /// producer.begin_transaction()?; // and redo the work
    /// # Ok(())
    /// # }
    /// ```
    pub async fn abort_transaction(&self) -> Result<()> {
        let _control = self.control.lock().await;
        let waiting = {
            let mut state = self.engine().state.lock().unwrap();
            if let Some(e) = &state.fatal {
                return Err(e.clone());
            }
            let txn = state.txn.as_ref().expect("transactional");
            match &txn.phase {
                TxnPhase::Committing if txn.commit_attempted => {
                    return Err(Error::State(
                        "a commit was sent and its outcome is in doubt: call commit_transaction again"
                            .into(),
                    ));
                }
                TxnPhase::InTransaction
                | TxnPhase::Committing
                | TxnPhase::Abortable(_)
                | TxnPhase::Aborting => set_phase(&mut state, TxnPhase::Aborting),
                other => {
                    return Err(Error::State(format!("no transaction to abort ({other:?})")));
                }
            }
            state.begin_abort()
        };
        self.engine().wake.notify_one();
        // The appender stops looking up metadata for records the abort failed.
        self.engine().changed.notify_waiters();
        let deadline = self.engine().cluster.operation_deadline();
        for completion in waiting {
            let _ = tokio::time::timeout_at(deadline, completion.wait()).await;
        }
        let quiet = self
            .engine()
            .wait_until(deadline, |s| s.nothing_in_flight() && !s.adding_partitions())
            .await;
        if !quiet {
            return Err(Error::Timeout {
                what: "waiting for in-flight batches before the abort",
                after: self.engine().cluster.config.operation_timeout,
            });
        }
        let touched = {
            let state = self.engine().state.lock().unwrap();
            state.txn.as_ref().is_some_and(|t| t.coordinator_touched)
        };
        if !touched {
            let mut state = self.engine().state.lock().unwrap();
            state.clear_txn_partitions();
            set_phase(&mut state, TxnPhase::Ready);
            return Ok(());
        }
        match self.end_txn(false, deadline).await {
            Ok(next) => {
                self.finish_txn(next, deadline).await?;
                tracing::debug!(transactional_id = %self.transactional_id, "transaction aborted");
                Ok(())
            }
            Err(e) if e.is_retriable() => Err(e),
            Err(e) => {
                // The coordinator refuses to abort what it holds for us:
                // this producer's view of the transaction is wrong.
                self.engine().state.lock().unwrap().set_fatal(e.clone());
                Err(e)
            }
        }
    }

    /// EndTxn, retried while the coordinator says "retry". Returns the
    /// identity for the next transaction.
    async fn end_txn(
        &self,
        commit: bool,
        deadline: Instant,
    ) -> Result<(ProducerId, ProducerEpoch)> {
        let (producer_id, epoch) = self.engine().identity().expect("an initialised producer");
        let cluster = &self.engine().cluster;
        let tid = &self.transactional_id;
        cluster
            .retry("EndTxn", deadline, || async {
                let request = EndTxnRequest {
                    transactional_id: tid.clone(),
                    producer_id: producer_id.0,
                    producer_epoch: epoch.0 as i32,
                    commit,
                };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.end_txn(request).await })
                    .await?;
                if let Some(e) = Error::from_coordinator(r.error, r.error_message) {
                    return Err(e);
                }
                if r.committed != commit {
                    return Err(Error::Coordinator {
                        code: pb::ErrorCode::InvalidTxnState,
                        message: format!(
                            "asked to commit={commit}, coordinator ended it commit={}",
                            r.committed
                        ),
                    });
                }
                producer_identity(r.producer_id, r.producer_epoch)
            })
            .await
    }

    /// After EndTxn: adopt the next identity (every sequence restarts at 0)
    /// and forget the transaction's partitions.
    async fn finish_txn(&self, next: (ProducerId, ProducerEpoch), deadline: Instant) -> Result<()> {
        if !self.engine().wait_until(deadline, |s| s.nothing_in_flight()).await {
            return Err(Error::Timeout {
                what: "waiting for in-flight batches to resolve",
                after: self.engine().cluster.config.operation_timeout,
            });
        }
        let mut state = self.engine().state.lock().unwrap();
        state.adopt_identity(next);
        state.clear_txn_partitions();
        set_phase(&mut state, TxnPhase::Ready);
        Ok(())
    }

    /// Sends every buffered record now and waits for their outcome.
    pub async fn flush(&self) {
        self.engine().flush().await
    }

    /// Flushes and stops the sender. An open transaction is left to the
    /// coordinator's timeout (or the next instance's `init_transactions`).
    pub async fn close(&self) -> Result<()> {
        self.handle.close().await;
        Ok(())
    }
}

fn phase(state: &crate::producer::state::ProducerState) -> &TxnPhase {
    &state.txn.as_ref().expect("a transactional producer's state").phase
}

fn set_phase(state: &mut crate::producer::state::ProducerState, phase: TxnPhase) {
    let txn = state.txn.as_mut().expect("a transactional producer's state");
    if matches!(phase, TxnPhase::Ready | TxnPhase::InTransaction) {
        txn.commit_attempted = false;
    }
    txn.phase = phase;
}
