//! The library applications link to talk to xo: the idempotent and
//! transactional producers, the read-committed consumer and the admin
//! client. It encodes record batches with `xo-proto`'s codec and speaks gRPC
//! to the coordinator (metadata, producer ids, transactions, groups,
//! offsets) and to the partition servers (produce, fetch, list offsets). It
//! holds no durable state of its own, and never decides what the servers
//! decide: a partition drops duplicates, the coordinator fences zombies;
//! the client's job is to number its batches so that duplicates are
//! recognisable and to never reorder them.
//!
//! Layout:
//! - [`config`]: [`ClientConfig`] (bootstrap addresses, timeouts, backoff,
//!   static metadata for coordinator-less tests) and the producer's and
//!   consumer's settings; every bound is a named constant.
//! - [`error`]: [`Error`] and its [`ErrorClass`] — retriable, abortable,
//!   fatal, invalid.
//! - `cluster`: the metadata cache and the pooled gRPC channels.
//! - [`hooks`]: the transport seam only the deterministic simulation sets.
//! - [`partitioner`]: Kafka's murmur2 key partitioner.
//! - [`producer`]: [`Producer`] (idempotent), its batching
//!   ([`producer::accumulator`]) and its sequence / in-flight bookkeeping
//!   ([`producer::inflight`]), both pure state.
//! - [`transactional`]: the [`TransactionalProducer`].
//! - [`consumer`]: [`Consumer`] — assign or subscribe, poll, seek, commit.
//! - [`admin`]: [`Admin`] — topics, transactions, producers.
//!
//! The exactly-once loop, in short (see `examples/consume_transform_produce.rs`):
//!
//! ```no_run
//! use std::time::Duration;
//! use xo_client::{ClientConfig, Consumer, ConsumerConfig, ProducerConfig, ProducerRecord, TransactionalProducer};
//!
//! # async fn run() -> xo_client::Result<()> {
//! let client = ClientConfig::new("127.0.0.1:7070");
//! let mut consumer = Consumer::new(ConsumerConfig::new(client.clone()))?;
//! consumer.subscribe(&["input"], "pipeline")?;
//! let producer = TransactionalProducer::new(ProducerConfig::new(client), "pipeline-0")?;
//! producer.init_transactions().await?;
//! loop {
//!     let records = consumer.poll(Duration::from_secs(1)).await?;
//!     if records.is_empty() { continue; }
//!     producer.begin_transaction()?;
//!     for r in &records {
//!         let _ = producer.send(ProducerRecord::new("output", r.value.as_deref().unwrap_or_default()));
//!     }
//!     producer.send_offsets_to_transaction(consumer.positions(), &consumer.group_metadata()).await?;
//!     if let Err(e) = producer.commit_transaction().await {
//!         if !e.is_abortable() { return Err(e); }
//!         producer.abort_transaction().await?;
//!         consumer.seek_to_committed();
//!     }
//! }
//! # }
//! ```

pub mod admin;
pub(crate) mod cluster;
pub mod config;
pub mod consumer;
pub mod error;
pub mod hooks;
pub mod partitioner;
pub mod producer;
pub mod transactional;
pub mod types;

pub use admin::{
    Admin, HangingTransaction, ListTransactionsFilter, NewTopic, PartitionInfo, PartitionOffsets,
    ProducerDescription, TopicDescription, TopicSettings, TransactionDescription,
};
pub use config::{
    ClientConfig, ConsumerConfig, IsolationLevel, OffsetReset, ProducerConfig, StaticMetadata,
};
pub use consumer::{Consumer, ConsumerRecord, Rebalance};
pub use error::{Error, ErrorClass, Result};
pub use producer::{IN_FLIGHT_PER_PARTITION_MAX, Producer, ProducerRecord};
pub use transactional::TransactionalProducer;
pub use types::{ConsumerGroupMetadata, RecordMetadata, TopicPartition};
pub use xo_proto::batch::{Compression, RecordHeader};
pub use xo_proto::{Offset, ProducerEpoch, ProducerId, Sequence};

#[cfg(test)]
mod tests {
    #[test]
    fn t10_handles_can_move_between_tasks() {
        // Proves: producers and admin can be shared by tasks, a consumer
        // moved into one.
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::Producer>();
        send_sync::<crate::TransactionalProducer>();
        send_sync::<crate::Admin>();
        send::<crate::Consumer>();
        send_sync::<crate::Error>();
    }
}
