//! CreateTopic: place the partitions on the registered servers, create
//! them there, then record the topic.

use std::sync::Arc;

use xo_proto::coordinator::{CreateTopicRequest, CreateTopicResponse};

use super::error_fields;
use super::metadata::topic_to_wire;
use crate::driver::Coordinator;
use crate::store::TopicSettings;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: CreateTopicRequest,
) -> CreateTopicResponse {
    let config = request.config.unwrap_or_default();
    let settings = TopicSettings {
        compact: config.compact,
        retention_ms: config.retention_ms,
        retention_bytes: config.retention_bytes,
        segment_bytes: config.segment_bytes,
    };
    let outcome = coordinator.create_topic(&request.topic, request.partitions, settings).await;
    let (error, error_message) = error_fields(&outcome);
    CreateTopicResponse {
        error,
        error_message,
        topic: outcome.ok().map(|view| topic_to_wire(&view)),
    }
}
