//! The errors the coordinator answers requests with. These are expected
//! outcomes (`Result`), not bugs: a broken invariant is an `assert!`.

use crate::txn_state::IllegalTransition;

/// Why a coordinator request was refused. Names follow Kafka's error codes
/// ([`CoordinatorError::code`]) so clients and tooling read alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CoordinatorError {
    /// Another state change of this transactional id is in flight (a
    /// pending write, or markers still being written). Retry shortly.
    #[error("another operation on this transactional id is in progress; retry")]
    ConcurrentTransactions,
    /// A newer producer (a higher epoch, or a newer producer id) owns this
    /// transactional id. The caller is a zombie and must stop.
    #[error("producer fenced: a newer producer owns this transactional id")]
    ProducerFenced,
    /// The epoch is *newer* than any the coordinator handed out: the client
    /// is confused (or its state is corrupt); retrying will not help.
    #[error("producer epoch was never handed out by this coordinator")]
    InvalidProducerEpoch,
    /// The request does not fit the transaction's state, e.g. commit after
    /// the same transaction was already aborted.
    #[error("request not valid in the transaction's current state")]
    InvalidTxnState,
    /// The producer id is not (and never was, as far as the coordinator
    /// remembers) the one assigned to this transactional id.
    #[error("producer id is not assigned to this transactional id")]
    InvalidProducerIdMapping,
    /// The coordinator has no record of this transactional id: it was never
    /// initialised or has expired. Call InitProducerId.
    #[error("transactional id not found; call InitProducerId")]
    TransactionalIdNotFound,
    /// The requested transaction timeout is zero or above the configured
    /// maximum.
    #[error("transaction timeout out of range")]
    InvalidTransactionTimeout,
    /// Adding the partitions would exceed `TXN_PARTITIONS_MAX`.
    #[error("too many partitions in one transaction")]
    TooManyPartitions,
    /// The coordinator could not persist the decision (storage failure) or
    /// is not serving this transactional id right now. Retry.
    #[error("coordinator not available; retry")]
    CoordinatorNotAvailable,
}

impl CoordinatorError {
    /// Retrying the same request later may succeed.
    pub fn is_retriable(self) -> bool {
        match self {
            CoordinatorError::ConcurrentTransactions
            | CoordinatorError::CoordinatorNotAvailable => true,
            CoordinatorError::ProducerFenced
            | CoordinatorError::InvalidProducerEpoch
            | CoordinatorError::InvalidTxnState
            | CoordinatorError::InvalidProducerIdMapping
            | CoordinatorError::TransactionalIdNotFound
            | CoordinatorError::InvalidTransactionTimeout
            | CoordinatorError::TooManyPartitions => false,
        }
    }

    /// The Kafka error-code name, for the wire and for logs.
    pub fn code(self) -> &'static str {
        match self {
            CoordinatorError::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            CoordinatorError::ProducerFenced => "PRODUCER_FENCED",
            CoordinatorError::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            CoordinatorError::InvalidTxnState => "INVALID_TXN_STATE",
            CoordinatorError::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            CoordinatorError::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
            CoordinatorError::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            CoordinatorError::TooManyPartitions => "TOO_MANY_PARTITIONS",
            CoordinatorError::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        }
    }
}

impl From<IllegalTransition> for CoordinatorError {
    fn from(_: IllegalTransition) -> Self {
        CoordinatorError::InvalidTxnState
    }
}

/// Why a request to the running coordinator failed: a transaction decision
/// ([`CoordinatorError`]) or one of the metadata and environment outcomes
/// the service adds around it. Handlers map each to a wire error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Txn(#[from] CoordinatorError),
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("no partition server is registered")]
    NoPartitionServers,
    #[error("partition server error: {0}")]
    PartitionServer(String),
    /// The store failed (retriable, like COORDINATOR_NOT_AVAILABLE).
    #[error("coordinator storage unavailable: {0}")]
    Storage(String),
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::CoordinatorError::*;

    #[test]
    fn t10_only_concurrency_and_availability_are_retriable() {
        // Proves: exactly the two transient errors say "retry".
        let all = [
            ConcurrentTransactions,
            ProducerFenced,
            InvalidProducerEpoch,
            InvalidTxnState,
            InvalidProducerIdMapping,
            TransactionalIdNotFound,
            InvalidTransactionTimeout,
            TooManyPartitions,
            CoordinatorNotAvailable,
        ];
        let retriable: Vec<_> = all.into_iter().filter(|e| e.is_retriable()).collect();
        assert_eq!(retriable, vec![ConcurrentTransactions, CoordinatorNotAvailable]);
        for e in all {
            assert!(e.code().chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }
}
