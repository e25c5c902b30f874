//! DescribeProducers: the producer state of one partition.

use std::sync::Arc;

use xo_proto::partition::{
    DescribeProducersRequest, DescribeProducersResponse, ErrorCode, ProducerDescription,
};

use super::error_fields;
use crate::registry::Registry;

pub async fn handle(
    registry: &Arc<Registry>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    match registry.get(&request.topic, request.partition) {
        Ok(partition) => {
            let producers = partition
                .producers()
                .iter()
                .map(|(id, e)| ProducerDescription {
                    producer_id: id.0,
                    producer_epoch: e.epoch.0 as i32,
                    last_sequence: e.last_sequence().map_or(-1, |s| s.0),
                    last_timestamp_ms: e.last_write_ms,
                    current_txn_start_offset: e.txn_first_offset.map_or(-1, |o| o.0),
                })
                .collect();
            DescribeProducersResponse {
                error: ErrorCode::None as i32,
                error_message: String::new(),
                producers,
            }
        }
        Err(e) => {
            let (error, error_message) = error_fields(&e);
            DescribeProducersResponse { error, error_message, producers: Vec::new() }
        }
    }
}
