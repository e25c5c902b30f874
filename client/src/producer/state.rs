//! Everything the producer knows, and every decision it makes, without
//! I/O: which batches to send where ([`ProducerState::plan`]), what an
//! answer means for them ([`ProducerState::on_produce_answer`]), when the
//! transaction needs partitions added, when an idempotent producer needs a
//! new epoch. The sender task (`sender.rs`) only carries out the
//! [`Plan`] and feeds the answers back, so the rules are tested here with
//! fake answers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use xo_proto::coordinator::ErrorCode as CoordinatorCode;
use xo_proto::partition::{PartitionBatch, ProduceRequest, ProduceResponse};
use xo_proto::{Offset, ProducerEpoch, ProducerId, Sequence};

use super::accumulator::{
    Appended, BatchCompletion, BatchConfig, Delivery, PartitionQueue, ReadyBatch, RecordRef, Slot,
    stamp,
};
use super::inflight::{IN_FLIGHT_PER_PARTITION_MAX, InFlight, InFlightConfig};
use crate::error::{Error, ProduceFailure, Result};
use crate::types::TopicPartition;

/// Most bytes of batches in one produce request (the partition server's
/// request limit is 64 MiB).
pub const PRODUCE_REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// First pause before AddPartitionsToTxn is retried after
/// `CONCURRENT_TRANSACTIONS`, doubled per further refusal up to the retry
/// backoff's cap. That answer almost always means "the previous
/// transaction's markers are still being written", which takes a few
/// milliseconds; waiting the general retry backoff (50 ms, then 100 ms)
/// instead made every back-to-back transaction cost ~100 ms. (Kafka's
/// client special-cases it too, with 20 ms.)
pub const CONCURRENT_TXN_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(2);

/// Where a partition stands in the open transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnPartition {
    /// Not written in this transaction.
    Absent,
    /// Written; AddPartitionsToTxn not yet sent. Its batches wait.
    Pending,
    /// In an AddPartitionsToTxn request awaiting its answer.
    Adding,
    /// Part of the transaction at the coordinator: batches may go.
    Added,
}

/// The transactional producer's phase (Kafka's TransactionManager states,
/// fewer of them).
#[derive(Clone, Debug)]
pub(crate) enum TxnPhase {
    /// `init_transactions` not yet done.
    Uninitialized,
    /// No transaction open.
    Ready,
    InTransaction,
    /// `commit_transaction` is flushing or ending; sends are refused.
    Committing,
    /// `abort_transaction` is under way.
    Aborting,
    /// Something the transaction depends on failed: only abort is allowed.
    Abortable(Error),
}

pub(crate) struct TxnState {
    pub phase: TxnPhase,
    /// A request about this transaction reached (or may have reached) the
    /// coordinator, so ending it needs an EndTxn.
    pub coordinator_touched: bool,
    /// EndTxn(commit) was sent for the open transaction: its outcome may be
    /// decided, so only another commit is allowed.
    pub commit_attempted: bool,
    add_failures: u32,
    add_retry_at: Option<Instant>,
    add_started: Option<Instant>,
}

impl TxnState {
    pub fn new() -> TxnState {
        TxnState {
            phase: TxnPhase::Uninitialized,
            coordinator_touched: false,
            commit_attempted: false,
            add_failures: 0,
            add_retry_at: None,
            add_started: None,
        }
    }

    fn sending_allowed(&self) -> bool {
        matches!(self.phase, TxnPhase::InTransaction | TxnPhase::Committing)
    }
}

/// A record `send` could not append at once (its topic's metadata was not
/// cached, or the buffer was full), copied so that it is appended in call
/// order by the appender task whether or not its future is polled.
pub(crate) struct WaitingRecord {
    pub id: u64,
    pub topic: String,
    pub partition: Option<u32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
    /// When `send` was called: the delivery timeout counts from here.
    pub sent_at: Instant,
    pub size: usize,
    pub slot: Arc<Slot<Result<Delivery, Error>>>,
}

impl Drop for WaitingRecord {
    /// Only a record the appender held when it panicked or was cancelled
    /// is dropped unanswered: fail its send instead of leaving it waiting.
    fn drop(&mut self) {
        self.slot.fail_unless_set("appender", "a record");
    }
}

impl WaitingRecord {
    /// Header references for [`RecordRef`] (the slow path may allocate).
    pub fn header_refs(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect()
    }

    pub fn record_ref<'a>(&'a self, headers: &'a [(&'a str, Option<&'a [u8]>)]) -> RecordRef<'a> {
        RecordRef {
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers,
        }
    }
}

pub(crate) struct PartitionState {
    pub topic: Arc<str>,
    pub partition: u32,
    pub queue: PartitionQueue,
    pub in_flight: InFlight<ReadyBatch>,
    pub txn: TxnPartition,
    /// A batch of the open transaction was acknowledged here, so the
    /// partition has verified the transaction with the coordinator.
    pub txn_verified: bool,
}

struct TopicState {
    partitions: Vec<PartitionState>,
    /// Where records with neither key nor partition go until their batch
    /// closes (Kafka's sticky partitioner: fuller batches than round robin).
    sticky: u32,
}

/// One batch of a produce request, remembered to match its answer.
#[derive(Clone, Debug)]
pub(crate) struct SentBatch {
    pub topic: Arc<str>,
    pub partition: u32,
    pub base_sequence: Sequence,
}

/// A produce request to one server.
#[derive(Debug)]
pub(crate) struct ProduceCall {
    pub addr: Arc<str>,
    pub request: ProduceRequest,
    pub sent: Vec<SentBatch>,
}

/// What the sender should start now.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub produce: Vec<ProduceCall>,
    pub add_partitions: Option<Vec<TopicPartition>>,
    pub init_producer_id: bool,
    pub refresh: Option<Vec<String>>,
    /// When to plan again if nothing else happens first.
    pub wake_at: Option<Instant>,
}

/// Fixed settings of the state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StateConfig {
    pub batch: BatchConfig,
    pub in_flight: InFlightConfig,
    pub record_bytes_max: usize,
    pub retry_backoff: std::time::Duration,
    pub retry_backoff_max: std::time::Duration,
    /// Longest AddPartitionsToTxn keeps being retried.
    pub operation_timeout: std::time::Duration,
}

pub(crate) struct ProducerState {
    pub config: StateConfig,
    /// The producer id and epoch batches are stamped with; `None` until
    /// known (or while a new one is fetched).
    pub identity: Option<(ProducerId, ProducerEpoch)>,
    topics: HashMap<Arc<str>, TopicState>,
    /// Buffer bytes: permits are taken when a batch opens and given back
    /// when it resolves.
    memory: Arc<Semaphore>,
    pub fatal: Option<Error>,
    pub closing: bool,
    pub txn: Option<TxnState>,
    /// An idempotent producer's sequence broke, or a partition lost its
    /// state: start over under a new epoch once nothing is in flight.
    reset_needed: bool,
    reset_in_progress: bool,
    reset_retry_at: Option<Instant>,
    reset_failures: u32,
    refresh_wanted: BTreeSet<Arc<str>>,
    refresh_in_progress: bool,
    refresh_not_before: Option<Instant>,
    /// Records waiting to be appended, in call order; while any wait, every
    /// new record queues behind them.
    waiting: VecDeque<WaitingRecord>,
    waiting_bytes: usize,
    next_waiting_id: u64,
    /// Fault site for the supervisor's tests: the sender panics at its
    /// next plan.
    #[cfg(test)]
    pub fault_sender_panics: bool,
}

