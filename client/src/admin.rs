//! Cluster administration: topics (through the coordinator), transactions
//! (list, describe, abort, find hanging ones) and the producers a partition
//! server keeps state for. Every answer is turned into the plain types
//! below; no gRPC type leaves this module.

use std::sync::Arc;
use std::time::Duration;

use xo_proto::coordinator::{
    self as pb, AbortTransactionRequest, CreateTopicRequest, DeleteTopicRequest,
    DescribeTransactionRequest, FindHangingRequest, ListTransactionsRequest, MetadataRequest,
};
use xo_proto::partition::{self as ppb, DescribeProducersRequest, ListOffsetsRequest};
use xo_proto::{Offset, ProducerEpoch, ProducerId, Sequence};

use crate::cluster::{Cluster, topic_meta};
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// Most partitions one topic may be created with.
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;

/// A topic's storage settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Keep only the latest record of each key.
    pub compact: bool,
    /// Delete segments older than this; `None`: forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while a partition is larger; `None`:
    /// unbounded.
    pub retention_bytes: Option<i64>,
    /// Segment size; `None`: the server's default.
    pub segment_bytes: Option<i64>,
}

impl TopicSettings {
    fn to_wire(&self) -> pb::TopicConfig {
        pb::TopicConfig {
            compact: self.compact,
            retention_ms: self.retention_ms.unwrap_or(0),
            retention_bytes: self.retention_bytes.unwrap_or(0),
            segment_bytes: self.segment_bytes.unwrap_or(0),
        }
    }

    fn from_wire(c: &pb::TopicConfig) -> TopicSettings {
        let positive = |v: i64| (v > 0).then_some(v);
        TopicSettings {
            compact: c.compact,
            retention_ms: positive(c.retention_ms),
            retention_bytes: positive(c.retention_bytes),
            segment_bytes: positive(c.segment_bytes),
        }
    }
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub settings: TopicSettings,
}

impl NewTopic {
    pub fn new(name: &str, partitions: u32) -> NewTopic {
        NewTopic { name: name.to_string(), partitions, settings: TopicSettings::default() }
    }

    pub fn compacted(mut self) -> NewTopic {
        self.settings.compact = true;
        self
    }
}

/// One partition of a described topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub server_id: String,
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub settings: TopicSettings,
    pub partitions: Vec<PartitionInfo>,
    /// An xo-internal topic such as `__consumer_offsets`.
    pub internal: bool,
}

impl TopicDescription {
    fn from_wire(t: pb::TopicMetadata) -> TopicDescription {
        let settings = TopicSettings::from_wire(&t.config.unwrap_or_default());
        let internal = t.internal;
        let meta = topic_meta(t);
        TopicDescription {
            name: meta.name.to_string(),
            settings,
            partitions: meta
                .addresses
                .iter()
                .zip(&meta.server_ids)
                .enumerate()
                .map(|(i, (address, server_id))| PartitionInfo {
                    partition: i as u32,
                    server_id: server_id.clone(),
                    address: address.to_string(),
                })
                .collect(),
            internal,
        }
    }
}

/// The offsets of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: Offset,
    /// The end of durable data.
    pub high_watermark: Offset,
    /// Where read_committed readers stop: the first offset of the oldest
    /// open transaction, or the high watermark.
    pub last_stable_offset: Offset,
}

/// A transactional id as the coordinator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    /// Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, …
    pub state: String,
    pub partitions: Vec<TopicPartition>,
    pub timeout: Duration,
    /// When the open transaction started (ms since the epoch); `None` when
    /// none is open.
    pub start_time_ms: Option<i64>,
    pub last_update_ms: i64,
}

