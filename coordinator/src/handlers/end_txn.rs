//! EndTxn: commit or abort. Answered once the decision is durable; the
//! markers follow in the background. The reply names the producer's
//! identity for its next transaction (the epoch is bumped).

use std::sync::Arc;

use xo_proto::coordinator::{EndTxnRequest, EndTxnResponse};

use super::{error_fields, identity, required};
use crate::driver::Coordinator;

pub async fn handle(coordinator: &Arc<Coordinator>, request: EndTxnRequest) -> EndTxnResponse {
    let outcome = async {
        required("transactional_id", &request.transactional_id)?;
        let who = identity(request.producer_id, request.producer_epoch)?;
        coordinator.end_txn(&request.transactional_id, who, request.commit).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    let (committed, producer_id, producer_epoch) = match &outcome {
        Ok((committed, next)) => (*committed, next.producer_id.0, i32::from(next.producer_epoch.0)),
        Err(_) => (false, -1, -1),
    };
    EndTxnResponse { error, error_message, committed, producer_id, producer_epoch }
}
