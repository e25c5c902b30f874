//! Configuration of the client: how to reach the cluster
//! ([`ClientConfig`]), and the producer's and consumer's own settings. Every
//! default and bound is a named constant.

use std::collections::BTreeMap;
use std::time::Duration;

use xo_proto::batch::Compression;

use crate::error::{Error, Result};

/// How long one RPC may take before it counts as failed (Kafka's
/// `request.timeout.ms`).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How long connecting to a server may take.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// First pause before a retry; doubled per attempt up to the max.
pub const RETRY_BACKOFF_DEFAULT: Duration = Duration::from_millis(50);
pub const RETRY_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(1);
/// Longest a caller waits for a coordinator operation that keeps answering
/// "retry" (InitProducerId behind an abort, EndTxn behind markers, …).
pub const OPERATION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// Bytes of records per batch before it is sent without waiting for the
/// linger (Kafka's `batch.size`).
pub const BATCH_BYTES_DEFAULT: usize = 16 * 1024;
/// Largest batch size a producer may configure: the partition server's
/// default batch limit.
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long a batch waits for more records (Kafka's `linger.ms`, whose
/// default became 5 ms in Kafka 4.0).
pub const LINGER_DEFAULT: Duration = Duration::from_millis(5);
/// Bytes of batches buffered in the producer, sent or not yet sent (Kafka's
/// `buffer.memory`); as many bytes of records again may wait in the queue
/// behind them before `send` refuses records with `QueueFull`.
pub const BUFFER_BYTES_DEFAULT: usize = 32 * 1024 * 1024;
/// Largest encoded record; bigger ones are refused before they are
/// buffered (Kafka's `max.request.size`).
pub const RECORD_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// How long after `send` a record may take to be acknowledged, retries
/// included, before it fails (Kafka's `delivery.timeout.ms`).
pub const DELIVERY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
/// Transaction timeout asked of the coordinator (Kafka's
/// `transaction.timeout.ms`).
pub const TRANSACTION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// Longest wait of one long-poll fetch: the partition server's own cap.
pub const FETCH_WAIT_MAX: Duration = Duration::from_millis(30_000);
pub const FETCH_WAIT_DEFAULT: Duration = Duration::from_millis(500);
/// Bytes asked for per partition fetch.
pub const FETCH_BYTES_DEFAULT: u32 = 1024 * 1024;
/// The partition server's cap on one fetch answer.
pub const FETCH_BYTES_MAX: u32 = 32 * 1024 * 1024;
/// Records one `poll` returns at most (Kafka's `max.poll.records`).
pub const POLL_RECORDS_DEFAULT: usize = 500;
pub const POLL_RECORDS_MAX: usize = 100_000;
/// Consumer group session: a member silent this long is evicted.
pub const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(3);

/// Partition → server addresses given up front instead of asked of a
/// coordinator: for tests and single-server setups that run no
/// coordinator. Metadata is never refreshed, and coordinator calls fail
/// with [`Error::NoCoordinator`].
#[derive(Clone, Debug, Default)]
pub struct StaticMetadata {
    /// Topic → the address of the partition server of each partition, in
    /// partition order.
    pub topics: BTreeMap<String, Vec<String>>,
    /// The producer id an idempotent producer uses instead of asking the
    /// coordinator for one. It must be unique among the producers writing
    /// to these partitions.
    pub producer_id: Option<i64>,
}

impl StaticMetadata {
    /// Every partition of `topic` on the server at `address`.
    pub fn topic(mut self, topic: &str, partitions: u32, address: &str) -> Self {
        self.topics.insert(topic.to_string(), vec![address.to_string(); partitions as usize]);
        self
    }
}

/// How to reach the cluster, shared by producers, consumers and admin.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Coordinator addresses (`host:port`); tried in turn.
    pub bootstrap: Vec<String>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Deadline for coordinator operations retried inside the client.
    pub operation_timeout: Duration,
    /// Use this map instead of a coordinator (tests, coordinator-less setups).
    pub static_metadata: Option<StaticMetadata>,
}

impl ClientConfig {
    /// A config for the cluster whose coordinator listens at `bootstrap`
    /// (comma-separated addresses are split).
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            retry_backoff: RETRY_BACKOFF_DEFAULT,
            retry_backoff_max: RETRY_BACKOFF_MAX_DEFAULT,
            operation_timeout: OPERATION_TIMEOUT_DEFAULT,
            static_metadata: None,
        }
    }

    /// A config that asks no coordinator: partitions live where `metadata`
    /// says.
    pub fn with_static_metadata(metadata: StaticMetadata) -> ClientConfig {
        ClientConfig { static_metadata: Some(metadata), ..ClientConfig::new("") }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() && self.static_metadata.is_none() {
            return Err(Error::Config("no bootstrap address".into()));
        }
        if self.request_timeout.is_zero() || self.retry_backoff > self.retry_backoff_max {
            return Err(Error::Config(
                "request_timeout must be positive and retry_backoff <= retry_backoff_max".into(),
            ));
        }
        Ok(())
    }

    /// The pause before retry number `attempt` (0-based): exponential from
    /// `retry_backoff`, capped at `retry_backoff_max`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.retry_backoff.saturating_mul(factor).min(self.retry_backoff_max)
    }
}

