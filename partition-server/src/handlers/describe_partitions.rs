//! DescribePartitions: every hosted partition with its config and offsets.

use std::sync::Arc;

use xo_proto::partition::{
    DescribePartitionsRequest, DescribePartitionsResponse, PartitionConfig, PartitionDescription,
};

use crate::registry::Registry;

pub async fn handle(
    registry: &Arc<Registry>,
    _request: DescribePartitionsRequest,
) -> DescribePartitionsResponse {
    let partitions = registry
        .list()
        .into_iter()
        .map(|p| {
            let offsets = p.offsets();
            let (size_bytes, segments) = p.size_and_segments();
            PartitionDescription {
                topic: p.topic.clone(),
                partition: p.partition,
                config: Some(PartitionConfig {
                    compact: p.config.compact,
                    retention_ms: p.config.retention_ms.unwrap_or(0),
                    retention_bytes: p.config.retention_bytes.unwrap_or(0) as i64,
                    segment_bytes: p.config.segment_bytes as i64,
                    segment_ms: p.config.segment_ms,
                }),
                log_start_offset: offsets.log_start_offset.0,
                high_watermark: offsets.high_watermark.0,
                last_stable_offset: offsets.last_stable_offset.0,
                size_bytes,
                segments: segments as u32,
            }
        })
        .collect();
    DescribePartitionsResponse { partitions }
}
