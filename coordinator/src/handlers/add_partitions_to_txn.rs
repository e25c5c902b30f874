//! AddPartitionsToTxn: partitions join the producer's open transaction
//! (opening one if none is). A retry is a no-op.

use std::collections::BTreeSet;
use std::sync::Arc;

use xo_proto::coordinator::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::{error_fields, identity, partition_from_wire, required};
use crate::driver::Coordinator;

pub async fn handle(
    coordinator: &Arc<Coordinator>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let outcome = async {
        required("transactional_id", &request.transactional_id)?;
        let who = identity(request.producer_id, request.producer_epoch)?;
        let partitions: BTreeSet<_> = request.partitions.iter().map(partition_from_wire).collect();
        coordinator.add_partitions(&request.transactional_id, who, partitions).await
    }
    .await;
    let (error, error_message) = error_fields(&outcome);
    AddPartitionsToTxnResponse { error, error_message }
}