impl ProducerState {
    pub fn new(config: StateConfig, memory: Arc<Semaphore>, transactional: bool) -> Self {
        ProducerState {
            config,
            identity: None,
            topics: HashMap::new(),
            memory,
            fatal: None,
            closing: false,
            txn: transactional.then(TxnState::new),
            reset_needed: false,
            reset_in_progress: false,
            reset_retry_at: None,
            reset_failures: 0,
            refresh_wanted: BTreeSet::new(),
            refresh_in_progress: false,
            refresh_not_before: None,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            next_waiting_id: 0,
            #[cfg(test)]
            fault_sender_panics: false,
        }
    }

    // ---- records waiting to be appended -----------------------------------

    pub fn waiting_is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// Queues a copied record behind the others; returns its id.
    pub fn push_waiting(&mut self, mut record: WaitingRecord) -> u64 {
        record.id = self.next_waiting_id;
        self.next_waiting_id += 1;
        self.waiting_bytes += record.size;
        let id = record.id;
        self.waiting.push_back(record);
        id
    }

    /// The oldest waiting record: (id, topic, when it was sent).
    pub fn waiting_front(&self) -> Option<(u64, String, Instant)> {
        self.waiting.front().map(|w| (w.id, w.topic.clone(), w.sent_at))
    }

    pub fn waiting_front_id(&self) -> Option<u64> {
        self.waiting.front().map(|w| w.id)
    }

    /// Takes the oldest waiting record if it is `id`.
    pub fn take_waiting(&mut self, id: u64) -> Option<WaitingRecord> {
        if self.waiting.front()?.id != id {
            return None;
        }
        let record = self.waiting.pop_front()?;
        self.waiting_bytes -= record.size;
        Some(record)
    }

    /// Puts a record taken with [`ProducerState::take_waiting`] back first.
    pub fn untake_waiting(&mut self, record: WaitingRecord) {
        self.waiting_bytes += record.size;
        self.waiting.push_front(record);
    }

    fn fail_waiting(&mut self, error: &Error) {
        for record in self.waiting.drain(..) {
            record.slot.complete(Err(error.clone()));
        }
        self.waiting_bytes = 0;
    }

