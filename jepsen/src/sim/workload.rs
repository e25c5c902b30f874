//! The simulation's clients: Jepsen's Kafka queue workload run through the
//! real client library (`TransactionalProducer`, read-committed `Consumer`,
//! `Admin`) on the simulated network, every operation recorded in the
//! history format of [`crate::history`] so the suite's own checker
//! judges it.
//!
//! Phases, all on the clients' host:
//! 1. Setup: create the topics (retrying while the partition servers
//!    register).
//! 2. Run: `processes` workers execute operations planned by
//!    [`QueueGen`] (transactions of 1–4 sends and polls, some aborted on
//!    purpose, re-assignments) until the heal, while the nemesis injects
//!    faults. An operation whose outcome cannot be known is `info`, and its
//!    worker goes on as a new process (Jepsen's rule).
//! 3. Liveness: after the heal, every transaction must resolve (none left
//!    ongoing or preparing at the coordinator) and every partition's LSO
//!    must reach its high watermark, within the transaction timeout plus
//!    the recovery slack.
//! 4. Final reads: a fresh read-committed consumer reads every partition
//!    from the beginning up to its high watermark (`final-poll`s), so the
//!    checker can tell lost and unseen writes.
//!
//! Subscribe (consumer groups) is not exercised: a planned subscribe is
//! carried out as an assign of the topics' partitions.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::history::{F, Key, Mop, Offset, Op, OpType, OpValue, Process, Record, Val};
use crate::rng::Rng;
use crate::workload::queue_gen::{Planned, QueueGen, QueueGenConfig};
use serde_json::Value as Json;
use xo_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel,
    ListTransactionsFilter, NewTopic, OffsetReset, ProducerConfig, ProducerRecord, RecordMetadata,
    TopicPartition, TransactionalProducer,
};

use super::nodes;

/// Operations one worker invokes, at most (the run's length ends it first).
pub const OPS_PER_WORKER_MAX: usize = 10_000;
/// Records one history may hold.
pub const RECORDS_MAX: usize = 1_000_000;
/// Workers, at most; values are `planned * WORKERS_MAX + worker`, unique per key.
pub const WORKERS_MAX: u64 = 64;
/// One operation, from invocation to completion; past it the outcome is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll inside a transaction.
pub const POLL_WAIT: Duration = Duration::from_millis(100);
/// Retries of a commit whose outcome is in doubt before giving up as `info`.
pub const COMMIT_ATTEMPTS_MAX: u32 = 5;
/// Between two operations of one worker, at most.
pub const PACE_MAX: Duration = Duration::from_millis(60);
/// Topic creation attempts while the partition servers register.
pub const SETUP_ATTEMPTS_MAX: u32 = 100;
/// Between two liveness probes after the heal.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Probes after the heal, at most (the time bound ends them first).
pub const PROBES_MAX: u32 = 1_000;
/// Final polls, at most, and how long the final reads may take.
pub const FINAL_POLLS_MAX: u32 = 2_000;
pub const FINAL_READS_MAX: Duration = Duration::from_secs(60);
/// The process number of the final reader (no worker gets near it).
pub const FINAL_PROCESS: u64 = 1_000_000;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub processes: usize,
    pub keys: QueueGenConfig,
    pub txn_timeout: Duration,
    /// Added to the transaction timeout to bound recovery after the heal.
    pub recovery_slack: Duration,
    /// ReadCommitted; ReadUncommitted only to show the checker catches it.
    pub isolation: IsolationLevel,
}

/// Time to recover after the heal.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub bound: Duration,
    /// From the heal until every transaction was resolved and every LSO was at
    /// its high watermark; `None` if that never held within twice the bound.
    pub recovered_after: Option<Duration>,
    /// Why the last probe failed, when one did.
    pub problem: Option<String>,
}

impl Liveness {
    pub fn ok(&self) -> bool {
        self.recovered_after.is_some_and(|t| t <= self.bound)
    }
}

