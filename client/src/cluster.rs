//! What the client knows about the cluster, and how it reaches it: the
//! metadata cache (topic → partition → server address), learnt from the
//! coordinator (the bootstrap addresses are coordinator addresses) and
//! refreshed when a partition server says the partition is not there
//! (`NOT_LEADER`, `UNKNOWN_TOPIC_OR_PARTITION`); one pooled gRPC channel per
//! address; and the retry loop every coordinator call goes through.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use xo_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use xo_proto::coordinator::{self as pb, MetadataRequest};
use xo_proto::partition::partition_service_client::PartitionServiceClient;

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Largest gRPC message the client accepts: a fetch answer of
/// `FETCH_BYTES_MAX` plus framing.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most channels kept open; past it the pool is cleared (addresses of
/// servers that left the cluster must not accumulate forever).
pub const CHANNELS_MAX: usize = 1024;
/// Most topics asked for in one metadata request.
pub const METADATA_TOPICS_PER_REQUEST_MAX: usize = 1000;

pub(crate) type CoordinatorClient = CoordinatorServiceClient<Channel>;
pub(crate) type PartitionClient = PartitionServiceClient<Channel>;

/// One topic as the coordinator described it.
#[derive(Clone, Debug)]
pub(crate) struct TopicMeta {
    pub name: Arc<str>,
    /// Address of the server holding each partition, by partition number;
    /// empty when the coordinator named none.
    pub addresses: Vec<Arc<str>>,
    pub server_ids: Vec<String>,
}

impl TopicMeta {
    pub fn partitions(&self) -> u32 {
        self.addresses.len() as u32
    }
}

/// Shared by every producer, consumer and admin made from one config.
pub(crate) struct Cluster {
    pub config: ClientConfig,
    /// std Mutex: nothing async happens while it is held.
    channels: Mutex<HashMap<String, Channel>>,
    topics: RwLock<HashMap<Arc<str>, Arc<TopicMeta>>>,
    /// Index into `config.bootstrap` of the coordinator address in use;
    /// moves on after a transport error.
    coordinator_at: AtomicUsize,
}

impl Cluster {
    pub fn new(config: ClientConfig) -> Result<Arc<Cluster>> {
        config.validate()?;
        let mut topics = HashMap::new();
        if let Some(static_metadata) = &config.static_metadata {
            for (name, addresses) in &static_metadata.topics {
                let name: Arc<str> = Arc::from(name.as_str());
                let meta = TopicMeta {
                    name: name.clone(),
                    addresses: addresses.iter().map(|a| Arc::from(a.as_str())).collect(),
                    server_ids: vec![String::new(); addresses.len()],
                };
                topics.insert(name, Arc::new(meta));
            }
        }
        Ok(Arc::new(Cluster {
            config,
            channels: Mutex::new(HashMap::new()),
            topics: RwLock::new(topics),
            coordinator_at: AtomicUsize::new(0),
        }))
    }

    /// The pooled channel to `addr`; connects lazily and reconnects by
    /// itself after failures.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap();
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        if channels.len() >= CHANNELS_MAX {
            channels.clear();
        }
        let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::Config(format!("bad server address {addr:?}: {e}")))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let channel = crate::hooks::connect_lazy(endpoint);
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub fn partition_client(&self, addr: &str) -> Result<PartitionClient> {
        Ok(PartitionServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX))
    }

    fn coordinator_address(&self) -> Result<String> {
        if self.config.bootstrap.is_empty() {
            return Err(Error::NoCoordinator);
        }
        let at = self.coordinator_at.load(Ordering::Relaxed) % self.config.bootstrap.len();
        Ok(self.config.bootstrap[at].clone())
    }

    /// One coordinator call, bounded by the request timeout. A transport
    /// failure moves on to the next bootstrap address for later calls.
    pub async fn coordinator_once<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnOnce(CoordinatorClient) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        if self.config.static_metadata.is_some() {
            return Err(Error::NoCoordinator);
        }
        let addr = self.coordinator_address()?;
        let client = CoordinatorServiceClient::new(self.channel(&addr)?)
            .max_decoding_message_size(MESSAGE_BYTES_MAX);
        let outcome = match tokio::time::timeout(self.config.request_timeout, call(client)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(&addr, status)),
            Err(_) => Err(Error::Transport {
                addr: addr.clone(),
                message: format!("no answer within {:?}", self.config.request_timeout),
            }),
        };
        if matches!(outcome, Err(Error::Transport { .. })) {
            self.coordinator_at.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or
    /// the next attempt would start after `deadline` (then the last
    /// retriable error is returned). Pauses with exponential backoff.
    pub async fn retry<T, F, Fut>(
        &self,
        what: &'static str,
        deadline: Instant,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retriable() => {
                    let pause = self.config.backoff(attempt);
                    if Instant::now() + pause >= deadline {
                        tracing::debug!(what, error = %e, "giving up after retries");
                        return Err(e);
                    }
                    tracing::debug!(what, error = %e, attempt, "retrying");
                    tokio::time::sleep(pause).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The deadline of an operation starting now.
    pub fn operation_deadline(&self) -> Instant {
        Instant::now() + self.config.operation_timeout
    }

    // ---- metadata --------------------------------------------------------

    /// The cached description of `topic`, if any.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicMeta>> {
        self.topics.read().unwrap().get(topic).cloned()
    }

    /// The cached address of the server holding the partition.
    pub fn cached_address(&self, topic: &str, partition: u32) -> Option<Arc<str>> {
        let topics = self.topics.read().unwrap();
        let address = topics.get(topic)?.addresses.get(partition as usize)?;
        (!address.is_empty()).then(|| address.clone())
    }

    /// `topic`'s description, asking the coordinator if it is not cached.
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicMeta>> {
        if let Some(meta) = self.cached_topic(topic) {
            return Ok(meta);
        }
        self.refresh(&[topic]).await?;
        self.cached_topic(topic).ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    /// The address of the server holding the partition, refreshing once if
    /// it is not cached.
    pub async fn address(&self, topic: &str, partition: u32) -> Result<Arc<str>> {
        if let Some(address) = self.cached_address(topic, partition) {
            return Ok(address);
        }
        self.refresh(&[topic]).await?;
        let meta =
            self.cached_topic(topic).ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        if partition >= meta.partitions() {
            return Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: meta.partitions(),
            });
        }
        self.cached_address(topic, partition).ok_or_else(|| Error::Partition {
            topic: topic.to_string(),
            partition,
            code: xo_proto::partition::ErrorCode::NotLeader,
            message: "the coordinator names no server for this partition".into(),
        })
    }

    /// Asks the coordinator about `topics` (every topic when empty) and
    /// replaces what the cache holds on them; a topic the coordinator does
    /// not know is dropped from the cache. A no-op under static metadata.
    pub async fn refresh(&self, topics: &[&str]) -> Result<()> {
        if self.config.static_metadata.is_some() {
            return Ok(());
        }
        for chunk in topics.chunks(METADATA_TOPICS_PER_REQUEST_MAX) {
            self.refresh_chunk(chunk).await?;
        }
        if topics.is_empty() {
            self.refresh_chunk(&[]).await?;
        }
        Ok(())
    }

    async fn refresh_chunk(&self, topics: &[&str]) -> Result<()> {
        let request = MetadataRequest { topics: topics.iter().map(|t| t.to_string()).collect() };
        let response =
            self.coordinator_once(|mut c| async move { c.metadata(request).await }).await?;
        match Error::from_coordinator(response.error, response.error_message) {
            // Unknown topics are named in the error; the known ones are
            // still in the answer, and the unknown ones leave the cache.
            None
            | Some(Error::Coordinator { code: pb::ErrorCode::UnknownTopicOrPartition, .. }) => {}
            Some(e) => return Err(e),
        }
        let mut cache = self.topics.write().unwrap();
        if topics.is_empty() {
            cache.clear();
        } else {
            for topic in topics {
                cache.remove(*topic);
            }
        }
        for topic in response.topics {
            let meta = Arc::new(topic_meta(topic));
            cache.insert(meta.name.clone(), meta);
        }
        Ok(())
    }
}

