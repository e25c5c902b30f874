//! `xo-jepsen test`: one run of the suite, from an empty directory to a verdict.
//!
//! 1. Start the nodes (coordinator first) and wait until each listens.
//! 2. `setup` the workload; then, for `time_limit`, run the workload and the nemesis
//!    side by side.
//! 3. Heal: end every fault, resume and restart every process.
//! 4. Liveness: wait for every transaction to resolve and every LSO to reach its high
//!    watermark; the time that takes is the time to recover.
//! 5. `final_reads`, tear the cluster down, check `history.jsonl` (streamed to disk
//!    as the run goes, so a run killed midway leaves one), write `results.json` and
//!    `report.html`.
//!
//! Everything here runs inside the namespace already (see `netns.rs`) or, with
//! `--no-netns`, on the host loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;

use crate::cancel::{Cancel, CancelHandle, cancel_pair};
use crate::checker;
use crate::cluster::{Cluster, ExitCause, XoBinary};
use crate::liveness::{Liveness, await_recovery};
use crate::nemesis::Nemesis;
use crate::recorder::Recorder;
use crate::report;
use crate::rng::Rng;
use crate::schedule::{FaultKind, Schedule, ScheduleConfig};
use crate::topology::{Role, Topology};
use crate::workload::{CONCURRENCY_MAX, Workload, WorkloadCtx};

/// How long every node gets to listen at startup.
pub const STARTUP_READY_MAX: Duration = Duration::from_secs(30);
/// How long the final reads may take.
pub const FINAL_READS_MAX: Duration = Duration::from_secs(60);
/// Longest run accepted: a bound, not a recommendation.
pub const TIME_LIMIT_MAX: Duration = Duration::from_secs(24 * 3600);

/// What a run is asked to do: the command line, with every default resolved (the
/// supervisor passes these to the runner inside the namespace).
#[derive(Debug, Clone, Serialize)]
pub struct TestOptions {
    pub time_limit: Duration,
    pub nemesis: Vec<FaultKind>,
    pub workload: String,
    pub seed: u64,
    pub rate: f64,
    pub concurrency: usize,
    pub partition_servers: usize,
    pub out: PathBuf,
    pub xo_bin: PathBuf,
    /// The namespace this runner is inside; `None` on the host.
    pub netns: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    Interrupted,
}

