//! `xo-jepsen test` end to end against real `xo` processes, and the partition rules
//! against real sockets. They need root (a network namespace, iptables) and a built
//! `xo` binary, so they are ignored by default; run them with
//! `cargo test --release -p xo-jepsen --test netns_run -- --ignored` after
//! `cargo build --release`. `XO_BIN` overrides where the binary is looked for.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xo_jepsen::netns::NetnsGuard;
use xo_jepsen::partition::{PartitionSpec, restore_script, rules};
use xo_jepsen::topology::{NodeId, Topology, netns_name};

/// The xo binary: $XO_BIN, else beside this test's profile directory
/// (target/<profile>/xo), else target/release/xo of the workspace.
fn xo_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("XO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test exe");
    let beside = exe.parent().and_then(|deps| deps.parent()).map(|p| p.join("xo"));
    match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/xo")),
    }
}

fn run_test(args: &[&str], out: &std::path::Path) -> (i32, String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_xo-jepsen"))
        .arg("test")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--xo-bin")
        .arg(xo_bin())
        .output()
        .expect("xo-jepsen runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let results = std::fs::read_to_string(out.join("results.json"))
        .map(|text| serde_json::from_str(&text).expect("results.json is JSON"))
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), stdout, results)
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fault_kinds(results: &serde_json::Value) -> BTreeSet<String> {
    results["faults"]
        .as_array()
        .expect("fault windows")
        .iter()
        .map(|w| {
            assert!(w["end_ns"].is_u64(), "every fault window ends: {w}");
            w["fault"].as_str().unwrap().to_string()
        })
        .collect()
}

// Proves a short noop run inside a fresh namespace starts the real processes, kills,
// pauses and restarts them, heals, recovers, writes every output, exits 0, and leaves
// no namespace behind.
#[test]
#[ignore = "needs root (network namespace) and a release xo binary"]
fn noop_run_in_netns_with_kill_and_pause() {
    let dir = tempfile::tempdir().unwrap();
    let (code, output, results) = run_test(
        &["--time-limit", "6", "--nemesis", "kill,pause", "--seed", "4", "--rate", "50"],
        dir.path(),
    );
    assert_eq!(code, 0, "{output}");
    assert_eq!(results["valid"], serde_json::json!(true), "{output}");
    let kinds = fault_kinds(&results);
    assert!(!kinds.is_empty(), "faults were injected: {output}");
    assert!(kinds.is_subset(&BTreeSet::from(["kill".into(), "pause".into()])), "{kinds:?}");
    assert!(results["ok"].as_u64().unwrap() > 50, "pings ran: {output}");
    assert!(results["liveness"]["ok"].as_bool().unwrap(), "{output}");
    assert!(
        results["process_exits"].as_array().unwrap().iter().all(|e| e["cause"] != "unexpected")
    );
    let netns = results["run"]["netns"].as_str().expect("ran in a namespace").to_string();
    assert!(!netns_list().contains(&netns), "namespace {netns} removed");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<svg"));
    assert!(dir.path().join("history.jsonl").is_file());
}

// Proves the host mode runs without a namespace and leaves partitions out.
#[test]
#[ignore = "needs a release xo binary"]
fn noop_run_on_host_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (code, output, results) = run_test(
        &["--time-limit", "5", "--nemesis", "all", "--seed", "9", "--no-netns"],
        dir.path(),
    );
    assert_eq!(code, 0, "{output}");
    assert!(results["run"]["netns"].is_null());
    assert!(!fault_kinds(&results).contains("partition"), "{output}");
    assert!(output.contains("partitions left out"), "{output}");
}

/// Whether a process with group id `gid` inside `netns` can open a TCP connection
/// to `addr` within `timeout_s` seconds.
fn can_connect(netns: &str, gid: u32, addr: &str, timeout_s: u32) -> bool {
    let (host, port) = addr.split_once(':').unwrap();
    Command::new("ip")
        .args(["netns", "exec", netns, "setpriv", "--regid", &gid.to_string(), "--clear-groups"])
        .args(["timeout", &timeout_s.to_string(), "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
        .status()
        .expect("ip netns exec runs")
        .success()
}

// Proves the generated rules really cut the isolated node's traffic both ways
// (matched by the sender's gid, since every sender's source address is 127.0.0.1),
// leave the other nodes and the clients (gid 0) alone, and that the flush heals.
#[test]
#[ignore = "needs root (network namespace, iptables) and a release xo binary"]
fn partition_rules_cut_real_connections() {
    let name = format!("{}-rules", netns_name(std::process::id()));
    let _guard = NetnsGuard::create(&name).expect("namespace");
    let topology = Topology::in_netns(&name, false, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for node in &topology.nodes {
        let child = Command::new("ip")
            .args(["netns", "exec", &name, "setpriv", "--regid"])
            .arg(node.gid.unwrap().to_string())
            .arg("--clear-groups")
            .arg(xo_bin())
            .args(["partition-server", "--data-dir"])
            .arg(dir.path().join(&node.name))
            .arg("--listen")
            .arg(node.addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xo starts");
        servers.push(child);
    }
    let addr = |i: usize| topology.nodes[i].addr.to_string();
    let gid = |i: usize| topology.nodes[i].gid.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(0..3).all(|i| can_connect(&name, 0, &addr(i), 1)) {
        assert!(Instant::now() < deadline, "servers did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut = PartitionSpec::Isolate { node: NodeId(1) }.cut_pairs(&topology);
    let script = restore_script(&rules(&cut, &topology));
    let mut restore = Command::new("ip")
        .args(["netns", "exec", &name, "iptables-restore", "-w", "--noflush"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    restore.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(restore.wait().unwrap().success());

    assert!(!can_connect(&name, gid(0), &addr(1), 1), "ps1 -> ps2 cut");
    assert!(!can_connect(&name, gid(1), &addr(0), 1), "ps2 -> ps1 cut");
    assert!(!can_connect(&name, gid(1), &addr(2), 1), "ps2 -> ps3 cut");
    assert!(can_connect(&name, gid(0), &addr(2), 2), "ps1 -> ps3 untouched");
    assert!(can_connect(&name, 0, &addr(1), 2), "clients reach the isolated node");

    let flushed = Command::new("ip")
        .args(["netns", "exec", &name, "iptables"])
        .args(xo_jepsen::partition::flush_args())
        .status()
        .unwrap();
    assert!(flushed.success());
    assert!(can_connect(&name, gid(0), &addr(1), 2), "healed");
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

// Proves the append workload's acknowledged writes survive kill -9 and pauses of
// real partition servers: the final reads find every one, once.
#[test]
#[ignore = "needs root (network namespace) and a release xo binary"]
fn append_run_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (code, output, results) = run_test(
        &["--workload", "append", "--time-limit", "8", "--nemesis", "kill,pause", "--seed", "5"],
        dir.path(),
    );
    assert_eq!(code, 0, "{output}");
    assert_eq!(results["final_polls"], serde_json::json!(3), "{output}");
    assert_eq!(results["keys"], serde_json::json!(3), "{output}");
    assert!(results["ok"].as_u64().unwrap() > 50, "{output}");
    assert!(!fault_kinds(&results).is_empty(), "{output}");
}
