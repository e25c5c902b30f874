//! The partitions one server hosts: opened from the data directory at
//! start-up, created and deleted on request, and looked after by a
//! housekeeping task (retention, compaction, producer expiry, interval fsync).

use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;

use crate::config::{FsyncPolicy, PARTITIONS_PER_SERVER_MAX, ServerConfig, validate_topic_name};
use crate::log::segment::write_atomically;
use crate::partition::{CONFIG_FILE, Partition, PartitionConfig, PartitionError, TxnVerifier};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("partition {topic}-{partition} already exists with a different config")]
    AlreadyExists { topic: String, partition: u32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Partition(#[from] PartitionError),
}

pub struct Registry {
    pub config: ServerConfig,
    partitions: DashMap<TopicPartition, Arc<Partition>>,
    verifier: Arc<dyn TxnVerifier>,
    /// Serialises create and delete so two requests never race on one directory.
    admin: tokio::sync::Mutex<()>,
}

/// Splits a partition directory name `<topic>-<partition>`.
fn parse_dir_name(name: &str) -> Option<(String, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    validate_topic_name(topic).ok()?;
    Some((topic.to_string(), partition.parse().ok()?))
}

impl Registry {
    /// Opens every partition found in the data directory, recovering each.
    pub fn open(
        config: ServerConfig,
        verifier: Arc<dyn TxnVerifier>,
    ) -> Result<Arc<Registry>, RegistryError> {
        std::fs::create_dir_all(&config.data_dir).map_err(PartitionError::from)?;
        let registry = Registry {
            partitions: DashMap::new(),
            verifier,
            admin: tokio::sync::Mutex::new(()),
            config,
        };
        for entry in std::fs::read_dir(&registry.config.data_dir).map_err(PartitionError::from)? {
            let entry = entry.map_err(PartitionError::from)?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some((topic, partition)) = parse_dir_name(&name) else { continue };
            let config_path = entry.path().join(CONFIG_FILE);
            let Ok(bytes) = std::fs::read(&config_path) else {
                // A directory whose creation never finished: no config was written.
                tracing::warn!(dir = %entry.path().display(), "skipping partition directory without config");
                continue;
            };
            let partition_config: PartitionConfig = serde_json::from_slice(&bytes)
                .map_err(|e| PartitionError::Storage(format!("{}: {e}", config_path.display())))?;
            let opened = Partition::open(
                &registry.config,
                &topic,
                partition,
                partition_config,
                registry.verifier.clone(),
            )?;
            registry.partitions.insert(TopicPartition { topic, partition }, opened);
        }
        Ok(Arc::new(registry))
    }

    pub fn get(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, RegistryError> {
        self.partitions
            .get(&TopicPartition { topic: topic.to_string(), partition })
            .map(|p| p.clone())
            .ok_or_else(|| RegistryError::UnknownPartition { topic: topic.to_string(), partition })
    }

    pub fn list(&self) -> Vec<Arc<Partition>> {
        let mut all: Vec<_> = self.partitions.iter().map(|p| p.value().clone()).collect();
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        all
    }

    /// Creates a partition. Creating one that exists with the same config
    /// succeeds (so the call can be retried); with another config it fails.
    pub async fn create(
        &self,
        topic: &str,
        partition: u32,
        config: PartitionConfig,
    ) -> Result<Arc<Partition>, RegistryError> {
        validate_topic_name(topic).map_err(RegistryError::Invalid)?;
        if config.retention_ms.is_some_and(|ms| ms <= 0)
            || config.retention_bytes.is_some_and(|b| b == 0)
            || config.segment_ms < 0
        {
            return Err(RegistryError::Invalid(
                "retention and segment limits must be positive".into(),
            ));
        }
        let _guard = self.admin.lock().await;
        if let Ok(existing) = self.get(topic, partition) {
            if existing.config == config {
                return Ok(existing);
            }
            return Err(RegistryError::AlreadyExists { topic: topic.to_string(), partition });
        }
        if self.partitions.len() >= PARTITIONS_PER_SERVER_MAX {
            return Err(RegistryError::Invalid(format!(
                "this server already hosts {PARTITIONS_PER_SERVER_MAX} partitions"
            )));
        }
        let dir = crate::partition::partition_dir(&self.config.data_dir, topic, partition);
        std::fs::create_dir_all(&dir).map_err(PartitionError::from)?;
        // The config is written last-but-durably: a directory without it is
        // an unfinished create and is skipped on restart.
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        write_atomically(&dir.join(CONFIG_FILE), &json).map_err(PartitionError::from)?;
        let opened =
            Partition::open(&self.config, topic, partition, config, self.verifier.clone())?;
        self.partitions
            .insert(TopicPartition { topic: topic.to_string(), partition }, opened.clone());
        Ok(opened)
    }

    /// Deletes a partition and its data.
    pub async fn delete(&self, topic: &str, partition: u32) -> Result<(), RegistryError> {
        let _guard = self.admin.lock().await;
        let key = TopicPartition { topic: topic.to_string(), partition };
        let Some((_, removed)) = self.partitions.remove(&key) else {
            return Err(RegistryError::UnknownPartition { topic: topic.to_string(), partition });
        };
        remove_dir(removed.dir()).map_err(PartitionError::from)?;
        Ok(())
    }

    /// Runs housekeeping forever at the configured interval (and the interval
    /// fsync policy's flushes, at theirs).
    pub async fn run_housekeeping(self: Arc<Self>) {
        let flush_every = match self.config.fsync {
            FsyncPolicy::Interval(every) => Some(every),
            _ => None,
        };
        let mut housekeeping = tokio::time::interval(self.config.housekeeping_interval);
        let mut flush =
            tokio::time::interval(flush_every.unwrap_or(self.config.housekeeping_interval));
        loop {
            tokio::select! {
                _ = housekeeping.tick() => {
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        for p in this.list() {
                            if let Err(e) = p.housekeeping(this.config.producer_expiry) {
                                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "housekeeping failed");
                            }
                        }
                    })
                    .await;
                }
                _ = flush.tick(), if flush_every.is_some() => {
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        for p in this.list() {
                            if let Err(e) = p.flush() {
                                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "interval flush failed");
                            }
                        }
                    })
                    .await;
                }
            }
        }
    }

    /// Flushes every partition and writes producer snapshots (clean shutdown).
    pub fn close(&self) {
        for p in self.list() {
            if let Err(e) = p.close() {
                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "close failed");
            }
        }
    }
}

fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
