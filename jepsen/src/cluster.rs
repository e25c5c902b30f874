//! The cluster under test: one OS process per node, started from the release `xo`
//! binary, and the process-level faults the nemesis applies to them (kill -9,
//! SIGSTOP/SIGCONT, restart with a failpoint armed).
//!
//! Each node's process runs in its own process group, so a Ctrl-C at the terminal
//! reaches the runner only and the runner decides what happens to the nodes, and
//! with `kill_on_drop`, so a runner that unwinds takes its nodes with it. Inside the
//! namespace each node also runs with its own group id (see `partition.rs`). A
//! node's stdout and stderr go to `<nodes>/<name>/xo.log`, appended across restarts;
//! its data lives in `<nodes>/<name>/data` and survives them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::schedule::FailpointSite;
use crate::topology::{Node, NodeId, Role, Topology};

/// Crash sites the suite knows, by role: `partition-server/src/failpoints.rs` and
/// `coordinator/src/failpoints.rs`. A site is used only when the binary has it.
pub const KNOWN_FAILPOINTS: [(Role, &str); 4] = [
    (Role::PartitionServer, "partition::after_marker_append"),
    (Role::Coordinator, "coordinator::after_prepare_persisted"),
    (Role::Coordinator, "coordinator::after_some_markers"),
    (Role::Coordinator, "coordinator::before_complete_persisted"),
];

/// The environment variable that arms a crash site (`failpoints.rs`).
pub const CRASH_AT_ENV: &str = "XO_CRASH_AT";

/// How long a killed process may take to be reaped.
pub const KILL_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often readiness is probed.
pub const READY_POLL: Duration = Duration::from_millis(50);
/// A single readiness probe's connect timeout.
pub const READY_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Process exits kept for the report.
pub const EXITS_MAX: usize = 10_000;

/// What the `xo` binary under test can do, read from its `--help` and its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct XoBinary {
    pub path: PathBuf,
    /// `xo coordinator` exists.
    pub has_coordinator: bool,
    /// `xo partition-server --coordinator ADDR` exists.
    pub partition_server_takes_coordinator: bool,
    /// Crash sites compiled into the binary.
    pub failpoints: Vec<FailpointSite>,
}

