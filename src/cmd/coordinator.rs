//! `xo coordinator`: the transaction coordinator process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use xo_coordinator::TxnConfig;
use xo_coordinator::driver::CoordinatorConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the coordinator's state (a sled database: transaction
    /// records, producer-id blocks, topics, partition servers). Created if missing.
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// Address to serve gRPC on (clients, admin tools and partition servers).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub(crate) listen: SocketAddr,
    /// Longest transaction timeout a producer may ask for at InitProducerId (ms).
    /// Bounds how long a dead producer can hold back the partitions it wrote to.
    #[arg(long, default_value_t = TxnConfig::default().txn_timeout_ms_max)]
    pub(crate) txn_timeout_max_ms: u32,
    /// A transactional id with no transaction in flight and no activity for this
    /// long is forgotten (ms); its next InitProducerId starts with a new producer id.
    #[arg(long, default_value_t = TxnConfig::default().transactional_id_idle_ms_max)]
    pub(crate) transactional_id_expiry_ms: u64,
    /// How often transactions past their timeout are aborted and idle
    /// transactional ids expired (ms).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) expiry_check_interval_ms: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    run_until(args, super::shutdown_signal()).await
}

/// Runs until `shutdown` completes (`xo dev` runs several roles on one signal).
pub async fn run_until(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = CoordinatorConfig {
        txn: TxnConfig {
            txn_timeout_ms_max: args.txn_timeout_max_ms,
            transactional_id_idle_ms_max: args.transactional_id_expiry_ms,
        },
        expiry_check_interval: Duration::from_millis(args.expiry_check_interval_ms.max(10)),
    };
    let coordinator = xo_coordinator::service::open(&args.data_dir, config)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("opening coordinator state in {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?, data_dir = %args.data_dir.display(),
        coordinator_epoch = coordinator.coordinator_epoch(), "coordinator ready"
    );
    xo_coordinator::service::serve(coordinator, listener, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!("coordinator stopped cleanly");
    Ok(())
}