    /// Whether `send` may append now; the error to give it otherwise.
    pub fn check_send(&self) -> Result<()> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        if self.closing {
            return Err(Error::Closed);
        }
        match self.txn.as_ref().map(|t| &t.phase) {
            None | Some(TxnPhase::InTransaction) => Ok(()),
            Some(TxnPhase::Abortable(e)) => Err(e.clone()),
            Some(TxnPhase::Uninitialized) => {
                Err(Error::State("call init_transactions before sending".into()))
            }
            Some(TxnPhase::Ready) => {
                Err(Error::State("call begin_transaction before sending".into()))
            }
            Some(TxnPhase::Committing | TxnPhase::Aborting) => {
                Err(Error::State("the transaction is ending; begin a new one to send".into()))
            }
        }
    }

    fn topic_state(&mut self, topic: &Arc<str>, partitions: u32) -> &mut TopicState {
        let config = self.config.in_flight;
        let state = self
            .topics
            .entry(topic.clone())
            .or_insert_with(|| TopicState { partitions: Vec::new(), sticky: 0 });
        // Partitions may have been added to the topic since.
        while state.partitions.len() < partitions as usize {
            state.partitions.push(PartitionState {
                topic: topic.clone(),
                partition: state.partitions.len() as u32,
                queue: PartitionQueue::default(),
                in_flight: InFlight::new(config),
                txn: TxnPartition::Absent,
                txn_verified: false,
            });
        }
        state
    }

    /// The partition a record without key and explicit partition goes to.
    pub fn sticky_partition(&mut self, topic: &Arc<str>, partitions: u32) -> u32 {
        let state = self.topic_state(topic, partitions);
        state.sticky % partitions
    }

    /// Buffer bytes to reserve before appending `record` to the partition.
    pub fn reservation_for(
        &mut self,
        topic: &Arc<str>,
        partitions: u32,
        partition: u32,
        record: &RecordRef<'_>,
    ) -> Result<usize> {
        let size = record.size_estimate();
        if size > self.config.record_bytes_max {
            return Err(Error::RecordTooLarge { size, limit: self.config.record_bytes_max });
        }
        let batch = self.config.batch;
        let state = self.topic_state(topic, partitions);
        Ok(state.partitions[partition as usize].queue.reservation_for(size, &batch))
    }

    /// Whether a record `send` accepted may be appended now: as
    /// [`ProducerState::check_send`], but a transaction that is committing
    /// still takes the records sent before the commit.
    pub fn check_append(&self) -> Result<()> {
        match self.txn.as_ref().map(|t| &t.phase) {
            Some(TxnPhase::Committing) if self.fatal.is_none() && !self.closing => Ok(()),
            _ => self.check_send(),
        }
    }

    /// Appends a record whose buffer bytes are reserved. Returns the
    /// record's batch and whether the sender should be woken.
    pub fn append(
        &mut self,
        topic: &Arc<str>,
        partitions: u32,
        partition: u32,
        record: &RecordRef<'_>,
        reserved: usize,
        now: Instant,
    ) -> (Appended, bool) {
        debug_assert!(self.check_append().is_ok());
        let batch = self.config.batch;
        let transactional = self.txn.is_some();
        let state = self.topic_state(topic, partitions);
        let p = &mut state.partitions[partition as usize];
        let appended = p.queue.append(record, reserved, &batch, now);
        let mut wake = reserved > 0 || appended.batch_closed;
        if transactional && p.txn == TxnPartition::Absent {
            p.txn = TxnPartition::Pending;
            wake = true;
        }
        if appended.batch_closed && state.sticky % partitions == partition {
            state.sticky = (partition + 1) % partitions;
        }
        (appended, wake)
    }

    fn partitions_mut(&mut self) -> impl Iterator<Item = &mut PartitionState> {
        self.topics.values_mut().flat_map(|t| t.partitions.iter_mut())
    }

    fn partitions(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.partitions.iter())
    }

    fn partition_mut(&mut self, topic: &str, partition: u32) -> Option<&mut PartitionState> {
        self.topics.get_mut(topic)?.partitions.get_mut(partition as usize)
    }

    /// Closes every open batch so it is sent without waiting for its
    /// linger, and returns the completion of every unresolved batch.
    pub fn flush(&mut self) -> Vec<Arc<BatchCompletion>> {
        let mut completions = Vec::new();
        for p in self.partitions_mut() {
            p.queue.close_open();
            completions.extend(p.queue.completions().cloned());
            completions.extend(p.in_flight.payloads().map(|b| b.completion.clone()));
        }
        completions
    }

    /// Nothing is buffered or in flight anywhere.
    pub fn is_idle(&self) -> bool {
        self.partitions().all(|p| p.queue.is_empty() && p.in_flight.is_empty())
    }

    /// Nothing is in flight (buffered batches may wait).
    pub fn nothing_in_flight(&self) -> bool {
        self.partitions().all(|p| p.in_flight.is_empty())
    }

    /// The sender may stop: closing and nothing left to do.
    pub fn finished(&self) -> bool {
        self.closing
            && self.waiting.is_empty()
            && (self.is_idle() || self.fatal.is_some() && self.nothing_in_flight())
    }

    // ---- planning ----------------------------------------------------------

    /// Decides what to send now. `address` gives the cached server address
    /// of a partition.
    pub fn plan(&mut self, now: Instant, address: &dyn Fn(&str, u32) -> Option<Arc<str>>) -> Plan {
        let mut plan = Plan::default();
        let mut wake_at: Option<Instant> = None;
        // First: a new epoch lets this very plan send again.
        self.plan_reset(now, &mut plan, &mut wake_at);
        let linger = self.config.batch.linger;
        let delivery_timeout = self.config.in_flight.delivery_timeout;
        let idempotent = self.config.batch.idempotent;
        let identity = self.identity;
        let new_batches_allowed = self.fatal.is_none()
            && !self.reset_needed
            && !self.reset_in_progress
            && (!idempotent || identity.is_some())
            && self.txn.as_ref().is_none_or(TxnState::sending_allowed);
        let closing = self.closing;
        let transactional = self.txn.is_some();
        let memory = self.memory.clone();
        let abortable = self.txn.is_some();
        let mut want_refresh = Vec::new();
        // Batches per address, in partition then sequence order.
        let mut by_address: HashMap<Arc<str>, Vec<(SentBatch, Bytes)>> = HashMap::new();
        let mut expired_error: Option<Error> = None;
        for p in self.partitions_mut() {
            for expired in p.queue.take_expired(now, delivery_timeout) {
                let error = Error::Timeout { what: "delivery", after: delivery_timeout };
                expired_error.get_or_insert_with(|| error.clone());
                resolve(&memory, expired, Err(error), abortable);
            }
            if closing {
                p.queue.close_open();
            } else {
                p.queue.close_if_lingered(now, linger);
            }
            if let Some(deadline) = p.queue.linger_deadline(linger) {
                wake_at = earliest(wake_at, deadline);
            }
            if let Some(b) = p.queue.front_ready() {
                wake_at = earliest(wake_at, b.created + delivery_timeout);
            }
            let retry_at = p.in_flight.next_retry_at();
            let has_retry = retry_at.is_some_and(|at| at <= now);
            // New batches go only while no request with this partition's
            // batches is out: the server runs concurrent requests in any
            // order, so batch n+1 in a second request could overtake batch
            // n, be refused as out of sequence and throw the partition into
            // one-at-a-time recovery. One request may carry up to the
            // in-flight window of the partition's batches, in order.
            let has_new = p.queue.front_ready().is_some()
                && p.in_flight.can_send_new()
                && !p.in_flight.has_request_out();
            if transactional && p.txn != TxnPartition::Added {
                continue;
            }
            // Without an address nothing can go: the metadata answer wakes
            // the sender (waking for the retry time would spin).
            let Some(addr) = address(&p.topic, p.partition) else {
                if has_retry || has_new {
                    want_refresh.push(p.topic.clone());
                }
                continue;
            };
            if let Some(at) = retry_at
                && at > now
            {
                wake_at = earliest(wake_at, at);
            }
            if !has_retry && !has_new {
                continue;
            }
            let batches = by_address.entry(addr).or_default();
            if has_retry {
                let (base_sequence, batch) = p.in_flight.next_retry(now).expect("a retry is due");
                let sent =
                    SentBatch { topic: p.topic.clone(), partition: p.partition, base_sequence };
                batches.push((sent, batch.bytes.clone()));
                continue;
            }
            if !new_batches_allowed {
                continue;
            }
            // The first batch of a transaction on a partition goes alone:
            // the partition server verifies it with the coordinator before
            // appending it, and runs the batches of one request
            // concurrently, so a second batch of the same request would
            // overtake the first while it waits, and be refused as out of
            // sequence (sending the partition into one-at-a-time recovery).
            let batches_max =
                if transactional && !p.txn_verified { 1 } else { IN_FLIGHT_PER_PARTITION_MAX };
            let mut partition_bytes = 0usize;
            let mut partition_batches = 0usize;
            while p.in_flight.can_send_new() && partition_batches < batches_max {
                partition_batches += 1;
                // All of them in one request: stop before its size cap.
                let fits = p.queue.front_ready().is_some_and(|b| {
                    partition_bytes == 0
                        || partition_bytes + b.bytes.len() <= PRODUCE_REQUEST_BYTES_MAX
                });
                if !fits {
                    break;
                }
                let Some(mut batch) = p.queue.pop_ready() else { break };
                partition_bytes += batch.bytes.len();
                let base_sequence = p.in_flight.next_sequence();
                if idempotent {
                    let (id, epoch) = identity.expect("checked above");
                    batch.bytes = stamp(std::mem::take(&mut batch.bytes), id, epoch, base_sequence);
                }
                let bytes = batch.bytes.clone();
                let assigned = p.in_flight.send_new(batch.record_count, batch.created, batch);
                assert_eq!(assigned, base_sequence);
                let sent =
                    SentBatch { topic: p.topic.clone(), partition: p.partition, base_sequence };
                batches.push((sent, bytes));
            }
        }
        for (addr, batches) in by_address {
            let mut call = new_call(&addr);
            let mut call_bytes = 0usize;
            for (sent, bytes) in batches {
                // A partition's batches stay in one call (see above): split
                // only where the partition changes.
                let same_partition = call
                    .sent
                    .last()
                    .is_some_and(|l| l.topic == sent.topic && l.partition == sent.partition);
                if !call.sent.is_empty()
                    && !same_partition
                    && call_bytes + bytes.len() > PRODUCE_REQUEST_BYTES_MAX
                {
                    plan.produce.push(std::mem::replace(&mut call, new_call(&addr)));
                    call_bytes = 0;
                }
                call_bytes += bytes.len();
                call.request.batches.push(PartitionBatch {
                    topic: sent.topic.to_string(),
                    partition: sent.partition,
                    batch: bytes,
                });
                call.sent.push(sent);
            }
            if !call.sent.is_empty() {
                plan.produce.push(call);
            }
        }
        // A transaction's batch that expired unsent must not be committed
        // without: the transaction can only abort now (found by the jepsen
        // queue workload: commits acknowledged with an expired send missing).
        if let Some(e) = expired_error
            && self
                .txn
                .as_ref()
                .is_some_and(|t| matches!(t.phase, TxnPhase::InTransaction | TxnPhase::Committing))
        {
            self.poison(e);
        }
        self.refresh_wanted.extend(want_refresh);
        self.plan_refresh(now, &mut plan, &mut wake_at);
        self.plan_add_partitions(now, &mut plan, &mut wake_at);
        plan.wake_at = wake_at;
        plan
    }

    fn plan_refresh(&mut self, now: Instant, plan: &mut Plan, wake_at: &mut Option<Instant>) {
        if self.refresh_wanted.is_empty() || self.refresh_in_progress {
            return;
        }
        match self.refresh_not_before {
            Some(at) if at > now => *wake_at = earliest(*wake_at, at),
            _ => {
                let topics = std::mem::take(&mut self.refresh_wanted);
                plan.refresh = Some(topics.iter().map(|t| t.to_string()).collect());
                self.refresh_in_progress = true;
            }
        }
    }

    fn plan_add_partitions(
        &mut self,
        now: Instant,
        plan: &mut Plan,
        wake_at: &mut Option<Instant>,
    ) {
        let Some(txn) = &self.txn else { return };
        if !txn.sending_allowed() || self.fatal.is_some() {
            return;
        }
        if let Some(at) = txn.add_retry_at
            && at > now
        {
            *wake_at = earliest(*wake_at, at);
            return;
        }
        if self.partitions().any(|p| p.txn == TxnPartition::Adding) {
            return;
        }
        let mut partitions = Vec::new();
        for p in self.partitions_mut() {
            if p.txn == TxnPartition::Pending {
                p.txn = TxnPartition::Adding;
                partitions
                    .push(TopicPartition { topic: p.topic.to_string(), partition: p.partition });
            }
        }
        if !partitions.is_empty() {
            partitions.sort();
            let txn = self.txn.as_mut().expect("checked above");
            txn.coordinator_touched = true;
            txn.add_started.get_or_insert(now);
            plan.add_partitions = Some(partitions);
        }
    }

    /// An idempotent producer whose sequence broke, or whose partition
    /// lost its state, starts every partition over at sequence 0 under a
    /// new epoch once no request is out and nothing else is unresolved
    /// (KIP-360). The epoch is bumped here, without asking anyone: nothing
    /// but the partitions keeps an idempotent producer's epoch, and they
    /// take a higher epoch from sequence 0. Only an exhausted epoch needs a
    /// new producer id from the coordinator.
    fn plan_reset(&mut self, now: Instant, plan: &mut Plan, wake_at: &mut Option<Instant>) {
        if !self.reset_needed || self.reset_in_progress || self.fatal.is_some() {
            return;
        }
        let quiet = self.partitions().all(|p| {
            !p.in_flight.has_request_out() && (p.in_flight.is_empty() || p.in_flight.lost_state())
        });
        if !quiet {
            return;
        }
        if let Some((id, epoch)) = self.identity
            && epoch.0 < i16::MAX
        {
            let next = (id, ProducerEpoch(epoch.0 + 1));
            tracing::info!(producer_id = %id, epoch = %next.1, "producer epoch bumped");
            self.adopt_identity(next);
            self.reset_needed = false;
            return;
        }
        if let Some(at) = self.reset_retry_at
            && at > now
        {
            *wake_at = earliest(*wake_at, at);
            return;
        }
        self.reset_in_progress = true;
        self.identity = None;
        plan.init_producer_id = true;
    }

    // ---- answers -----------------------------------------------------------

    /// The answer to a produce request (or its failure).
    pub fn on_produce_answer(
        &mut self,
        sent: &[SentBatch],
        answer: Result<ProduceResponse, Error>,
        now: Instant,
    ) {
        let results = match &answer {
            Ok(response) => Some(&response.results),
            Err(_) => None,
        };
        for (i, batch) in sent.iter().enumerate() {
            let outcome: Result<Offset, Error> = match (&answer, results) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Some(results)) => match results.get(i) {
                    Some(r) if *r.topic == *batch.topic && r.partition == batch.partition => {
                        match Error::from_partition(
                            &batch.topic,
                            batch.partition,
                            r.error,
                            r.error_message.clone(),
                        ) {
                            None => Ok(Offset(r.base_offset)),
                            Some(e) => Err(e),
                        }
                    }
                    _ => Err(Error::Transport {
                        addr: String::new(),
                        message: "produce answer lacks a result for the batch".into(),
                    }),
                },
                (Ok(_), None) => unreachable!(),
            };
            self.on_batch_answer(batch, outcome, now);
        }
    }

    fn on_batch_answer(&mut self, sent: &SentBatch, outcome: Result<Offset, Error>, now: Instant) {
        if let Err(e) = &outcome {
            if e.invalidates_metadata() {
                self.refresh_wanted.insert(sent.topic.clone());
            }
            if e.is_fatal() {
                tracing::error!(topic = %sent.topic, partition = sent.partition, error = %e, "producer fenced or broken");
            } else {
                tracing::debug!(topic = %sent.topic, partition = sent.partition, error = %e, "produce failed");
            }
        }
        let memory = self.memory.clone();
        let abortable = self.txn.is_some();
        let Some(p) = self.partition_mut(&sent.topic, sent.partition) else {
            return;
        };
        if outcome.is_ok() && p.txn == TxnPartition::Added {
            p.txn_verified = true;
        }
        let answer = outcome.map_err(ProduceFailure::classify);
        let fatal = match &answer {
            Err(ProduceFailure::Terminal(e)) if e.is_fatal() => Some(e.clone()),
            _ => None,
        };
        let mut failed: Option<Error> = None;
        p.in_flight.on_answer(sent.base_sequence, answer, now, |batch, result| {
            if let Err(e) = &result {
                failed.get_or_insert_with(|| e.clone());
            }
            resolve(&memory, batch, result, abortable);
        });
        let broken = p.in_flight.is_broken();
        let lost_state = p.in_flight.lost_state();
        if lost_state && !self.reset_needed {
            tracing::warn!(topic = %sent.topic, partition = sent.partition,
                "the partition lost this producer's state (it was idle past the server's \
                 producer expiry); bumping the epoch to resend");
            self.reset_needed = true;
        }
        if let Some(e) = fatal {
            self.set_fatal(e);
        } else if let Some(e) = failed {
            if let Some(txn) = &mut self.txn {
                if matches!(txn.phase, TxnPhase::InTransaction | TxnPhase::Committing) {
                    self.poison(e);
                }
            } else if broken {
                tracing::warn!(topic = %sent.topic, partition = sent.partition, error = %e,
                    "sequence broken; starting over under a new epoch");
                self.reset_needed = true;
            }
        }
    }

    /// The producer can never be used again: fail everything unsent.
    pub fn set_fatal(&mut self, error: Error) {
        if self.fatal.is_some() {
            return;
        }
        self.fatal = Some(error.clone());
        self.fail_waiting(&error);
        let memory = self.memory.clone();
        for p in self.partitions_mut() {
            for batch in p.queue.take_all() {
                resolve(&memory, batch, Err(error.clone()), false);
            }
            p.in_flight.stop_retries(error.clone(), |batch, result| {
                resolve(&memory, batch, result, false)
            });
        }
    }

    /// The sender task stopped for good (see `supervisor`): as
    /// [`ProducerState::set_fatal`], and what is in flight fails too, since
    /// no answer for it will ever be applied.
    pub fn set_sender_stopped(&mut self, error: Error) {
        self.set_fatal(error.clone());
        let memory = self.memory.clone();
        for p in self.partitions_mut() {
            p.in_flight
                .abandon(error.clone(), |batch, result| resolve(&memory, batch, result, false));
        }
        debug_assert!(self.nothing_in_flight());
    }

    /// The open transaction cannot commit: fail its unsent batches; only an
    /// abort is allowed from now on.
    pub fn poison(&mut self, cause: Error) {
        let error = cause.into_abortable();
        if error.is_fatal() {
            return self.set_fatal(error);
        }
        let Some(txn) = &mut self.txn else { return };
        if matches!(txn.phase, TxnPhase::Abortable(_)) {
            return;
        }
        tracing::warn!(error = %error, "transaction must be aborted");
        txn.phase = TxnPhase::Abortable(error.clone());
        self.fail_waiting(&error);
        let memory = self.memory.clone();
        for p in self.partitions_mut() {
            for batch in p.queue.take_all() {
                resolve(&memory, batch, Err(error.clone()), true);
            }
        }
    }

    /// The answer to AddPartitionsToTxn for `partitions`.
    pub fn on_add_partitions_answer(
        &mut self,
        partitions: &[TopicPartition],
        answer: Result<()>,
        now: Instant,
    ) {
        let ok = answer.is_ok();
        for tp in partitions {
            if let Some(p) = self.partition_mut(&tp.topic, tp.partition)
                && p.txn == TxnPartition::Adding
            {
                p.txn = if ok { TxnPartition::Added } else { TxnPartition::Pending };
            }
        }
        let operation_timeout = self.config.operation_timeout;
        let (backoff, backoff_max) = (self.config.retry_backoff, self.config.retry_backoff_max);
        let Some(txn) = &mut self.txn else { return };
        match answer {
            Ok(()) => {
                txn.add_failures = 0;
                txn.add_retry_at = None;
                txn.add_started = None;
            }
            Err(e)
                if e.is_retriable()
                    && txn.add_started.is_none_or(|s| now < s + operation_timeout) =>
            {
                tracing::debug!(error = %e, "AddPartitionsToTxn will be retried");
                txn.add_failures = txn.add_failures.saturating_add(1);
                let first = if e.coordinator_code() == Some(CoordinatorCode::ConcurrentTransactions)
                {
                    CONCURRENT_TXN_RETRY_BACKOFF.min(backoff)
                } else {
                    backoff
                };
                // The first retry waits `first`, each later one twice as long.
                let factor = 1u32 << (txn.add_failures - 1).min(16);
                txn.add_retry_at = Some(now + first.saturating_mul(factor).min(backoff_max));
            }
            Err(e) => {
                txn.add_started = None;
                if e.is_fatal() {
                    self.set_fatal(e);
                } else if matches!(txn.phase, TxnPhase::InTransaction | TxnPhase::Committing) {
                    self.poison(e);
                }
            }
        }
    }

    /// The answer to the InitProducerId of an idempotent producer's reset.
    pub fn on_reset_answer(&mut self, answer: Result<(ProducerId, ProducerEpoch)>, now: Instant) {
        self.reset_in_progress = false;
        match answer {
            Ok(identity) => {
                tracing::info!(producer_id = %identity.0, epoch = %identity.1, "new producer id");
                self.adopt_identity(identity);
                self.reset_needed = false;
                self.reset_failures = 0;
                self.reset_retry_at = None;
            }
            Err(e) if e.is_fatal() => self.set_fatal(e),
            Err(e) => {
                tracing::warn!(error = %e, "InitProducerId failed; retrying");
                self.reset_failures = self.reset_failures.saturating_add(1);
                let factor = 1u32 << self.reset_failures.min(16);
                let pause = self
                    .config
                    .retry_backoff
                    .saturating_mul(factor)
                    .min(self.config.retry_backoff_max);
                self.reset_retry_at = Some(now + pause);
            }
        }
    }

    /// The answer to a metadata refresh.
    pub fn on_refresh_answer(&mut self, answer: Result<()>, now: Instant) {
        self.refresh_in_progress = false;
        self.refresh_not_before = Some(now + self.config.retry_backoff);
        if let Err(e) = answer {
            tracing::debug!(error = %e, "metadata refresh failed");
        }
    }

    /// Uses a new producer id / epoch: every partition starts a new
    /// sequence at 0. Only with no request out, and nothing unresolved but
    /// the batches of partitions that lost the producer's state: those are
    /// stamped with the new identity and sequences, and resent.
    pub fn adopt_identity(&mut self, identity: (ProducerId, ProducerEpoch)) {
        self.identity = Some(identity);
        let (id, epoch) = identity;
        for p in self.partitions_mut() {
            p.in_flight.restart_sequence(|batch, sequence| {
                batch.bytes = stamp(std::mem::take(&mut batch.bytes), id, epoch, sequence);
            });
        }
    }

    /// Ends the transaction's bookkeeping (after EndTxn, or for an empty
    /// transaction): no partition is in it any more.
    pub fn clear_txn_partitions(&mut self) {
        for p in self.partitions_mut() {
            p.txn = TxnPartition::Absent;
            p.txn_verified = false;
        }
        if let Some(txn) = &mut self.txn {
            txn.coordinator_touched = false;
            txn.add_failures = 0;
            txn.add_retry_at = None;
            txn.add_started = None;
        }
    }

    /// Whether an AddPartitionsToTxn request is awaiting its answer.
    pub fn adding_partitions(&self) -> bool {
        self.partitions().any(|p| p.txn == TxnPartition::Adding)
    }

    /// Aborting: fails every unsent batch with [`Error::TransactionAborted`],
    /// makes failures of in-flight ones final, drops partitions not yet
    /// sent to the coordinator, and returns the completions to wait for.
    pub fn begin_abort(&mut self) -> Vec<Arc<BatchCompletion>> {
        self.fail_waiting(&Error::TransactionAborted);
        let memory = self.memory.clone();
        let mut waiting = Vec::new();
        for p in self.partitions_mut() {
            for batch in p.queue.take_all() {
                resolve(&memory, batch, Err(Error::TransactionAborted), false);
            }
            p.in_flight.stop_retries(Error::TransactionAborted, |batch, result| {
                resolve(&memory, batch, result, false)
            });
            waiting.extend(p.in_flight.payloads().map(|b| b.completion.clone()));
            if p.txn == TxnPartition::Pending {
                p.txn = TxnPartition::Absent;
            }
        }
        waiting
    }
}

