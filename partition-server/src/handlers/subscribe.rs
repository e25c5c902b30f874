//! Subscribe: a stream of fetch responses from an offset on, each sent as
//! soon as new batches become visible. Ends after an error response, or
//! when the client goes away.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use xo_proto::partition::{ErrorCode, FetchRequest, FetchResponse, SubscribeRequest};

use crate::registry::Registry;

/// Responses buffered per subscription before the stream applies backpressure.
const SUBSCRIBE_BUFFERED_MAX: usize = 8;
/// Long-poll used between pushes; short so a vanished client is noticed.
const SUBSCRIBE_POLL_MS: u32 = 1_000;

pub fn handle(
    registry: &Arc<Registry>,
    request: SubscribeRequest,
) -> mpsc::Receiver<FetchResponse> {
    let (tx, rx) = mpsc::channel(SUBSCRIBE_BUFFERED_MAX);
    let registry = registry.clone();
    tokio::spawn(async move {
        let mut offset = request.offset;
        loop {
            let fetch = FetchRequest {
                topic: request.topic.clone(),
                partition: request.partition,
                offset,
                max_bytes: request.max_bytes,
                max_wait_ms: SUBSCRIBE_POLL_MS,
                isolation: request.isolation,
            };
            let response = tokio::select! {
                r = super::fetch::handle(&registry, fetch) => r,
                _ = tx.closed() => return,
            };
            let failed = response.error != ErrorCode::None as i32;
            if response.batches.is_empty() && !failed && response.next_offset == offset {
                continue;
            }
            offset = response.next_offset;
            if tx.send(response).await.is_err() || failed {
                return;
            }
            tokio::time::sleep(Duration::ZERO).await;
        }
    });
    rx
}
