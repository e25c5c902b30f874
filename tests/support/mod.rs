//! Helpers shared by the cross-process tests: run the real `xo` binary as
//! a child process (a partition server, or the coordinator), kill it with
//! SIGKILL, restart it on the same data; and a [`Cluster`] of one
//! coordinator and three partition servers registered with it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use xo_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use xo_proto::partition::partition_service_client::PartitionServiceClient;

pub type Client = PartitionServiceClient<tonic::transport::Channel>;
pub type CoordinatorClient = CoordinatorServiceClient<tonic::transport::Channel>;

/// How long a started server gets to accept connections.
const STARTUP_WAIT_MAX: Duration = Duration::from_secs(30);

pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub async fn connect(addr: SocketAddr) -> Result<Client, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(PartitionServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

pub async fn connect_coordinator(
    addr: SocketAddr,
) -> Result<CoordinatorClient, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(CoordinatorServiceClient::new(channel))
}

/// A child process of the `xo` binary (a partition server unless started
/// with [`Server::start_role`]) with its own data directory.
pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    role: String,
    extra_args: Vec<String>,
    /// Environment of the next (re)start, e.g. `XO_CRASH_AT`.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Server {
    pub fn start(extra_args: &[&str]) -> Server {
        Server::start_role("partition-server", extra_args, &[])
    }

    /// Starts `xo <role> --data-dir .. --listen .. <extra_args>` with `env`.
    pub fn start_role(role: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Server {
            addr: free_addr(),
            data_dir: tempfile::tempdir().unwrap(),
            role: role.to_string(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
        };
        server.restart();
        server
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().to_path_buf()
    }

    /// Starts the process (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(env!("CARGO_BIN_EXE_xo"))
            .arg(&self.role)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn xo");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_WAIT_MAX;
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "server did not start within {STARTUP_WAIT_MAX:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits (polling, up to `wait_max`) for the process to exit on its own,
    /// e.g. at an armed failpoint; `None` if it is still running then.
    pub fn wait_for_exit(&mut self, wait_max: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait_max;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }
}

/// How long the partition servers get to register with a new coordinator.
const REGISTRATION_WAIT_MAX: Duration = Duration::from_secs(90);
pub const CLUSTER_SERVERS: usize = 3;

/// One coordinator and [`CLUSTER_SERVERS`] partition servers started with
/// `--coordinator` pointing at it, each a child process.
pub struct Cluster {
    pub coordinator: Server,
    pub servers: Vec<Server>,
}

impl Cluster {
    /// `coordinator_args` / `coordinator_env` go to the coordinator's
    /// process; returns once every partition server has registered.
    pub async fn start(coordinator_args: &[&str], coordinator_env: &[(&str, &str)]) -> Cluster {
        let coordinator = Server::start_role("coordinator", coordinator_args, coordinator_env);
        let coordinator_addr = coordinator.addr.to_string();
        let servers = (0..CLUSTER_SERVERS)
            .map(|_| Server::start(&["--coordinator", &coordinator_addr, "--fsync", "always"]))
            .collect();
        let cluster = Cluster { coordinator, servers };
        cluster.wait_registered().await;
        cluster
    }

    pub async fn coordinator_client(&self) -> CoordinatorClient {
        connect_coordinator(self.coordinator.addr).await.expect("coordinator reachable")
    }

    /// Waits until the coordinator knows every partition server.
    pub async fn wait_registered(&self) {
        let deadline = Instant::now() + REGISTRATION_WAIT_MAX;
        loop {
            if let Ok(mut client) = connect_coordinator(self.coordinator.addr).await
                && let Ok(response) =
                    client.metadata(xo_proto::coordinator::MetadataRequest::default()).await
                && response.get_ref().servers.len() == self.servers.len()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "servers did not register in {REGISTRATION_WAIT_MAX:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The partition server listening at `address`.
    pub fn server_at(&mut self, address: &str) -> &mut Server {
        self.servers
            .iter_mut()
            .find(|s| s.addr.to_string() == address)
            .unwrap_or_else(|| panic!("no partition server at {address}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