impl TransactionDescription {
    fn from_wire(t: pb::TransactionDescription) -> TransactionDescription {
        TransactionDescription {
            transactional_id: t.transactional_id,
            producer_id: ProducerId(t.producer_id),
            producer_epoch: ProducerEpoch(t.producer_epoch as i16),
            state: t.state,
            partitions: t.partitions.into_iter().map(tp_from_wire).collect(),
            timeout: Duration::from_millis(t.timeout_ms.max(0) as u64),
            start_time_ms: (t.start_time_ms >= 0).then_some(t.start_time_ms),
            last_update_ms: t.last_update_ms,
        }
    }
}

/// Which transactions to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListTransactionsFilter {
    /// State names to keep; empty: every state.
    pub states: Vec<String>,
    /// Only transactions open at least this long.
    pub min_duration: Duration,
}

/// A transaction a partition holds open that the coordinator will not end
/// by itself: it keeps the partition's last stable offset back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HangingTransaction {
    pub partition: TopicPartition,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub start_offset: Offset,
    pub reason: String,
}

/// The state a partition keeps for one producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub last_sequence: Sequence,
    pub last_timestamp_ms: i64,
    /// First offset of the producer's open transaction in the partition.
    pub current_txn_start_offset: Option<Offset>,
}

fn tp_from_wire(tp: pb::TopicPartition) -> TopicPartition {
    TopicPartition { topic: tp.topic, partition: tp.partition }
}

fn check(error: i32, message: String) -> Result<()> {
    Error::from_coordinator(error, message).map_or(Ok(()), Err)
}