/// What the driver (the test thread, stepping the simulation) and the
/// clients' host share. Both run on the same OS thread, so plain cells do.
#[derive(Default)]
pub struct Shared {
    ops: RefCell<Vec<Op>>,
    /// Simulated time the topics were created, set by the clients: the
    /// nemesis schedule counts from it.
    pub setup_done_at: Cell<Option<Duration>>,
    /// Simulated time of the heal, set by the driver: workers stop then.
    pub healed_at: Cell<Option<Duration>>,
    pub liveness: RefCell<Option<Liveness>>,
    /// Things worth knowing when a run fails (setup trouble, final-read gaps).
    pub notes: RefCell<Vec<String>>,
}

impl Shared {
    /// Appends a record at simulated time `now`; returns its index.
    pub fn push(&self, now: Duration, process: Process, kind: OpType, f: F, value: OpValue) -> u64 {
        let mut ops = self.ops.borrow_mut();
        assert!(ops.len() < RECORDS_MAX, "history past RECORDS_MAX records");
        let index = ops.len() as u64;
        let time_ns = now.as_nanos() as u64;
        if let Some(last) = ops.last() {
            assert!(last.time_ns <= time_ns, "history time went back");
        }
        ops.push(Op::new(index, time_ns, process, kind, f, value));
        index
    }

    /// A nemesis record (`start-crash`, ...), as invoke and info.
    pub fn nemesis(&self, now: Duration, f: String, what: String) {
        for kind in [OpType::Invoke, OpType::Info] {
            let value = OpValue::Other(Json::String(what.clone()));
            self.push(now, Process::Nemesis, kind, F::from(f.clone()), value);
        }
    }

    fn complete(&self, process: u64, kind: OpType, f: F, value: OpValue, error: Option<String>) {
        let index = self.push(sim_now(), Process::Client(process), kind, f, value);
        self.ops.borrow_mut()[index as usize].error = error;
    }

    pub fn take_history(&self) -> crate::history::History {
        crate::history::History { ops: self.ops.take() }
    }

    fn note(&self, note: String) {
        self.notes.borrow_mut().push(note);
    }
}

/// Simulated time on the current host.
fn sim_now() -> Duration {
    turmoil::sim_elapsed().expect("the clients run inside the simulation")
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new(&nodes::coordinator_address());
    config.request_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(1);
    config.retry_backoff = Duration::from_millis(20);
    config.retry_backoff_max = Duration::from_millis(500);
    config.operation_timeout = Duration::from_secs(6);
    config
}

fn tp(key: &Key) -> TopicPartition {
    TopicPartition::new(key.topic(), key.partition().expect("keys are topic/partition"))
}

fn all_keys(config: &WorkloadConfig) -> Vec<Key> {
    QueueGen::new(config.keys.clone(), Rng::new(0)).keys()
}

/// The clients' whole life: setup, workers, liveness, final reads.
pub async fn run(shared: Rc<Shared>, config: Rc<WorkloadConfig>) -> turmoil::Result {
    setup(&shared, &config).await?;
    shared.setup_done_at.set(Some(sim_now()));
    let workers = (0..config.processes).map(|w| worker(shared.clone(), config.clone(), w));
    futures::future::join_all(workers).await;
    let healed_at = wait_for_heal(&shared).await;
    let (liveness, high_watermarks) = await_recovery(&config, healed_at).await;
    *shared.liveness.borrow_mut() = Some(liveness);
    final_reads(&shared, &config, &high_watermarks).await;
    Ok(())
}

