//! xo's wire formats, and nothing else: the gRPC services every xo process
//! speaks (generated from `proto/xo/*.proto` by protox at build time), the
//! Kafka RecordBatch v2 codec that partitions store on disk and send on the
//! wire, and the newtypes for the ids and offsets those formats carry.
//!
//! This crate is a pure codec. It does no I/O and nothing async, so the
//! partition server, the coordinator and the client can all depend on it
//! and every function here can be tested on plain byte slices. Conversion
//! from gRPC messages into the domain types of the log, the producer state
//! and the transaction state machine happens in the handlers of those
//! crates, never here.
//!
//! Layout:
//! - [`types`]: `Offset`, `ProducerId`, `ProducerEpoch`, `Sequence`.
//! - [`batch`]: RecordBatch v2 — header view, validation, records, control
//!   records (commit/abort markers), compression.
//! - [`partition`], [`coordinator`]: the generated gRPC types and stubs.

pub mod batch;
pub mod types;

pub use types::{Offset, ProducerEpoch, ProducerId, Sequence};

/// The generated `xo.partition.v1` service: produce, fetch, subscribe,
/// list offsets and partition management.
#[allow(clippy::all, missing_docs)]
pub mod partition {
    tonic::include_proto!("xo.partition.v1");
}

/// The generated `xo.coordinator.v1` service: metadata, producer ids,
/// transactions, consumer groups and offsets.
#[allow(clippy::all, missing_docs)]
pub mod coordinator {
    tonic::include_proto!("xo.coordinator.v1");
}

/// Encoded `FileDescriptorSet` of every xo service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("xo_descriptor");
