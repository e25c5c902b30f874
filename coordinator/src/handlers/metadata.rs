//! Metadata: topics with the address of every partition, and the
//! registered partition servers. Unknown topics are named in the error;
//! the known ones are still returned.

use std::sync::Arc;

use xo_proto::coordinator::{
    MetadataRequest, MetadataResponse, PartitionMetadata, PartitionServerInfo, TopicConfig,
    TopicMetadata,
};

use super::error_fields;
use crate::driver::{Coordinator, TopicView};
use crate::error::ServiceError;

pub async fn handle(coordinator: &Arc<Coordinator>, request: MetadataRequest) -> MetadataResponse {
    let (topics, missing, servers) = coordinator.metadata(&request.topics);
    let outcome: Result<(), ServiceError> = if missing.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::UnknownTopicOrPartition(missing.join(", ")))
    };
    let (error, error_message) = error_fields(&outcome);
    MetadataResponse {
        error,
        error_message,
        topics: topics.iter().map(topic_to_wire).collect(),
        servers: servers
            .into_iter()
            .map(|s| PartitionServerInfo { server_id: s.server_id, address: s.address })
            .collect(),
    }
}

pub fn topic_to_wire(view: &TopicView) -> TopicMetadata {
    let record = &view.record;
    TopicMetadata {
        name: record.name.clone(),
        config: Some(TopicConfig {
            compact: record.config.compact,
            retention_ms: record.config.retention_ms,
            retention_bytes: record.config.retention_bytes,
            segment_bytes: record.config.segment_bytes,
        }),
        partitions: record
            .placement
            .iter()
            .zip(&view.addresses)
            .enumerate()
            .map(|(p, (server_id, address))| PartitionMetadata {
                partition: p as u32,
                server_id: server_id.clone(),
                address: address.clone(),
            })
            .collect(),
        internal: record.internal,
    }
}
