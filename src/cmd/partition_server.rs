//! `xo partition-server`: one partition server process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use xo_partition_server::{FsyncPolicy, Registry, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding this server's partitions (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:7071")]
    listen: SocketAddr,
    /// When appends are fsync'd: `always` (before acknowledging; concurrent
    /// appends share one fsync), `interval:<ms>` (in the background), or
    /// `never` (left to the OS, like Kafka's default).
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,
    /// Idle time after which a producer's dedupe state is dropped (ms).
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000)]
    producer_expiry_ms: u64,
    /// Default segment size at which a new segment rolls (bytes).
    #[arg(long, default_value_t = 1 << 30)]
    segment_bytes: u64,
    /// Largest batch a producer may send (bytes).
    #[arg(long, default_value_t = xo_partition_server::config::BATCH_BYTES_MAX_DEFAULT)]
    batch_bytes_max: usize,
    /// How often retention, compaction and producer expiry run (ms).
    #[arg(long, default_value_t = 30_000)]
    housekeeping_interval_ms: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.data_dir.clone());
    config.fsync = args.fsync;
    config.producer_expiry = Duration::from_millis(args.producer_expiry_ms);
    config.segment_bytes_default = args.segment_bytes;
    config.batch_bytes_max = args.batch_bytes_max;
    config.housekeeping_interval = Duration::from_millis(args.housekeeping_interval_ms.max(10));
    let verifier = std::sync::Arc::new(xo_partition_server::partition::NoCoordinator);
    let registry = tokio::task::spawn_blocking(move || Registry::open(config, verifier))
        .await?
        .with_context(|| format!("opening data directory {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?, data_dir = %args.data_dir.display(),
        partitions = registry.list().len(), fsync = ?args.fsync,
        "partition server ready"
    );
    xo_partition_server::service::serve(registry, listener, super::shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!("partition server stopped cleanly");
    Ok(())
}
