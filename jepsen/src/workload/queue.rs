//! `queue`: Jepsen's Kafka queue workload against xo's client library.
//!
//! Two topics (`t0`, `t1`) of [`PARTITIONS`] partitions; keys are `topic/partition`.
//! Every client slot owns a [`TransactionalProducer`] (transactional id
//! `queue-<slot>`, so a replacement instance fences the one it replaces) and a
//! read_committed [`Consumer`]. Even slots consume with `assign`, odd slots with
//! `subscribe` (group [`GROUP`]) when the coordinator has consumer groups (probed at
//! setup; otherwise every slot assigns). The slots draw their operations from one
//! shared [`QueueGen`], so values are unique per key across all processes.
//!
//! Each planned transaction runs as `begin`, its sends (enqueued in order) and polls
//! (one `poll` each) in the planned order, then `commit` — or `abort`, on purpose or
//! after an abortable error, recorded `fail`. A commit whose outcome the client cannot
//! know (timeout, transport error, a fatal error at commit) is `info`; after it, or
//! after any failure that leaves the producer or consumer unusable, the slot drops
//! both (mid-transaction, as a crashed client would) and continues as the next
//! process (`WorkloadCtx::next_process`) with fresh instances.
//!
//! After the heal, [`Queue::final_reads`] reads every key from the beginning with a
//! fresh read_committed consumer until its position reaches the partition's last
//! stable offset, one `final-poll` per key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xo_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Error as ClientError,
    ListTransactionsFilter, NewTopic, OffsetReset, ProducerConfig, ProducerRecord, Rebalance,
    TopicPartition, TransactionalProducer,
};

use super::queue_gen::{Planned, QueueGen, QueueGenConfig};
use super::{Resolution, TRANSACTION_TIMEOUT_DEFAULT, Workload, WorkloadCtx};
use crate::history::{F, Key, Mop, Offset, OpType, OpValue, Record, Val};
use crate::topology::Topology;

pub const TOPICS: [&str; 2] = ["t0", "t1"];
pub const PARTITIONS: u32 = 4;
/// The consumer group of the subscribed slots.
pub const GROUP: &str = "queue";
/// One client call's budget (request, operation); kept short so a partitioned
/// client gives up and reports `info` well inside a run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(6);
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(6);
/// A whole operation's budget, past which it is `info` and the client dropped.
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);
/// One poll micro-operation waits this long for records.
pub const POLL_WAIT: Duration = Duration::from_millis(100);
/// Operations one process may run: a bound on its loop.
pub const OPS_PER_SLOT_MAX: u64 = 10_000_000;
/// Setup tries (500 ms apart).
pub const SETUP_TRIES_MAX: usize = 60;
/// Final reads: processes from here on, one per key.
pub const FINAL_PROCESS_BASE: u64 = 1 << 40;
/// Polls of one key in the final read, at most.
pub const FINAL_POLLS_MAX: usize = 100_000;
/// Time between client re-creations of one slot after failures.
pub const RECREATE_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Queue {
    generator: Arc<Mutex<Option<QueueGen>>>,
    /// Whether the coordinator serves consumer groups (probed at setup).
    groups: Arc<AtomicBool>,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue { generator: Arc::new(Mutex::new(None)), groups: Arc::new(AtomicBool::new(false)) }
    }
}

pub fn gen_config() -> QueueGenConfig {
    QueueGenConfig {
        topics: TOPICS.iter().map(|t| t.to_string()).collect(),
        partitions: PARTITIONS,
        ..QueueGenConfig::default()
    }
}

pub(crate) fn bootstrap(topology: &Topology) -> anyhow::Result<String> {
    Ok(topology.coordinator().context("the queue workload needs a coordinator")?.addr.to_string())
}

pub(crate) fn client_config(topology: &Topology) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new(&bootstrap(topology)?);
    c.request_timeout = REQUEST_TIMEOUT;
    c.connect_timeout = REQUEST_TIMEOUT;
    c.operation_timeout = OPERATION_TIMEOUT;
    Ok(c)
}

