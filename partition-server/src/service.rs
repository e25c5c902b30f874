//! The gRPC face of the partition server: each RPC hands its message to the
//! handler of the same name, and `serve` runs the server with reflection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use xo_proto::partition::partition_service_server::{self, PartitionServiceServer};
use xo_proto::partition::*;

use crate::config::REQUEST_BYTES_MAX;
use crate::handlers;
use crate::registry::Registry;

pub struct PartitionService {
    registry: Arc<Registry>,
}

impl PartitionService {
    pub fn new(registry: Arc<Registry>) -> PartitionService {
        PartitionService { registry }
    }

    pub fn into_server(self) -> PartitionServiceServer<PartitionService> {
        PartitionServiceServer::new(self)
            .max_decoding_message_size(REQUEST_BYTES_MAX)
            .max_encoding_message_size(REQUEST_BYTES_MAX)
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl partition_service_server::PartitionService for PartitionService {
    async fn produce(
        &self,
        r: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        Ok(Response::new(handlers::produce::handle(&self.registry, r.into_inner()).await))
    }

    async fn fetch(&self, r: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        Ok(Response::new(handlers::fetch::handle(&self.registry, r.into_inner()).await))
    }

    type SubscribeStream = FetchStream;

    async fn subscribe(
        &self,
        r: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let rx = handlers::subscribe::handle(&self.registry, r.into_inner());
        let stream = tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_offsets(
        &self,
        r: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        Ok(Response::new(handlers::list_offsets::handle(&self.registry, r.into_inner()).await))
    }

    async fn create_partition(
        &self,
        r: Request<CreatePartitionRequest>,
    ) -> Result<Response<CreatePartitionResponse>, Status> {
        Ok(Response::new(handlers::create_partition::handle(&self.registry, r.into_inner()).await))
    }

    async fn delete_partition(
        &self,
        r: Request<DeletePartitionRequest>,
    ) -> Result<Response<DeletePartitionResponse>, Status> {
        Ok(Response::new(handlers::delete_partition::handle(&self.registry, r.into_inner()).await))
    }

    async fn describe_partitions(
        &self,
        r: Request<DescribePartitionsRequest>,
    ) -> Result<Response<DescribePartitionsResponse>, Status> {
        Ok(Response::new(
            handlers::describe_partitions::handle(&self.registry, r.into_inner()).await,
        ))
    }

    async fn describe_producers(
        &self,
        r: Request<DescribeProducersRequest>,
    ) -> Result<Response<DescribeProducersResponse>, Status> {
        Ok(Response::new(
            handlers::describe_producers::handle(&self.registry, r.into_inner()).await,
        ))
    }

    async fn write_txn_markers(
        &self,
        r: Request<WriteTxnMarkersRequest>,
    ) -> Result<Response<WriteTxnMarkersResponse>, Status> {
        Ok(Response::new(handlers::write_txn_markers::handle(&self.registry, r.into_inner()).await))
    }
}

/// Runs the partition server on `listener` until `shutdown` completes, then
/// flushes every partition.
pub async fn serve(
    registry: Arc<Registry>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Accepted sockets need TCP_NODELAY set here: the builder's `tcp_nodelay`
    // applies only to listeners tonic binds itself, and without it small
    // responses wait ~40 ms for Nagle plus delayed ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_with_incoming(registry, incoming, shutdown).await
}

/// [`serve`] on any stream of accepted connections: what the deterministic
/// simulation uses to serve over its simulated network.
pub async fn serve_with_incoming<I, IO, IE>(
    registry: Arc<Registry>,
    incoming: I,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: Stream<Item = Result<IO, IE>>,
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
    let housekeeping = tokio::spawn(registry.clone().run_housekeeping());
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(reflection)
        .add_service(PartitionService::new(registry.clone()).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    housekeeping.abort();
    let closing = registry.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    result?;
    Ok(())
}

/// Binds `addr` and serves on it.
pub async fn bind_and_serve(
    registry: Arc<Registry>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve(registry, listener, shutdown).await
}
