//! The consumer group RPCs — JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, TxnOffsetCommit, OffsetFetch — each of the handlers'
//! shape: parse the gRPC message into domain values, apply them through
//! [`crate::groups`], turn the outcome into the response. They share one
//! file because they share the group error mapping.

use xo_proto::coordinator::{
    ErrorCode, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, PartitionOffset, SyncGroupRequest, SyncGroupResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{error_code, identity, partition_from_wire, partition_to_wire};
use crate::driver::Coordinator;
use crate::error::ServiceError;
use crate::groups::membership::JoinRequest;
use crate::groups::{self, CommitOffset, GroupError, OffsetCommit};

/// The wire code of a group refusal.
pub fn group_error_code(e: &GroupError) -> ErrorCode {
    match e {
        GroupError::UnknownMemberId(_) => ErrorCode::UnknownMemberId,
        GroupError::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
        GroupError::RebalanceInProgress { .. } => ErrorCode::RebalanceInProgress,
        GroupError::UnstableOffsetCommit => ErrorCode::UnstableOffsetCommit,
        GroupError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        GroupError::Service(e) => error_code(e),
    }
}

/// (code, message) for a response's error fields; (NONE, "") on success.
fn fields<T>(outcome: &Result<T, GroupError>) -> (i32, String) {
    match outcome {
        Ok(_) => (ErrorCode::None as i32, String::new()),
        Err(e) => (group_error_code(e) as i32, e.to_string()),
    }
}

fn commit_offsets(offsets: Vec<PartitionOffset>) -> Result<Vec<CommitOffset>, GroupError> {
    offsets
        .into_iter()
        .map(|po| {
            let Some(tp) = po.partition else {
                return Err(GroupError::InvalidRequest("an offset without its partition".into()));
            };
            Ok(CommitOffset {
                partition: partition_from_wire(&tp),
                offset: po.offset,
                metadata: po.metadata,
            })
        })
        .collect()
}

pub async fn join_group(c: &Coordinator, request: JoinGroupRequest) -> JoinGroupResponse {
    let outcome = JoinRequest::new(
        &request.member_id,
        &request.topics,
        request.session_timeout_ms,
        &request.assignor,
    )
    .and_then(|join| groups::join_group(c, &request.group_id, join));
    let (error, error_message) = fields(&outcome);
    let (member_id, generation_id) = match outcome {
        Ok(joined) => (joined.member_id, joined.generation),
        Err(_) => (String::new(), -1),
    };
    JoinGroupResponse { error, error_message, member_id, generation_id }
}

pub async fn sync_group(c: &Coordinator, request: SyncGroupRequest) -> SyncGroupResponse {
    let outcome =
        groups::sync_group(c, &request.group_id, &request.member_id, request.generation_id);
    let (error, error_message) = fields(&outcome);
    let assignment = outcome.unwrap_or_default().iter().map(partition_to_wire).collect();
    SyncGroupResponse { error, error_message, assignment }
}

pub async fn heartbeat(c: &Coordinator, request: HeartbeatRequest) -> HeartbeatResponse {
    let outcome =
        groups::heartbeat(c, &request.group_id, &request.member_id, request.generation_id);
    let (error, error_message) = fields(&outcome);
    HeartbeatResponse { error, error_message }
}

pub async fn leave_group(c: &Coordinator, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let outcome = groups::leave_group(c, &request.group_id, &request.member_id);
    let (error, error_message) = fields(&outcome);
    LeaveGroupResponse { error, error_message }
}

pub async fn offset_commit(c: &Coordinator, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let outcome = async {
        let commit = OffsetCommit {
            group_id: request.group_id,
            member_id: request.member_id,
            generation: request.generation_id,
            offsets: commit_offsets(request.offsets)?,
        };
        groups::offset_commit(c, commit).await
    }
    .await;
    let (error, error_message) = fields(&outcome);
    OffsetCommitResponse { error, error_message }
}

pub async fn txn_offset_commit(
    c: &Coordinator,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let outcome = async {
        if request.transactional_id.is_empty() {
            return Err(ServiceError::InvalidRequest("transactional_id is required".into()).into());
        }
        let who = identity(request.producer_id, request.producer_epoch)?;
        let commit = OffsetCommit {
            group_id: request.group_id,
            member_id: request.member_id,
            generation: request.generation_id,
            offsets: commit_offsets(request.offsets)?,
        };
        groups::txn_offset_commit(c, &request.transactional_id, who, commit).await
    }
    .await;
    let (error, error_message) = fields(&outcome);
    TxnOffsetCommitResponse { error, error_message }
}

pub async fn offset_fetch(c: &Coordinator, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let partitions = request.partitions.iter().map(partition_from_wire).collect();
    let outcome = groups::offset_fetch(c, &request.group_id, partitions).await;
    let (error, error_message) = fields(&outcome);
    let offsets = outcome
        .unwrap_or_default()
        .into_iter()
        .map(|(tp, committed)| {
            let (offset, metadata) = match committed {
                Some(c) => (c.value.offset, c.value.metadata),
                None => (-1, String::new()),
            };
            PartitionOffset { partition: Some(partition_to_wire(&tp)), offset, metadata }
        })
        .collect();
    OffsetFetchResponse { error, error_message, offsets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CoordinatorError;

    #[test]
    fn t10_group_refusals_have_their_wire_codes() {
        // Proves: each group outcome maps to the code the client acts on,
        // and service errors keep theirs.
        let cases = [
            (GroupError::UnknownMemberId("m".into()), ErrorCode::UnknownMemberId),
            (GroupError::IllegalGeneration { got: 1, current: 2 }, ErrorCode::IllegalGeneration),
            (GroupError::RebalanceInProgress { current: 2 }, ErrorCode::RebalanceInProgress),
            (GroupError::UnstableOffsetCommit, ErrorCode::UnstableOffsetCommit),
            (GroupError::InvalidRequest("x".into()), ErrorCode::InvalidRequest),
            (CoordinatorError::ProducerFenced.into(), ErrorCode::ProducerFenced),
            (ServiceError::PartitionServer("down".into()).into(), ErrorCode::PartitionServerError),
        ];
        for (e, code) in cases {
            assert_eq!(group_error_code(&e), code, "{e}");
        }
    }
}