async fn setup(shared: &Shared, config: &WorkloadConfig) -> turmoil::Result {
    let admin = Admin::new(client_config())?;
    for topic in &config.keys.topics {
        let mut created = Err(format!("no attempt at creating {topic}"));
        for _ in 0..SETUP_ATTEMPTS_MAX {
            // Registration takes a few round trips: give it time to place
            // partitions on every server, not all on the first one.
            tokio::time::sleep(Duration::from_millis(300)).await;
            match admin.create_topic(NewTopic::new(topic, config.keys.partitions)).await {
                Ok(description) => {
                    let servers: std::collections::BTreeSet<_> =
                        description.partitions.iter().map(|p| p.server_id.clone()).collect();
                    shared.note(format!("{topic} placed on {servers:?}"));
                    created = Ok(());
                }
                // An earlier attempt that timed out may have created it.
                Err(xo_client::Error::Coordinator {
                    code: xo_proto::coordinator::ErrorCode::TopicAlreadyExists,
                    ..
                }) => created = Ok(()),
                Err(e) => created = Err(format!("creating {topic}: {e}")),
            }
            if created.is_ok() {
                break;
            }
        }
        created?;
    }
    Ok(())
}

/// Polls of the heal mark, at most: the simulation's whole length.
const HEAL_POLLS_MAX: u128 = super::SIMULATED_MAX.as_millis() / 10;

