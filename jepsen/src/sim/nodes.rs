//! The simulated hosts' software: the coordinator and the partition
//! servers, started the way `xo coordinator` and `xo partition-server`
//! start them, but listening on turmoil's network. Each host's data
//! directory is a real directory on disk that outlives the host: a crash
//! drops the host's runtime (every task, socket and open file of the
//! "process") and a restart opens the same directory again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use xo_coordinator::TxnConfig;
use xo_coordinator::driver::CoordinatorConfig;
use xo_partition_server::coordinator_client::{self, CoordinatorVerifier};
use xo_partition_server::partition::TxnVerifier;
use xo_partition_server::{FsyncPolicy, Registry, ServerConfig};

use super::net;

pub const COORDINATOR: &str = "coordinator";
pub const COORDINATOR_PORT: u16 = 7070;
pub const PARTITION_SERVER_PORT: u16 = 7071;
/// The host the workload's clients run on.
pub const CLIENT: &str = "client";

/// How often the coordinator aborts timed-out transactions: short, so the
/// liveness bound after the heal is mostly the transaction timeout.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);

pub fn partition_server_name(n: usize) -> String {
    format!("ps{n}")
}

pub fn coordinator_address() -> String {
    format!("{COORDINATOR}:{COORDINATOR_PORT}")
}

type Software = std::pin::Pin<Box<dyn std::future::Future<Output = turmoil::Result>>>;

/// The coordinator process on `data_dir`.
pub fn coordinator(data_dir: PathBuf) -> impl Fn() -> Software {
    move || {
        let data_dir = data_dir.clone();
        Box::pin(async move {
            let config = CoordinatorConfig {
                txn: TxnConfig::default(),
                expiry_check_interval: EXPIRY_CHECK_INTERVAL,
            };
            let coordinator = open_coordinator(&data_dir, config).await?;
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", COORDINATOR_PORT)).await?;
            xo_coordinator::service::serve_with_incoming(
                coordinator,
                net::incoming(listener),
                std::future::pending(),
            )
            .await
            .map_err(|e| e as Box<dyn std::error::Error>)?;
            Ok(())
        })
    }
}

/// Attempts at opening the coordinator's state after a restart.
pub const OPEN_ATTEMPTS_MAX: u32 = 100;

/// Opens the coordinator's state, retrying while sled still holds the lock
/// of the crashed instance's database (it lets go a moment after the last
/// handle is dropped). The pause is real time spent in a blocking task, so
/// the simulated clock does not move meanwhile.
async fn open_coordinator(
    data_dir: &std::path::Path,
    config: CoordinatorConfig,
) -> Result<Arc<xo_coordinator::driver::Coordinator>, String> {
    let mut last = String::new();
    for _ in 0..OPEN_ATTEMPTS_MAX {
        match xo_coordinator::service::open(data_dir, config.clone()).await {
            Ok(coordinator) => return Ok(coordinator),
            Err(e) => last = e,
        }
        let pause = || std::thread::sleep(Duration::from_millis(20));
        tokio::task::spawn_blocking(pause).await.map_err(|e| e.to_string())?;
    }
    Err(format!("coordinator state did not open: {last}"))
}

/// Partition server `name` on `data_dir`, registering with the coordinator
/// as `name:PARTITION_SERVER_PORT`. Its server id is the file the test
/// wrote there (so placement does not depend on a random UUID).
pub fn partition_server(name: String, data_dir: PathBuf) -> impl Fn() -> Software {
    move || {
        let name = name.clone();
        let data_dir = data_dir.clone();
        Box::pin(async move {
            let mut config = ServerConfig::new(data_dir.clone());
            config.fsync = FsyncPolicy::Always;
            let verifier: Arc<dyn TxnVerifier> =
                Arc::new(CoordinatorVerifier::new(&coordinator_address())?);
            let server_id = coordinator_client::load_or_create_server_id(&data_dir)?;
            let registry =
                tokio::task::spawn_blocking(move || Registry::open(config, verifier)).await??;
            let listener =
                turmoil::net::TcpListener::bind(("0.0.0.0", PARTITION_SERVER_PORT)).await?;
            let address = format!("{name}:{PARTITION_SERVER_PORT}");
            tokio::spawn(coordinator_client::register_until_accepted(
                coordinator_address(),
                server_id,
                address,
            ));
            xo_partition_server::service::serve_with_incoming(
                registry,
                net::incoming(listener),
                std::future::pending(),
            )
            .await
            .map_err(|e| e as Box<dyn std::error::Error>)?;
            Ok(())
        })
    }
}