/// The producer's settings. Both [`crate::Producer`] and
/// [`crate::TransactionalProducer`] take one.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    /// Bytes per batch (Kafka's `batch.size`), at most [`BATCH_BYTES_MAX`].
    pub batch_bytes: usize,
    /// How long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// Bytes of batches buffered (and, again, of records queued behind
    /// them) before `send` refuses records.
    pub buffer_bytes: usize,
    pub record_bytes_max: usize,
    pub delivery_timeout: Duration,
    /// Idempotence (the default): the producer gets a producer id and
    /// numbers its batches, so partitions drop retried duplicates. Turning
    /// it off means a retry may write a record twice.
    pub idempotence: bool,
    pub compression: Compression,
    /// How long a transaction may stay open before the coordinator aborts
    /// it (transactional producer only).
    pub transaction_timeout: Duration,
}

impl ProducerConfig {
    pub fn new(client: ClientConfig) -> ProducerConfig {
        ProducerConfig {
            client,
            batch_bytes: BATCH_BYTES_DEFAULT,
            linger: LINGER_DEFAULT,
            buffer_bytes: BUFFER_BYTES_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            delivery_timeout: DELIVERY_TIMEOUT_DEFAULT,
            idempotence: true,
            compression: Compression::None,
            transaction_timeout: TRANSACTION_TIMEOUT_DEFAULT,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.client.validate()?;
        if self.batch_bytes == 0 || self.batch_bytes > BATCH_BYTES_MAX {
            return Err(Error::Config(format!("batch_bytes must be 1..={BATCH_BYTES_MAX}")));
        }
        if self.buffer_bytes < self.batch_bytes || self.buffer_bytes < self.record_bytes_max + 64 {
            return Err(Error::Config(
                "buffer_bytes must hold at least one batch and one largest record".into(),
            ));
        }
        if self.transaction_timeout.is_zero() {
            return Err(Error::Config("transaction_timeout must be positive".into()));
        }
        if self.record_bytes_max > BATCH_BYTES_MAX {
            return Err(Error::Config(format!("record_bytes_max must be <= {BATCH_BYTES_MAX}")));
        }
        Ok(())
    }
}

/// Which records a consumer sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Only committed transactions' records, below the last stable offset
    /// (the default).
    #[default]
    ReadCommitted,
    /// Everything up to the high watermark, aborted and open transactions
    /// included.
    ReadUncommitted,
}

/// Where a consumer starts on a partition that has no committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The first offset still in the log.
    Earliest,
    /// The end of the log (the last stable offset under read_committed): only
    /// new records (Kafka's default).
    #[default]
    Latest,
}

/// The consumer's settings.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// The consumer group, for `subscribe`, `commit` and `committed`.
    pub group_id: Option<String>,
    pub isolation: IsolationLevel,
    pub offset_reset: OffsetReset,
    /// Bytes asked for per partition fetch, at most [`FETCH_BYTES_MAX`].
    pub fetch_bytes: u32,
    /// Long-poll wait of one fetch, at most [`FETCH_WAIT_MAX`].
    pub fetch_wait: Duration,
    /// Records one `poll` returns at most, at most [`POLL_RECORDS_MAX`].
    pub poll_records: usize,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Partition assignor the group uses: "range" or "roundrobin".
    pub assignor: String,
}

impl ConsumerConfig {
    pub fn new(client: ClientConfig) -> ConsumerConfig {
        ConsumerConfig {
            client,
            group_id: None,
            isolation: IsolationLevel::ReadCommitted,
            offset_reset: OffsetReset::Latest,
            fetch_bytes: FETCH_BYTES_DEFAULT,
            fetch_wait: FETCH_WAIT_DEFAULT,
            poll_records: POLL_RECORDS_DEFAULT,
            session_timeout: SESSION_TIMEOUT_DEFAULT,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            assignor: "range".into(),
        }
    }

    /// The same config, in consumer group `group_id`.
    pub fn group(mut self, group_id: &str) -> ConsumerConfig {
        self.group_id = Some(group_id.to_string());
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.client.validate()?;
        if self.fetch_bytes == 0 || self.fetch_bytes > FETCH_BYTES_MAX {
            return Err(Error::Config(format!("fetch_bytes must be 1..={FETCH_BYTES_MAX}")));
        }
        if self.fetch_wait > FETCH_WAIT_MAX {
            return Err(Error::Config(format!("fetch_wait must be <= {FETCH_WAIT_MAX:?}")));
        }
        if self.poll_records == 0 || self.poll_records > POLL_RECORDS_MAX {
            return Err(Error::Config(format!("poll_records must be 1..={POLL_RECORDS_MAX}")));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err(Error::Config(
                "heartbeat_interval must be positive and below session_timeout".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_backoff_doubles_up_to_its_cap() {
        let c = ClientConfig::new("a:1");
        assert_eq!(c.backoff(0), RETRY_BACKOFF_DEFAULT);
        assert_eq!(c.backoff(1), RETRY_BACKOFF_DEFAULT * 2);
        assert_eq!(c.backoff(40), RETRY_BACKOFF_MAX_DEFAULT);
    }

    #[test]
    fn t11_bootstrap_list_is_split_and_validated() {
        assert_eq!(ClientConfig::new("a:1, b:2,").bootstrap, vec!["a:1", "b:2"]);
        assert!(ClientConfig::new("").validate().is_err());
        let static_only = ClientConfig::with_static_metadata(StaticMetadata::default());
        assert!(static_only.validate().is_ok());
        let mut p = ProducerConfig::new(ClientConfig::new("a:1"));
        assert!(p.validate().is_ok());
        p.batch_bytes = BATCH_BYTES_MAX + 1;
        assert!(p.validate().is_err());
        let mut c = ConsumerConfig::new(ClientConfig::new("a:1"));
        c.heartbeat_interval = c.session_timeout;
        assert!(c.validate().is_err());
    }
}
