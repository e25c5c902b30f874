//! `pipeline`: consume-transform-produce workers with exactly-once offsets.
//!
//! - Setup fills the input topic `in` ([`INPUT_PARTITIONS`] partitions) with
//!   [`INPUT_VALUES`] values unique across all input keys, in committed transactions
//!   of a setup producer, before any fault. The run begins by recording them as
//!   `send` operations (one per input key, with the offsets the setup learnt), so
//!   the checker knows every input.
//! - Workers (one group, [`GROUP`], `subscribe` to `in`, read_committed) poll, send
//!   for every polled value `v` the value `output_value(v, attempt)` to an output key
//!   (`out0`/`out1`, 2 partitions each, picked from `v`), where `attempt` numbers the
//!   transform in the run (so a crashed attempt and its redo write different values:
//!   see `history.rs`), in a transaction that also carries the consumed
//!   positions (`send_offsets_to_transaction` with the consumer's group metadata),
//!   and commit. Each is a `transform` operation: `["poll", {in/p: ...}]` then the
//!   sends. An abortable error aborts (`fail`) and rewinds the consumer to the
//!   group's committed offsets; an unknown commit outcome is `info` and the worker's
//!   clients are replaced (new process, same transactional id, so the new producer
//!   fences the old one).
//! - Worker crashes: with probability [`CRASH_PROBABILITY`] a worker drops its
//!   producer and consumer abruptly after its sends, before the commit (recorded
//!   `info`, "crashed"), and starts over with new instances, while the nemesis
//!   kills, pauses and partitions the nodes.
//! - Final reads of the input and output keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use xo_client::{Consumer, ProducerRecord, Rebalance, TopicPartition, TransactionalProducer};

use super::queue::{
    OP_TIMEOUT, TxnEnd, abort, commit, consumer_config, create_topics, final_reads_of, key_of,
    producer_config, reads_of, resolution,
};
use super::{Resolution, Workload, WorkloadCtx};
use crate::history::{F, Key, Mop, Offset, OpType, OpValue, Val, output_value};
use crate::topology::Topology;

pub const INPUT: &str = "in";
pub const INPUT_PARTITIONS: u32 = 3;
pub const OUTPUTS: [&str; 2] = ["out0", "out1"];
pub const OUTPUT_PARTITIONS: u32 = 2;
pub const INPUT_VALUES: u64 = 6000;
// Output values carry the input in their low digits (`history::output_value`).
const _: () = assert!(INPUT_VALUES < crate::history::PIPELINE_INPUT_LIMIT);
/// Values per setup transaction.
pub const SETUP_TXN_VALUES: u64 = 200;
pub const GROUP: &str = "pipeline";
/// Records one transform takes at most.
pub const TRANSFORM_RECORDS_MAX: usize = 20;
pub const CRASH_PROBABILITY: f64 = 0.02;
pub const POLL_WAIT: Duration = Duration::from_millis(200);
pub const OPS_PER_SLOT_MAX: u64 = 10_000_000;
/// The setup producer's process number.
pub const SETUP_PROCESS: u64 = 1 << 39;

/// What setup wrote: input key → (offset, value).
type InputLog = BTreeMap<Key, Vec<(Offset, Val)>>;

#[derive(Debug, Default)]
pub struct Pipeline {
    inputs: Arc<Mutex<InputLog>>,
    /// The last transform attempt number handed out (attempts count from 1).
    attempts: Arc<AtomicU64>,
}

pub fn output_key(value: u64) -> Key {
    key_of(OUTPUTS[(value % 2) as usize], ((value / 2) % OUTPUT_PARTITIONS as u64) as u32)
}

fn all_keys() -> Vec<Key> {
    let mut keys: Vec<Key> = (0..INPUT_PARTITIONS).map(|p| key_of(INPUT, p)).collect();
    for t in OUTPUTS {
        keys.extend((0..OUTPUT_PARTITIONS).map(|p| key_of(t, p)));
    }
    keys
}