pub(crate) fn producer_config(topology: &Topology) -> anyhow::Result<ProducerConfig> {
    let mut p = ProducerConfig::new(client_config(topology)?);
    p.delivery_timeout = DELIVERY_TIMEOUT;
    p.transaction_timeout = TRANSACTION_TIMEOUT_DEFAULT;
    Ok(p)
}

pub(crate) fn consumer_config(topology: &Topology) -> anyhow::Result<ConsumerConfig> {
    let mut c = ConsumerConfig::new(client_config(topology)?);
    c.offset_reset = OffsetReset::Earliest;
    Ok(c)
}

pub fn key_of(topic: &str, partition: u32) -> Key {
    Key::new(format!("{topic}/{partition}"))
}

pub fn tp_of(key: &Key) -> TopicPartition {
    TopicPartition::new(key.topic(), key.partition().expect("keys are topic/partition"))
}

/// The records of one poll, per key, in the order returned; values that are not
/// integers (nothing this workload writes) are an error.
pub fn reads_of(records: &[ConsumerRecord]) -> anyhow::Result<BTreeMap<Key, Vec<Record>>> {
    let mut reads: BTreeMap<Key, Vec<Record>> = BTreeMap::new();
    for r in records {
        let text = r.value.as_deref().unwrap_or_default();
        let value: u64 = std::str::from_utf8(text)?.parse().with_context(|| {
            format!("a record's value at {}/{}@{}", r.topic, r.partition, r.offset.0)
        })?;
        reads
            .entry(key_of(&r.topic, r.partition))
            .or_default()
            .push(Record { offset: Offset(r.offset.0 as u64), value: Val(value) });
    }
    Ok(reads)
}

/// Creates `topics` (`(name, partitions)`), retrying until the coordinator answers;
/// an existing topic is fine.
pub(crate) async fn create_topics(
    topology: &Topology,
    topics: &[(&str, u32)],
) -> anyhow::Result<()> {
    let admin = Admin::new(client_config(topology)?)?;
    for (topic, partitions) in topics {
        let mut last = String::new();
        let mut done = false;
        for _ in 0..SETUP_TRIES_MAX {
            match admin.create_topic(NewTopic::new(topic, *partitions)).await {
                Ok(_) => done = true,
                Err(e) if format!("{e:?}").contains("TopicAlreadyExists") => done = true,
                Err(e) => last = e.to_string(),
            }
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !done {
            bail!("creating topic {topic}: {last}");
        }
    }
    // Wait until every partition answers offsets.
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            let mut ok = false;
            for _ in 0..SETUP_TRIES_MAX {
                if admin.partition_offsets(topic, p).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if !ok {
                bail!("partition {topic}/{p} never answered after creation");
            }
        }
    }
    Ok(())
}

/// Whether `subscribe` works against this coordinator: a consumer subscribes and
/// polls once; an `Unimplemented` answer means no groups yet.
async fn probe_groups(topology: &Topology) -> anyhow::Result<bool> {
    let mut consumer = Consumer::new(consumer_config(topology)?.group("queue-probe"))?;
    consumer.subscribe(&[TOPICS[0]], "queue-probe")?;
    let polled = tokio::time::timeout(Duration::from_secs(20), consumer.poll(POLL_WAIT)).await;
    let _ = consumer.close().await;
    Ok(match polled {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            println!("queue: consumer groups unavailable ({e}); every process assigns");
            false
        }
        Err(_) => {
            println!("queue: group join did not answer in 20 s; every process assigns");
            false
        }
    })
}

