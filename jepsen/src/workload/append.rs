//! `append`: a data workload that needs no client library. Each partition server
//! gets one partition (`append-<node>/0`); processes append unique integers to
//! random partitions with plain (non-idempotent, never retried) raw `Produce` calls,
//! recorded as `send` operations with the offset the server acknowledged, and after
//! the heal every partition is read back from offset 0 with `Fetch` into
//! `final-poll` operations. The checker then proves what kill -9 and pauses must not
//! break: no acknowledged write lost (`lost-write`, `unseen`), none written twice
//! (`duplicate`), no offset holding two values (`inconsistent-offsets`).
//!
//! It stands in for `queue` until the client library exists: no transactions, no
//! consumers, no coordinator needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};
use xo_proto::batch::{BatchBuilder, BatchMeta, decode_batch};
use xo_proto::partition::partition_service_client::PartitionServiceClient;
use xo_proto::partition::{
    CreatePartitionRequest, ErrorCode, FetchRequest, IsolationLevel, PartitionBatch,
    PartitionConfig, ProduceRequest,
};

use super::{Workload, WorkloadCtx, is_refused};
use crate::history::{F, Key, Mop, Offset, OpType, OpValue, Record, Val};
use crate::topology::{Node, Topology};

/// One produce's whole budget.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Operations one process may invoke in one run: a bound on its loop.
pub const OPS_PER_PROCESS_MAX: u64 = 10_000_000;
/// Tries to create a partition at setup (200 ms apart).
pub const SETUP_TRIES_MAX: usize = 50;
/// Fetches while reading one partition back: far above any run's record count at
/// one batch per record (the server returns up to FETCH_BYTES_MAX per fetch).
pub const FETCHES_MAX: usize = 1_000_000;
pub const FETCH_BYTES_MAX: u32 = 1 << 20;
/// Final reads are recorded by processes from here on, apart from the workers'.
pub const FINAL_PROCESS_BASE: u64 = 1 << 40;

#[derive(Debug, Default)]
pub struct Append {
    /// The next value to append, shared by the workers: values are unique across
    /// all keys.
    next_value: Arc<AtomicU64>,
}

const TOPIC_PREFIX: &str = "append-";

fn topic_of(node: &Node) -> String {
    format!("{TOPIC_PREFIX}{}", node.name)
}

fn key_of(node: &Node) -> Key {
    Key::new(format!("{}/0", topic_of(node)))
}

async fn client(node: &Node, timeout: Duration) -> anyhow::Result<PartitionServiceClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{}", node.addr))?
        .connect_timeout(timeout)
        .connect()
        .await?;
    Ok(PartitionServiceClient::new(channel))
}

