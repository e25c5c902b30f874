//! The partition server: owns partitions, each a segmented, durable,
//! append-only log plus the state derived from it — producer state (the
//! dedupe window), open transactions, the high watermark and the last stable
//! offset. It appends producers' record batches byte for byte after checking
//! their header and CRC, drops duplicates by producer id, epoch and
//! sequence, and serves fetches and subscriptions. It never decides a
//! transaction's outcome (the coordinator does) and never re-encodes a
//! producer's batch.
//!
//! Layout:
//! - [`log`]: segments, indexes, recovery, retention, compaction (I/O).
//! - [`producer_state`]: the dedupe rules, pure; [`producer_snapshot`] its
//!   on-disk form.
//! - [`watermark`], [`group_commit`]: publishing durable offsets to readers,
//!   and sharing fsyncs between concurrent appends.
//! - [`txn_index`]: aborted transactions, for read_committed filtering.
//! - [`partition`]: one partition, tying the above together.
//! - [`registry`]: the partitions of a server; [`service`] and [`handlers`]:
//!   the gRPC API, one handler file per RPC.
//! - [`coordinator_client`]: registering with the coordinator and verifying
//!   transactional writes with it.
//! - [`hooks`]: the transport seam only the deterministic simulation sets.

pub mod config;
pub mod coordinator_client;
pub mod failpoints;
pub mod group_commit;
pub mod handlers;
pub mod hooks;
pub mod log;
pub mod partition;
pub mod producer_snapshot;
pub mod producer_state;
pub mod registry;
pub mod service;
pub mod txn_index;
pub mod watermark;

pub use config::{FsyncPolicy, ServerConfig};
pub use registry::Registry;
