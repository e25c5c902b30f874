//! WriteTxnMarkers: append commit/abort markers for the coordinator. All
//! markers of the request proceed concurrently; each partition answers on
//! its own so the coordinator retries only the ones that failed.

use std::sync::Arc;

use xo_proto::partition::{
    ErrorCode, MarkerResult, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use xo_proto::{ProducerEpoch, ProducerId};

use super::error_fields;
use crate::registry::{Registry, RegistryError};

pub async fn handle(
    registry: &Arc<Registry>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let coordinator_epoch = request.coordinator_epoch;
    let writes = request.markers.into_iter().flat_map(|marker| {
        marker.partitions.into_iter().map(move |tp| {
            let registry = registry.clone();
            async move {
                let mut result = MarkerResult {
                    producer_id: marker.producer_id,
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    ..Default::default()
                };
                let epoch = match i16::try_from(marker.producer_epoch) {
                    Ok(epoch) => ProducerEpoch(epoch),
                    Err(_) => {
                        result.error = ErrorCode::InvalidRequest as i32;
                        result.error_message =
                            format!("epoch {} out of range", marker.producer_epoch);
                        return result;
                    }
                };
                let outcome = match registry.get(&tp.topic, tp.partition) {
                    Ok(partition) => partition
                        .write_marker(
                            ProducerId(marker.producer_id),
                            epoch,
                            coordinator_epoch,
                            marker.commit,
                        )
                        .await
                        .map_err(RegistryError::from),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => result.error = ErrorCode::None as i32,
                    Err(e) => (result.error, result.error_message) = error_fields(&e),
                }
                result
            }
        })
    });
    WriteTxnMarkersResponse { results: futures::future::join_all(writes).await }
}
