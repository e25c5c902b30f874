//! tonic over turmoil: the simulated network under every gRPC channel and
//! server of the simulation.
//!
//! - Client side: the hooks of `xo-client`, `xo-coordinator` and
//!   `xo-partition-server` make every channel with
//!   [`connect_lazy`], whose connector dials a `turmoil::net::TcpStream`
//!   (host names resolve through turmoil's DNS) wrapped for hyper.
//! - Server side: [`incoming`] turns a `turmoil::net::TcpListener` into
//!   the stream of connections `serve_with_incoming` takes.
//! - The coordinator's clock hook reads turmoil's simulated wall clock, so
//!   transaction timeouts run on simulated time.

use std::io;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// Installs the three crates' hooks, once per process. Every test of this
/// binary runs inside a simulation, so nothing here ever needs real TCP.
pub fn install_hooks() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        xo_client::hooks::install(xo_client::hooks::Hooks { connect_lazy })
            .expect("client hooks installed once");
        xo_partition_server::hooks::install(xo_partition_server::hooks::Hooks { connect_lazy })
            .expect("partition server hooks installed once");
        xo_coordinator::hooks::install(xo_coordinator::hooks::Hooks {
            connect_lazy,
            now_ms: simulated_now_ms,
        })
        .expect("coordinator hooks installed once");
    });
}

/// A lazily connected channel whose connections are simulated TCP streams
/// to the endpoint's `host:port`.
fn connect_lazy(endpoint: Endpoint) -> Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(|uri: Uri| async move {
        let host = uri
            .host()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host: {uri}")))?
            .to_string();
        let port = uri.port_u16().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no port: {uri}"))
        })?;
        let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
        Ok::<_, io::Error>(TokioIo::new(stream))
    }))
}

/// The simulated wall clock of the host running the caller.
fn simulated_now_ms() -> u64 {
    let since_epoch =
        turmoil::since_epoch().expect("the coordinator's clock is read inside a host");
    since_epoch.as_millis() as u64
}

/// An accepted simulated connection, as tonic's server wants it.
pub struct SimStream(turmoil::net::TcpStream);

impl Connected for SimStream {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections `listener` accepts, for `serve_with_incoming`.
pub fn incoming(
    listener: turmoil::net::TcpListener,
) -> impl futures::Stream<Item = io::Result<SimStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| SimStream(stream));
        Some((accepted, listener))
    })
}
