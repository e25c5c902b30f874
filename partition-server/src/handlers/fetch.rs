//! Fetch: whole batches from an offset, long-polling until data is visible.

use std::sync::Arc;
use std::time::Duration;

use xo_proto::Offset;
use xo_proto::partition::{ErrorCode, FetchRequest, FetchResponse};

use super::{error_fields, isolation};
use crate::config::{FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::registry::{Registry, RegistryError};

/// Bytes returned when a request leaves `max_bytes` at 0.
pub const FETCH_BYTES_DEFAULT: usize = 1024 * 1024;

pub async fn handle(registry: &Arc<Registry>, request: FetchRequest) -> FetchResponse {
    let max_bytes = match request.max_bytes as usize {
        0 => FETCH_BYTES_DEFAULT,
        n => n.min(FETCH_BYTES_MAX),
    };
    let wait = Duration::from_millis(request.max_wait_ms.min(FETCH_WAIT_MS_MAX) as u64);
    let outcome = match registry.get(&request.topic, request.partition) {
        Ok(partition) => partition
            .fetch(Offset(request.offset), max_bytes, wait, isolation(request.isolation))
            .await
            .map_err(RegistryError::from),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(o) => FetchResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            high_watermark: o.high_watermark.0,
            last_stable_offset: o.last_stable_offset.0,
            log_start_offset: o.log_start_offset.0,
            batches: o.batches,
            next_offset: o.next_offset.0,
        },
        Err(e) => {
            let (error, error_message) = error_fields(&e);
            FetchResponse {
                error,
                error_message,
                next_offset: request.offset,
                ..Default::default()
            }
        }
    }
}