impl Workload for Pipeline {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    async fn setup(&self, topology: &Topology) -> anyhow::Result<()> {
        let mut topics = vec![(INPUT, INPUT_PARTITIONS)];
        topics.extend(OUTPUTS.iter().map(|t| (*t, OUTPUT_PARTITIONS)));
        create_topics(topology, &topics).await?;
        let producer = TransactionalProducer::new(producer_config(topology)?, "pipeline-setup")?;
        producer.init_transactions().await.context("setup producer init")?;
        let mut inputs = BTreeMap::new();
        let mut next = 1u64;
        while next <= INPUT_VALUES {
            let values: Vec<(String, u32)> = (next..(next + SETUP_TXN_VALUES)
                .min(INPUT_VALUES + 1))
                .map(|v| (v.to_string(), (v % INPUT_PARTITIONS as u64) as u32))
                .collect();
            producer.begin_transaction()?;
            let acks: Vec<_> = values
                .iter()
                .map(|(text, p)| {
                    Box::pin(producer.send(ProducerRecord::new(INPUT, text.as_str()).partition(*p)))
                })
                .collect();
            producer.commit_transaction().await.context("setup commit")?;
            for ((text, p), ack) in values.iter().zip(acks) {
                let meta = ack.await.context("setup send")?;
                inputs
                    .entry(key_of(INPUT, *p))
                    .or_insert_with(Vec::new)
                    .push((Offset(meta.offset.0 as u64), Val(text.parse()?)));
            }
            next += values.len() as u64;
        }
        let _ = producer.close().await;
        *self.inputs.lock().unwrap() = inputs;
        Ok(())
    }

    async fn run(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        let inputs = self.inputs.lock().unwrap().clone();
        for (i, (key, sent)) in inputs.iter().enumerate() {
            let process = SETUP_PROCESS + i as u64;
            let mops = |with_offsets: bool| -> Vec<Mop> {
                sent.iter()
                    .map(|(o, v)| Mop::Send {
                        key: key.clone(),
                        value: *v,
                        offset: with_offsets.then_some(*o),
                    })
                    .collect()
            };
            let invocation = ctx.recorder.invoke(process, F::Send, OpValue::Mops(mops(false)));
            invocation.finish(OpType::Ok, OpValue::Mops(mops(true)), None);
        }
        let mut workers = tokio::task::JoinSet::new();
        for slot in 0..ctx.concurrency as u64 {
            workers.spawn(worker(ctx.clone(), slot, self.attempts.clone()));
        }
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        Ok(())
    }

    async fn resolved(&self, topology: &Topology) -> anyhow::Result<Resolution> {
        let mut topics = vec![INPUT];
        topics.extend(OUTPUTS);
        resolution(topology, &topics).await
    }

    async fn final_reads(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        final_reads_of(&ctx, &all_keys()).await
    }
}

struct Worker {
    producer: TransactionalProducer,
    consumer: Consumer,
    rebalanced: Arc<Mutex<Vec<Key>>>,
}

async fn new_worker(ctx: &WorkloadCtx, slot: u64) -> anyhow::Result<Worker> {
    let producer =
        TransactionalProducer::new(producer_config(&ctx.topology)?, &format!("pipeline-{slot}"))?;
    tokio::time::timeout(OP_TIMEOUT, producer.init_transactions())
        .await
        .context("init_transactions timed out")??;
    let mut config = consumer_config(&ctx.topology)?.group(GROUP);
    config.poll_records = TRANSFORM_RECORDS_MAX;
    let mut consumer = Consumer::new(config)?;
    consumer.subscribe(&[INPUT], GROUP)?;
    let rebalanced: Arc<Mutex<Vec<Key>>> = Arc::default();
    let sink = rebalanced.clone();
    consumer.set_rebalance_listener(move |change| {
        let tps = match change {
            Rebalance::Revoked(tps) | Rebalance::Assigned(tps) => tps,
        };
        sink.lock().unwrap().extend(tps.iter().map(|tp| key_of(&tp.topic, tp.partition)));
    });
    Ok(Worker { producer, consumer, rebalanced })
}

fn take(rebalanced: &Mutex<Vec<Key>>) -> Vec<Key> {
    let mut keys = std::mem::take(&mut *rebalanced.lock().unwrap());
    keys.sort();
    keys.dedup();
    keys
}

