//! The transaction coordinator: owns transactional ids and their
//! transaction state machine, hands out producer ids and epochs, keeps the
//! cluster metadata (topics, which partition server holds which partition)
//! and consumer groups, and drives two-phase commit by writing commit/abort
//! markers into every partition of a transaction. Its state lives in sled and
//! is flushed before any answer that depends on it. It never stores record
//! data: that belongs to the partition servers.
//!
//! Layout — the pure decision logic (no I/O, no async):
//! - [`txn_state`]: the transaction state machine — states, legal moves as
//!   data, the one transition function.
//! - [`txn_metadata`]: the record kept per transactional id and its
//!   prepare → persist → complete discipline.
//! - [`txn_core`]: the handlers' decisions (InitProducerId,
//!   AddPartitionsToTxn, EndTxn, markers written, timeouts, restart,
//!   partition verification) as functions from a request to [`txn_core::Command`]s.
//! - [`error`]: [`CoordinatorError`], the codes requests are refused with,
//!   and [`error::ServiceError`], the service's wider set.
//!
//! The running service, built on top of it:
//! - [`store`]: the sled store — records, producer-id blocks, coordinator
//!   epoch, topics, servers; flushed before every answer that depends on it.
//! - [`driver`]: executes txn_core's commands in order under a per
//!   transactional id lock; metadata (topics, servers, placement);
//!   expiry; restart.
//! - [`markers`]: the marker writer (grouped per server, retried until
//!   acknowledged); [`partition_client`]: the calls to partition servers.
//! - [`groups`]: consumer groups — membership, generations and assignors
//!   (pure), and committed offsets kept in `__consumer_offsets` (a pure
//!   mirror plus the reads and writes of that topic).
//! - [`handlers`] (one file per RPC) and [`service`] (gRPC, reflection).
//! - [`failpoints`]: the crash sites of two-phase commit.
//! - [`hooks`]: the transport and clock seams only the deterministic
//!   simulation sets.

pub mod driver;
pub mod error;
pub mod failpoints;
pub mod groups;
pub mod handlers;
pub mod hooks;
pub mod markers;
pub mod partition_client;
pub mod service;
pub mod store;
pub mod txn_core;
pub mod txn_metadata;
pub mod txn_state;

pub use error::CoordinatorError;
pub use txn_core::{Answer, Command, TxnConfig};
pub use txn_metadata::{ProducerIdentity, TopicPartition, TxnMetadata, TxnTransition};
pub use txn_state::TxnState;