/// Administration of topics, transactions and producers.
///
/// ```no_run
/// use xo_client::{Admin, ClientConfig, NewTopic};
///
/// # async fn run() -> xo_client::Result<()> {
/// let admin = Admin::new(ClientConfig::new("127.0.0.1:7070"))?;
/// admin.create_topic(NewTopic::new("orders", 3)).await?;
/// for topic in admin.describe_topics(&["orders"]).await? {
///     println!("{} has {} partitions", topic.name, topic.partitions.len());
/// }
/// for txn in admin.find_hanging_transactions(&[]).await? {
///     println!("hanging: {txn:?}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    pub fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Admin { cluster: Cluster::new(config)? })
    }

    /// Creates a topic; its partitions are placed on the partition servers
    /// by the coordinator.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicDescription> {
        if topic.partitions == 0 || topic.partitions > TOPIC_PARTITIONS_MAX {
            return Err(Error::Config(format!("partitions must be 1..={TOPIC_PARTITIONS_MAX}")));
        }
        let request = CreateTopicRequest {
            topic: topic.name.clone(),
            partitions: topic.partitions,
            config: Some(topic.settings.to_wire()),
        };
        let cluster = &self.cluster;
        let response = cluster
            .retry("CreateTopic", cluster.operation_deadline(), || {
                let request = request.clone();
                async move {
                    let r = cluster
                        .coordinator_once(|mut c| async move { c.create_topic(request).await })
                        .await?;
                    check(r.error, r.error_message.clone())?;
                    Ok(r)
                }
            })
            .await?;
        let _ = cluster.refresh(&[&topic.name]).await;
        match response.topic {
            Some(t) => Ok(TopicDescription::from_wire(t)),
            None => self
                .describe_topics(&[&topic.name])
                .await?
                .pop()
                .ok_or(Error::UnknownTopic(topic.name)),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let cluster = &self.cluster;
        cluster
            .retry("DeleteTopic", cluster.operation_deadline(), || async {
                let request = DeleteTopicRequest { topic: name.to_string() };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.delete_topic(request).await })
                    .await?;
                check(r.error, r.error_message)
            })
            .await?;
        let _ = cluster.refresh(&[name]).await;
        Ok(())
    }

    /// The names of every topic, internal ones left out.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .describe_topics(&[])
            .await?
            .into_iter()
            .filter(|t| !t.internal)
            .map(|t| t.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Describes `names` (every topic, internal ones included, when empty).
    /// An unknown name is an error.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicDescription>> {
        let cluster = &self.cluster;
        let response = cluster
            .retry("Metadata", cluster.operation_deadline(), || async {
                let request =
                    MetadataRequest { topics: names.iter().map(|n| n.to_string()).collect() };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.metadata(request).await })
                    .await?;
                check(r.error, r.error_message.clone())?;
                Ok(r)
            })
            .await?;
        let mut topics: Vec<TopicDescription> =
            response.topics.into_iter().map(TopicDescription::from_wire).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for name in names {
            if !topics.iter().any(|t| t.name == *name) {
                return Err(Error::UnknownTopic(name.to_string()));
            }
        }
        Ok(topics)
    }

    /// The start, high watermark and last stable offset of a partition.
    pub async fn partition_offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        let cluster = &self.cluster;
        cluster
            .retry("ListOffsets", cluster.operation_deadline(), || async {
                let addr = cluster.address(topic, partition).await?;
                let mut client = cluster.partition_client(&addr)?;
                let request = ListOffsetsRequest {
                    topic: topic.to_string(),
                    partition,
                    spec: Some(ppb::list_offsets_request::Spec::Latest(true)),
                    isolation: ppb::IsolationLevel::ReadUncommitted as i32,
                };
                let r = partition_call(cluster, &addr, client.list_offsets(request)).await?;
                if let Some(e) = Error::from_partition(topic, partition, r.error, r.error_message) {
                    return Err(e);
                }
                Ok(PartitionOffsets {
                    log_start_offset: Offset(r.log_start_offset),
                    high_watermark: Offset(r.high_watermark),
                    last_stable_offset: Offset(r.last_stable_offset),
                })
            })
            .await
    }

    /// Transactional ids known to the coordinator, filtered.
    pub async fn list_transactions(
        &self,
        filter: &ListTransactionsFilter,
    ) -> Result<Vec<TransactionDescription>> {
        let cluster = &self.cluster;
        let response = cluster
            .retry("ListTransactions", cluster.operation_deadline(), || async {
                let request = ListTransactionsRequest {
                    states: filter.states.clone(),
                    min_duration_ms: filter.min_duration.as_millis() as i64,
                };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.list_transactions(request).await })
                    .await?;
                check(r.error, r.error_message.clone())?;
                Ok(r)
            })
            .await?;
        Ok(response.transactions.into_iter().map(TransactionDescription::from_wire).collect())
    }

    pub async fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionDescription> {
        let cluster = &self.cluster;
        let response = cluster
            .retry("DescribeTransaction", cluster.operation_deadline(), || async {
                let request =
                    DescribeTransactionRequest { transactional_id: transactional_id.to_string() };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.describe_transaction(request).await })
                    .await?;
                check(r.error, r.error_message.clone())?;
                Ok(r)
            })
            .await?;
        response.transaction.map(TransactionDescription::from_wire).ok_or_else(|| {
            Error::Coordinator {
                code: pb::ErrorCode::TransactionalIdNotFound,
                message: format!("no transaction described for {transactional_id:?}"),
            }
        })
    }

    /// Aborts the open transaction of `transactional_id` (its producer is
    /// fenced).
    pub async fn abort_transaction(&self, transactional_id: &str) -> Result<()> {
        let cluster = &self.cluster;
        cluster
            .retry("AbortTransaction", cluster.operation_deadline(), || async {
                let request =
                    AbortTransactionRequest { transactional_id: transactional_id.to_string() };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.abort_transaction(request).await })
                    .await?;
                check(r.error, r.error_message)
            })
            .await
    }

    /// Transactions open in partitions of `topics` (every topic when empty)
    /// that the coordinator does not know or that are past their timeout.
    pub async fn find_hanging_transactions(
        &self,
        topics: &[&str],
    ) -> Result<Vec<HangingTransaction>> {
        let cluster = &self.cluster;
        let response = cluster
            .retry("FindHanging", cluster.operation_deadline(), || async {
                let request =
                    FindHangingRequest { topics: topics.iter().map(|t| t.to_string()).collect() };
                let r = cluster
                    .coordinator_once(|mut c| async move { c.find_hanging(request).await })
                    .await?;
                check(r.error, r.error_message.clone())?;
                Ok(r)
            })
            .await?;
        Ok(response
            .hanging
            .into_iter()
            .map(|h| HangingTransaction {
                partition: h
                    .partition
                    .map(tp_from_wire)
                    .unwrap_or_else(|| TopicPartition::new("", 0)),
                producer_id: ProducerId(h.producer_id),
                producer_epoch: ProducerEpoch(h.producer_epoch as i16),
                start_offset: Offset(h.start_offset),
                reason: h.reason,
            })
            .collect())
    }

    /// The producers the partition's server keeps dedupe state for.
    pub async fn describe_producers(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<ProducerDescription>> {
        let cluster = &self.cluster;
        let response = cluster
            .retry("DescribeProducers", cluster.operation_deadline(), || async {
                let addr = cluster.address(topic, partition).await?;
                let mut client = cluster.partition_client(&addr)?;
                let request = DescribeProducersRequest { topic: topic.to_string(), partition };
                let r = partition_call(cluster, &addr, client.describe_producers(request)).await?;
                if let Some(e) =
                    Error::from_partition(topic, partition, r.error, r.error_message.clone())
                {
                    if e.invalidates_metadata() {
                        let _ = cluster.refresh(&[topic]).await;
                    }
                    return Err(e);
                }
                Ok(r)
            })
            .await?;
        Ok(response
            .producers
            .into_iter()
            .map(|p| ProducerDescription {
                producer_id: ProducerId(p.producer_id),
                producer_epoch: ProducerEpoch(p.producer_epoch as i16),
                last_sequence: Sequence(p.last_sequence),
                last_timestamp_ms: p.last_timestamp_ms,
                current_txn_start_offset: (p.current_txn_start_offset >= 0)
                    .then_some(Offset(p.current_txn_start_offset)),
            })
            .collect())
    }
}

