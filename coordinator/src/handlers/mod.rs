//! One file per RPC, each of the same shape: `handle(coordinator, request)`
//! parses the gRPC message into domain values, applies them through the
//! [`Coordinator`](crate::driver::Coordinator), and turns the outcome into
//! the response. gRPC types stop here: nothing below the handlers sees them.

pub mod abort_transaction;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod create_topic;
pub mod delete_topic;
pub mod describe_transaction;
pub mod end_txn;
pub mod find_hanging;
pub mod groups;
pub mod init_producer_id;
pub mod list_transactions;
pub mod metadata;
pub mod register_partition_server;
pub mod verify_txn_partition;

use xo_proto::coordinator::{ErrorCode, TopicPartition as WirePartition, TransactionDescription};
use xo_proto::{ProducerEpoch, ProducerId};

use crate::error::{CoordinatorError, ServiceError};
use crate::txn_metadata::{ProducerIdentity, TopicPartition, TxnMetadata};

/// The wire code of a refusal.
pub fn error_code(e: &ServiceError) -> ErrorCode {
    match e {
        ServiceError::Txn(e) => match e {
            CoordinatorError::ConcurrentTransactions => ErrorCode::ConcurrentTransactions,
            CoordinatorError::ProducerFenced => ErrorCode::ProducerFenced,
            CoordinatorError::InvalidProducerEpoch => ErrorCode::InvalidProducerEpoch,
            CoordinatorError::InvalidTxnState => ErrorCode::InvalidTxnState,
            CoordinatorError::InvalidProducerIdMapping => ErrorCode::InvalidProducerIdMapping,
            CoordinatorError::TransactionalIdNotFound => ErrorCode::TransactionalIdNotFound,
            CoordinatorError::InvalidTransactionTimeout => ErrorCode::InvalidTransactionTimeout,
            CoordinatorError::TooManyPartitions => ErrorCode::TooManyPartitions,
            CoordinatorError::CoordinatorNotAvailable => ErrorCode::CoordinatorNotAvailable,
        },
        ServiceError::UnknownTopicOrPartition(_) => ErrorCode::UnknownTopicOrPartition,
        ServiceError::TopicAlreadyExists(_) => ErrorCode::TopicAlreadyExists,
        ServiceError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        ServiceError::NoPartitionServers => ErrorCode::NoPartitionServers,
        ServiceError::PartitionServer(_) => ErrorCode::PartitionServerError,
        ServiceError::Storage(_) => ErrorCode::CoordinatorNotAvailable,
    }
}

/// (code, message) for a response's error fields; (NONE, "") on success.
pub fn error_fields<T>(outcome: &Result<T, ServiceError>) -> (i32, String) {
    match outcome {
        Ok(_) => (ErrorCode::None as i32, String::new()),
        Err(e) => (error_code(e) as i32, e.to_string()),
    }
}

/// A producer identity from the wire; the epoch must fit the record format.
pub fn identity(producer_id: i64, producer_epoch: i32) -> Result<ProducerIdentity, ServiceError> {
    let epoch = i16::try_from(producer_epoch).map_err(|_| {
        ServiceError::InvalidRequest(format!("producer epoch {producer_epoch} out of range"))
    })?;
    Ok(ProducerIdentity::new(ProducerId(producer_id), ProducerEpoch(epoch)))
}

pub fn required(name: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::InvalidRequest(format!("{name} is required")));
    }
    Ok(())
}

pub fn partition_from_wire(tp: &WirePartition) -> TopicPartition {
    TopicPartition::new(tp.topic.clone(), tp.partition)
}

pub fn partition_to_wire(tp: &TopicPartition) -> WirePartition {
    WirePartition { topic: tp.topic.clone(), partition: tp.partition }
}

/// The admin view of a record.
pub fn description(meta: &TxnMetadata) -> TransactionDescription {
    let open = !meta.partitions.is_empty();
    TransactionDescription {
        transactional_id: meta.transactional_id.clone(),
        producer_id: meta.producer_id.0,
        producer_epoch: i32::from(meta.producer_epoch.0),
        state: meta.state.name().to_string(),
        partitions: meta.partitions.iter().map(partition_to_wire).collect(),
        timeout_ms: i64::from(meta.timeout_ms),
        start_time_ms: match meta.txn_start_ms {
            Some(start) if open => start as i64,
            _ => -1,
        },
        last_update_ms: meta.last_update_ms as i64,
    }
}
