//! The transaction coordinator: owns transactional ids and their
//! transaction state machine, hands out producer ids and epochs, keeps the
//! cluster metadata (topics, which partition server holds which partition)
//! and consumer groups, and drives two-phase commit by writing commit/abort
//! markers into every partition of a transaction. Its state lives in sled and
//! is flushed before any answer that depends on it. It never stores record
//! data: that belongs to the partition servers.
//!
//! Not built yet: this crate is filled by the transactions issue.
