//! A local xo cluster for `xo bench compare`: this binary started as a
//! coordinator and N partition servers, each its own child process (as
//! Kafka's broker is a process apart from its benchmark client), with
//! their data in a fresh temporary folder that goes away with the
//! cluster.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use xo_proto::coordinator::MetadataRequest;
use xo_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;

/// How long the coordinator gets to listen, and the partition servers to
/// register with it.
const STARTUP_WAIT_MAX: Duration = Duration::from_secs(30);
const STARTUP_POLL: Duration = Duration::from_millis(50);
pub const PARTITION_SERVERS_MAX: usize = 16;

pub struct LocalCluster {
    /// The coordinator's address: the bootstrap server.
    pub bootstrap: String,
    /// The data; removed on drop.
    dir: tempfile::TempDir,
    /// The coordinator first, then the partition servers.
    children: Vec<(String, Child)>,
}

impl LocalCluster {
    /// Starts the cluster in a new folder inside `base` with the partition
    /// servers' `--fsync` policy `fsync`; their logs go to `log_dir`.
    /// Returns once every partition server has registered.
    pub async fn start(
        base: &Path,
        fsync: &str,
        servers: usize,
        log_dir: &Path,
    ) -> anyhow::Result<LocalCluster> {
        assert!(
            (1..=PARTITION_SERVERS_MAX).contains(&servers),
            "1..={PARTITION_SERVERS_MAX} partition servers"
        );
        let exe = std::env::current_exe().context("locating the xo binary")?;
        std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("xo-bench-")
            .tempdir_in(base)
            .with_context(|| format!("a temporary folder in {}", base.display()))?;
        let bootstrap = free_addr()?;
        let mut cluster = LocalCluster { bootstrap: bootstrap.clone(), dir, children: Vec::new() };
        let coordinator_dir = cluster.dir.path().join("coordinator");
        cluster.spawn(
            &exe,
            "coordinator",
            &["coordinator", "--data-dir", path_str(&coordinator_dir), "--listen", &bootstrap],
            log_dir,
        )?;
        let deadline = Instant::now() + STARTUP_WAIT_MAX;
        while tokio::net::TcpStream::connect(&bootstrap).await.is_err() {
            cluster.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the coordinator did not listen within {STARTUP_WAIT_MAX:?}"
            );
            tokio::time::sleep(STARTUP_POLL).await;
        }
        for i in 1..=servers {
            let data: PathBuf = cluster.dir.path().join(format!("partition-server-{i}"));
            let name = format!("partition-server-{i}");
            cluster.spawn(
                &exe,
                &name,
                &[
                    "partition-server",
                    "--data-dir",
                    path_str(&data),
                    "--listen",
                    "127.0.0.1:0",
                    "--coordinator",
                    &bootstrap,
                    "--fsync",
                    fsync,
                ],
                log_dir,
            )?;
        }
        loop {
            cluster.check_alive()?;
            if cluster.registered().await == Some(servers) {
                return Ok(cluster);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the partition servers did not register within {STARTUP_WAIT_MAX:?}"
            );
            tokio::time::sleep(STARTUP_POLL).await;
        }
    }

    fn spawn(
        &mut self,
        exe: &Path,
        name: &str,
        args: &[&str],
        log_dir: &Path,
    ) -> anyhow::Result<()> {
        let log_path = log_dir.join(format!("xo-{name}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting xo {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("xo {name} exited during start-up ({status}); see its log");
            }
        }
        Ok(())
    }

    /// How many partition servers the coordinator knows.
    async fn registered(&self) -> Option<usize> {
        let mut client =
            CoordinatorServiceClient::connect(format!("http://{}", self.bootstrap)).await.ok()?;
        let response = client.metadata(MetadataRequest::default()).await.ok()?;
        Some(response.get_ref().servers.len())
    }

    /// The process ids, coordinator first (for profiling).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children.iter().map(|(n, c)| (n.clone(), c.id())).collect()
    }

    /// Stops every process (SIGKILL: the data is thrown away anyway).
    pub fn stop(mut self) {
        self.kill_all();
    }

    fn kill_all(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A loopback address with a port free right now.
fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.to_string())
}
