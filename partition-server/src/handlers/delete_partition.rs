//! DeletePartition: remove a partition and its data.

use std::sync::Arc;

use xo_proto::partition::{DeletePartitionRequest, DeletePartitionResponse, ErrorCode};

use super::error_fields;
use crate::registry::Registry;

pub async fn handle(
    registry: &Arc<Registry>,
    request: DeletePartitionRequest,
) -> DeletePartitionResponse {
    match registry.delete(&request.topic, request.partition).await {
        Ok(()) => {
            DeletePartitionResponse { error: ErrorCode::None as i32, error_message: String::new() }
        }
        Err(e) => {
            let (error, error_message) = error_fields(&e);
            DeletePartitionResponse { error, error_message }
        }
    }
}