impl XoBinary {
    pub fn probe(path: &Path) -> anyhow::Result<XoBinary> {
        if !path.is_file() {
            bail!(
                "no xo binary at {} (build it with `cargo build --release`, or pass --xo-bin)",
                path.display()
            );
        }
        let help = |args: &[&str]| -> anyhow::Result<String> {
            let out = std::process::Command::new(path)
                .args(args)
                .output()
                .with_context(|| format!("running {} {}", path.display(), args.join(" ")))?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let top = help(&["--help"])?;
        let has_subcommand =
            |name: &str| top.lines().any(|l| l.split_whitespace().next() == Some(name));
        if !has_subcommand("partition-server") {
            bail!("{} has no partition-server subcommand: not an xo binary?", path.display());
        }
        let ps_help = help(&["partition-server", "--help"])?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let failpoints = KNOWN_FAILPOINTS
            .iter()
            .filter(|(_, site)| contains(&bytes, site.as_bytes()))
            .map(|(role, site)| FailpointSite { role: *role, name: site.to_string() })
            .collect();
        Ok(XoBinary {
            path: path.to_path_buf(),
            has_coordinator: has_subcommand("coordinator"),
            partition_server_takes_coordinator: ps_help.contains("--coordinator"),
            failpoints,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Why a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitCause {
    /// The nemesis (or the teardown) killed it.
    Killed,
    /// It ended while a failpoint was armed: most likely the site fired.
    Failpoint,
    /// Nobody asked it to: a crash worth reading its log for.
    Unexpected,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessExit {
    pub node: String,
    /// Since the run's time 0.
    pub at_ms: u64,
    pub status: String,
    pub cause: ExitCause,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failpoint: Option<String>,
}

#[derive(Debug, Default)]
struct Proc {
    child: Option<Child>,
    paused: bool,
    /// The site armed in the running process, if any.
    failpoint: Option<String>,
    starts: u32,
}

/// The running cluster. Methods take `&self`: each node's process sits behind its own
/// async mutex, held across the signal and the wait for one action.
#[derive(Debug)]
pub struct Cluster {
    pub topology: Topology,
    pub xo: XoBinary,
    nodes_dir: PathBuf,
    epoch: Instant,
    procs: Vec<Mutex<Proc>>,
    exits: StdMutex<Vec<ProcessExit>>,
    /// Extra flags per role, from the workload.
    node_args: Vec<(Role, Vec<String>)>,
}

impl Cluster {
    /// A cluster of stopped nodes; `epoch` is the history's time 0.
    pub fn new(topology: Topology, xo: XoBinary, nodes_dir: PathBuf, epoch: Instant) -> Cluster {
        let procs = topology.nodes.iter().map(|_| Mutex::new(Proc::default())).collect();
        let exits = StdMutex::new(Vec::new());
        Cluster { topology, xo, nodes_dir, epoch, procs, exits, node_args: Vec::new() }
    }

    /// Adds `args` to the command line of every node of `role`.
    pub fn with_node_args(mut self, role: Role, args: Vec<String>) -> Cluster {
        self.node_args.push((role, args));
        self
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.topology.node(id)
    }

    fn node_dir(&self, id: NodeId) -> PathBuf {
        self.nodes_dir.join(&self.node(id).name)
    }

    fn command(&self, id: NodeId, failpoint: Option<&str>) -> anyhow::Result<Command> {
        let node = self.node(id);
        let dir = self.node_dir(id);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let log_path = dir.join("xo.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&self.xo.path);
        cmd.arg(node.role.subcommand()).arg("--data-dir").arg(&data);
        cmd.arg("--listen").arg(node.addr.to_string());
        if node.role == Role::PartitionServer
            && self.xo.partition_server_takes_coordinator
            && let Some(coordinator) = self.topology.coordinator()
        {
            cmd.arg("--coordinator").arg(coordinator.addr.to_string());
        }
        for (role, args) in &self.node_args {
            if *role == node.role {
                cmd.args(args);
            }
        }
        match failpoint {
            Some(site) => cmd.env(CRASH_AT_ENV, site),
            None => cmd.env_remove(CRASH_AT_ENV),
        };
        // Plain logs: they are read with less and grep, not on a terminal.
        cmd.env("NO_COLOR", "1");
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        cmd.process_group(0).kill_on_drop(true);
        if let Some(gid) = node.gid {
            cmd.gid(gid);
        }
        Ok(cmd)
    }

    /// Starts a node's process (with `failpoint` armed, if given). A node already
    /// running is left alone.
    pub async fn start(&self, id: NodeId, failpoint: Option<&str>) -> anyhow::Result<()> {
        let mut proc = self.procs[id.0].lock().await;
        self.reap(id, &mut proc);
        if proc.child.is_some() {
            return Ok(());
        }
        let name = &self.node(id).name;
        let child = self
            .command(id, failpoint)?
            .spawn()
            .with_context(|| format!("starting {name} ({})", self.xo.path.display()))?;
        proc.child = Some(child);
        proc.paused = false;
        proc.failpoint = failpoint.map(str::to_string);
        proc.starts += 1;
        Ok(())
    }

    /// Notes the exit of a process that ended by itself.
    fn reap(&self, id: NodeId, proc: &mut Proc) {
        let Some(child) = proc.child.as_mut() else { return };
        if let Ok(Some(status)) = child.try_wait() {
            let cause =
                if proc.failpoint.is_some() { ExitCause::Failpoint } else { ExitCause::Unexpected };
            self.note_exit(id, status.to_string(), cause, proc.failpoint.take());
            proc.child = None;
            proc.paused = false;
        }
    }

    fn note_exit(&self, id: NodeId, status: String, cause: ExitCause, failpoint: Option<String>) {
        let mut exits = self.exits.lock().expect("exits lock");
        if exits.len() < EXITS_MAX {
            exits.push(ProcessExit {
                node: self.node(id).name.clone(),
                at_ms: self.epoch.elapsed().as_millis() as u64,
                status,
                cause,
                failpoint,
            });
        }
    }

    /// kill -9. Returns whether a live process was killed (false: it was not running).
    pub async fn kill(&self, id: NodeId) -> anyhow::Result<bool> {
        let mut proc = self.procs[id.0].lock().await;
        self.reap(id, &mut proc);
        let Some(mut child) = proc.child.take() else { return Ok(false) };
        child.start_kill().with_context(|| format!("killing {}", self.node(id).name))?;
        let status = tokio::time::timeout(KILL_WAIT_MAX, child.wait())
            .await
            .with_context(|| format!("{} outlived kill -9", self.node(id).name))??;
        self.note_exit(id, status.to_string(), ExitCause::Killed, proc.failpoint.take());
        proc.paused = false;
        Ok(true)
    }

    /// SIGSTOP. Returns whether a live process was paused.
    pub async fn pause(&self, id: NodeId) -> anyhow::Result<bool> {
        self.signal(id, libc::SIGSTOP, true).await
    }

    /// SIGCONT. Returns whether a live process was resumed.
    pub async fn resume(&self, id: NodeId) -> anyhow::Result<bool> {
        self.signal(id, libc::SIGCONT, false).await
    }

    async fn signal(&self, id: NodeId, signal: i32, paused: bool) -> anyhow::Result<bool> {
        let mut proc = self.procs[id.0].lock().await;
        self.reap(id, &mut proc);
        let Some(pid) = proc.child.as_ref().and_then(Child::id) else { return Ok(false) };
        send_signal(pid, signal).with_context(|| format!("signalling {}", self.node(id).name))?;
        proc.paused = paused;
        Ok(true)
    }

    pub async fn is_running(&self, id: NodeId) -> bool {
        let mut proc = self.procs[id.0].lock().await;
        self.reap(id, &mut proc);
        proc.child.is_some()
    }

    pub async fn is_paused(&self, id: NodeId) -> bool {
        self.procs[id.0].lock().await.paused
    }

    /// The failpoint armed in the node's running process.
    pub async fn armed_failpoint(&self, id: NodeId) -> Option<String> {
        let mut proc = self.procs[id.0].lock().await;
        self.reap(id, &mut proc);
        proc.failpoint.clone()
    }

    /// Waits until the node accepts TCP connections, up to `timeout`; false if it did
    /// not (or its process is gone).
    pub async fn wait_ready(&self, id: NodeId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let addr = self.node(id).addr;
        let polls_max = (timeout.as_millis() / READY_POLL.as_millis()).max(1) as usize + 1;
        for _ in 0..polls_max {
            if !self.is_running(id).await {
                return false;
            }
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(_stream)) = tokio::time::timeout(READY_CONNECT_TIMEOUT, connect).await {
                return true;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(READY_POLL).await;
        }
        false
    }

    /// Starts every node, coordinator first, and waits for each to listen.
    pub async fn start_all(&self, timeout: Duration) -> anyhow::Result<()> {
        for id in self.topology.ids() {
            self.start(id, None).await?;
            if !self.wait_ready(id, timeout).await {
                let log = self.node_dir(id).join("xo.log");
                bail!(
                    "{} did not start listening on {} within {timeout:?}; its log: {}\n{}",
                    self.node(id).name,
                    self.node(id).addr,
                    log.display(),
                    tail(&log, 20)
                );
            }
        }
        Ok(())
    }

    /// Resumes and kills every node: the teardown.
    pub async fn stop_all(&self) {
        for id in self.topology.ids() {
            let _ = self.resume(id).await;
            if let Err(e) = self.kill(id).await {
                eprintln!("xo-jepsen: teardown of {}: {e:#}", self.node(id).name);
            }
        }
    }

    pub fn exits(&self) -> Vec<ProcessExit> {
        self.exits.lock().expect("exits lock").clone()
    }

    /// Times each node's process was started.
    pub async fn starts(&self) -> Vec<(String, u32)> {
        let mut starts = Vec::new();
        for id in self.topology.ids() {
            starts.push((self.node(id).name.clone(), self.procs[id.0].lock().await.starts));
        }
        starts
    }

    pub fn log_path(&self, id: NodeId) -> PathBuf {
        self.node_dir(id).join("xo.log")
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// kill(2) on a process we started and have not reaped, so the pid is still ours.
pub fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    assert!(pid > 0, "never signal a process group or every process");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