/// The cache entry for one topic of a metadata answer.
pub(crate) fn topic_meta(topic: pb::TopicMetadata) -> TopicMeta {
    let count = topic.partitions.iter().map(|p| p.partition as usize + 1).max().unwrap_or(0);
    let mut addresses: Vec<Arc<str>> = vec![Arc::from(""); count];
    let mut server_ids = vec![String::new(); count];
    for p in topic.partitions {
        addresses[p.partition as usize] = Arc::from(p.address.as_str());
        server_ids[p.partition as usize] = p.server_id;
    }
    TopicMeta { name: Arc::from(topic.name.as_str()), addresses, server_ids }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticMetadata;

    #[test]
    fn t10_metadata_answer_is_indexed_by_partition() {
        let meta = topic_meta(pb::TopicMetadata {
            name: "t".into(),
            config: None,
            partitions: vec![
                pb::PartitionMetadata {
                    partition: 1,
                    server_id: "b".into(),
                    address: "h:2".into(),
                },
                pb::PartitionMetadata {
                    partition: 0,
                    server_id: "a".into(),
                    address: "h:1".into(),
                },
            ],
            internal: false,
        });
        assert_eq!(meta.partitions(), 2);
        assert_eq!(&*meta.addresses[0], "h:1");
        assert_eq!(&*meta.addresses[1], "h:2");
        assert_eq!(meta.server_ids[1], "b");
    }

    #[tokio::test]
    async fn t11_static_metadata_answers_without_a_coordinator() {
        let config = ClientConfig::with_static_metadata(StaticMetadata::default().topic(
            "events",
            3,
            "127.0.0.1:9",
        ));
        let cluster = Cluster::new(config).unwrap();
        assert_eq!(cluster.topic("events").await.unwrap().partitions(), 3);
        assert_eq!(&*cluster.address("events", 2).await.unwrap(), "127.0.0.1:9");
        assert!(matches!(
            cluster.address("events", 3).await,
            Err(Error::UnknownPartition { partitions: 3, .. })
        ));
        assert!(matches!(cluster.topic("nope").await, Err(Error::UnknownTopic(_))));
        let no = cluster
            .coordinator_once(|mut c| async move { c.metadata(MetadataRequest::default()).await });
        assert!(matches!(no.await, Err(Error::NoCoordinator)));
    }

    #[tokio::test(start_paused = true)]
    async fn t12_retry_stops_at_the_deadline_with_the_last_error() {
        let cluster = Cluster::new(ClientConfig::new("127.0.0.1:9")).unwrap();
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        let result: Result<()> = cluster
            .retry("test", deadline, || {
                calls += 1;
                async { Err(Error::Transport { addr: "x".into(), message: "down".into() }) }
            })
            .await;
        assert!(matches!(result, Err(Error::Transport { .. })));
        assert!(calls > 2 && Instant::now() <= deadline, "{calls}");
        // A non-retriable error stops at once.
        let mut calls = 0;
        let result: Result<()> = cluster
            .retry("test", deadline + Duration::from_secs(10), || {
                calls += 1;
                async { Err(Error::State("no".into())) }
            })
            .await;
        assert!(matches!(result, Err(Error::State(_))));
        assert_eq!(calls, 1);
    }
}
