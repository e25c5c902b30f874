//! Helpers shared by the cross-process tests: run the real `xo` binary as
//! a child process, kill it with SIGKILL, restart it on the same data.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xo_proto::partition::partition_service_client::PartitionServiceClient;

pub type Client = PartitionServiceClient<tonic::transport::Channel>;

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

/// A partition server child process with its own data directory.
pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    pub fn start(extra_args: &[&str]) -> Server {
        let mut server = Server {
            addr: free_addr(),
            data_dir: tempfile::tempdir().unwrap(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
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
            .arg("partition-server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn xo partition-server");
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
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