/// Runs one test with `workload`.
pub async fn run<W: Workload>(options: TestOptions, workload: W) -> anyhow::Result<Verdict> {
    assert!(options.time_limit <= TIME_LIMIT_MAX, "time limit beyond TIME_LIMIT_MAX");
    assert!((1..=CONCURRENCY_MAX).contains(&options.concurrency), "concurrency out of range");
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let xo = XoBinary::probe(&options.xo_bin)?;
    if workload.needs_coordinator() && !xo.has_coordinator {
        bail!(
            "workload {} needs `xo coordinator`, which {} does not have yet",
            workload.name(),
            xo.path.display()
        );
    }
    let mut notes: Vec<String> = Vec::new();
    if !xo.has_coordinator {
        notes.push("this xo binary has no coordinator role: running partition servers only".into());
    }
    let topology = match &options.netns {
        Some(netns) => Topology::in_netns(netns, xo.has_coordinator, options.partition_servers),
        None => {
            let nodes = options.partition_servers + usize::from(xo.has_coordinator);
            Topology::on_host(xo.has_coordinator, options.partition_servers, &free_ports(nodes)?)
        }
    };
    let mut kinds: Vec<FaultKind> = options.nemesis.clone();
    if topology.netns.is_none() && kinds.contains(&FaultKind::Partition) {
        notes.push("--no-netns: partitions left out (they need the namespace)".into());
        kinds.retain(|k| *k != FaultKind::Partition);
    }
    if kinds.contains(&FaultKind::Failpoint) && xo.failpoints.is_empty() {
        notes.push("this xo binary has no known failpoint: failpoint faults left out".into());
        kinds.retain(|k| *k != FaultKind::Failpoint);
    }
    let schedule = Schedule::generate(
        &ScheduleConfig {
            topology: &topology,
            kinds: kinds.iter().copied().collect(),
            time_limit: options.time_limit,
            failpoints: xo.failpoints.clone(),
        },
        options.seed,
    );
    write_json(&options.out.join("schedule.json"), &schedule)?;
    for note in &notes {
        println!("note: {note}");
    }
    println!(
        "xo-jepsen test: workload {}, nemesis {:?}, seed {}, {:?}, {} nodes{}, out {}",
        workload.name(),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        options.seed,
        options.time_limit,
        topology.nodes.len(),
        topology
            .netns
            .as_ref()
            .map_or(" on the host loopback".to_string(), |n| format!(" in netns {n}")),
        options.out.display()
    );

    let history_path = options.out.join("history.jsonl");
    let recorder = Recorder::to_file(&history_path)?;
    let (cancel_handle, cancel) = cancel_pair();
    let cancel_handle = Arc::new(cancel_handle);
    let interrupted = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(watch_signals(cancel_handle.clone(), interrupted.clone()));
    let cluster = Arc::new(
        Cluster::new(topology.clone(), xo.clone(), options.out.join("nodes"), recorder.start())
            .with_node_args(Role::Coordinator, workload.node_args(Role::Coordinator))
            .with_node_args(Role::PartitionServer, workload.node_args(Role::PartitionServer)),
    );

    let mut problems: Vec<String> = Vec::new();
    let outcome = drive(
        &options,
        &workload,
        &cluster,
        &recorder,
        &schedule,
        &cancel,
        &cancel_handle,
        &interrupted,
        &mut problems,
    )
    .await;
    cluster.stop_all().await;
    signals.abort();
    let Outcome { nemesis_faults, heal, liveness } = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            problems.push(format!("{e:#}"));
            Outcome::default()
        }
    };
    let interrupted = interrupted.load(Ordering::SeqCst);
    if interrupted {
        problems.push("interrupted before the end".into());
    }
    for exit in cluster.exits().iter().filter(|e| e.cause == ExitCause::Unexpected) {
        problems.push(format!(
            "{} exited unexpectedly at {:.2} s ({}); see {}",
            exit.node,
            exit.at_ms as f64 / 1e3,
            exit.status,
            options.out.join("nodes").join(&exit.node).join("xo.log").display()
        ));
    }
    if let Some(l) = liveness.as_ref().filter(|l| !l.ok) {
        problems.push(format!(
            "liveness: not recovered within {} ms after the heal (time to recover: {}): {}",
            l.bound_ms,
            l.time_to_recover_ms.map_or("never".to_string(), |ms| format!("{ms} ms")),
            l.problem.as_deref().unwrap_or("-")
        ));
    }

    let history =
        recorder.history().with_context(|| format!("reading back {}", history_path.display()))?;
    let check = checker::check(&history).context("checking the recorded history")?;
    let valid = check.valid && problems.is_empty();
    let starts = cluster.starts().await;
    let results = report::results_json(
        &check,
        valid,
        json!({
            "problems": problems,
            "notes": notes,
            "run": {
                "workload": workload.name(),
                "nemesis": kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
                "seed": options.seed,
                "time_limit_s": options.time_limit.as_secs_f64(),
                "rate": options.rate,
                "concurrency": options.concurrency,
                "netns": topology.netns,
                "xo_bin": xo.path.display().to_string(),
                "nodes": topology.nodes.iter().map(|n| format!("{} ({}) {}", n.name, n.role.subcommand(), n.addr)).collect::<Vec<_>>(),
                "failpoints": xo.failpoints.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
                "process_starts": starts.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            },
            "nemesis": {"faults": nemesis_faults, "heal": heal, "scheduled_steps": schedule.steps.len()},
            "liveness": liveness,
            "process_exits": cluster.exits(),
        }),
    );
    write_json(&options.out.join("results.json"), &results)?;
    let html = report::render_html(&history, &check, &results);
    std::fs::write(options.out.join("report.html"), html)
        .with_context(|| format!("writing {}", options.out.join("report.html").display()))?;

    print!("{}", check.summary());
    if let Some(l) = results["liveness"].as_object() {
        println!(
            "liveness: time to recover {} (bound {} ms = transaction timeout {} ms + {} ms)",
            l["time_to_recover_ms"].as_u64().map_or("never".to_string(), |ms| format!("{ms} ms")),
            l["bound_ms"],
            l["transaction_timeout_ms"],
            l["slack_ms"]
        );
    }
    for p in results["problems"].as_array().into_iter().flatten() {
        println!("problem: {}", p.as_str().unwrap_or_default());
    }
    println!("{}", if valid { "RUN VALID" } else { "RUN INVALID" });
    println!("results: {}", options.out.join("results.json").display());
    println!("report:  {}", options.out.join("report.html").display());
    Ok(if interrupted {
        Verdict::Interrupted
    } else if valid {
        Verdict::Valid
    } else {
        Verdict::Invalid
    })
}

