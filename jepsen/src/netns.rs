//! The run's private network namespace, and the supervisor that lives outside it.
//!
//! # Why re-exec instead of `setns`
//!
//! The runner enters the namespace by running itself again under
//! `ip netns exec NAME <runner> test --inside-netns NAME ...`. The alternative,
//! `setns(2)` from inside this process, changes only the calling thread's namespace;
//! it would have to happen before the async runtime starts any thread, and a process
//! that crashes inside the namespace could not clean it up. With a re-exec, the
//! outer process (the supervisor) owns the namespace: it creates it, waits for the
//! inner runner — which starts every node and every client inside, so all their
//! traffic stays on the namespace's `lo` — and, however the inner one ends (exit,
//! panic, kill -9, Ctrl-C), kills whatever still runs in the namespace and deletes
//! it. The [`NetnsGuard`] does that on drop, so a panic of the supervisor cleans up
//! too.
//!
//! The runner's path is resolved from `/proc/self/exe` *before* the re-exec: passed
//! as `/proc/self/exe` it would name `ip` by the time `ip` executes it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cluster::send_signal;
use crate::topology::{netns_name, netns_pid};

/// How long the supervisor waits for the inner runner after forwarding a Ctrl-C:
/// long enough to tear down the nodes and write the history.
pub const INNER_SHUTDOWN_MAX: Duration = Duration::from_secs(60);
/// Processes killed in a namespace at cleanup: a bound on that loop.
pub const NETNS_PIDS_MAX: usize = 1024;

/// Tools a run needs, with the Debian package providing each.
pub const TOOLS_NETNS: [(&str, &str); 1] = [("ip", "iproute2")];
pub const TOOLS_PARTITION: [(&str, &str); 2] =
    [("iptables", "iptables"), ("iptables-restore", "iptables")];

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds `tool` on PATH, like `which`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|p| p.is_file())
}

/// The tools of `needed` missing from PATH, as "tool (apt-get install package)".
pub fn missing_tools(needed: &[(&str, &str)]) -> Vec<String> {
    needed
        .iter()
        .filter(|(tool, _)| which(tool).is_none())
        .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
        .collect()
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A namespace this process created; deleted (with everything in it killed) on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
    deleted: bool,
}

impl NetnsGuard {
    /// `ip netns add NAME` and bring its loopback up.
    pub fn create(name: &str) -> anyhow::Result<NetnsGuard> {
        ip(&["netns", "add", name])?;
        let guard = NetnsGuard { name: name.to_string(), deleted: false };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(guard)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills every process left in the namespace, then deletes it.
    pub fn delete(&mut self) -> anyhow::Result<()> {
        if self.deleted {
            return Ok(());
        }
        kill_all_in(&self.name);
        ip(&["netns", "delete", &self.name])?;
        self.deleted = true;
        Ok(())
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!("xo-jepsen: could not delete network namespace {}: {e:#}", self.name);
        }
    }
}

/// SIGKILL (after SIGCONT, for paused ones) every process in namespace `name`.
fn kill_all_in(name: &str) {
    let Ok(pids) = ip(&["netns", "pids", name]) else { return };
    for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()).take(NETNS_PIDS_MAX) {
        let _ = send_signal(pid, libc::SIGCONT);
        let _ = send_signal(pid, libc::SIGKILL);
    }
}

/// Deletes namespaces of earlier runs whose runner is gone (a supervisor killed with
/// -9 cannot clean up after itself). Returns their names.
pub fn remove_stale() -> Vec<String> {
    let Ok(list) = ip(&["netns", "list"]) else { return Vec::new() };
    let mut removed = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = netns_pid(name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(name);
        if ip(&["netns", "delete", name]).is_ok() {
            removed.push(name.to_string());
        }
    }
    removed
}

/// The supervisor: creates the namespace, runs the runner inside it with
/// `inner_args` (to which `--inside-netns NAME` is appended), forwards Ctrl-C and
/// SIGTERM, and cleans up. Returns the inner runner's exit code.
pub async fn supervise(inner_args: Vec<OsString>) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("resolving /proc/self/exe")?;
    for stale in remove_stale() {
        eprintln!("xo-jepsen: removed stale network namespace {stale}");
    }
    let mut guard = NetnsGuard::create(&netns_name(std::process::id()))?;
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", guard.name()])
        .arg(&exe)
        .args(&inner_args)
        .arg("--inside-netns")
        .arg(guard.name())
        .kill_on_drop(true)
        .spawn()
        .context("starting the runner inside the namespace")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        } => {
            // The terminal sent the inner runner the same SIGINT; a SIGTERM it did
            // not get, so forward one: it tears down, writes its history and exits.
            if let Some(pid) = child.id() {
                let _ = send_signal(pid, libc::SIGINT);
            }
            match tokio::time::timeout(INNER_SHUTDOWN_MAX, child.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    eprintln!("xo-jepsen: runner did not stop in {INNER_SHUTDOWN_MAX:?}; killing it");
                    child.kill().await?;
                    child.wait().await?
                }
            }
        }
    };
    guard.delete()?;
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        eprintln!(
            "xo-jepsen: the runner inside {} died of signal {signal}; namespace removed",
            guard.name()
        );
    }
    Ok(status.code().unwrap_or(2))
}