async fn worker(ctx: WorkloadCtx, slot: u64, attempts: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut rng = ctx.rng.fork(slot);
    let mut process = slot;
    let mut current: Option<Worker> = None;
    for _ in 0..OPS_PER_SLOT_MAX {
        if ctx.pace(&mut rng).await {
            break;
        }
        let mut w = match current.take() {
            Some(w) => w,
            None => match new_worker(&ctx, slot).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("pipeline: slot {slot}: new worker: {e:#}");
                    continue;
                }
            },
        };
        // The poll before the transaction is the transform's input.
        let polled = match tokio::time::timeout(OP_TIMEOUT, w.consumer.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                // Nothing recorded yet; a failed poll (e.g. a rebalance refused)
                // leaves the consumer usable unless it is fatal.
                if e.is_fatal() {
                    eprintln!("pipeline: slot {slot}: poll: {e}");
                } else {
                    current = Some(w);
                }
                continue;
            }
            Err(_) => continue,
        };
        if polled.is_empty() {
            current = Some(w);
            continue;
        }
        let reads = reads_of(&polled)?;
        let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let outputs: Vec<(Key, Val)> = reads
            .values()
            .flatten()
            .map(|r| (output_key(r.value.0), output_value(r.value, attempt)))
            .collect();
        let mut mops = vec![Mop::Poll { reads }];
        mops.extend(outputs.iter().map(|(key, value)| Mop::Send {
            key: key.clone(),
            value: *value,
            offset: None,
        }));
        let invocation = ctx.recorder.invoke(process, F::Transform, OpValue::Mops(mops.clone()));
        let crash = rng.chance(CRASH_PROBABILITY);
        let (kind, value, error, usable) = match tokio::time::timeout(
            OP_TIMEOUT * 2,
            transform(&mut w, &outputs, &mut mops, crash),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => (OpType::Info, mops.clone(), Some("no outcome in time".into()), false),
        };
        let rebalance = take(&w.rebalanced);
        invocation.finish_with(kind, OpValue::Mops(value), error, rebalance);
        if usable {
            current = Some(w);
        } else {
            // Dropped abruptly: the successor is a new process with new instances.
            drop(w);
            process = ctx.next_process(process);
        }
    }
    if let Some(mut w) = current {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.consumer.close()).await;
    }
    Ok(())
}

async fn transform(
    w: &mut Worker,
    outputs: &[(Key, Val)],
    mops: &mut [Mop],
    crash: bool,
) -> (OpType, Vec<Mop>, Option<String>, bool) {
    if let Err(e) = w.producer.begin_transaction() {
        return (OpType::Fail, mops.to_vec(), Some(format!("begin: {e}")), false);
    }
    let texts: Vec<(String, Key)> =
        outputs.iter().map(|(key, value)| (value.to_string(), key.clone())).collect();
    let tps: Vec<TopicPartition> = texts.iter().map(|(_, k)| super::queue::tp_of(k)).collect();
    let acks: Vec<_> = texts
        .iter()
        .zip(&tps)
        .map(|((text, _), tp)| {
            Box::pin(
                w.producer
                    .send(ProducerRecord::new(&tp.topic, text.as_str()).partition(tp.partition)),
            )
        })
        .collect();
    if crash {
        return (OpType::Info, mops.to_vec(), Some("worker crashed mid-transaction".into()), false);
    }
    let offsets = w.consumer.positions();
    let group = w.consumer.group_metadata();
    let end = match w.producer.send_offsets_to_transaction(offsets, &group).await {
        Ok(()) => commit(&w.producer).await,
        Err(e) if e.is_fatal() => {
            return (OpType::Info, mops.to_vec(), Some(format!("send offsets: {e}")), false);
        }
        Err(e) => abort(&w.producer, Some(format!("send offsets: {e}"))).await,
    };
    match end {
        TxnEnd::Committed => {
            let mut got = Vec::with_capacity(acks.len());
            for ack in acks {
                got.push(match tokio::time::timeout(Duration::from_secs(1), ack).await {
                    Ok(Ok(meta)) => Some(Offset(meta.offset.0 as u64)),
                    _ => None,
                });
            }
            let mut got = got.into_iter();
            for mop in mops.iter_mut() {
                if let Mop::Send { offset, .. } = mop {
                    *offset = got.next().flatten();
                }
            }
            (OpType::Ok, mops.to_vec(), None, true)
        }
        TxnEnd::Aborted { error, usable } => {
            drop(acks);
            w.consumer.seek_to_committed();
            (OpType::Fail, mops.to_vec(), error, usable)
        }
        TxnEnd::Unknown(error) => {
            drop(acks);
            (OpType::Info, mops.to_vec(), Some(error), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves output keys spread over both output topics and their partitions and are
    // a function of the value, so a transform's sends are predictable from its input.
    #[test]
    fn output_keys_are_a_function_of_the_value() {
        let keys: std::collections::BTreeSet<Key> = (1..=8).map(output_key).collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(output_key(5), output_key(5));
        assert_eq!(all_keys().len(), 7);
    }
}