#[derive(Default)]
struct Outcome {
    nemesis_faults: Vec<crate::nemesis::FaultRecord>,
    heal: Option<crate::nemesis::HealReport>,
    liveness: Option<Liveness>,
}

/// Phases 1–5 up to the teardown; problems that do not stop the run go to `problems`.
#[allow(clippy::too_many_arguments)]
async fn drive<W: Workload>(
    options: &TestOptions,
    workload: &W,
    cluster: &Arc<Cluster>,
    recorder: &Arc<Recorder>,
    schedule: &Schedule,
    cancel: &Cancel,
    cancel_handle: &CancelHandle,
    interrupted: &AtomicBool,
    problems: &mut Vec<String>,
) -> anyhow::Result<Outcome> {
    cluster.start_all(STARTUP_READY_MAX).await.context("starting the cluster")?;
    workload.setup(&cluster.topology).await.context("workload setup")?;

    let rng = Rng::new(options.seed).fork(0x776f726b6c6f6164); // "workload"
    let t0 = Instant::now();
    let ctx = WorkloadCtx {
        recorder: recorder.clone(),
        topology: Arc::new(cluster.topology.clone()),
        concurrency: options.concurrency,
        rate: options.rate,
        deadline: t0 + options.time_limit,
        rng: rng.clone(),
        cancel: cancel.clone(),
    };
    let mut nemesis = Nemesis::new(cluster.clone(), recorder.clone());
    let (ran, nemesis_ran) = tokio::join!(workload.run(ctx.clone()), async {
        let result = nemesis.run(schedule, t0, cancel).await;
        if result.is_err() {
            // A nemesis that cannot inject faults makes the rest of the run moot.
            cancel_handle.cancel();
        }
        result
    });
    if let Err(e) = ran {
        problems.push(format!("workload run: {e:#}"));
    }
    if let Err(e) = nemesis_ran {
        problems.push(format!("nemesis: {e:#}"));
    }

    let healing_since = Instant::now();
    let heal = match nemesis.heal().await {
        Ok(heal) => {
            if !heal.not_ready.is_empty() {
                problems.push(format!("not listening after the heal: {:?}", heal.not_ready));
            }
            Some(heal)
        }
        Err(e) => {
            problems.push(format!("heal: {e:#}"));
            None
        }
    };
    let mut liveness = None;
    if !interrupted.load(Ordering::SeqCst) {
        let l = await_recovery(cluster, workload, healing_since).await;
        println!(
            "recovered after the heal: {}",
            l.time_to_recover_ms.map_or("no".to_string(), |ms| format!("in {ms} ms"))
        );
        liveness = Some(l);
        let final_ctx =
            WorkloadCtx { deadline: Instant::now() + FINAL_READS_MAX, rng: rng.fork(1), ..ctx };
        if let Err(e) = workload.final_reads(final_ctx).await {
            problems.push(format!("final reads: {e:#}"));
        }
    }
    Ok(Outcome { nemesis_faults: nemesis.faults().to_vec(), heal, liveness })
}

async fn watch_signals(cancel: Arc<CancelHandle>, interrupted: Arc<AtomicBool>) {
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("xo-jepsen: interrupted; tearing down and writing the history");
    interrupted.store(true, Ordering::SeqCst);
    cancel.cancel();
}

/// `n` distinct free ports on 127.0.0.1, for the host mode. Held open together so
/// they differ, then released for the nodes to bind (a small race with other
/// programs, acceptable for a test run).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free ports")?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
}

fn write_json(path: &std::path::Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
