//! AddOffsetsToTxn: the consumer group's `__consumer_offsets` partition
//! joins the transaction, so its offset commits land with the commit marker.

use std::sync::Arc;

use xo_proto::coordinator::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{error_fields, identity, required};
use crate::driver::Coordinator;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let outcome = async {
        required("transactional_id", &request.transactional_id)?;
        required("group_id", &request.group_id)?;
        let who = identity(request.producer_id, request.producer_epoch)?;
        coordinator.add_offsets(&request.transactional_id, who, &request.group_id).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    AddOffsetsToTxnResponse { error, error_message }
}