impl Workload for Append {
    fn name(&self) -> &'static str {
        "append"
    }

    fn needs_coordinator(&self) -> bool {
        false
    }

    async fn setup(&self, topology: &Topology) -> anyhow::Result<()> {
        for node in topology.partition_servers() {
            let mut last_error = String::new();
            let mut created = false;
            for _ in 0..SETUP_TRIES_MAX {
                let request = CreatePartitionRequest {
                    topic: topic_of(node),
                    partition: 0,
                    config: Some(PartitionConfig::default()),
                };
                match client(node, PRODUCE_TIMEOUT).await {
                    Ok(mut c) => match c.create_partition(request).await {
                        Ok(r) if r.get_ref().error == ErrorCode::None as i32 => {
                            created = true;
                            break;
                        }
                        Ok(r) => last_error = r.into_inner().error_message,
                        Err(s) => last_error = s.to_string(),
                    },
                    Err(e) => last_error = format!("{e:#}"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !created {
                bail!("creating {} on {}: {last_error}", topic_of(node), node.name);
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        let mut workers = tokio::task::JoinSet::new();
        for process in 0..ctx.concurrency as u64 {
            workers.spawn(worker(ctx.clone(), process, self.next_value.clone()));
        }
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        Ok(())
    }

    async fn final_reads(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        for (i, node) in ctx.topology.partition_servers().enumerate() {
            let key = key_of(node);
            let process = FINAL_PROCESS_BASE + i as u64;
            let invocation = ctx.recorder.invoke(
                process,
                F::FinalPoll,
                OpValue::Mops(vec![Mop::Poll { reads: Default::default() }]),
            );
            match read_all(node, &ctx).await {
                Ok(records) => {
                    let reads = [(key, records)].into_iter().collect();
                    invocation.finish(OpType::Ok, OpValue::Mops(vec![Mop::Poll { reads }]), None);
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    invocation.finish(OpType::Fail, OpValue::Mops(Vec::new()), Some(error.clone()));
                    bail!("final read of {} on {}: {error}", key, node.name);
                }
            }
        }
        Ok(())
    }
}

enum Produced {
    Acked(Offset),
    Rejected(String),
    Unknown(String),
}

async fn worker(
    ctx: WorkloadCtx,
    first_process: u64,
    next_value: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut rng = ctx.rng.fork(first_process);
    let mut process = first_process;
    let nodes: Vec<Node> = ctx.topology.partition_servers().cloned().collect();
    assert!(!nodes.is_empty(), "append needs a partition server");
    for _ in 0..OPS_PER_PROCESS_MAX {
        if ctx.pace(&mut rng).await {
            break;
        }
        let node = rng.pick(&nodes);
        let key = key_of(node);
        let value = next_value.fetch_add(1, Ordering::Relaxed);
        let send = |offset| Mop::Send { key: key.clone(), value: Val(value), offset };
        let invocation = ctx.recorder.invoke(process, F::Send, OpValue::Mops(vec![send(None)]));
        let produced = tokio::time::timeout(PRODUCE_TIMEOUT, produce(node, value))
            .await
            .unwrap_or_else(|_| Produced::Unknown(format!("no answer in {PRODUCE_TIMEOUT:?}")));
        match produced {
            Produced::Acked(offset) => {
                invocation.finish(OpType::Ok, OpValue::Mops(vec![send(Some(offset))]), None);
            }
            Produced::Rejected(error) => {
                invocation.finish(OpType::Fail, OpValue::Mops(vec![send(None)]), Some(error));
            }
            Produced::Unknown(error) => {
                invocation.finish(OpType::Info, OpValue::Mops(vec![send(None)]), Some(error));
                process = ctx.next_process(process);
            }
        }
    }
    Ok(())
}

/// Error codes that mean the batch was not appended.
fn rejected(code: i32) -> bool {
    [
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::CorruptMessage,
        ErrorCode::InvalidRecord,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::NotLeader,
    ]
    .iter()
    .any(|c| *c as i32 == code)
}

async fn produce(node: &Node, value: u64) -> Produced {
    let mut batch = BatchBuilder::new(BatchMeta::plain(0));
    batch.push(0, None, Some(value.to_string().as_bytes()), &[]);
    let batch = batch.finish().expect("a one-record batch encodes");
    let mut c = match client(node, PRODUCE_TIMEOUT).await {
        Ok(c) => c,
        Err(e) if is_refused(e.as_ref()) => return Produced::Rejected(format!("connect: {e:#}")),
        Err(e) => return Produced::Unknown(format!("connect: {e:#}")),
    };
    let request = ProduceRequest {
        batches: vec![PartitionBatch { topic: topic_of(node), partition: 0, batch }],
    };
    match c.produce(request).await {
        Ok(response) => {
            let Some(result) = response.into_inner().results.into_iter().next() else {
                return Produced::Unknown("empty produce response".into());
            };
            if result.error == ErrorCode::None as i32 {
                assert!(result.base_offset >= 0, "an acknowledged batch has an offset");
                Produced::Acked(Offset(result.base_offset as u64))
            } else if rejected(result.error) {
                Produced::Rejected(format!("{}: {}", result.error, result.error_message))
            } else {
                Produced::Unknown(format!("{}: {}", result.error, result.error_message))
            }
        }
        Err(s) if is_refused(&s) => Produced::Rejected(s.to_string()),
        Err(s) => Produced::Unknown(s.to_string()),
    }
}

/// Every data record of the node's partition, from offset 0 to the high watermark.
async fn read_all(node: &Node, ctx: &WorkloadCtx) -> anyhow::Result<Vec<Record>> {
    let mut c = client(node, PRODUCE_TIMEOUT).await?;
    let mut records = Vec::new();
    let mut offset: i64 = 0;
    for _ in 0..FETCHES_MAX {
        if ctx.done() {
            bail!("out of time at offset {offset}");
        }
        let request = FetchRequest {
            topic: topic_of(node),
            partition: 0,
            offset,
            max_bytes: FETCH_BYTES_MAX,
            max_wait_ms: 0,
            isolation: IsolationLevel::ReadCommitted as i32,
        };
        let response = tokio::time::timeout(PRODUCE_TIMEOUT, c.fetch(request))
            .await
            .context("fetch timed out")??
            .into_inner();
        if response.error != ErrorCode::None as i32 {
            bail!("fetch at {offset}: {} {}", response.error, response.error_message);
        }
        for batch in &response.batches {
            let decoded = decode_batch(&Bytes::clone(batch)).context("decoding a fetched batch")?;
            if decoded.header.is_control() {
                continue;
            }
            for record in &decoded.records {
                let text = record.value.as_deref().unwrap_or_default();
                let value: u64 = std::str::from_utf8(text)?.parse().context("a record's value")?;
                records.push(Record {
                    offset: Offset(record.offset(&decoded.header).0 as u64),
                    value: Val(value),
                });
            }
        }
        assert!(response.next_offset >= offset, "fetch went back");
        if response.next_offset >= response.high_watermark || response.next_offset == offset {
            return Ok(records);
        }
        offset = response.next_offset;
    }
    bail!("more than FETCHES_MAX fetches")
}
