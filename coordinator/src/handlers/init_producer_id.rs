//! InitProducerId: a producer id and epoch for a transactional (or, with
//! an empty transactional id, idempotent) producer; fences older epochs.

use std::sync::Arc;

use xo_proto::coordinator::{InitProducerIdRequest, InitProducerIdResponse};

use super::{error_fields, identity};
use crate::driver::{Coordinator, TXN_TIMEOUT_MS_DEFAULT};
use crate::error::{CoordinatorError, ServiceError};

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let outcome: Result<_, ServiceError> = async {
        let timeout_ms = match request.transaction_timeout_ms {
            0 => TXN_TIMEOUT_MS_DEFAULT.min(coordinator.config().txn.txn_timeout_ms_max),
            ms => u32::try_from(ms).map_err(|_| CoordinatorError::InvalidTransactionTimeout)?,
        };
        // -1 / -1: a new producer instance; anything else is the identity
        // it holds (a retry or re-initialisation).
        let expected = if request.producer_id < 0 && request.producer_epoch < 0 {
            None
        } else {
            Some(identity(request.producer_id, request.producer_epoch)?)
        };
        coordinator.init_producer_id(&request.transactional_id, timeout_ms, expected).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    let (producer_id, producer_epoch) = match &outcome {
        Ok(who) => (who.producer_id.0, i32::from(who.producer_epoch.0)),
        Err(_) => (-1, -1),
    };
    InitProducerIdResponse { error, error_message, producer_id, producer_epoch }
}