async fn wait_for_heal(shared: &Shared) -> Duration {
    for _ in 0..HEAL_POLLS_MAX {
        if let Some(at) = shared.healed_at.get() {
            return at;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the driver heals before the simulation's end");
}

/// One worker: a transactional producer (replaced when its state is
/// unknown) and one consumer in assign mode, for the whole run.
async fn worker(shared: Rc<Shared>, config: Rc<WorkloadConfig>, worker: usize) {
    assert!((worker as u64) < WORKERS_MAX);
    let root = Rng::new(config.seed);
    let mut planner = QueueGen::new(config.keys.clone(), root.fork(100 + worker as u64));
    let mut rng = root.fork(200 + worker as u64);
    let mut process = worker as u64;
    let mut consumer_config = ConsumerConfig::new(client_config());
    consumer_config.isolation = config.isolation;
    consumer_config.offset_reset = OffsetReset::Earliest;
    consumer_config.fetch_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(consumer_config).expect("consumer config is valid");
    let transactional_id = format!("sim-{worker}");
    let mut producer: Option<TransactionalProducer> = None;
    for _ in 0..OPS_PER_WORKER_MAX {
        if shared.healed_at.get().is_some() {
            break;
        }
        if producer.is_none() {
            producer = new_producer(&config, &transactional_id).await;
            if producer.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        match planner.next_op() {
            Planned::Assign { keys, .. } => assign(&shared, process, &mut consumer, keys),
            Planned::Subscribe { topics } => {
                let keys = all_keys(&config)
                    .into_iter()
                    .filter(|k| topics.iter().any(|t| t == k.topic()))
                    .collect();
                assign(&shared, process, &mut consumer, keys);
            }
            Planned::Txn { f, mops, abort } => {
                let mops: Vec<Mop> = mops.into_iter().map(|m| unique(m, worker)).collect();
                shared.push(
                    sim_now(),
                    Process::Client(process),
                    OpType::Invoke,
                    f.clone(),
                    OpValue::Mops(mops.clone()),
                );
                let current = producer.as_ref().expect("made above");
                let done = match tokio::time::timeout(
                    OP_TIMEOUT,
                    txn(current, &mut consumer, &mops, abort),
                )
                .await
                {
                    Ok(done) => done,
                    Err(_) => Done::info(mops.clone(), format!("no outcome within {OP_TIMEOUT:?}")),
                };
                shared.complete(process, done.kind, f, OpValue::Mops(done.mops), done.error);
                if done.kind == OpType::Info {
                    process += config.processes as u64;
                }
                if done.replace_producer {
                    producer = None;
                }
            }
        }
        tokio::time::sleep(rng.duration(Duration::ZERO, PACE_MAX)).await;
    }
    if let Some(producer) = producer {
        let _ = tokio::time::timeout(OP_TIMEOUT, producer.close()).await;
    }
}

/// A producer of `transactional_id` with its transactions initialised (which
/// fences the instance it replaces), or `None` if that failed for now.
async fn new_producer(
    config: &WorkloadConfig,
    transactional_id: &str,
) -> Option<TransactionalProducer> {
    let mut producer_config = ProducerConfig::new(client_config());
    producer_config.transaction_timeout = config.txn_timeout;
    producer_config.delivery_timeout = Duration::from_secs(6);
    producer_config.linger = Duration::from_millis(2);
    let producer = TransactionalProducer::new(producer_config, transactional_id).ok()?;
    match tokio::time::timeout(OP_TIMEOUT, producer.init_transactions()).await {
        Ok(Ok(())) => Some(producer),
        _ => None,
    }
}

/// Values made unique per key across workers.
fn unique(mop: Mop, worker: usize) -> Mop {
    match mop {
        Mop::Send { key, value, offset } => {
            Mop::Send { key, value: Val(value.0 * WORKERS_MAX + worker as u64), offset }
        }
        poll => poll,
    }
}

fn assign(shared: &Shared, process: u64, consumer: &mut Consumer, keys: Vec<Key>) {
    let value = OpValue::Keys(keys.clone());
    shared.push(sim_now(), Process::Client(process), OpType::Invoke, F::Assign, value.clone());
    let partitions: Vec<TopicPartition> = keys.iter().map(tp).collect();
    match consumer.assign(&partitions) {
        Ok(()) => shared.complete(process, OpType::Ok, F::Assign, value, None),
        Err(e) => shared.complete(process, OpType::Fail, F::Assign, value, Some(e.to_string())),
    }
}

/// How one transaction ended.
struct Done {
    kind: OpType,
    mops: Vec<Mop>,
    error: Option<String>,
    /// The producer's state is unknown or broken: make a new instance.
    replace_producer: bool,
}

impl Done {
    fn info(mops: Vec<Mop>, error: String) -> Done {
        Done { kind: OpType::Info, mops, error: Some(error), replace_producer: true }
    }
}

type Ack<'a> = Pin<Box<dyn Future<Output = xo_client::Result<RecordMetadata>> + Send + 'a>>;

/// One planned transaction: begin, each send and poll in order, then commit
/// (or abort, on purpose or after an error).
///
/// Outcomes: `ok` once the commit succeeded; `fail` when no commit was ever
/// sent or the coordinator accepted the abort (the transaction is aborted
/// now, or by the next instance's fencing, or by its timeout: nothing else
/// can commit it); `info` when a commit was sent and its outcome is unknown.
async fn txn(
    producer: &TransactionalProducer,
    consumer: &mut Consumer,
    mops: &[Mop],
    abort: bool,
) -> Done {
    let fail = |mops: Vec<Mop>, error: String, replace_producer: bool| Done {
        kind: OpType::Fail,
        mops,
        error: Some(error),
        replace_producer,
    };
    if let Err(e) = producer.begin_transaction() {
        return fail(mops.to_vec(), format!("begin: {e}"), true);
    }
    // Declared before the acks, which borrow them.
    let records: Vec<(String, u32, String)> = mops
        .iter()
        .filter_map(|m| match m {
            Mop::Send { key, value, .. } => Some((
                key.topic().to_string(),
                key.partition().expect("topic/partition"),
                value.to_string(),
            )),
            Mop::Poll { .. } => None,
        })
        .collect();
    let mut acks: Vec<(usize, Ack<'_>)> = Vec::new();
    let mut done: Vec<Mop> = Vec::with_capacity(mops.len());
    let mut failure = None;
    let mut sends = records.iter();
    for (i, mop) in mops.iter().enumerate() {
        match mop {
            Mop::Send { .. } => {
                let (topic, partition, value) = sends.next().expect("one record per send");
                let record = ProducerRecord::new(topic, value).partition(*partition);
                acks.push((i, Box::pin(producer.send(record))));
                done.push(mop.clone());
            }
            Mop::Poll { .. } if failure.is_some() => done.push(mop.clone()),
            Mop::Poll { .. } => match consumer.poll(POLL_WAIT).await {
                Ok(polled) => done.push(Mop::Poll { reads: reads(&polled) }),
                Err(e) => {
                    failure = Some(format!("poll: {e}"));
                    done.push(mop.clone());
                }
            },
        }
    }
    if abort || failure.is_some() {
        let aborted = producer.abort_transaction().await;
        let why = failure.unwrap_or_else(|| "aborted on purpose".into());
        return fail(done, why, aborted.is_err());
    }
    let mut committed = producer.commit_transaction().await;
    for _ in 1..COMMIT_ATTEMPTS_MAX {
        match &committed {
            Err(e) if e.is_retriable() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                committed = producer.commit_transaction().await;
            }
            _ => break,
        }
    }
    match committed {
        Ok(()) => {}
        Err(e) if e.is_abortable() => {
            return match producer.abort_transaction().await {
                Ok(()) => fail(done, format!("commit: {e}; aborted"), false),
                Err(abort) => Done::info(done, format!("commit: {e}; abort: {abort}")),
            };
        }
        Err(e) => return Done::info(done, format!("commit: {e}")),
    }
    for (i, ack) in acks {
        if let (Ok(meta), Mop::Send { offset, .. }) = (ack.await, &mut done[i]) {
            *offset = Some(Offset(meta.offset.0 as u64));
        }
    }
    Done { kind: OpType::Ok, mops: done, error: None, replace_producer: false }
}

/// A poll's records as the history writes them.
fn reads(records: &[ConsumerRecord]) -> BTreeMap<Key, Vec<Record>> {
    let mut by_key: BTreeMap<Key, Vec<Record>> = BTreeMap::new();
    for r in records {
        let key = Key::new(format!("{}/{}", r.topic, r.partition));
        let text = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let value: u64 =
            text.parse().unwrap_or_else(|_| panic!("a value the workload wrote: {text:?}"));
        by_key
            .entry(key)
            .or_default()
            .push(Record { offset: Offset(r.offset.0 as u64), value: Val(value) });
    }
    by_key
}

/// Probes after the heal until every transaction is resolved and every LSO
/// is at its high watermark (or twice the bound passed). Returns the high
/// watermarks of the last probe.
async fn await_recovery(
    config: &WorkloadConfig,
    healed_at: Duration,
) -> (Liveness, BTreeMap<Key, u64>) {
    let admin = Admin::new(client_config()).expect("admin config is valid");
    let bound = config.txn_timeout + config.recovery_slack;
    let keys = all_keys(config);
    let mut liveness = Liveness { bound, recovered_after: None, problem: None };
    let mut high_watermarks = BTreeMap::new();
    for _ in 0..PROBES_MAX {
        match probe(&admin, &keys, &mut high_watermarks).await {
            Ok(()) => {
                liveness.recovered_after = Some(sim_now().saturating_sub(healed_at));
                liveness.problem = None;
                break;
            }
            Err(problem) => liveness.problem = Some(problem),
        }
        if sim_now() >= healed_at + bound * 2 {
            break;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    (liveness, high_watermarks)
}

/// States of a transaction that is not resolved.
const UNRESOLVED: [&str; 4] = ["Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence"];

async fn probe(
    admin: &Admin,
    keys: &[Key],
    high_watermarks: &mut BTreeMap<Key, u64>,
) -> Result<(), String> {
    let filter = ListTransactionsFilter {
        states: UNRESOLVED.iter().map(|s| s.to_string()).collect(),
        min_duration: Duration::ZERO,
    };
    let open =
        admin.list_transactions(&filter).await.map_err(|e| format!("list transactions: {e}"))?;
    let mut lagging = Vec::new();
    for key in keys {
        let tp = tp(key);
        let offsets = admin
            .partition_offsets(&tp.topic, tp.partition)
            .await
            .map_err(|e| format!("offsets of {key}: {e}"))?;
        high_watermarks.insert(key.clone(), offsets.high_watermark.0 as u64);
        if offsets.last_stable_offset != offsets.high_watermark {
            lagging.push(format!(
                "{key} (LSO {} < HW {})",
                offsets.last_stable_offset.0, offsets.high_watermark.0
            ));
        }
    }
    if open.is_empty() && lagging.is_empty() {
        return Ok(());
    }
    let open: Vec<String> =
        open.iter().map(|t| format!("{} {}", t.transactional_id, t.state)).collect();
    Err(format!("unresolved: [{}]; lagging: [{}]", open.join(", "), lagging.join(", ")))
}

/// Reads every key from the beginning up to its high watermark with a fresh
/// read-committed consumer, one `final-poll` operation per poll.
async fn final_reads(
    shared: &Shared,
    config: &WorkloadConfig,
    high_watermarks: &BTreeMap<Key, u64>,
) {
    let keys = all_keys(config);
    let partitions: Vec<TopicPartition> = keys.iter().map(tp).collect();
    let mut consumer_config = ConsumerConfig::new(client_config());
    consumer_config.offset_reset = OffsetReset::Earliest;
    consumer_config.fetch_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(consumer_config).expect("consumer config is valid");
    consumer.assign(&partitions).expect("a fresh consumer assigns");
    let mut process = FINAL_PROCESS;
    let value = OpValue::Keys(keys.clone());
    // The fresh consumer starts at the beginning (earliest reset): recorded
    // as an assign with `seek_to_beginning`.
    let assign = |process: u64, from_beginning: bool| {
        shared.push(sim_now(), Process::Client(process), OpType::Invoke, F::Assign, value.clone());
        let index =
            shared.push(sim_now(), Process::Client(process), OpType::Ok, F::Assign, value.clone());
        let mut ops = shared.ops.borrow_mut();
        ops[index as usize - 1].seek_to_beginning = from_beginning;
        ops[index as usize].seek_to_beginning = from_beginning;
    };
    assign(process, true);
    let deadline = sim_now() + FINAL_READS_MAX;
    let done = |consumer: &Consumer| {
        keys.iter().all(|key| {
            let end = high_watermarks.get(key).copied().unwrap_or(0);
            consumer.position(&tp(key)).is_some_and(|p| p.0 as u64 >= end)
        })
    };
    for _ in 0..FINAL_POLLS_MAX {
        if done(&consumer) {
            return;
        }
        if sim_now() >= deadline {
            break;
        }
        let invoke = OpValue::Mops(vec![Mop::Poll { reads: BTreeMap::new() }]);
        shared.push(sim_now(), Process::Client(process), OpType::Invoke, F::FinalPoll, invoke);
        match tokio::time::timeout(OP_TIMEOUT, consumer.poll(Duration::from_millis(200))).await {
            Ok(Ok(polled)) => {
                let mops = OpValue::Mops(vec![Mop::Poll { reads: reads(&polled) }]);
                shared.complete(process, OpType::Ok, F::FinalPoll, mops, None);
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {OP_TIMEOUT:?}"),
                };
                shared.complete(
                    process,
                    OpType::Info,
                    F::FinalPoll,
                    OpValue::Mops(Vec::new()),
                    Some(error),
                );
                // A new process after an unknown outcome; same consumer, so it
                // starts where the last one ended (tracking restarts anyway).
                process += 1;
                assign(process, false);
            }
        }
    }
    let behind: Vec<String> = keys
        .iter()
        .filter(|key| {
            let end = high_watermarks.get(*key).copied().unwrap_or(0);
            consumer.position(&tp(key)).is_none_or(|p| (p.0 as u64) < end)
        })
        .map(|key| {
            format!("{key} at {:?} of {:?}", consumer.position(&tp(key)), high_watermarks.get(key))
        })
        .collect();
    shared.note(format!("final reads did not reach the high watermark: {}", behind.join(", ")));
}
