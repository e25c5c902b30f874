//! ListOffsets: the earliest offset, the latest (high watermark, or LSO for
//! read_committed), or the first offset at or after a timestamp.

use std::sync::Arc;

use xo_proto::partition::list_offsets_request::Spec;
use xo_proto::partition::{ErrorCode, ListOffsetsRequest, ListOffsetsResponse};

use super::{error_fields, isolation};
use crate::partition::Isolation;
use crate::registry::{Registry, RegistryError};

pub async fn handle(registry: &Arc<Registry>, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let level = isolation(request.isolation);
    let result = registry.get(&request.topic, request.partition).and_then(|partition| {
        let offsets = partition.offsets();
        let offset = match request.spec {
            Some(Spec::Earliest(_)) => offsets.log_start_offset.0,
            None | Some(Spec::Latest(_)) => match level {
                Isolation::ReadCommitted => offsets.last_stable_offset.0,
                Isolation::ReadUncommitted => offsets.high_watermark.0,
            },
            Some(Spec::TimestampMs(ts)) => partition
                .offset_for_timestamp(ts, level)
                .map_err(RegistryError::from)?
                .map_or(-1, |o| o.0),
        };
        Ok((offset, offsets))
    });
    match result {
        Ok((offset, o)) => ListOffsetsResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            offset,
            high_watermark: o.high_watermark.0,
            last_stable_offset: o.last_stable_offset.0,
            log_start_offset: o.log_start_offset.0,
        },
        Err(e) => {
            let (error, error_message) = error_fields(&e);
            ListOffsetsResponse { error, error_message, offset: -1, ..Default::default() }
        }
    }
}
