//! The nemesis: executes a [`Schedule`] against the running [`Cluster`], records each
//! fault's start and stop in the history (process `nemesis`, `f` = `start-kill`,
//! `stop-kill`, ...; an invocation when it begins and an `info` completion saying
//! what it did), and heals everything at the end.
//!
//! The stops mirror the starts: `stop-kill` restarts what `start-kill` killed,
//! `stop-pause` resumes, `stop-partition` flushes the rules, `stop-failpoint`
//! restarts the node without its crash site, whether or not the site fired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value as Json, json};
use tokio::io::AsyncWriteExt;

use crate::cancel::Cancel;
use crate::cluster::Cluster;
use crate::history::OpType;
use crate::partition;
use crate::recorder::Recorder;
use crate::schedule::{Action, Fault, FaultKind, Schedule, heal_actions};
use crate::topology::NodeId;

/// How long a restarted node gets to listen again before the nemesis moves on (the
/// stop is recorded either way; the heal phase waits longer).
pub const RESTART_READY_MAX: Duration = Duration::from_secs(5);
/// How long the heal phase waits for every node to listen again.
pub const HEAL_READY_MAX: Duration = Duration::from_secs(30);

/// One executed fault, for results.json and the report.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// What was targeted, with node names.
    pub fault: Json,
    pub start_ms: u64,
    pub started: Json,
    pub stop_ms: Option<u64>,
    pub stopped: Option<Json>,
    /// Stopped by the heal phase rather than by the schedule.
    pub healed: bool,
}

/// What the heal phase found and did.
#[derive(Debug, Clone, Serialize)]
pub struct HealReport {
    pub start_ms: u64,
    pub done_ms: u64,
    /// Nodes that had to be (re)started by the heal itself: dead for another reason
    /// than an active fault, e.g. an unexpected crash.
    pub restarted: Vec<String>,
    /// Nodes not listening after HEAL_READY_MAX.
    pub not_ready: Vec<String>,
}

pub struct Nemesis {
    cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    active: BTreeMap<FaultKind, (Fault, usize)>,
    faults: Vec<FaultRecord>,
}

impl Nemesis {
    pub fn new(cluster: Arc<Cluster>, recorder: Arc<Recorder>) -> Nemesis {
        Nemesis { cluster, recorder, active: BTreeMap::new(), faults: Vec::new() }
    }

    pub fn faults(&self) -> &[FaultRecord] {
        &self.faults
    }

    fn now_ms(&self) -> u64 {
        self.recorder.elapsed().as_millis() as u64
    }

    /// Runs the schedule's steps at their times after `t0`, until done or cancelled.
    pub async fn run(
        &mut self,
        schedule: &Schedule,
        t0: Instant,
        cancel: &Cancel,
    ) -> anyhow::Result<()> {
        for step in &schedule.steps {
            tokio::select! {
                _ = tokio::time::sleep_until((t0 + step.at).into()) => {}
                _ = cancel.cancelled() => return Ok(()),
            }
            self.apply(&step.action, false).await?;
        }
        Ok(())
    }

    async fn apply(&mut self, action: &Action, healing: bool) -> anyhow::Result<()> {
        match action {
            Action::Start { fault } => self.start(fault).await,
            Action::Stop { kind } => self.stop(*kind, healing).await,
        }
    }

    async fn start(&mut self, fault: &Fault) -> anyhow::Result<()> {
        let kind = fault.kind();
        assert!(!self.active.contains_key(&kind), "{kind} started while active");
        let f = format!("start-{kind}");
        let described = self.describe(fault);
        self.recorder.nemesis(OpType::Invoke, &f, described.clone());
        let start_ms = self.now_ms();
        let result = self.do_start(fault).await;
        let started = outcome_json(&result);
        self.recorder.nemesis(OpType::Info, &f, started.clone());
        self.active.insert(kind, (fault.clone(), self.faults.len()));
        self.faults.push(FaultRecord {
            kind,
            fault: described,
            start_ms,
            started,
            stop_ms: None,
            stopped: None,
            healed: false,
        });
        result.map(|_| ()).with_context(|| format!("start-{kind}"))
    }

    async fn stop(&mut self, kind: FaultKind, healing: bool) -> anyhow::Result<()> {
        let Some((fault, record)) = self.active.remove(&kind) else {
            bail!("stop-{kind} without an active {kind}");
        };
        let f = format!("stop-{kind}");
        self.recorder.nemesis(OpType::Invoke, &f, self.describe(&fault));
        let result = self.do_stop(&fault).await;
        let stopped = outcome_json(&result);
        self.recorder.nemesis(OpType::Info, &f, stopped.clone());
        let stop_ms = self.now_ms();
        let record = &mut self.faults[record];
        record.stop_ms = Some(stop_ms);
        record.stopped = Some(stopped);
        record.healed = healing;
        result.map(|_| ()).with_context(|| format!("stop-{kind}"))
    }

    fn describe(&self, fault: &Fault) -> Json {
        let topology = &self.cluster.topology;
        match fault {
            Fault::Kill { nodes } | Fault::Pause { nodes } => {
                json!({"nodes": topology.names(nodes)})
            }
            Fault::Partition { spec } => spec.describe(topology),
            Fault::Failpoint { node, site } => json!({"node": topology.name(*node), "site": site}),
        }
    }

