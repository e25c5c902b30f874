//! One file per RPC, each of the same shape: `handle(registry, request)`
//! turns the gRPC message into domain values, applies them to the
//! partition, and turns the outcome into the response. gRPC types stop
//! here: nothing below the handlers sees them.

pub mod create_partition;
pub mod delete_partition;
pub mod describe_partitions;
pub mod describe_producers;
pub mod fetch;
pub mod list_offsets;
pub mod produce;
pub mod subscribe;
pub mod write_txn_markers;

use xo_proto::batch::BatchError;
use xo_proto::partition::{ErrorCode, IsolationLevel};

use crate::partition::{Isolation, PartitionError};
use crate::producer_state::ProducerStateError;
use crate::registry::RegistryError;

/// The error code a client sees for a partition-level failure.
pub fn partition_error_code(e: &PartitionError) -> ErrorCode {
    match e {
        PartitionError::Batch(BatchError::TooLarge { .. }) => ErrorCode::MessageTooLarge,
        PartitionError::Batch(
            BatchError::CrcMismatch { .. }
            | BatchError::Truncated { .. }
            | BatchError::LengthMismatch { .. },
        ) => ErrorCode::CorruptMessage,
        PartitionError::Batch(_) | PartitionError::ControlBatchFromProducer => {
            ErrorCode::InvalidRecord
        }
        PartitionError::Producer(ProducerStateError::FencedEpoch { .. }) => {
            ErrorCode::InvalidProducerEpoch
        }
        PartitionError::Producer(ProducerStateError::OutOfOrder { .. }) => {
            ErrorCode::OutOfOrderSequence
        }
        PartitionError::Producer(ProducerStateError::UnknownProducer { .. }) => {
            ErrorCode::UnknownProducerId
        }
        PartitionError::Producer(ProducerStateError::TooManyProducers) => ErrorCode::InvalidRequest,
        PartitionError::Producer(ProducerStateError::NonTransactionalWriteInTransaction {
            ..
        }) => ErrorCode::InvalidTxnState,
        PartitionError::Producer(ProducerStateError::CoordinatorFenced { .. }) => {
            ErrorCode::CoordinatorFenced
        }
        PartitionError::TransactionNotVerified(_) => ErrorCode::TransactionNotVerified,
        PartitionError::InvalidMarker(_) => ErrorCode::InvalidTxnState,
        PartitionError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        PartitionError::Storage(_) => ErrorCode::StorageError,
    }
}

pub fn registry_error_code(e: &RegistryError) -> ErrorCode {
    match e {
        RegistryError::UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
        RegistryError::AlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
        RegistryError::Invalid(_) => ErrorCode::InvalidRequest,
        RegistryError::Partition(p) => partition_error_code(p),
    }
}

/// (code, message) pair for a response from any handler error.
pub fn error_fields(e: &RegistryError) -> (i32, String) {
    (registry_error_code(e) as i32, e.to_string())
}

pub fn isolation(raw: i32) -> Isolation {
    match IsolationLevel::try_from(raw) {
        Ok(IsolationLevel::ReadUncommitted) => Isolation::ReadUncommitted,
        // Unknown values fall back to the safe level.
        _ => Isolation::ReadCommitted,
    }
}
