//! The library applications link to talk to xo: the idempotent and
//! transactional producers, the read-committed consumer and the admin
//! client. It encodes record batches with `xo-proto`'s codec and speaks gRPC
//! to the coordinator and the partition servers; it holds no durable state of
//! its own.
//!
//! Not built yet: this crate is filled by the client issue.
