//! The `xo-jepsen check` command as a user runs it: a history file in, a summary and
//! results.json out, and an exit status a script can trust.

use std::path::Path;
use std::process::Command;

use xo_jepsen::history::{F, HistoryBuilder, poll, send};

fn run_check(history: &Path, out: &Path) -> (i32, String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_xo-jepsen"))
        .arg("check")
        .arg(history)
        .arg("--out")
        .arg(out)
        .output()
        .expect("xo-jepsen runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let results = std::fs::read_to_string(out.join("results.json"))
        .map(|text| serde_json::from_str(&text).expect("results.json is JSON"))
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().expect("exited"), stdout, results)
}

// Proves a valid history exits 0 and writes results.json with every class at 0.
#[test]
fn valid_history_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, h.build().to_jsonl()).unwrap();

    let (code, stdout, results) = run_check(&path, &dir.path().join("out"));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("VALID"), "{stdout}");
    assert_eq!(results["valid"], true);
    let counts = results["anomaly_counts"].as_object().unwrap();
    assert!(counts.len() >= 16 && counts.values().all(|n| n == 0), "{counts:?}");
    assert_eq!(results["ops"], 2);
}

// Proves a history with a lost write exits 1 and names it in the summary and results.
#[test]
fn invalid_history_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    h.ok(0, F::Send, &[send("t0/0", 1, 2)]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(1, 2)])])]);
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, h.build().to_jsonl()).unwrap();

    let (code, stdout, results) = run_check(&path, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("lost-write: 1"), "{stdout}");
    assert_eq!(results["valid"], false);
    assert_eq!(results["anomaly_counts"]["lost-write"], 1);
    assert_eq!(results["anomalies"]["lost-write"][0]["ops"], serde_json::json!([1, 5]));
}

// Proves an unreadable history exits 2 and writes no verdict.
#[test]
fn malformed_history_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, "{\"index\": 0, \"oops\": true}\n").unwrap();
    let (code, _, results) = run_check(&path, dir.path());
    assert_eq!(code, 2);
    assert!(results.is_null());
}