    fn names(&self, ids: &[NodeId]) -> Vec<String> {
        self.cluster.topology.names(ids)
    }

    async fn do_start(&self, fault: &Fault) -> anyhow::Result<Json> {
        let cluster = &self.cluster;
        match fault {
            Fault::Kill { nodes } => {
                let mut killed = Vec::new();
                for id in nodes {
                    if cluster.kill(*id).await? {
                        killed.push(*id);
                    }
                }
                Ok(json!({"killed": self.names(&killed)}))
            }
            Fault::Pause { nodes } => {
                let mut paused = Vec::new();
                for id in nodes {
                    if cluster.pause(*id).await? {
                        paused.push(*id);
                    }
                }
                Ok(json!({"paused": self.names(&paused)}))
            }
            Fault::Partition { spec } => {
                let pairs = spec.cut_pairs(&cluster.topology);
                let rules = partition::rules(&pairs, &cluster.topology);
                iptables_restore(&partition::restore_script(&rules)).await?;
                let cut: Vec<[String; 2]> = pairs
                    .iter()
                    .map(|(a, b)| [self.names(&[*a])[0].clone(), self.names(&[*b])[0].clone()])
                    .collect();
                Ok(json!({"cut": cut, "rules": rules.len()}))
            }
            Fault::Failpoint { node, site } => {
                cluster.kill(*node).await?;
                cluster.start(*node, Some(site)).await?;
                let ready = cluster.wait_ready(*node, RESTART_READY_MAX).await;
                Ok(json!({"restarted_with": site, "ready": ready}))
            }
        }
    }

    async fn do_stop(&self, fault: &Fault) -> anyhow::Result<Json> {
        let cluster = &self.cluster;
        match fault {
            Fault::Kill { nodes } => {
                let mut not_ready = Vec::new();
                for id in nodes {
                    cluster.start(*id, None).await?;
                }
                for id in nodes {
                    if !cluster.wait_ready(*id, RESTART_READY_MAX).await {
                        not_ready.push(*id);
                    }
                }
                Ok(json!({"restarted": self.names(nodes), "not_ready": self.names(&not_ready)}))
            }
            Fault::Pause { nodes } => {
                let mut resumed = Vec::new();
                for id in nodes {
                    if cluster.resume(*id).await? {
                        resumed.push(*id);
                    }
                }
                Ok(json!({"resumed": self.names(&resumed)}))
            }
            Fault::Partition { .. } => {
                iptables(&partition::flush_args()).await?;
                Ok(json!({"flushed": true}))
            }
            Fault::Failpoint { node, site } => {
                // Still running with the site armed: it was never reached.
                let fired = cluster.armed_failpoint(*node).await.as_deref() != Some(site.as_str());
                cluster.kill(*node).await?;
                cluster.start(*node, None).await?;
                let ready = cluster.wait_ready(*node, RESTART_READY_MAX).await;
                Ok(json!({"fired": fired, "ready": ready}))
            }
        }
    }

    /// Ends every active fault (recording the stops), then, whatever the schedule
    /// believed: flushes the partition rules, resumes every process, starts every
    /// dead one, and waits for all to listen.
    pub async fn heal(&mut self) -> anyhow::Result<HealReport> {
        let start_ms = self.now_ms();
        let open = self.active.keys().copied().collect();
        let mut first_error = None;
        for action in heal_actions(&open) {
            if let Err(e) = self.apply(&action, true).await {
                first_error.get_or_insert(e);
            }
        }
        assert!(self.active.is_empty(), "the heal left a fault active");
        let cluster = self.cluster.clone();
        if cluster.topology.netns.is_some()
            && let Err(e) = iptables(&partition::flush_args()).await
        {
            first_error.get_or_insert(e);
        }
        let mut restarted = Vec::new();
        for id in cluster.topology.ids() {
            let _ = cluster.resume(id).await;
            if !cluster.is_running(id).await {
                cluster.start(id, None).await?;
                restarted.push(cluster.topology.name(id).to_string());
            }
        }
        let mut not_ready = Vec::new();
        for id in cluster.topology.ids() {
            if !cluster.wait_ready(id, HEAL_READY_MAX).await {
                not_ready.push(cluster.topology.name(id).to_string());
            }
        }
        if let Some(e) = first_error {
            return Err(e.context("healing"));
        }
        Ok(HealReport { start_ms, done_ms: self.now_ms(), restarted, not_ready })
    }
}

fn outcome_json(result: &anyhow::Result<Json>) -> Json {
    match result {
        Ok(value) => value.clone(),
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

/// `iptables -w ARGS` inside the current namespace.
pub async fn iptables(args: &[String]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("iptables")
        .args(args)
        .output()
        .await
        .context("running iptables (apt-get install iptables)")?;
    if !out.status.success() {
        bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `iptables-restore --noflush` with `script` on stdin: all rules or none.
pub async fn iptables_restore(script: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running iptables-restore (apt-get install iptables)")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("iptables-restore: {}\n{script}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
