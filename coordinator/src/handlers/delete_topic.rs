//! DeleteTopic: delete the partitions on their servers, then the record.

use std::sync::Arc;

use xo_proto::coordinator::{DeleteTopicRequest, DeleteTopicResponse};

use super::{error_fields, required};
use crate::driver::Coordinator;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: DeleteTopicRequest,
) -> DeleteTopicResponse {
    let outcome = async {
        required("topic", &request.topic)?;
        coordinator.delete_topic(&request.topic).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    DeleteTopicResponse { error, error_message }
}
