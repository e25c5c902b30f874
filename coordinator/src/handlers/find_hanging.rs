//! FindHanging: open transactions in partitions that the coordinator does
//! not know, or that outlived their timeout.

use std::sync::Arc;

use xo_proto::coordinator::{FindHangingRequest, FindHangingResponse, HangingTransaction};

use super::{error_fields, partition_to_wire};
use crate::driver::Coordinator;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: FindHangingRequest,
) -> FindHangingResponse {
    let outcome = coordinator.find_hanging(&request.topics).await;
    let (error, error_message) = error_fields(&outcome);
    let hanging = outcome
        .unwrap_or_default()
        .into_iter()
        .map(|h| HangingTransaction {
            partition: Some(partition_to_wire(&h.partition)),
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            start_offset: h.start_offset,
            reason: h.reason,
        })
        .collect();
    FindHangingResponse { error, error_message, hanging }
}
