//! Why a group request was refused: the group protocol's own outcomes, or
//! one of the service's ([`ServiceError`]: storage, partition servers,
//! transactions). Expected outcomes, not bugs.

use crate::error::{CoordinatorError, ServiceError};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The member is not (or no longer) in the group: its session expired,
    /// it left, or the coordinator restarted. Rejoin with an empty member id.
    #[error("unknown member id {0:?} in this group: join again as a new member")]
    UnknownMemberId(String),
    /// The request names a generation that is not the group's current one:
    /// the member was rebalanced out and is a zombie until it rejoins.
    #[error("generation {got} is not the group's current generation {current}: rejoin")]
    IllegalGeneration { got: i32, current: i32 },
    /// A newer generation exists: the member must rejoin (Heartbeat).
    #[error("the group rebalanced to generation {current}: rejoin")]
    RebalanceInProgress { current: i32 },
    /// Offsets asked for are held by an open transaction, or the
    /// coordinator is still reading the group's offsets back from the log.
    #[error("offsets of the group are pending in an open transaction or still loading; retry")]
    UnstableOffsetCommit,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<CoordinatorError> for GroupError {
    fn from(e: CoordinatorError) -> Self {
        GroupError::Service(ServiceError::Txn(e))
    }
}
