//! ListTransactions: every transactional id, filtered by state names and
//! by how long its transaction has been open.

use std::sync::Arc;

use xo_proto::coordinator::{ListTransactionsRequest, ListTransactionsResponse};

use super::{description, error_fields};
use crate::driver::{Coordinator, now_ms};
use crate::error::ServiceError;
use crate::txn_state::TxnState;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let outcome = async {
        let mut states = Vec::new();
        for name in &request.states {
            let state = TxnState::ALL
                .into_iter()
                .find(|s| s.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| ServiceError::InvalidRequest(format!("unknown state {name:?}")))?;
            states.push(state);
        }
        let now = now_ms();
        let records = coordinator.list().await;
        Ok(records
            .into_iter()
            .filter(|m| states.is_empty() || states.contains(&m.state))
            .filter(|m| {
                // A duration filter keeps only open transactions that long.
                request.min_duration_ms <= 0
                    || (!m.partitions.is_empty()
                        && m.txn_start_ms.is_some_and(|start| {
                            now.saturating_sub(start) >= request.min_duration_ms as u64
                        }))
            })
            .map(|m| description(&m))
            .collect::<Vec<_>>())
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    ListTransactionsResponse { error, error_message, transactions: outcome.unwrap_or_default() }
}
