//! `xo partition-server`: one partition server process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use xo_partition_server::coordinator_client::{self, CoordinatorVerifier};
use xo_partition_server::partition::{NoCoordinator, TxnVerifier};
use xo_partition_server::{FsyncPolicy, Registry, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding this server's partitions (created if missing).
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:7071")]
    pub(crate) listen: SocketAddr,
    /// When appends are fsync'd: `always` (before acknowledging; concurrent
    /// appends share one fsync), `interval:<ms>` (in the background), or
    /// `never` (left to the OS, like Kafka's default).
    #[arg(long, default_value = "always")]
    pub(crate) fsync: FsyncPolicy,
    /// Idle time after which a producer's dedupe state is dropped (ms).
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000)]
    pub(crate) producer_expiry_ms: u64,
    /// Default segment size at which a new segment rolls (bytes).
    #[arg(long, default_value_t = 1 << 30)]
    pub(crate) segment_bytes: u64,
    /// Largest batch a producer may send (bytes).
    #[arg(long, default_value_t = xo_partition_server::config::BATCH_BYTES_MAX_DEFAULT)]
    pub(crate) batch_bytes_max: usize,
    /// How often retention, compaction and producer expiry run (ms).
    #[arg(long, default_value_t = 30_000)]
    pub(crate) housekeeping_interval_ms: u64,
    /// Address of the transaction coordinator. The server registers there at
    /// start-up (retrying in the background until it is reachable) and verifies
    /// the first transactional write of each transaction with it. Without it,
    /// every transactional write is refused.
    #[arg(long)]
    pub(crate) coordinator: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    run_until(args, super::shutdown_signal()).await
}

/// Runs until `shutdown` completes (`xo dev` runs several roles on one signal).
pub async fn run_until(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.data_dir.clone());
    config.fsync = args.fsync;
    config.producer_expiry = Duration::from_millis(args.producer_expiry_ms);
    config.segment_bytes_default = args.segment_bytes;
    config.batch_bytes_max = args.batch_bytes_max;
    config.housekeeping_interval = Duration::from_millis(args.housekeeping_interval_ms.max(10));
    let verifier: Arc<dyn TxnVerifier> = match &args.coordinator {
        Some(coordinator) => {
            Arc::new(CoordinatorVerifier::new(coordinator).map_err(|e| anyhow::anyhow!(e))?)
        }
        None => Arc::new(NoCoordinator),
    };
    let server_id = coordinator_client::load_or_create_server_id(&args.data_dir)
        .with_context(|| format!("server id in {}", args.data_dir.display()))?;
    let registry = tokio::task::spawn_blocking(move || Registry::open(config, verifier))
        .await?
        .with_context(|| format!("opening data directory {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?, data_dir = %args.data_dir.display(),
        partitions = registry.list().len(), fsync = ?args.fsync,
        %server_id, "partition server ready"
    );
    // The bound address, not the flag: `--listen 127.0.0.1:0` registers the real port.
    let bound = listener.local_addr()?;
    let registration = args.coordinator.clone().map(|coordinator| {
        let address = bound.to_string();
        tokio::spawn(coordinator_client::register_until_accepted(coordinator, server_id, address))
    });
    xo_partition_server::service::serve(registry, listener, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(registration) = registration {
        registration.abort();
    }
    tracing::info!("partition server stopped cleanly");
    Ok(())
}
