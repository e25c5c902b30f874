//! One background task per assigned partition: long-poll Fetch from a
//! position on, handing each answer that carries something to the consumer
//! through a bounded channel (so at most a few answers per consumer wait in
//! memory). Transient failures are retried here, with a metadata refresh
//! when the partition may have moved; anything else is handed on and ends
//! the task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xo_proto::Offset;
use xo_proto::partition::{FetchRequest, FetchResponse};

use crate::cluster::Cluster;
use crate::error::Error;

/// Fetch answers buffered per consumer before fetchers wait.
pub const FETCH_ANSWERS_BUFFERED_MAX: usize = 16;

/// One answer of a fetcher.
pub(crate) struct FetchChunk {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The fetcher's generation: answers of a fetcher replaced by a seek
    /// are recognised and dropped.
    pub epoch: u64,
    /// The offset the fetch asked for.
    pub requested: Offset,
    pub result: Result<FetchResponse, Error>,
}

#[derive(Clone, Copy)]
pub(crate) struct FetchSettings {
    pub isolation: i32,
    pub fetch_bytes: u32,
    pub fetch_wait: Duration,
}

pub(crate) fn spawn(
    cluster: Arc<Cluster>,
    topic: Arc<str>,
    partition: u32,
    start: Offset,
    epoch: u64,
    settings: FetchSettings,
    tx: mpsc::Sender<FetchChunk>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut offset = start;
        let mut failures = 0u32;
        loop {
            let result = fetch_once(&cluster, &topic, partition, offset, settings).await;
            let chunk = |result| FetchChunk {
                topic: topic.clone(),
                partition,
                epoch,
                requested: offset,
                result,
            };
            match result {
                Ok(response) => {
                    failures = 0;
                    let next = Offset(response.next_offset);
                    if response.batches.is_empty() && next == offset {
                        continue; // the long poll ended empty
                    }
                    if next < offset {
                        let e = Error::Rpc {
                            code: tonic::Code::Internal,
                            message: format!("fetch from {offset} answered next offset {next}"),
                        };
                        let _ = tx.send(chunk(Err(e))).await;
                        return;
                    }
                    if tx.send(chunk(Ok(response))).await.is_err() {
                        return; // the consumer is gone
                    }
                    offset = next;
                }
                Err(e) if e.is_retriable() => {
                    tracing::debug!(%topic, partition, error = %e, "fetch failed; retrying");
                    if e.invalidates_metadata() {
                        let _ = cluster.refresh(&[&topic]).await;
                    }
                    tokio::time::sleep(cluster.config.backoff(failures)).await;
                    failures = failures.saturating_add(1);
                }
                Err(e) => {
                    let _ = tx.send(chunk(Err(e))).await;
                    return;
                }
            }
        }
    })
}

async fn fetch_once(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    offset: Offset,
    settings: FetchSettings,
) -> Result<FetchResponse, Error> {
    let addr = cluster.address(topic, partition).await?;
    let mut client = cluster.partition_client(&addr)?;
    let request = FetchRequest {
        topic: topic.to_string(),
        partition,
        offset: offset.0,
        max_bytes: settings.fetch_bytes,
        max_wait_ms: settings.fetch_wait.as_millis() as u32,
        isolation: settings.isolation,
    };
    let timeout = settings.fetch_wait + cluster.config.request_timeout;
    let response = match tokio::time::timeout(timeout, client.fetch(request)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return Err(Error::from_status(&addr, status)),
        Err(_) => {
            return Err(Error::Transport {
                addr: addr.to_string(),
                message: format!("no fetch answer within {timeout:?}"),
            });
        }
    };
    match Error::from_partition(topic, partition, response.error, response.error_message.clone()) {
        None => Ok(response),
        Some(e) => Err(e),
    }
}
