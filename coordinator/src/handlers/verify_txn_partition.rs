//! VerifyTxnPartition: asked by a partition server before the first
//! transactional write of a transaction to a partition.

use std::sync::Arc;

use xo_proto::coordinator::{VerifyTxnPartitionRequest, VerifyTxnPartitionResponse};

use super::{error_fields, identity, partition_from_wire};
use crate::driver::Coordinator;
use crate::error::ServiceError;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: VerifyTxnPartitionRequest,
) -> VerifyTxnPartitionResponse {
    let outcome = async {
        let who = identity(request.producer_id, request.producer_epoch)?;
        let partition = request
            .partition
            .as_ref()
            .map(partition_from_wire)
            .ok_or_else(|| ServiceError::InvalidRequest("partition is required".into()))?;
        Ok(coordinator.verify(who, &partition).await)
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    VerifyTxnPartitionResponse { error, error_message, verified: outcome.unwrap_or(false) }
}
