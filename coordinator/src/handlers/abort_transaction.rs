//! AbortTransaction: an operator aborts an open transaction; its producer
//! is fenced (epoch bump), as after a timeout.

use std::sync::Arc;

use xo_proto::coordinator::{AbortTransactionRequest, AbortTransactionResponse};

use super::{error_fields, required};
use crate::driver::Coordinator;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: AbortTransactionRequest,
) -> AbortTransactionResponse {
    let outcome = async {
        required("transactional_id", &request.transactional_id)?;
        coordinator.abort(&request.transactional_id).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    AbortTransactionResponse { error, error_message }
}
