//! The gRPC face of the coordinator: each RPC hands its message to the
//! handler of the same name; `serve` runs the server with reflection and the
//! expiry task.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use xo_proto::coordinator::coordinator_service_server::{self, CoordinatorServiceServer};
use xo_proto::coordinator::*;

use crate::driver::{Coordinator, CoordinatorConfig};
use crate::handlers::{self, groups};

/// Largest request or response the coordinator accepts or builds.
pub const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;

pub struct CoordinatorService {
    coordinator: Arc<Coordinator>,
}

impl CoordinatorService {
    pub fn new(coordinator: Arc<Coordinator>) -> CoordinatorService {
        CoordinatorService { coordinator }
    }

    pub fn into_server(self) -> CoordinatorServiceServer<CoordinatorService> {
        CoordinatorServiceServer::new(self)
            .max_decoding_message_size(REQUEST_BYTES_MAX)
            .max_encoding_message_size(REQUEST_BYTES_MAX)
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl coordinator_service_server::CoordinatorService for CoordinatorService {
    async fn register_partition_server(
        &self,
        r: Request<RegisterPartitionServerRequest>,
    ) -> Answer<RegisterPartitionServerResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::register_partition_server::handle(c, r.into_inner()).await))
    }

    async fn create_topic(&self, r: Request<CreateTopicRequest>) -> Answer<CreateTopicResponse> {
        Ok(Response::new(handlers::create_topic::handle(&self.coordinator, r.into_inner()).await))
    }

    async fn delete_topic(&self, r: Request<DeleteTopicRequest>) -> Answer<DeleteTopicResponse> {
        Ok(Response::new(handlers::delete_topic::handle(&self.coordinator, r.into_inner()).await))
    }

    async fn metadata(&self, r: Request<MetadataRequest>) -> Answer<MetadataResponse> {
        Ok(Response::new(handlers::metadata::handle(&self.coordinator, r.into_inner()).await))
    }

    async fn init_producer_id(
        &self,
        r: Request<InitProducerIdRequest>,
    ) -> Answer<InitProducerIdResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::init_producer_id::handle(c, r.into_inner()).await))
    }

    async fn add_partitions_to_txn(
        &self,
        r: Request<AddPartitionsToTxnRequest>,
    ) -> Answer<AddPartitionsToTxnResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::add_partitions_to_txn::handle(c, r.into_inner()).await))
    }

    async fn add_offsets_to_txn(
        &self,
        r: Request<AddOffsetsToTxnRequest>,
    ) -> Answer<AddOffsetsToTxnResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::add_offsets_to_txn::handle(c, r.into_inner()).await))
    }

    async fn end_txn(&self, r: Request<EndTxnRequest>) -> Answer<EndTxnResponse> {
        Ok(Response::new(handlers::end_txn::handle(&self.coordinator, r.into_inner()).await))
    }

    async fn verify_txn_partition(
        &self,
        r: Request<VerifyTxnPartitionRequest>,
    ) -> Answer<VerifyTxnPartitionResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::verify_txn_partition::handle(c, r.into_inner()).await))
    }

    async fn list_transactions(
        &self,
        r: Request<ListTransactionsRequest>,
    ) -> Answer<ListTransactionsResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::list_transactions::handle(c, r.into_inner()).await))
    }

    async fn describe_transaction(
        &self,
        r: Request<DescribeTransactionRequest>,
    ) -> Answer<DescribeTransactionResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::describe_transaction::handle(c, r.into_inner()).await))
    }

    async fn abort_transaction(
        &self,
        r: Request<AbortTransactionRequest>,
    ) -> Answer<AbortTransactionResponse> {
        let c = &self.coordinator;
        Ok(Response::new(handlers::abort_transaction::handle(c, r.into_inner()).await))
    }

    async fn find_hanging(&self, r: Request<FindHangingRequest>) -> Answer<FindHangingResponse> {
        Ok(Response::new(handlers::find_hanging::handle(&self.coordinator, r.into_inner()).await))
    }

    async fn join_group(&self, r: Request<JoinGroupRequest>) -> Answer<JoinGroupResponse> {
        Ok(Response::new(groups::join_group(&self.coordinator, r.into_inner()).await))
    }

    async fn sync_group(&self, r: Request<SyncGroupRequest>) -> Answer<SyncGroupResponse> {
        Ok(Response::new(groups::sync_group(&self.coordinator, r.into_inner()).await))
    }

    async fn heartbeat(&self, r: Request<HeartbeatRequest>) -> Answer<HeartbeatResponse> {
        Ok(Response::new(groups::heartbeat(&self.coordinator, r.into_inner()).await))
    }

    async fn leave_group(&self, r: Request<LeaveGroupRequest>) -> Answer<LeaveGroupResponse> {
        Ok(Response::new(groups::leave_group(&self.coordinator, r.into_inner()).await))
    }

    async fn offset_commit(&self, r: Request<OffsetCommitRequest>) -> Answer<OffsetCommitResponse> {
        Ok(Response::new(groups::offset_commit(&self.coordinator, r.into_inner()).await))
    }

    async fn txn_offset_commit(
        &self,
        r: Request<TxnOffsetCommitRequest>,
    ) -> Answer<TxnOffsetCommitResponse> {
        Ok(Response::new(groups::txn_offset_commit(&self.coordinator, r.into_inner()).await))
    }

    async fn offset_fetch(&self, r: Request<OffsetFetchRequest>) -> Answer<OffsetFetchResponse> {
        Ok(Response::new(groups::offset_fetch(&self.coordinator, r.into_inner()).await))
    }
}

/// Opens the coordinator's state in `data_dir` (resuming pending markers).
pub async fn open(data_dir: &Path, config: CoordinatorConfig) -> Result<Arc<Coordinator>, String> {
    Coordinator::open(data_dir, config).await
}

/// Serves `coordinator` on `listener` until `shutdown` completes, with gRPC
/// reflection, the periodic expiry of timed-out transactions and idle ids,
/// and the consumer groups' session checks and chores.
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Accepted sockets need TCP_NODELAY set here: the builder's `tcp_nodelay`
    // applies only to listeners tonic binds itself, and without it small
    // responses wait ~40 ms for Nagle plus delayed ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_with_incoming(coordinator, incoming, shutdown).await
}

/// [`serve`] on any stream of accepted connections: what the deterministic
/// simulation uses to serve over its simulated network.
pub async fn serve_with_incoming<I, IO, IE>(
    coordinator: Arc<Coordinator>,
    incoming: I,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(xo_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let expiry = tokio::spawn(coordinator.clone().run_expiry());
    let group_ticks = tokio::spawn(crate::groups::run(coordinator.clone()));
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(reflection)
        .add_service(CoordinatorService::new(coordinator).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    expiry.abort();
    group_ticks.abort();
    result?;
    Ok(())
}
