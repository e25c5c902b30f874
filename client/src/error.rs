//! The one error type of the client, and the class of every error: what an
//! application is expected to do about it.
//!
//! | class                   | meaning                                   | examples                                   |
//! |-------------------------|-------------------------------------------|--------------------------------------------|
//! | [`ErrorClass::Retriable`] | transient; the client already retried it with backoff and gives it back only when its deadline (request timeout, delivery timeout) passed. Trying again later may work. | transport errors, timeouts, `CONCURRENT_TRANSACTIONS`, `COORDINATOR_NOT_AVAILABLE`, `NOT_LEADER`, `UNSTABLE_OFFSET_COMMIT`, a full producer queue |
//! | [`ErrorClass::Abortable`] | the current transaction (or consumer generation) cannot complete: abort it, rewind the consumer to its committed offsets, and do the work again | a failed batch in a transaction, `INVALID_TXN_STATE`, `OUT_OF_ORDER_SEQUENCE`, `ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`, `REBALANCE_IN_PROGRESS` |
//! | [`ErrorClass::Fatal`]     | the producer (or consumer) is unusable; drop it and make a new one | `PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH` (a newer instance owns the transactional id), corrupt data, a closed producer, a producer whose background task stopped |
//! | [`ErrorClass::Invalid`]   | the request can never succeed as made: fix the call | unknown topic, record too large, `TOPIC_ALREADY_EXISTS`, a method called in the wrong state |
//!
//! The transactional producer turns every non-fatal failure that poisons a
//! transaction into [`Error::TransactionAbortable`], so an exactly-once
//! loop needs only three arms: fatal → stop, abortable → abort and rewind,
//! anything else → report.

use std::time::Duration;

use xo_proto::batch::BatchError;
use xo_proto::coordinator::ErrorCode as CoordinatorCode;
use xo_proto::partition::ErrorCode as PartitionCode;

/// What the application should do about an [`Error`]; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient; already retried inside the client until a deadline.
    Retriable,
    /// Abort the transaction (rewind the consumer) and do the work again.
    Abortable,
    /// The producer or consumer is unusable: make a new one.
    Fatal,
    /// The request is wrong and will not succeed when repeated.
    Invalid,
}

