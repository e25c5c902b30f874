//! CreatePartition: make a partition with its config (idempotent for the
//! same config).

use std::sync::Arc;

use xo_proto::partition::{CreatePartitionRequest, CreatePartitionResponse, ErrorCode};

use super::error_fields;
use crate::partition::PartitionConfig;
use crate::registry::Registry;

pub async fn handle(
    registry: &Arc<Registry>,
    request: CreatePartitionRequest,
) -> CreatePartitionResponse {
    let wire = request.config.unwrap_or_default();
    let config = PartitionConfig {
        compact: wire.compact,
        retention_ms: (wire.retention_ms != 0).then_some(wire.retention_ms),
        retention_bytes: (wire.retention_bytes > 0).then_some(wire.retention_bytes as u64),
        segment_bytes: wire.segment_bytes.max(0) as u64,
        segment_ms: wire.segment_ms,
    };
    match registry.create(&request.topic, request.partition, config).await {
        Ok(_) => {
            CreatePartitionResponse { error: ErrorCode::None as i32, error_message: String::new() }
        }
        Err(e) => {
            let (error, error_message) = error_fields(&e);
            CreatePartitionResponse { error, error_message }
        }
    }
}
