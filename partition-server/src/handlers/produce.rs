//! Produce: append one batch to each listed partition. Batches to different
//! partitions proceed concurrently; each gets its own result.

use std::sync::Arc;

use xo_proto::partition::{ErrorCode, ProduceRequest, ProduceResponse, ProduceResult};

use super::error_fields;
use crate::registry::{Registry, RegistryError};

pub async fn handle(registry: &Arc<Registry>, request: ProduceRequest) -> ProduceResponse {
    let appends = request.batches.into_iter().map(|pb| {
        let registry = registry.clone();
        async move {
            let mut result = ProduceResult {
                topic: pb.topic.clone(),
                partition: pb.partition,
                base_offset: -1,
                last_offset: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            let outcome = match registry.get(&pb.topic, pb.partition) {
                Ok(partition) => partition.produce(pb.batch).await.map_err(RegistryError::from),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(o) => {
                    result.error = ErrorCode::None as i32;
                    result.base_offset = o.base_offset.0;
                    result.last_offset = o.last_offset.0;
                    result.duplicate = o.duplicate;
                    result.log_start_offset = o.log_start_offset.0;
                }
                Err(e) => (result.error, result.error_message) = error_fields(&e),
            }
            result
        }
    });
    ProduceResponse { results: futures::future::join_all(appends).await }
}