/// Every failure the client reports. Cheap to clone: a failed batch hands
/// the same error to each of its records.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed, was refused, or broke mid-call; the outcome
    /// of the call is unknown.
    #[error("transport error talking to {addr}: {message}")]
    Transport { addr: String, message: String },
    /// Retries did not succeed before the deadline.
    #[error("{what} did not complete within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The coordinator refused the request.
    #[error("coordinator: {code:?}: {message}")]
    Coordinator { code: CoordinatorCode, message: String },
    /// A partition server refused the request for one partition.
    #[error("partition {topic}/{partition}: {code:?}: {message}")]
    Partition { topic: String, partition: u32, code: PartitionCode, message: String },
    /// A gRPC status that is not a transport failure (e.g. `Unimplemented`
    /// from a server that lacks the service).
    #[error("gRPC status {code:?}: {message}")]
    Rpc { code: tonic::Code, message: String },
    /// The cluster does not know the topic (after a metadata refresh).
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    /// The producer's buffer and its queue of records waiting for it are
    /// full: the record was not sent. Await earlier sends (or flush), then
    /// send it again.
    #[error("producer queue full ({bytes} bytes waiting); the record was not sent")]
    QueueFull { bytes: usize },
    /// A single record is larger than a request may carry.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A method was called in a state that does not allow it (for example
    /// `send` on a transactional producer outside a transaction).
    #[error("invalid state: {0}")]
    State(String),
    /// The static metadata of the config has no coordinator to ask.
    #[error("no coordinator: the client was configured with static metadata")]
    NoCoordinator,
    /// Something failed that the open transaction depends on: abort it.
    #[error("the transaction must be aborted: {cause}")]
    TransactionAbortable { cause: Box<Error> },
    /// The record was in a transaction the application aborted.
    #[error("the record's transaction was aborted")]
    TransactionAborted,
    /// A record batch from a server failed its checks.
    #[error("corrupt record batch: {0}")]
    Corrupt(BatchError),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
    /// A background task of the producer stopped while the producer was
    /// open (it panicked, or the Tokio runtime it ran on shut down):
    /// nothing is sent, retried or answered any more. Records that were
    /// not acknowledged may or may not have been written.
    #[error(
        "the producer's {task} task stopped: {reason}; the producer is unusable (records not \
         acknowledged may or may not have been written)"
    )]
    ProducerStopped { task: &'static str, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What to do about this error; see the module doc.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } | Error::QueueFull { .. } => {
                ErrorClass::Retriable
            }
            Error::Coordinator { code, .. } => coordinator_class(*code),
            Error::Partition { code, .. } => partition_class(*code),
            Error::Rpc { .. }
            | Error::UnknownTopic(_)
            | Error::UnknownPartition { .. }
            | Error::RecordTooLarge { .. }
            | Error::Config(_)
            | Error::State(_)
            | Error::NoCoordinator => ErrorClass::Invalid,
            Error::TransactionAbortable { cause } if cause.is_fatal() => ErrorClass::Fatal,
            Error::TransactionAbortable { .. } | Error::TransactionAborted => ErrorClass::Abortable,
            Error::Corrupt(_) | Error::Closed | Error::ProducerStopped { .. } => ErrorClass::Fatal,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.class() == ErrorClass::Retriable
    }

    pub fn is_abortable(&self) -> bool {
        self.class() == ErrorClass::Abortable
    }

    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// A newer producer with the same transactional id exists, or the
    /// coordinator fenced this one (e.g. its transaction timed out).
    pub fn is_fenced(&self) -> bool {
        match self {
            Error::Coordinator { code, .. } => matches!(
                code,
                CoordinatorCode::ProducerFenced | CoordinatorCode::InvalidProducerEpoch
            ),
            Error::Partition { code, .. } => *code == PartitionCode::InvalidProducerEpoch,
            Error::TransactionAbortable { cause } => cause.is_fenced(),
            _ => false,
        }
    }

    /// The group has moved on without this consumer: the coordinator
    /// refused its generation or member id (ILLEGAL_GENERATION /
    /// UNKNOWN_MEMBER_ID), directly or as the cause of an abortable
    /// transaction error — typically `send_offsets_to_transaction` after a
    /// rebalance. Abort, then `Consumer::enforce_rebalance` so the consumer
    /// rejoins at its next poll instead of after its next heartbeat.
    pub fn is_stale_group_member(&self) -> bool {
        match self {
            Error::Coordinator { code, .. } => matches!(
                code,
                CoordinatorCode::IllegalGeneration | CoordinatorCode::UnknownMemberId
            ),
            Error::TransactionAbortable { cause } => cause.is_stale_group_member(),
            _ => false,
        }
    }

    /// The coordinator error code, if the coordinator refused the request.
    pub fn coordinator_code(&self) -> Option<CoordinatorCode> {
        match self {
            Error::Coordinator { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The partition error code, if a partition server refused the request.
    pub fn partition_code(&self) -> Option<PartitionCode> {
        match self {
            Error::Partition { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether cached metadata may be stale after this error (the partition
    /// moved, or the server we asked is gone).
    pub(crate) fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Partition { code, .. } => {
                matches!(code, PartitionCode::NotLeader | PartitionCode::UnknownTopicOrPartition)
            }
            _ => false,
        }
    }

    /// Wraps a failure that poisons the open transaction (fatal errors stay
    /// as they are, and an already wrapped one is not wrapped twice).
    pub(crate) fn into_abortable(self) -> Error {
        match self {
            e @ (Error::TransactionAbortable { .. } | Error::TransactionAborted) => e,
            e if e.is_fatal() => e,
            e => Error::TransactionAbortable { cause: Box::new(e) },
        }
    }

    /// The error for a coordinator response's `error` field, or `None` for
    /// `NONE`.
    pub(crate) fn from_coordinator(code: i32, message: String) -> Option<Error> {
        match CoordinatorCode::try_from(code) {
            Ok(CoordinatorCode::None) => None,
            Ok(code) => Some(Error::Coordinator { code, message }),
            Err(_) => Some(Error::Rpc {
                code: tonic::Code::Unknown,
                message: format!("unknown coordinator error code {code}: {message}"),
            }),
        }
    }

    /// The error for a partition response's `error` field, or `None` for
    /// `NONE`.
    pub(crate) fn from_partition(
        topic: &str,
        partition: u32,
        code: i32,
        message: String,
    ) -> Option<Error> {
        match PartitionCode::try_from(code) {
            Ok(PartitionCode::None) => None,
            Ok(code) => {
                Some(Error::Partition { topic: topic.to_string(), partition, code, message })
            }
            Err(_) => Some(Error::Rpc {
                code: tonic::Code::Unknown,
                message: format!("unknown partition error code {code}: {message}"),
            }),
        }
    }

    /// A failed gRPC call to `addr`: statuses that mean "the call may not
    /// have reached the server, or its answer was lost" are transport
    /// errors (retriable); the rest are protocol errors.
    pub(crate) fn from_status(addr: &str, status: tonic::Status) -> Error {
        use tonic::Code;
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Unknown
            | Code::Internal => {
                Error::Transport { addr: addr.to_string(), message: status.message().to_string() }
            }
            code => Error::Rpc { code, message: status.message().to_string() },
        }
    }
}

/// The class of each coordinator error code.
pub fn coordinator_class(code: CoordinatorCode) -> ErrorClass {
    use CoordinatorCode::*;
    match code {
        ConcurrentTransactions
        | CoordinatorNotAvailable
        | UnstableOffsetCommit
        | NoPartitionServers
        | PartitionServerError => ErrorClass::Retriable,
        InvalidTxnState | TooManyPartitions | UnknownMemberId | IllegalGeneration
        | RebalanceInProgress => ErrorClass::Abortable,
        ProducerFenced
        | InvalidProducerEpoch
        | InvalidProducerIdMapping
        | TransactionalIdNotFound => ErrorClass::Fatal,
        None
        | InvalidTransactionTimeout
        | UnknownTopicOrPartition
        | TopicAlreadyExists
        | InvalidRequest
        | GroupIdNotFound => ErrorClass::Invalid,
    }
}

/// The class of each partition server error code.
pub fn partition_class(code: PartitionCode) -> ErrorClass {
    use PartitionCode::*;
    match code {
        // The partition moved or is being created, the disk hiccupped, or
        // the bytes were damaged in transit: all worth a retry.
        NotLeader | UnknownTopicOrPartition | StorageError | CorruptMessage | CoordinatorFenced => {
            ErrorClass::Retriable
        }
        // Handled inside the producer while it can still restore order;
        // reaching the application, they mean the partition's sequence has
        // a gap the transaction cannot survive.
        OutOfOrderSequence | UnknownProducerId | InvalidTxnState | TransactionNotVerified => {
            ErrorClass::Abortable
        }
        InvalidProducerEpoch => ErrorClass::Fatal,
        None | MessageTooLarge | InvalidRecord | InvalidRequest | OffsetOutOfRange
        | TopicAlreadyExists => ErrorClass::Invalid,
    }
}

/// How the producer's in-flight logic treats a failed produce of one batch.
#[derive(Clone, Debug)]
pub(crate) enum ProduceFailure {
    /// Transient: resend the same bytes (same sequence) after a backoff.
    Retry(Error),
    /// OUT_OF_ORDER_SEQUENCE / UNKNOWN_PRODUCER_ID: retriable only if an
    /// earlier batch of the partition was unresolved when this one was sent
    /// (the server may have seen them in the wrong order).
    Sequence(Error),
    /// Will not succeed when resent.
    Terminal(Error),
}

impl ProduceFailure {
    pub(crate) fn classify(e: Error) -> ProduceFailure {
        match e.partition_code() {
            Some(PartitionCode::OutOfOrderSequence | PartitionCode::UnknownProducerId) => {
                ProduceFailure::Sequence(e)
            }
            _ if e.is_retriable() => ProduceFailure::Retry(e),
            _ => ProduceFailure::Terminal(e),
        }
    }

    pub(crate) fn error(&self) -> &Error {
        match self {
            ProduceFailure::Retry(e)
            | ProduceFailure::Sequence(e)
            | ProduceFailure::Terminal(e) => e,
        }
    }

    pub(crate) fn into_error(self) -> Error {
        match self {
            ProduceFailure::Retry(e)
            | ProduceFailure::Sequence(e)
            | ProduceFailure::Terminal(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(code: CoordinatorCode) -> Error {
        Error::Coordinator { code, message: String::new() }
    }

    fn partition(code: PartitionCode) -> Error {
        Error::Partition { topic: "t".into(), partition: 0, code, message: String::new() }
    }

    #[test]
    fn t10_coordinator_codes_follow_the_documented_classes() {
        // Proves: the three classes the issue names hold for the codes it names.
        use CoordinatorCode::*;
        for code in [ConcurrentTransactions, CoordinatorNotAvailable, UnstableOffsetCommit] {
            assert_eq!(coordinator(code).class(), ErrorClass::Retriable, "{code:?}");
        }
        for code in [ProducerFenced, InvalidProducerEpoch] {
            assert_eq!(coordinator(code).class(), ErrorClass::Fatal, "{code:?}");
            assert!(coordinator(code).is_fenced());
        }
        for code in [InvalidTxnState, IllegalGeneration, UnknownMemberId, RebalanceInProgress] {
            assert_eq!(coordinator(code).class(), ErrorClass::Abortable, "{code:?}");
        }
        assert_eq!(coordinator(TopicAlreadyExists).class(), ErrorClass::Invalid);
    }

    #[test]
    fn t12_a_stale_group_member_is_recognised_through_the_abortable_wrapper() {
        // Proves: ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID say "rejoin", bare
        // or as the cause of an abortable transaction error (the shape
        // send_offsets_to_transaction returns), and nothing else does.
        use CoordinatorCode::*;
        let wrapped = |e: Error| Error::TransactionAbortable { cause: Box::new(e) };
        for code in [IllegalGeneration, UnknownMemberId] {
            assert!(coordinator(code).is_stale_group_member(), "{code:?}");
            assert!(wrapped(coordinator(code)).is_stale_group_member(), "{code:?}");
        }
        for code in [RebalanceInProgress, ProducerFenced, CoordinatorNotAvailable] {
            assert!(!wrapped(coordinator(code)).is_stale_group_member(), "{code:?}");
        }
        assert!(!Error::TransactionAborted.is_stale_group_member());
    }

    #[test]
    fn t11_partition_codes_follow_the_documented_classes() {
        use PartitionCode::*;
        for code in [NotLeader, UnknownTopicOrPartition, StorageError] {
            assert!(partition(code).is_retriable(), "{code:?}");
        }
        assert!(partition(InvalidProducerEpoch).is_fatal());
        assert!(partition(InvalidProducerEpoch).is_fenced());
        assert!(partition(OutOfOrderSequence).is_abortable());
        assert_eq!(partition(MessageTooLarge).class(), ErrorClass::Invalid);
        assert!(partition(NotLeader).invalidates_metadata());
        assert!(!partition(StorageError).invalidates_metadata());
    }

    #[test]
    fn t12_transport_and_timeouts_are_retriable() {
        let e = Error::from_status("a:1", tonic::Status::unavailable("down"));
        assert!(e.is_retriable());
        assert!(e.invalidates_metadata());
        let e = Error::from_status("a:1", tonic::Status::unimplemented("no"));
        assert_eq!(e.class(), ErrorClass::Invalid);
        assert!(Error::Timeout { what: "x", after: Duration::from_secs(1) }.is_retriable());
    }

    #[test]
    fn t13_into_abortable_keeps_fatal_errors_fatal() {
        // Proves: a fenced producer is never told "abort and retry".
        let fenced = coordinator(CoordinatorCode::ProducerFenced).into_abortable();
        assert!(fenced.is_fatal());
        let wrapped = partition(PartitionCode::MessageTooLarge).into_abortable();
        assert!(wrapped.is_abortable());
        assert!(
            matches!(wrapped.clone().into_abortable(), Error::TransactionAbortable { cause } if !matches!(*cause, Error::TransactionAbortable { .. }))
        );
        // A wrapped fatal error (should one be built by hand) reads as fatal.
        let by_hand = Error::TransactionAbortable {
            cause: Box::new(partition(PartitionCode::InvalidProducerEpoch)),
        };
        assert!(by_hand.is_fatal() && by_hand.is_fenced());
    }

    #[test]
    fn t14_response_codes_map_to_errors() {
        assert!(Error::from_coordinator(0, String::new()).is_none());
        assert!(matches!(
            Error::from_coordinator(1, "busy".into()),
            Some(Error::Coordinator { code: CoordinatorCode::ConcurrentTransactions, .. })
        ));
        assert!(matches!(Error::from_coordinator(999, String::new()), Some(Error::Rpc { .. })));
        assert!(Error::from_partition("t", 1, 0, String::new()).is_none());
        assert!(matches!(
            Error::from_partition("t", 1, 12, String::new()),
            Some(Error::Partition { code: PartitionCode::NotLeader, partition: 1, .. })
        ));
    }

    #[test]
    fn t15_produce_failures_split_sequence_errors_from_others() {
        assert!(matches!(
            ProduceFailure::classify(partition(PartitionCode::OutOfOrderSequence)),
            ProduceFailure::Sequence(_)
        ));
        assert!(matches!(
            ProduceFailure::classify(partition(PartitionCode::UnknownProducerId)),
            ProduceFailure::Sequence(_)
        ));
        assert!(matches!(
            ProduceFailure::classify(partition(PartitionCode::NotLeader)),
            ProduceFailure::Retry(_)
        ));
        assert!(matches!(
            ProduceFailure::classify(partition(PartitionCode::InvalidProducerEpoch)),
            ProduceFailure::Terminal(_)
        ));
        assert!(matches!(
            ProduceFailure::classify(partition(PartitionCode::MessageTooLarge)),
            ProduceFailure::Terminal(_)
        ));
    }
}