/// One partition server call, bounded by the request timeout.
async fn partition_call<T>(
    cluster: &Cluster,
    addr: &str,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let timeout = cluster.config.request_timeout;
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(Error::from_status(addr, status)),
        Err(_) => Err(Error::Transport {
            addr: addr.to_string(),
            message: format!("no answer within {timeout:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_settings_round_trip_with_zero_as_unset() {
        let s = TopicSettings {
            compact: true,
            retention_ms: Some(5),
            retention_bytes: None,
            segment_bytes: None,
        };
        assert_eq!(TopicSettings::from_wire(&s.to_wire()), s);
        assert_eq!(TopicSettings::from_wire(&pb::TopicConfig::default()), TopicSettings::default());
    }

    #[test]
    fn t11_descriptions_convert_from_the_wire() {
        let t = TransactionDescription::from_wire(pb::TransactionDescription {
            transactional_id: "x".into(),
            producer_id: 4,
            producer_epoch: 2,
            state: "Ongoing".into(),
            partitions: vec![pb::TopicPartition { topic: "t".into(), partition: 1 }],
            timeout_ms: 60_000,
            start_time_ms: -1,
            last_update_ms: 9,
        });
        assert_eq!(t.partitions, vec![TopicPartition::new("t", 1)]);
        assert_eq!(t.start_time_ms, None);
        assert_eq!(t.timeout, Duration::from_secs(60));
        let d = TopicDescription::from_wire(pb::TopicMetadata {
            name: "t".into(),
            config: Some(pb::TopicConfig { compact: true, ..Default::default() }),
            partitions: vec![pb::PartitionMetadata {
                partition: 0,
                server_id: "s".into(),
                address: "a:1".into(),
            }],
            internal: false,
        });
        assert!(d.settings.compact);
        assert_eq!(
            d.partitions[0],
            PartitionInfo { partition: 0, server_id: "s".into(), address: "a:1".into() }
        );
    }
}
