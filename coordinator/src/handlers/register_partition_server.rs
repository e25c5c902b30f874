//! RegisterPartitionServer: a partition server announces its id and
//! address (at every start); the answer carries the coordinator epoch.

use std::sync::Arc;

use xo_proto::coordinator::{RegisterPartitionServerRequest, RegisterPartitionServerResponse};

use super::{error_fields, required};
use crate::driver::Coordinator;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: RegisterPartitionServerRequest,
) -> RegisterPartitionServerResponse {
    let outcome = async {
        required("server_id", &request.server_id)?;
        required("address", &request.address)?;
        coordinator.register_server(&request.server_id, &request.address).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    RegisterPartitionServerResponse {
        error,
        error_message,
        coordinator_epoch: outcome.unwrap_or(coordinator.coordinator_epoch()),
    }
}
