//! DescribeTransaction: the record of one transactional id.

use std::sync::Arc;

use xo_proto::coordinator::{DescribeTransactionRequest, DescribeTransactionResponse};

use super::{description, error_fields, required};
use crate::driver::Coordinator;
use crate::error::CoordinatorError;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: DescribeTransactionRequest,
) -> DescribeTransactionResponse {
    let outcome = async {
        required("transactional_id", &request.transactional_id)?;
        coordinator
            .describe(&request.transactional_id)
            .await
            .ok_or(CoordinatorError::TransactionalIdNotFound.into())
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    DescribeTransactionResponse {
        error,
        error_message,
        transaction: outcome.ok().map(|m| description(&m)),
    }
}
