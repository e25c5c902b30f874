//! `noop` / `ping`: a workload that needs no client library. Each process pings a
//! random node with one cheap gRPC call — `DescribePartitions` on a partition server,
//! `Metadata` on the coordinator — and records `ping` operations: `ok` when the node
//! answered (any gRPC status counts: it is alive), `fail` when the connection was
//! refused (certainly not served), `info` on a timeout (a paused or stuck node).
//! It checks no safety property; it exercises the runner, the nemesis and the
//! report end to end, and its latency plot shows every fault window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tonic::transport::{Channel, Endpoint};
use xo_proto::coordinator::MetadataRequest;
use xo_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use xo_proto::partition::DescribePartitionsRequest;
use xo_proto::partition::partition_service_client::PartitionServiceClient;

use super::{Workload, WorkloadCtx, is_refused};
use crate::history::{F, OpType, OpValue};
use crate::topology::{Node, NodeId, Role, Topology};

/// One ping's whole budget: connect and call.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Operations one process may invoke in one run: a bound on its loop.
pub const OPS_PER_PROCESS_MAX: u64 = 10_000_000;

#[derive(Debug, Default)]
pub struct Ping;

/// The outcome of one ping.
enum Pinged {
    Answered(String),
    Refused(String),
    TimedOut,
}

impl Workload for Ping {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn needs_coordinator(&self) -> bool {
        false
    }

    async fn setup(&self, _topology: &Topology) -> anyhow::Result<()> {
        Ok(())
    }

    async fn run(&self, ctx: WorkloadCtx) -> anyhow::Result<()> {
        let mut workers = tokio::task::JoinSet::new();
        for process in 0..ctx.concurrency as u64 {
            let ctx = ctx.clone();
            workers.spawn(worker(ctx, process));
        }
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        Ok(())
    }

    async fn final_reads(&self, _ctx: WorkloadCtx) -> anyhow::Result<()> {
        Ok(())
    }
}

async fn worker(ctx: WorkloadCtx, first_process: u64) -> anyhow::Result<()> {
    let mut rng = ctx.rng.fork(first_process);
    let mut process = first_process;
    let mut channels: HashMap<NodeId, Channel> = HashMap::new();
    for _ in 0..OPS_PER_PROCESS_MAX {
        if ctx.pace(&mut rng).await {
            break;
        }
        let node = rng.pick(&ctx.topology.nodes).clone();
        let invocation =
            ctx.recorder.invoke(process, ping_f(), OpValue::Other(json!({"node": node.name})));
        let started = Instant::now();
        let outcome = tokio::time::timeout(PING_TIMEOUT, ping(&node, &mut channels))
            .await
            .unwrap_or(Pinged::TimedOut);
        let value =
            |extra: serde_json::Value| OpValue::Other(json!({"node": node.name, "result": extra}));
        match outcome {
            Pinged::Answered(status) => {
                invocation.finish(OpType::Ok, value(json!(status)), None);
            }
            Pinged::Refused(error) => {
                channels.remove(&node.id);
                invocation.finish(OpType::Fail, value(json!("refused")), Some(error));
            }
            Pinged::TimedOut => {
                channels.remove(&node.id);
                let error = format!("no answer in {:?}", started.elapsed());
                invocation.finish(OpType::Info, value(json!("timeout")), Some(error));
                process = ctx.next_process(process);
            }
        }
    }
    Ok(())
}

pub fn ping_f() -> F {
    F::Other("ping".to_string())
}

async fn ping(node: &Node, channels: &mut HashMap<NodeId, Channel>) -> Pinged {
    let channel = match channels.get(&node.id) {
        Some(channel) => channel.clone(),
        None => {
            let endpoint = Endpoint::from_shared(format!("http://{}", node.addr))
                .expect("a socket address is a valid URI")
                .connect_timeout(PING_TIMEOUT);
            match endpoint.connect().await {
                Ok(channel) => {
                    channels.insert(node.id, channel.clone());
                    channel
                }
                Err(e) if is_refused(&e) => return Pinged::Refused(format!("connect: {e}")),
                Err(_) => return Pinged::TimedOut,
            }
        }
    };
    let status = match node.role {
        Role::PartitionServer => PartitionServiceClient::new(channel)
            .describe_partitions(DescribePartitionsRequest {})
            .await
            .map(|_| ()),
        Role::Coordinator => CoordinatorServiceClient::new(channel)
            .metadata(MetadataRequest::default())
            .await
            .map(|_| ()),
    };
    match status {
        Ok(()) => Pinged::Answered("ok".to_string()),
        // A status with a source came from our side of the connection, not the node.
        Err(s) if std::error::Error::source(&s).is_some() => {
            if is_refused(&s) {
                Pinged::Refused(s.to_string())
            } else {
                Pinged::TimedOut
            }
        }
        Err(s) => Pinged::Answered(format!("{:?}", s.code())),
    }
}
