//! Liveness after the heal (DESIGN §8): once every fault is removed, every
//! transaction must resolve and every partition's last stable offset must reach its
//! high watermark within the transaction timeout plus [`RECOVERY_SLACK`]. The runner
//! asks each partition server with a raw `DescribePartitions` call (it reports both
//! offsets of every partition it holds) and the workload with
//! [`Workload::resolved`]; the time until both first hold is the time to recover.

use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::transport::Endpoint;
use xo_proto::partition::DescribePartitionsRequest;
use xo_proto::partition::partition_service_client::PartitionServiceClient;

use crate::cluster::Cluster;
use crate::workload::{RECOVERY_SLACK, Resolution, Workload};

/// Between two probes.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// One probe of one server.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long past the bound the runner keeps probing, so a late recovery is measured
/// rather than only flagged: the wait is `bound * WAIT_FACTOR`.
pub const WAIT_FACTOR: u32 = 2;
/// Lagging partitions listed in results.json.
pub const LAGGING_LISTED_MAX: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub node: String,
    pub topic: String,
    pub partition: u32,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Liveness {
    /// Transaction timeout + slack: the promise.
    pub bound_ms: u64,
    pub transaction_timeout_ms: u64,
    pub slack_ms: u64,
    /// From the start of the heal until every check first held; `None` if they never
    /// did within `bound * WAIT_FACTOR`.
    pub time_to_recover_ms: Option<u64>,
    /// Recovered within the bound.
    pub ok: bool,
    pub partitions_checked: usize,
    /// Why the last probe failed, when it did.
    pub problem: Option<String>,
    /// Partitions whose LSO was still not at the high watermark at the last probe.
    pub lagging: Vec<PartitionLag>,
}

/// Probes until recovered or out of time; `healing_since` is when the heal began.
pub async fn await_recovery<W: Workload>(
    cluster: &Cluster,
    workload: &W,
    healing_since: Instant,
) -> Liveness {
    let timeout = workload.transaction_timeout();
    let bound = timeout + RECOVERY_SLACK;
    let wait_until = healing_since + bound * WAIT_FACTOR;
    let probes_max = (bound * WAIT_FACTOR).as_millis() / PROBE_INTERVAL.as_millis() + 2;
    let mut last = (Some("not probed".to_string()), Vec::new(), 0);
    let mut recovered_at = None;
    for _ in 0..probes_max {
        last = probe(cluster, workload).await;
        if last.0.is_none() {
            recovered_at = Some(healing_since.elapsed());
            break;
        }
        if Instant::now() >= wait_until {
            break;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    let (problem, mut lagging, partitions_checked) = last;
    lagging.truncate(LAGGING_LISTED_MAX);
    Liveness {
        bound_ms: bound.as_millis() as u64,
        transaction_timeout_ms: timeout.as_millis() as u64,
        slack_ms: RECOVERY_SLACK.as_millis() as u64,
        time_to_recover_ms: recovered_at.map(|d| d.as_millis() as u64),
        ok: recovered_at.is_some_and(|d| d <= bound),
        partitions_checked,
        problem,
        lagging,
    }
}

/// One probe: (the first problem, lagging partitions, partitions seen).
async fn probe<W: Workload>(
    cluster: &Cluster,
    workload: &W,
) -> (Option<String>, Vec<PartitionLag>, usize) {
    let mut lagging = Vec::new();
    let mut checked = 0;
    for node in &cluster.topology.nodes {
        if !cluster.is_running(node.id).await {
            return (Some(format!("{} is not running", node.name)), lagging, checked);
        }
    }
    for node in cluster.topology.partition_servers() {
        let described = tokio::time::timeout(PROBE_TIMEOUT, async {
            let channel = Endpoint::from_shared(format!("http://{}", node.addr))?
                .connect_timeout(PROBE_TIMEOUT)
                .connect()
                .await?;
            let response = PartitionServiceClient::new(channel)
                .describe_partitions(DescribePartitionsRequest {})
                .await?;
            anyhow::Ok(response.into_inner().partitions)
        })
        .await;
        let partitions = match described {
            Ok(Ok(partitions)) => partitions,
            Ok(Err(e)) => return (Some(format!("{}: {e:#}", node.name)), lagging, checked),
            Err(_) => {
                return (
                    Some(format!("{}: no answer in {PROBE_TIMEOUT:?}", node.name)),
                    lagging,
                    checked,
                );
            }
        };
        for p in partitions {
            checked += 1;
            // Above the high watermark would be a bug of its own: report it too.
            if p.last_stable_offset != p.high_watermark {
                lagging.push(PartitionLag {
                    node: node.name.clone(),
                    topic: p.topic,
                    partition: p.partition,
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                });
            }
        }
    }
    if let Some(p) = lagging.first() {
        let problem = format!(
            "{} partitions with LSO != high watermark, e.g. {}/{} on {}: {} < {}",
            lagging.len(),
            p.topic,
            p.partition,
            p.node,
            p.last_stable_offset,
            p.high_watermark
        );
        return (Some(problem), lagging, checked);
    }
    match workload.resolved(&cluster.topology).await {
        Ok(Resolution::Resolved) => (None, lagging, checked),
        Ok(Resolution::Pending(why)) => (Some(why), lagging, checked),
        Err(e) => (Some(format!("workload: {e:#}")), lagging, checked),
    }
}