fn new_call(addr: &Arc<str>) -> ProduceCall {
    ProduceCall { addr: addr.clone(), request: ProduceRequest::default(), sent: Vec::new() }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Resolves a batch: wakes its records' futures and gives its buffer bytes
/// back. In a transaction, failures tell the application to abort.
fn resolve(memory: &Semaphore, batch: ReadyBatch, result: Result<Offset, Error>, abortable: bool) {
    let result = match result {
        Err(e) if abortable => Err(e.into_abortable()),
        r => r,
    };
    batch.completion.complete(result);
    memory.add_permits(batch.reserved);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xo_proto::batch::{Compression, decode_batch};
    use xo_proto::partition::{ErrorCode, ProduceResult};

    use super::*;

    const ADDR: &str = "server:1";

    fn config(transactional: bool) -> StateConfig {
        StateConfig {
            batch: BatchConfig {
                batch_bytes: 1024,
                linger: Duration::from_millis(5),
                compression: Compression::None,
                idempotent: true,
                transactional,
            },
            in_flight: InFlightConfig {
                retry_backoff: Duration::from_millis(10),
                retry_backoff_max: Duration::from_millis(100),
                delivery_timeout: Duration::from_secs(30),
                resequence_on_lost_state: !transactional,
            },
            record_bytes_max: 1 << 20,
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(100),
            operation_timeout: Duration::from_secs(10),
        }
    }

    struct Fixture {
        state: ProducerState,
        topic: Arc<str>,
        memory: Arc<Semaphore>,
    }

    impl Fixture {
        fn new(transactional: bool) -> Fixture {
            let memory = Arc::new(Semaphore::new(1 << 20));
            let mut state =
                ProducerState::new(config(transactional), memory.clone(), transactional);
            state.identity = Some((ProducerId(7), ProducerEpoch(2)));
            if let Some(txn) = &mut state.txn {
                txn.phase = TxnPhase::InTransaction;
            }
            Fixture { state, topic: Arc::from("t"), memory }
        }

        fn send(&mut self, partition: u32, value: &[u8], now: Instant) -> Arc<BatchCompletion> {
            let record = RecordRef { timestamp: 1, key: None, value: Some(value), headers: &[] };
            let reserved = self.state.reservation_for(&self.topic, 2, partition, &record).unwrap();
            if reserved > 0 {
                self.memory.try_acquire_many(reserved as u32).unwrap().forget();
            }
            self.state.append(&self.topic, 2, partition, &record, reserved, now).0.completion
        }

        fn plan(&mut self, now: Instant) -> Plan {
            self.state.plan(now, &|_, _| Some(Arc::from(ADDR)))
        }
    }

    fn ok_answer(sent: &[SentBatch], base: i64) -> ProduceResponse {
        ProduceResponse {
            results: sent
                .iter()
                .enumerate()
                .map(|(i, s)| ProduceResult {
                    topic: s.topic.to_string(),
                    partition: s.partition,
                    base_offset: base + i as i64,
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn t10_lingering_batches_go_out_stamped_in_one_request_per_server() {
        // Proves: nothing is sent before the linger; then one request holds
        // one batch per partition, stamped with the producer's identity and
        // sequence 0; acknowledgements resolve the records' batches.
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let c0 = f.send(0, b"a", t0);
        let c1 = f.send(1, b"b", t0);
        let plan = f.plan(t0);
        assert!(plan.produce.is_empty());
        assert_eq!(plan.wake_at, Some(t0 + Duration::from_millis(5)));
        let plan = f.plan(t0 + Duration::from_millis(5));
        assert_eq!(plan.produce.len(), 1);
        let call = &plan.produce[0];
        assert_eq!(&*call.addr, ADDR);
        assert_eq!(call.request.batches.len(), 2);
        for b in &call.request.batches {
            let h = decode_batch(&b.batch).unwrap().header;
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (ProducerId(7), ProducerEpoch(2), Sequence(0))
            );
        }
        let answer = ok_answer(&call.sent, 40);
        f.state.on_produce_answer(&call.sent, Ok(answer), t0);
        let offsets: Vec<_> = [c0, c1].iter().map(|c| c.get().unwrap().clone().unwrap()).collect();
        let mut offsets: Vec<i64> = offsets.iter().map(|o| o.0).collect();
        offsets.sort();
        assert_eq!(offsets, vec![40, 41]);
        assert!(f.state.is_idle());
        assert_eq!(f.memory.available_permits(), 1 << 20, "buffer bytes returned");
    }

    #[test]
    fn t11_at_most_five_batches_of_a_partition_are_in_flight() {
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let value = [0u8; 600];
        for _ in 0..8 {
            f.send(0, &value, t0);
        }
        f.state.flush();
        let plan = f.plan(t0);
        let sent: usize = plan.produce.iter().map(|c| c.sent.len()).sum();
        assert_eq!(sent, 5);
        let seqs: Vec<i32> = plan.produce[0].sent.iter().map(|s| s.base_sequence.0).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4], "one record per batch, consecutive");
        assert!(f.plan(t0).produce.is_empty(), "the window is full");
        let call = &plan.produce[0];
        f.state.on_produce_answer(&call.sent, Ok(ok_answer(&call.sent, 0)), t0);
        let plan = f.plan(t0);
        let seqs: Vec<i32> = plan.produce[0].sent.iter().map(|s| s.base_sequence.0).collect();
        assert_eq!(seqs, vec![5, 6, 7]);
    }

    #[test]
    fn t24_the_first_batch_of_a_transaction_on_a_partition_goes_alone() {
        // Proves: until a partition has acknowledged a batch of the open
        // transaction (and so verified it with the coordinator), one batch
        // goes to it per request; then the rest go together; the next
        // transaction starts over.
        let mut f = Fixture::new(true);
        let t0 = Instant::now();
        let value = [0u8; 600];
        for _ in 0..3 {
            f.send(0, &value, t0);
        }
        f.state.flush();
        let added = f.plan(t0).add_partitions.unwrap();
        f.state.on_add_partitions_answer(&added, Ok(()), t0);
        let first = f.plan(t0);
        assert_eq!(first.produce.len(), 1);
        assert_eq!(first.produce[0].sent.len(), 1, "the first batch alone");
        assert!(f.plan(t0).produce.is_empty());
        let call = &first.produce[0];
        f.state.on_produce_answer(&call.sent, Ok(ok_answer(&call.sent, 0)), t0);
        let rest = f.plan(t0);
        let seqs: Vec<i32> = rest.produce[0].sent.iter().map(|s| s.base_sequence.0).collect();
        assert_eq!(seqs, vec![1, 2]);
        f.state.clear_txn_partitions();
        assert!(f.state.partitions().all(|p| !p.txn_verified));
    }

    #[test]
    fn t23_one_request_per_partition_is_out_at_a_time() {
        // Proves: while a request with a partition's batches is out, its
        // next batches wait (the server may run two requests in either
        // order, and the later batch would be refused as out of sequence);
        // they all go in the next request once the answer is in.
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let value = [0u8; 600];
        f.send(0, &value, t0);
        f.state.flush();
        let first = f.plan(t0);
        assert_eq!(first.produce.len(), 1);
        f.send(0, &value, t0);
        f.send(0, &value, t0);
        f.state.flush();
        assert!(f.plan(t0).produce.is_empty(), "the partition has a request out");
        let call = &first.produce[0];
        f.state.on_produce_answer(&call.sent, Ok(ok_answer(&call.sent, 0)), t0);
        let next = f.plan(t0);
        assert_eq!(next.produce.len(), 1, "both waiting batches in one request");
        let seqs: Vec<i32> = next.produce[0].sent.iter().map(|s| s.base_sequence.0).collect();
        assert_eq!(seqs, vec![1, 2]);
    }

    #[test]
    fn t12_a_transport_failure_resends_the_same_bytes_in_order() {
        // Proves: after a lost answer the same stamped bytes go again, one
        // batch at a time, and the records resolve once.
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let value = [0u8; 600];
        let completions: Vec<_> = (0..3).map(|_| f.send(0, &value, t0)).collect();
        f.state.flush();
        let plan = f.plan(t0);
        let first = &plan.produce[0];
        let original: Vec<Bytes> = first.request.batches.iter().map(|b| b.batch.clone()).collect();
        let lost = Error::Transport { addr: ADDR.into(), message: "reset".into() };
        f.state.on_produce_answer(&first.sent, Err(lost), t0);
        assert!(completions.iter().all(|c| c.get().is_none()));
        let mut now = t0;
        for (i, bytes) in original.iter().enumerate() {
            now += Duration::from_secs(1);
            let plan = f.plan(now);
            assert_eq!(plan.produce.len(), 1);
            let call = &plan.produce[0];
            assert_eq!(call.request.batches.len(), 1, "one resend at a time");
            assert_eq!(&call.request.batches[0].batch, bytes, "the original bytes");
            f.state.on_produce_answer(&call.sent, Ok(ok_answer(&call.sent, 10 + i as i64)), now);
        }
        let offsets: Vec<i64> =
            completions.iter().map(|c| c.get().unwrap().as_ref().unwrap().0).collect();
        assert_eq!(offsets, vec![10, 11, 12]);
    }

    #[test]
    fn t13_not_leader_asks_for_fresh_metadata() {
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        f.send(0, b"x", t0);
        f.state.flush();
        let plan = f.plan(t0);
        let call = &plan.produce[0];
        let answer = ProduceResponse {
            results: vec![ProduceResult {
                topic: "t".into(),
                partition: 0,
                error: ErrorCode::NotLeader as i32,
                ..Default::default()
            }],
        };
        f.state.on_produce_answer(&call.sent, Ok(answer), t0);
        let plan = f.plan(t0);
        assert_eq!(plan.refresh, Some(vec!["t".to_string()]));
        f.state.on_refresh_answer(Ok(()), t0);
        let plan = f.plan(t0 + Duration::from_secs(1));
        assert_eq!(plan.produce.len(), 1, "resent after the backoff");
    }

    #[test]
    fn t14_unknown_address_waits_for_metadata() {
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        f.send(0, b"x", t0);
        f.state.flush();
        let plan = f.state.plan(t0, &|_, _| None);
        assert!(plan.produce.is_empty());
        assert_eq!(plan.refresh, Some(vec!["t".to_string()]));
    }

    /// Every batch of `sent` refused with `code`.
    fn refusal(sent: &[SentBatch], code: ErrorCode) -> ProduceResponse {
        ProduceResponse {
            results: sent
                .iter()
                .map(|s| ProduceResult {
                    topic: s.topic.to_string(),
                    partition: s.partition,
                    error: code as i32,
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// (producer id, epoch, base sequence) of every batch of a call.
    fn stamps(call: &ProduceCall) -> Vec<(i64, i16, i32)> {
        call.request
            .batches
            .iter()
            .map(|b| decode_batch(&b.batch).unwrap().header)
            .map(|h| (h.producer_id.0, h.producer_epoch.0, h.base_sequence.0))
            .collect()
    }

    #[test]
    fn t15_a_broken_sequence_bumps_the_epoch_then_restarts_at_zero() {
        // Proves: after a batch fails for good with a sequence error, the
        // next batch goes under the next epoch from sequence 0, with no
        // InitProducerId; only an exhausted epoch asks the coordinator for
        // a new producer id, and nothing goes until it answers.
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let c = f.send(0, b"x", t0);
        f.state.flush();
        let plan = f.plan(t0);
        let sent = &plan.produce[0].sent;
        f.state.on_produce_answer(sent, Ok(refusal(sent, ErrorCode::OutOfOrderSequence)), t0);
        assert!(c.get().unwrap().is_err());
        let next = f.send(1, b"y", t0);
        f.state.flush();
        let plan = f.plan(t0);
        assert!(!plan.init_producer_id);
        assert_eq!(stamps(&plan.produce[0]), [(7, 3, 0)]);
        f.state.on_produce_answer(
            &plan.produce[0].sent,
            Ok(ok_answer(&plan.produce[0].sent, 4)),
            t0,
        );
        assert!(next.get().unwrap().is_ok());

        f.state.identity = Some((ProducerId(7), ProducerEpoch(i16::MAX)));
        f.send(0, b"x", t0);
        f.state.flush();
        let plan = f.plan(t0);
        let sent = &plan.produce[0].sent;
        f.state.on_produce_answer(sent, Ok(refusal(sent, ErrorCode::OutOfOrderSequence)), t0);
        let next = f.send(1, b"y", t0);
        f.state.flush();
        let plan = f.plan(t0);
        assert!(plan.init_producer_id);
        assert!(plan.produce.is_empty(), "nothing is sent under the old id");
        f.state.on_reset_answer(Ok((ProducerId(8), ProducerEpoch(0))), t0);
        let plan = f.plan(t0);
        assert_eq!(stamps(&plan.produce[0]), [(8, 0, 0)]);
        assert!(next.get().is_none());
    }

    #[test]
    fn t25_batches_a_partition_refused_for_lost_state_go_again_under_a_new_epoch() {
        // Proves (KIP-360): UNKNOWN_PRODUCER_ID on the head batch (the
        // partition expired the producer) fails no record: the refused
        // batches go again, in order, one at a time, stamped with the next
        // epoch from sequence 0, then newer batches follow; the records get
        // the offsets of the resends.
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let value = [0u8; 600]; // one record per batch
        f.send(0, &value, t0);
        f.state.flush();
        let plan = f.plan(t0);
        f.state.on_produce_answer(
            &plan.produce[0].sent,
            Ok(ok_answer(&plan.produce[0].sent, 0)),
            t0,
        );
        let refused = [f.send(0, &value, t0), f.send(0, &value, t0)];
        f.state.flush();
        let plan = f.plan(t0);
        assert_eq!(stamps(&plan.produce[0]), [(7, 2, 1), (7, 2, 2)]);
        let sent = &plan.produce[0].sent;
        f.state.on_produce_answer(sent, Ok(refusal(sent, ErrorCode::UnknownProducerId)), t0);
        assert!(refused.iter().all(|c| c.get().is_none()), "no record failed");
        let newer = f.send(0, &value, t0);
        f.state.flush();
        let mut now = t0;
        let mut offsets = Vec::new();
        for expected in [(7, 3, 0), (7, 3, 1), (7, 3, 2)] {
            now += Duration::from_secs(1);
            let plan = f.plan(now);
            assert!(!plan.init_producer_id);
            assert_eq!(plan.produce.len(), 1);
            assert_eq!(stamps(&plan.produce[0]), [expected], "one at a time, in order");
            let offset = 10 + offsets.len() as i64;
            offsets.push(offset);
            f.state.on_produce_answer(
                &plan.produce[0].sent,
                Ok(ok_answer(&plan.produce[0].sent, offset)),
                now,
            );
        }
        let got: Vec<i64> = [&refused[0], &refused[1], &newer]
            .iter()
            .map(|c| c.get().unwrap().as_ref().unwrap().0)
            .collect();
        assert_eq!(got, offsets);
        assert_eq!(f.state.identity, Some((ProducerId(7), ProducerEpoch(3))));
    }

    #[test]
    fn t16_transactional_batches_wait_for_add_partitions() {
        // Proves: the first write to a partition in a transaction asks the
        // coordinator to add it (one request for all new partitions), and
        // its batches go only once it is added.
        let mut f = Fixture::new(true);
        let t0 = Instant::now();
        f.send(0, b"x", t0);
        f.send(1, b"y", t0);
        f.state.flush();
        let plan = f.plan(t0);
        assert!(plan.produce.is_empty());
        let added = plan.add_partitions.clone().unwrap();
        assert_eq!(added, vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)]);
        assert!(f.plan(t0).add_partitions.is_none(), "one request at a time");
        f.state.on_add_partitions_answer(&added, Ok(()), t0);
        let plan = f.plan(t0);
        assert_eq!(plan.produce[0].request.batches.len(), 2);
        for b in &plan.produce[0].request.batches {
            assert!(decode_batch(&b.batch).unwrap().header.is_transactional());
        }
        // A later record to an added partition needs no new request.
        f.send(0, b"z", t0);
        f.state.flush();
        assert!(f.plan(t0).add_partitions.is_none());
    }

    #[test]
    fn t17_concurrent_transactions_is_retried_and_fencing_is_fatal() {
        let mut f = Fixture::new(true);
        let t0 = Instant::now();
        let c = f.send(0, b"x", t0);
        f.state.flush();
        let added = f.plan(t0).add_partitions.unwrap();
        let busy = Error::Coordinator {
            code: xo_proto::coordinator::ErrorCode::ConcurrentTransactions,
            message: String::new(),
        };
        f.state.on_add_partitions_answer(&added, Err(busy.clone()), t0);
        let plan = f.plan(t0);
        assert!(plan.add_partitions.is_none(), "backoff first");
        // The previous transaction's markers take milliseconds: the first
        // retry comes after CONCURRENT_TXN_RETRY_BACKOFF, the next after
        // twice that, not after the general retry backoff.
        let t1 = t0 + CONCURRENT_TXN_RETRY_BACKOFF;
        let again = f.plan(t1).add_partitions.unwrap();
        assert_eq!(again, added);
        f.state.on_add_partitions_answer(&again, Err(busy), t1);
        assert!(f.plan(t1 + CONCURRENT_TXN_RETRY_BACKOFF).add_partitions.is_none());
        let again = f.plan(t1 + 2 * CONCURRENT_TXN_RETRY_BACKOFF).add_partitions.unwrap();
        assert_eq!(again, added);
        let fenced = Error::Coordinator {
            code: xo_proto::coordinator::ErrorCode::ProducerFenced,
            message: String::new(),
        };
        f.state.on_add_partitions_answer(&again, Err(fenced), t0);
        assert!(f.state.fatal.as_ref().unwrap().is_fenced());
        assert!(c.get().unwrap().as_ref().unwrap_err().is_fatal());
        assert!(f.state.check_send().unwrap_err().is_fatal());
    }

    #[test]
    fn t18_a_failed_batch_poisons_the_transaction() {
        let mut f = Fixture::new(true);
        let t0 = Instant::now();
        let a = f.send(0, b"x", t0);
        f.state.flush();
        let added = f.plan(t0).add_partitions.unwrap();
        f.state.on_add_partitions_answer(&added, Ok(()), t0);
        let plan = f.plan(t0);
        let b = f.send(0, b"later", t0);
        let answer = ProduceResponse {
            results: vec![ProduceResult {
                topic: "t".into(),
                partition: 0,
                error: ErrorCode::MessageTooLarge as i32,
                ..Default::default()
            }],
        };
        f.state.on_produce_answer(&plan.produce[0].sent, Ok(answer), t0);
        assert!(a.get().unwrap().as_ref().unwrap_err().is_abortable());
        assert!(b.get().unwrap().as_ref().unwrap_err().is_abortable(), "unsent ones fail too");
        assert!(f.state.check_send().unwrap_err().is_abortable());
    }

    #[test]
    fn t19_abort_fails_unsent_batches_and_waits_for_in_flight_ones() {
        let mut f = Fixture::new(true);
        let t0 = Instant::now();
        f.send(0, b"x", t0);
        f.state.flush();
        let added = f.plan(t0).add_partitions.unwrap();
        f.state.on_add_partitions_answer(&added, Ok(()), t0);
        let plan = f.plan(t0);
        let unsent = f.send(1, b"y", t0);
        f.state.txn.as_mut().unwrap().phase = TxnPhase::Aborting;
        let waiting = f.state.begin_abort();
        assert!(matches!(unsent.get(), Some(Err(Error::TransactionAborted))));
        assert_eq!(waiting.len(), 1);
        let lost = Error::Transport { addr: ADDR.into(), message: "reset".into() };
        f.state.on_produce_answer(&plan.produce[0].sent, Err(lost), t0);
        assert!(waiting[0].get().unwrap().is_err(), "no retry while aborting");
        assert!(f.state.nothing_in_flight());
        f.state.adopt_identity((ProducerId(7), ProducerEpoch(3)));
        f.state.clear_txn_partitions();
    }

    #[test]
    fn t20_sticky_partition_moves_on_when_its_batch_fills() {
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let topic = f.topic.clone();
        let first = f.state.sticky_partition(&topic, 2);
        let value = [0u8; 300];
        let mut partitions = Vec::new();
        for _ in 0..8 {
            let p = f.state.sticky_partition(&topic, 2);
            partitions.push(p);
            f.send(p, &value, t0);
        }
        assert_eq!(partitions[0], first);
        assert!(partitions.windows(2).any(|w| w[0] != w[1]), "{partitions:?}");
        let runs = partitions.chunk_by(|a, b| a == b).count();
        assert!(runs <= 4, "records stick to a partition for a whole batch: {partitions:?}");
    }

    #[test]
    fn t21_unsent_batches_expire_without_a_sequence_gap() {
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        let c = f.send(0, b"x", t0);
        f.state.flush();
        let later = t0 + Duration::from_secs(31);
        let plan = f.state.plan(later, &|_, _| None);
        assert!(plan.produce.is_empty());
        assert!(matches!(c.get(), Some(Err(Error::Timeout { .. }))));
        f.send(0, b"y", later);
        f.state.flush();
        let plan = f.plan(later);
        let h = decode_batch(&plan.produce[0].request.batches[0].batch).unwrap().header;
        assert_eq!(h.base_sequence, Sequence(0), "the expired batch took no sequence");
    }

    #[test]
    fn t22_a_due_retry_without_an_address_does_not_spin() {
        // Proves: the planner never asks to be woken in the past (which
        // would busy-loop the sender) while it waits for metadata.
        let mut f = Fixture::new(false);
        let t0 = Instant::now();
        f.send(0, b"x", t0);
        f.state.flush();
        let plan = f.plan(t0);
        let lost = Error::Transport { addr: ADDR.into(), message: "reset".into() };
        f.state.on_produce_answer(&plan.produce[0].sent, Err(lost), t0);
        f.state.on_refresh_answer(Ok(()), t0);
        let later = t0 + Duration::from_secs(1);
        let plan = f.state.plan(later, &|_, _| None);
        assert!(plan.produce.is_empty());
        assert!(plan.wake_at.is_none_or(|at| at > later), "{:?}", plan.wake_at);
    }
}
