//! The coordinator's client of the partition servers: one lazily connected
//! gRPC channel per address, and the four calls the coordinator makes
//! (CreatePartition, DeletePartition, DescribeProducers, WriteTxnMarkers).
//! The partition service's wire types stop here: callers see the
//! coordinator's own types.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use xo_proto::partition::partition_service_client::PartitionServiceClient;
use xo_proto::partition::{
    CreatePartitionRequest, DeletePartitionRequest, DescribeProducersRequest, ErrorCode,
    PartitionConfig, TopicPartition as WirePartition, TxnMarker, WriteTxnMarkersRequest,
};

use crate::markers::{MarkerAck, MarkerSender, MarkerSet};
use crate::store::TopicSettings;
use crate::txn_metadata::TopicPartition;

/// A partition-management call that does not answer within this fails.
pub const PARTITION_CALL_TIMEOUT_MS_MAX: u64 = 10_000;
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Every channel to a partition server pings its connection (HTTP/2) this
/// often, idle or not, and drops it when a ping is not answered within
/// [`KEEP_ALIVE_TIMEOUT_MS`]; the next call reconnects. Without it a
/// connection gone silent (a partition TCP does not ride out, a host lost
/// without a reset) keeps every later call on it — marker retries included —
/// waiting until the kernel gives up on it, many minutes later.
const KEEP_ALIVE_INTERVAL_MS: u64 = 2_000;
const KEEP_ALIVE_TIMEOUT_MS: u64 = 4_000;

/// One producer's state in a partition (DescribeProducers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerInPartition {
    pub producer_id: i64,
    pub producer_epoch: i32,
    /// `None` when the producer has no open transaction there.
    pub txn_start_offset: Option<i64>,
}

/// Largest answer accepted from a partition server (a fetch returns at least
/// one whole batch, which may be larger than asked for).
const ANSWER_BYTES_MAX: usize = 64 << 20;

/// The coordinator's channels to partition servers: one per address,
/// connected lazily through [`crate::hooks::connect_lazy`] (the simulation's
/// transport seam), with the keep-alive above. Shared by the
/// partition-management calls here and the groups' `__consumer_offsets`
/// reads and writes.
#[derive(Default)]
pub(crate) struct PartitionChannels {
    /// std Mutex: held only to clone a channel out, never across a call.
    channels: Mutex<HashMap<String, Channel>>,
}

impl PartitionChannels {
    pub(crate) fn client(&self, address: &str) -> Result<PartitionServiceClient<Channel>, String> {
        let mut channels = self.channels.lock().unwrap();
        let channel = match channels.get(address) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{address}"))
                    .map_err(|e| format!("bad partition server address {address:?}: {e}"))?
                    .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
                    .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_TIMEOUT_MS))
                    .keep_alive_while_idle(true);
                let channel = crate::hooks::connect_lazy(endpoint);
                channels.insert(address.to_string(), channel.clone());
                channel
            }
        };
        Ok(PartitionServiceClient::new(channel).max_decoding_message_size(ANSWER_BYTES_MAX))
    }
}

#[derive(Default)]
pub struct PartitionClients {
    channels: PartitionChannels,
}

impl PartitionClients {
    pub fn new() -> PartitionClients {
        PartitionClients::default()
    }

    /// CreatePartition (idempotent for the same config on the server).
    pub async fn create_partition(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
        settings: &TopicSettings,
    ) -> Result<(), String> {
        let mut client = self.channels.client(address)?;
        let request = CreatePartitionRequest {
            topic: topic.to_string(),
            partition,
            config: Some(PartitionConfig {
                compact: settings.compact,
                retention_ms: settings.retention_ms,
                retention_bytes: settings.retention_bytes,
                segment_bytes: settings.segment_bytes,
                segment_ms: 0,
            }),
        };
        let response =
            timed(PARTITION_CALL_TIMEOUT_MS_MAX, client.create_partition(request)).await?;
        match ErrorCode::try_from(response.error) {
            Ok(ErrorCode::None) => Ok(()),
            _ => Err(format!("{topic}-{partition} on {address}: {}", response.error_message)),
        }
    }

    /// DeletePartition; a partition that does not exist counts as deleted.
    pub async fn delete_partition(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
    ) -> Result<(), String> {
        let mut client = self.channels.client(address)?;
        let request = DeletePartitionRequest { topic: topic.to_string(), partition };
        let response =
            timed(PARTITION_CALL_TIMEOUT_MS_MAX, client.delete_partition(request)).await?;
        match ErrorCode::try_from(response.error) {
            Ok(ErrorCode::None | ErrorCode::UnknownTopicOrPartition) => Ok(()),
            _ => Err(format!("{topic}-{partition} on {address}: {}", response.error_message)),
        }
    }

    pub async fn describe_producers(
        &self,
        address: &str,
        partition: &TopicPartition,
    ) -> Result<Vec<ProducerInPartition>, String> {
        let mut client = self.channels.client(address)?;
        let request = DescribeProducersRequest {
            topic: partition.topic.clone(),
            partition: partition.partition,
        };
        let response =
            timed(PARTITION_CALL_TIMEOUT_MS_MAX, client.describe_producers(request)).await?;
        if response.error != ErrorCode::None as i32 {
            return Err(format!("{partition} on {address}: {}", response.error_message));
        }
        Ok(response
            .producers
            .into_iter()
            .map(|p| ProducerInPartition {
                producer_id: p.producer_id,
                producer_epoch: p.producer_epoch,
                txn_start_offset: (p.current_txn_start_offset >= 0)
                    .then_some(p.current_txn_start_offset),
            })
            .collect())
    }
}

/// The answer to one call to a partition server, or an error naming the
/// status or the timeout: a call not answered within `timeout_ms` is given
/// up on (its outcome unknown).
pub(crate) async fn timed<T>(
    timeout_ms: u64,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {timeout_ms} ms")),
    }
}

#[tonic::async_trait]
impl MarkerSender for PartitionClients {
    async fn send(
        &self,
        address: &str,
        coordinator_epoch: i32,
        markers: &MarkerSet,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, MarkerAck)>, String> {
        let mut client = self.channels.client(address)?;
        let request = WriteTxnMarkersRequest {
            coordinator_epoch,
            markers: vec![TxnMarker {
                producer_id: markers.producer_id.0,
                producer_epoch: i32::from(markers.producer_epoch.0),
                commit: markers.commit,
                partitions: partitions
                    .iter()
                    .map(|p| WirePartition { topic: p.topic.clone(), partition: p.partition })
                    .collect(),
            }],
        };
        let response = client
            .write_txn_markers(request)
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?
            .into_inner();
        Ok(response
            .results
            .into_iter()
            .filter(|r| r.producer_id == markers.producer_id.0)
            .map(|r| {
                let partition = TopicPartition::new(r.topic, r.partition);
                // A retried marker the partition already applied answers NONE.
                let ack = match ErrorCode::try_from(r.error) {
                    Ok(ErrorCode::None) => MarkerAck::Written,
                    Ok(code) => {
                        MarkerAck::Retry(format!("{}: {}", code.as_str_name(), r.error_message))
                    }
                    Err(_) => MarkerAck::Retry(format!("error {}: {}", r.error, r.error_message)),
                };
                (partition, ack)
            })
            .collect())
    }
}