/// Pending transactions and hanging ones, as the admin client sees them.
pub(crate) async fn resolution(topology: &Topology, topics: &[&str]) -> anyhow::Result<Resolution> {
    let admin = Admin::new(client_config(topology)?)?;
    let open = admin
        .list_transactions(&ListTransactionsFilter {
            states: vec!["Ongoing".into(), "PrepareCommit".into(), "PrepareAbort".into()],
            min_duration: Duration::ZERO,
        })
        .await?;
    if !open.is_empty() {
        let names: Vec<String> =
            open.iter().map(|t| format!("{} ({})", t.transactional_id, t.state)).collect();
        return Ok(Resolution::Pending(format!(
            "{} transactions open: {}",
            open.len(),
            names.join(", ")
        )));
    }
    let hanging = admin.find_hanging_transactions(topics).await?;
    if !hanging.is_empty() {
        let names: Vec<String> = hanging
            .iter()
            .map(|h| format!("{} pid {} at {}", h.partition, h.producer_id.0, h.start_offset.0))
            .collect();
        return Ok(Resolution::Pending(format!("hanging: {}", names.join(", "))));
    }
    Ok(Resolution::Resolved)
}

/// Reads `key` from the beginning up to its last stable offset (waiting, until the
/// deadline, for the LSO to reach the high watermark) with a fresh read_committed
/// consumer.
pub(crate) async fn read_key(ctx: &WorkloadCtx, key: &Key) -> anyhow::Result<Vec<Record>> {
    let admin = Admin::new(client_config(&ctx.topology)?)?;
    let tp = tp_of(key);
    let end = loop {
        let o = admin.partition_offsets(&tp.topic, tp.partition).await?;
        if o.last_stable_offset >= o.high_watermark {
            break o.last_stable_offset;
        }
        if ctx.done() {
            bail!(
                "{key}: LSO {} below high watermark {}",
                o.last_stable_offset.0,
                o.high_watermark.0
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut consumer = Consumer::new(consumer_config(&ctx.topology)?)?;
    consumer.assign(std::slice::from_ref(&tp))?;
    consumer.seek_to_beginning(std::slice::from_ref(&tp)).await?;
    let mut records = Vec::new();
    for _ in 0..FINAL_POLLS_MAX {
        if consumer.position(&tp).is_some_and(|p| p >= end) {
            break;
        }
        if ctx.done() {
            bail!("{key}: out of time at {:?} (end {})", consumer.position(&tp), end.0);
        }
        let polled = consumer.poll(Duration::from_millis(500)).await?;
        for (_, mut r) in reads_of(&polled)? {
            records.append(&mut r);
        }
    }
    let _ = consumer.close().await;
    Ok(records)
}

impl Workload for Queue {
    fn name(&self) -> &'static str {
        "queue"
    }

    async fn setup(&self, topology: &Topology) -> anyhow::Result<()> {
        let topics: Vec<(&str, u32)> = TOPICS.iter().map(|t| (*t, PARTITIONS)).collect();
        create_topics(topology, &topics).await?;
        self.groups.store(probe_groups(topology).await?, Ordering::SeqCst);
        Ok(())
    }

    async fn run(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        *self.generator.lock().unwrap() = Some(QueueGen::new(gen_config(), ctx.rng.fork(7)));
        let groups = self.groups.load(Ordering::SeqCst);
        let mut workers = tokio::task::JoinSet::new();
        for slot in 0..ctx.concurrency as u64 {
            let subscribe = groups && slot % 2 == 1;
            workers.spawn(worker(ctx.clone(), slot, subscribe, self.generator.clone()));
        }
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        Ok(())
    }

    async fn resolved(&self, topology: &Topology) -> anyhow::Result<Resolution> {
        resolution(topology, &TOPICS).await
    }

    async fn final_reads(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        let keys: Vec<Key> = gen_config_keys();
        final_reads_of(&ctx, &keys).await
    }
}

fn gen_config_keys() -> Vec<Key> {
    TOPICS.iter().flat_map(|t| (0..PARTITIONS).map(move |p| key_of(t, p))).collect()
}

/// One `final-poll` per key, each from a fresh consumer.
pub(crate) async fn final_reads_of(ctx: &WorkloadCtx, keys: &[Key]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let invocation = ctx.recorder.invoke(
            FINAL_PROCESS_BASE + i as u64,
            F::FinalPoll,
            OpValue::Mops(vec![Mop::Poll { reads: BTreeMap::new() }]),
        );
        match read_key(ctx, key).await {
            Ok(records) => {
                let reads = [(key.clone(), records)].into_iter().collect();
                invocation.finish(OpType::Ok, OpValue::Mops(vec![Mop::Poll { reads }]), None);
            }
            Err(e) => {
                let error = format!("{e:#}");
                invocation.finish(OpType::Fail, OpValue::Mops(Vec::new()), Some(error.clone()));
                failed.push(format!("{key}: {error}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("final reads failed: {}", failed.join("; "));
    }
    Ok(())
}

/// A slot's client: its producer and consumer, and what the consumer reads.
struct Client {
    producer: TransactionalProducer,
    consumer: Consumer,
    /// Keys whose assignment changed since the last operation took them.
    rebalanced: Arc<Mutex<Vec<Key>>>,
}

impl Client {
    async fn new(ctx: &WorkloadCtx, slot: u64) -> Result<Client, String> {
        let config = producer_config(&ctx.topology).map_err(|e| format!("{e:#}"))?;
        let producer = TransactionalProducer::new(config, &format!("queue-{slot}"))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(OP_TIMEOUT, producer.init_transactions()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("init_transactions: {e}")),
            Err(_) => return Err(format!("init_transactions: no answer in {OP_TIMEOUT:?}")),
        }
        let config = consumer_config(&ctx.topology).map_err(|e| format!("{e:#}"))?;
        let mut consumer = Consumer::new(config).map_err(|e| e.to_string())?;
        let rebalanced: Arc<Mutex<Vec<Key>>> = Arc::default();
        let sink = rebalanced.clone();
        consumer.set_rebalance_listener(move |change| {
            let tps = match change {
                Rebalance::Revoked(tps) | Rebalance::Assigned(tps) => tps,
            };
            let mut sink = sink.lock().unwrap();
            sink.extend(tps.iter().map(|tp| key_of(&tp.topic, tp.partition)));
        });
        Ok(Client { producer, consumer, rebalanced })
    }

    fn take_rebalanced(&self) -> Vec<Key> {
        let mut keys = std::mem::take(&mut *self.rebalanced.lock().unwrap());
        keys.sort();
        keys.dedup();
        keys
    }
}

/// How a transaction ended.
#[derive(Debug)]
pub(crate) enum TxnEnd {
    Committed,
    /// Certainly not committed; `usable`: the client may go on.
    Aborted {
        error: Option<String>,
        usable: bool,
    },
    /// The commit's outcome is unknown.
    Unknown(String),
}

/// Ends the open transaction with an abort: not committed whatever the abort's
/// own outcome (only a commit request commits), but a failed abort leaves the
/// producer in a state the slot does not reuse.
pub(crate) async fn abort(producer: &TransactionalProducer, error: Option<String>) -> TxnEnd {
    match tokio::time::timeout(OP_TIMEOUT, producer.abort_transaction()).await {
        Ok(Ok(())) => TxnEnd::Aborted { error, usable: true },
        Ok(Err(e)) => TxnEnd::Aborted {
            error: Some(format!("{}; abort: {e}", error.unwrap_or_default())),
            usable: false,
        },
        Err(_) => TxnEnd::Aborted {
            error: Some(format!("{}; abort timed out", error.unwrap_or_default())),
            usable: false,
        },
    }
}

/// Commits: ok, abortable (abort → not committed), or unknown.
pub(crate) async fn commit(producer: &TransactionalProducer) -> TxnEnd {
    match tokio::time::timeout(OP_TIMEOUT, producer.commit_transaction()).await {
        Ok(Ok(())) => TxnEnd::Committed,
        Ok(Err(e)) if e.is_abortable() => abort(producer, Some(format!("commit: {e}"))).await,
        Ok(Err(e)) => TxnEnd::Unknown(format!("commit: {e}")),
        Err(_) => TxnEnd::Unknown(format!("commit: no answer in {OP_TIMEOUT:?}")),
    }
}

fn poll_error(e: &ClientError) -> String {
    format!("poll: {e}")
}

/// Runs one planned transaction; returns its completion's type, value, error, and
/// whether the client may be reused.
async fn run_txn(
    client: &mut Client,
    mops: &[Mop],
    abort_on_purpose: bool,
) -> (OpType, Vec<Mop>, Option<String>, bool) {
    let values: Vec<Option<(String, TopicPartition)>> = mops
        .iter()
        .map(|m| match m {
            Mop::Send { key, value, .. } => Some((value.0.to_string(), tp_of(key))),
            Mop::Poll { .. } => None,
        })
        .collect();
    if let Err(e) = client.producer.begin_transaction() {
        return (OpType::Fail, mops.to_vec(), Some(format!("begin: {e}")), false);
    }
    let mut done: Vec<Mop> = Vec::with_capacity(mops.len());
    let mut acks = Vec::new();
    let mut failure: Option<String> = None;
    for (mop, value) in mops.iter().zip(&values) {
        match (mop, value) {
            (Mop::Send { .. }, Some((text, tp))) => {
                let ack = client
                    .producer
                    .send(ProducerRecord::new(&tp.topic, text.as_str()).partition(tp.partition));
                acks.push(Box::pin(ack));
                done.push(mop.clone());
            }
            (Mop::Poll { .. }, _) if failure.is_none() => {
                match client.consumer.poll(POLL_WAIT).await {
                    Ok(records) => match reads_of(&records) {
                        Ok(reads) => done.push(Mop::Poll { reads }),
                        Err(e) => {
                            failure = Some(format!("{e:#}"));
                            done.push(Mop::Poll { reads: BTreeMap::new() });
                        }
                    },
                    Err(e) => {
                        failure = Some(poll_error(&e));
                        done.push(Mop::Poll { reads: BTreeMap::new() });
                    }
                }
            }
            _ => done.push(mop.clone()),
        }
    }
    let end = if let Some(error) = failure {
        abort(&client.producer, Some(error)).await
    } else if abort_on_purpose {
        abort(&client.producer, Some("aborted on purpose".into())).await
    } else {
        commit(&client.producer).await
    };
    match end {
        TxnEnd::Committed => {
            // The acks resolved with the commit's flush; their offsets are known.
            let mut offsets = Vec::with_capacity(acks.len());
            for ack in acks {
                offsets.push(match tokio::time::timeout(Duration::from_secs(1), ack).await {
                    Ok(Ok(meta)) => Some(Offset(meta.offset.0 as u64)),
                    Ok(Err(e)) => {
                        eprintln!("queue: committed transaction's send failed: {e}");
                        None
                    }
                    Err(_) => {
                        eprintln!("queue: committed transaction's send unacknowledged after 1 s");
                        None
                    }
                });
            }
            let mut offsets = offsets.into_iter();
            for mop in &mut done {
                if let Mop::Send { offset, .. } = mop {
                    *offset = offsets.next().flatten();
                }
            }
            (OpType::Ok, done, None, true)
        }
        TxnEnd::Aborted { error, usable } => {
            drop(acks);
            (OpType::Fail, done, error, usable)
        }
        TxnEnd::Unknown(error) => {
            drop(acks);
            (OpType::Info, done, Some(error), false)
        }
    }
}

async fn worker(
    ctx: WorkloadCtx,
    slot: u64,
    subscribe_mode: bool,
    generator: Arc<Mutex<Option<QueueGen>>>,
) -> anyhow::Result<()> {
    let mut rng = ctx.rng.fork(slot);
    let mut process = slot;
    let mut client: Option<Client> = None;
    let all_keys = gen_config_keys();
    for _ in 0..OPS_PER_SLOT_MAX {
        if ctx.done() {
            break;
        }
        let mut c = match client.take() {
            Some(c) => c,
            None => match Client::new(&ctx, slot).await {
                Ok(mut c) => {
                    // The first operation of every new client says what it reads.
                    let first = if subscribe_mode {
                        Planned::Subscribe {
                            topics: TOPICS.iter().map(|t| t.to_string()).collect(),
                        }
                    } else {
                        Planned::Assign { keys: all_keys.clone(), seek_to_beginning: false }
                    };
                    if !change_reads(&ctx, process, &mut c, first, subscribe_mode) {
                        process = ctx.next_process(process);
                        continue;
                    }
                    c
                }
                Err(e) => {
                    eprintln!("queue: slot {slot}: new client: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(RECREATE_BACKOFF) => {}
                        _ = ctx.cancel.cancelled() => {}
                    }
                    continue;
                }
            },
        };
        if ctx.pace(&mut rng).await {
            client = Some(c);
            break;
        }
        let planned = generator.lock().unwrap().as_mut().expect("generator set").next_op();
        match planned {
            Planned::Txn { f, mops, abort } => {
                let invocation = ctx.recorder.invoke(process, f, OpValue::Mops(mops.clone()));
                let started = Instant::now();
                let ran = tokio::time::timeout(OP_TIMEOUT * 2, run_txn(&mut c, &mops, abort)).await;
                let rebalance = c.take_rebalanced();
                let (kind, value, error, usable) = match ran {
                    Ok(outcome) => outcome,
                    Err(_) => (
                        OpType::Info,
                        mops.clone(),
                        Some(format!("no outcome in {:?}", started.elapsed())),
                        false,
                    ),
                };
                invocation.finish_with(kind, OpValue::Mops(value), error, rebalance);
                if kind == OpType::Info {
                    process = ctx.next_process(process);
                }
                if usable {
                    client = Some(c);
                } else if kind != OpType::Info {
                    // A client torn down after a certain outcome: its successor is a
                    // new process too, so no consumer position carries over.
                    process = ctx.next_process(process);
                }
            }
            plan @ (Planned::Assign { .. } | Planned::Subscribe { .. }) => {
                if change_reads(&ctx, process, &mut c, plan, subscribe_mode) {
                    client = Some(c);
                } else {
                    process = ctx.next_process(process);
                }
            }
        }
    }
    if let Some(mut c) = client {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.consumer.close()).await;
    }
    Ok(())
}

/// Carries out an assign or subscribe (converted to the slot's mode: an assign-mode
/// slot assigns the keys of the topics it was asked to subscribe to, a
/// subscribe-mode slot subscribes to the topics of the keys it was asked to
/// assign) and records it. Returns whether the client is still usable.
fn change_reads(
    ctx: &WorkloadCtx,
    process: u64,
    client: &mut Client,
    plan: Planned,
    subscribe_mode: bool,
) -> bool {
    let topics_keys = |topics: &[String]| -> Vec<Key> {
        topics.iter().flat_map(|t| (0..PARTITIONS).map(move |p| key_of(t, p))).collect()
    };
    let (f, keys, topics) = match (plan, subscribe_mode) {
        (Planned::Assign { keys, .. }, false) => (F::Assign, keys, Vec::new()),
        (Planned::Subscribe { topics }, false) => (F::Assign, topics_keys(&topics), Vec::new()),
        (Planned::Assign { keys, .. }, true) => {
            let mut topics: Vec<String> = keys.iter().map(|k| k.topic().to_string()).collect();
            topics.sort();
            topics.dedup();
            (F::Subscribe, topics_keys(&topics), topics)
        }
        (Planned::Subscribe { topics }, true) => (F::Subscribe, topics_keys(&topics), topics),
        (Planned::Txn { .. }, _) => unreachable!("not a change of reads"),
    };
    let invocation = ctx.recorder.invoke(process, f.clone(), OpValue::Keys(keys.clone()));
    let result = if f == F::Assign {
        let tps: Vec<TopicPartition> = keys.iter().map(tp_of).collect();
        client.consumer.assign(&tps)
    } else {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        client.consumer.subscribe(&topics, GROUP)
    };
    // A subscription's rebalances are reported by the polls that carry them out.
    client.take_rebalanced();
    match result {
        Ok(()) => {
            invocation.finish(OpType::Ok, OpValue::Keys(keys), None);
            true
        }
        Err(e) => {
            invocation.finish(OpType::Fail, OpValue::Keys(keys), Some(e.to_string()));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::recorder::Recorder;
    use bytes::Bytes;

    fn record(topic: &str, partition: u32, offset: i64, value: &str) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from(topic),
            partition,
            offset: xo_client::Offset(offset),
            key: None,
            value: Some(Bytes::from(value.to_string())),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    // Proves polled records become history reads per key in the order returned, and
    // a value that is not an integer is an error rather than a silent skip.
    #[test]
    fn reads_group_records_per_key_in_order() {
        let reads =
            reads_of(&[record("t0", 1, 7, "3"), record("t1", 0, 2, "9"), record("t0", 1, 9, "4")])
                .unwrap();
        assert_eq!(reads.len(), 2);
        assert_eq!(
            reads[&Key::new("t0/1")],
            vec![
                Record { offset: Offset(7), value: Val(3) },
                Record { offset: Offset(9), value: Val(4) }
            ]
        );
        assert!(reads_of(&[record("t0", 0, 0, "x")]).is_err());
    }

    // Proves the shapes this workload records (txn with sends and polls, assign,
    // subscribe with a rebalance, final-poll) serialise to what history.rs documents
    // and parse back unchanged.
    #[test]
    fn recorded_shapes_parse_as_history_documents() {
        let r = Recorder::new();
        let send = |offset| Mop::Send { key: Key::new("t0/1"), value: Val(17), offset };
        let a = r.invoke(
            3,
            F::Txn,
            OpValue::Mops(vec![send(None), Mop::Poll { reads: BTreeMap::new() }]),
        );
        let reads: BTreeMap<Key, Vec<Record>> =
            [(Key::new("t0/2"), vec![Record { offset: Offset(7), value: Val(3) }])]
                .into_iter()
                .collect();
        a.finish_with(
            OpType::Ok,
            OpValue::Mops(vec![send(Some(Offset(40))), Mop::Poll { reads }]),
            None,
            vec![Key::new("t0/2")],
        );
        let b = r.invoke(4, F::Subscribe, OpValue::Keys(vec![Key::new("t1/0")]));
        b.finish(OpType::Ok, OpValue::Keys(vec![Key::new("t1/0")]), None);
        let text = r.history().unwrap().to_jsonl();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(r#""value":[["send","t0/1",17],["poll",{}]]"#), "{}", lines[0]);
        assert!(
            lines[1].contains(r#""value":[["send","t0/1",[40,17]],["poll",{"t0/2":[[7,3]]}]]"#),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(r#""rebalance":["t0/2"]"#), "{}", lines[1]);
        assert!(lines[3].contains(r#""f":"subscribe""#) && lines[3].contains(r#"["t1/0"]"#));
        let parsed = History::from_jsonl(&text).unwrap();
        assert_eq!(parsed, r.history().unwrap());
        assert_eq!(parsed.ops[1].rebalance, vec![Key::new("t0/2")]);
        assert_eq!(parsed.operations().unwrap().len(), 2);
    }

    #[test]
    fn keys_cover_both_topics() {
        let keys = gen_config_keys();
        assert_eq!(keys.len(), 8);
        assert_eq!(tp_of(&keys[5]), TopicPartition::new("t1", 1));
    }
}
