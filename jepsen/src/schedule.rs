//! The nemesis schedule: which fault starts and stops when, as a pure function of
//! the seed, the topology and the fault kinds asked for. The nemesis executes it
//! (`nemesis.rs`); nothing here touches a process.
//!
//! The run is cut into rounds. Each round starts a *mix* — one or two fault kinds at
//! once, a few hundred milliseconds apart — holds it a few seconds, stops it, and
//! leaves a short quiet gap before the next round, so a 60 s run sees a dozen mixes.
//! At most one fault of a kind is active at a time (the history pairs `start-X` with
//! the next `stop-X`), and the processes hit by kill, pause and failpoint in one mix
//! are distinct, so a stop never undoes another fault's work.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::partition::PartitionSpec;
use crate::rng::Rng;
use crate::topology::{NodeId, Role, Topology};

/// Quiet time before the first fault, so the workload runs a while on a healthy
/// cluster (shortened for very short runs).
pub const QUIET_FIRST: Duration = Duration::from_secs(2);
/// How long a mix stays on.
pub const HOLD_MIN: Duration = Duration::from_secs(2);
pub const HOLD_MAX: Duration = Duration::from_secs(6);
/// Quiet gap between mixes.
pub const GAP_MIN: Duration = Duration::from_millis(500);
pub const GAP_MAX: Duration = Duration::from_secs(2);
/// Spread of the starts (and stops) of a mix's faults.
pub const STAGGER_MAX: Duration = Duration::from_millis(500);
/// Fault kinds active at once in a mix.
pub const MIX_KINDS_MAX: usize = 2;
/// Rounds in one schedule: a bound on the loop, far above what any time limit needs
/// (a round lasts at least HOLD_MIN + GAP_MIN).
pub const ROUNDS_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Failpoint,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] =
        [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Failpoint];

    /// The `X` of the history's `start-X` / `stop-X`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Failpoint => "failpoint",
        }
    }

    /// Faults that stop or crash processes: their targets are kept disjoint in a mix.
    pub fn hits_processes(self) -> bool {
        matches!(self, FaultKind::Kill | FaultKind::Pause | FaultKind::Failpoint)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--nemesis kill,pause,partition,failpoint`, `all` or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultKinds(pub BTreeSet<FaultKind>);

impl FromStr for FaultKinds {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKinds, String> {
        let mut kinds = BTreeSet::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                _ => {
                    let kind = FaultKind::ALL.iter().find(|k| k.name() == word).ok_or_else(|| {
                        format!("unknown nemesis {word:?}: kill, pause, partition, failpoint, all, none")
                    })?;
                    kinds.insert(*kind);
                }
            }
        }
        Ok(FaultKinds(kinds))
    }
}

/// A named crash site in an xo binary (`XO_CRASH_AT=<name>`), and the role that has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailpointSite {
    pub role: Role,
    pub name: String,
}

/// One fault, with its targets decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 these processes; the stop restarts them.
    Kill {
        nodes: Vec<NodeId>,
    },
    /// SIGSTOP these processes; the stop sends SIGCONT.
    Pause {
        nodes: Vec<NodeId>,
    },
    Partition {
        spec: PartitionSpec,
    },
    /// Restart `node` with `XO_CRASH_AT=site`; the stop restarts it without (whether
    /// or not the site was reached and crashed it).
    Failpoint {
        node: NodeId,
        site: String,
    },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Failpoint { .. } => FaultKind::Failpoint,
        }
    }

    /// The processes the fault stops or crashes.
    pub fn process_targets(&self) -> Vec<NodeId> {
        match self {
            Fault::Kill { nodes } | Fault::Pause { nodes } => nodes.clone(),
            Fault::Failpoint { node, .. } => vec![*node],
            Fault::Partition { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Start { fault: Fault },
    Stop { kind: FaultKind },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// From the start of the workload.
    #[serde(serialize_with = "as_ms")]
    pub at: Duration,
    #[serde(flatten)]
    pub action: Action,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// What a schedule is generated from.
#[derive(Debug, Clone)]
pub struct ScheduleConfig<'a> {
    pub topology: &'a Topology,
    pub kinds: BTreeSet<FaultKind>,
    pub time_limit: Duration,
    /// Sites the xo binary has; failpoint faults pick among those whose role runs.
    pub failpoints: Vec<FailpointSite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Sorted by `at`; every start is followed by the stop of its kind before the
    /// next start of that kind, and every stop is at or before the time limit.
    pub steps: Vec<Step>,
}

impl Schedule {
    pub fn generate(config: &ScheduleConfig<'_>, seed: u64) -> Schedule {
        let mut rng = Rng::new(seed).fork(0x6e656d65736973); // "nemesis"
        let kinds: Vec<FaultKind> =
            config.kinds.iter().copied().filter(|k| possible(*k, config)).collect();
        let limit = config.time_limit;
        let mut steps = Vec::new();
        let mut t = QUIET_FIRST.min(limit / 5);
        for _round in 0..ROUNDS_MAX {
            if kinds.is_empty() || t >= limit {
                break;
            }
            let hold = rng.duration(HOLD_MIN, HOLD_MAX);
            let mut mix = kinds.clone();
            rng.shuffle(&mut mix);
            mix.truncate(1 + rng.index(MIX_KINDS_MAX.min(kinds.len())));
            let mut busy: BTreeSet<NodeId> = BTreeSet::new();
            for kind in mix {
                let Some(fault) = pick_fault(kind, config, &mut busy, &mut rng) else {
                    continue;
                };
                let start = t + rng.duration(Duration::ZERO, STAGGER_MAX);
                let stop = (t + hold - rng.duration(Duration::ZERO, STAGGER_MAX)).min(limit);
                if start >= stop {
                    continue;
                }
                steps.push(Step { at: start, action: Action::Start { fault } });
                steps.push(Step { at: stop, action: Action::Stop { kind } });
            }
            t += hold + rng.duration(GAP_MIN, GAP_MAX);
        }
        // Stable: a start and stop at one instant keep their order.
        steps.sort_by_key(|s| s.at);
        let schedule = Schedule { steps };
        schedule.assert_well_formed(limit);
        schedule
    }

    /// The invariants the nemesis and the history's fault windows rely on.
    pub fn assert_well_formed(&self, limit: Duration) {
        let mut open: BTreeSet<FaultKind> = BTreeSet::new();
        for pair in self.steps.windows(2) {
            assert!(pair[0].at <= pair[1].at, "steps out of order");
        }
        for step in &self.steps {
            assert!(step.at <= limit, "a step after the time limit");
            match &step.action {
                Action::Start { fault } => {
                    assert!(open.insert(fault.kind()), "{} started twice", fault.kind());
                }
                Action::Stop { kind } => assert!(open.remove(kind), "{kind} stopped unstarted"),
            }
        }
        assert!(open.is_empty(), "faults left without an end: {open:?}");
    }

    /// The kinds active after the first `steps` steps have run.
    pub fn open_after(&self, steps: usize) -> BTreeSet<FaultKind> {
        let mut open = BTreeSet::new();
        for step in &self.steps[..steps] {
            match &step.action {
                Action::Start { fault } => open.insert(fault.kind()),
                Action::Stop { kind } => open.remove(kind),
            };
        }
        open
    }
}

/// What the heal phase does to end the faults still active: one stop per kind.
pub fn heal_actions(open: &BTreeSet<FaultKind>) -> Vec<Action> {
    open.iter().map(|kind| Action::Stop { kind: *kind }).collect()
}

fn possible(kind: FaultKind, config: &ScheduleConfig<'_>) -> bool {
    let topology = config.topology;
    match kind {
        FaultKind::Kill | FaultKind::Pause => !topology.nodes.is_empty(),
        FaultKind::Partition => topology.netns.is_some() && topology.nodes.len() >= 2,
        FaultKind::Failpoint => {
            config.failpoints.iter().any(|site| topology.nodes.iter().any(|n| n.role == site.role))
        }
    }
}

fn pick_fault(
    kind: FaultKind,
    config: &ScheduleConfig<'_>,
    busy: &mut BTreeSet<NodeId>,
    rng: &mut Rng,
) -> Option<Fault> {
    let topology = config.topology;
    let free: Vec<NodeId> = topology.ids().filter(|id| !busy.contains(id)).collect();
    let fault = match kind {
        FaultKind::Kill | FaultKind::Pause => {
            if free.is_empty() {
                return None;
            }
            let mut nodes = free.clone();
            rng.shuffle(&mut nodes);
            // Mostly one process, sometimes two (a minority of four).
            nodes.truncate(if nodes.len() > 2 && rng.chance(0.3) { 2 } else { 1 });
            nodes.sort();
            if kind == FaultKind::Kill { Fault::Kill { nodes } } else { Fault::Pause { nodes } }
        }
        FaultKind::Failpoint => {
            let sites: Vec<(&FailpointSite, Vec<NodeId>)> = config
                .failpoints
                .iter()
                .map(|site| {
                    let nodes = free
                        .iter()
                        .copied()
                        .filter(|id| topology.node(*id).role == site.role)
                        .collect();
                    (site, nodes)
                })
                .filter(|(_, nodes): &(_, Vec<NodeId>)| !nodes.is_empty())
                .collect();
            if sites.is_empty() {
                return None;
            }
            let (site, nodes) = rng.pick(&sites);
            Fault::Failpoint { node: *rng.pick(nodes), site: site.name.clone() }
        }
        FaultKind::Partition => Fault::Partition { spec: pick_partition(topology, rng) },
    };
    busy.extend(fault.process_targets());
    Some(fault)
}

fn pick_partition(topology: &Topology, rng: &mut Rng) -> PartitionSpec {
    let mut shapes = vec!["isolate", "halves"];
    if topology.coordinator().is_some() && topology.partition_servers().count() > 0 {
        shapes.push("coordinator-from-servers");
    }
    if topology.nodes.len() >= 3 {
        shapes.push("bridge");
    }
    let mut nodes: Vec<NodeId> = topology.ids().collect();
    rng.shuffle(&mut nodes);
    match *rng.pick(&shapes) {
        "isolate" => PartitionSpec::Isolate { node: nodes[0] },
        "coordinator-from-servers" => PartitionSpec::CoordinatorFromServers,
        "halves" => {
            let b = nodes.split_off(nodes.len() / 2);
            PartitionSpec::Halves { a: sorted(nodes), b: sorted(b) }
        }
        _ => {
            let bridge = nodes.pop().expect("three nodes");
            let b = nodes.split_off(nodes.len() / 2);
            PartitionSpec::Bridge { a: sorted(nodes), bridge, b: sorted(b) }
        }
    }
}

fn sorted(mut ids: Vec<NodeId>) -> Vec<NodeId> {
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Vec<FailpointSite> {
        vec![
            FailpointSite {
                role: Role::PartitionServer,
                name: "partition::after_marker_append".into(),
            },
            FailpointSite {
                role: Role::Coordinator,
                name: "coordinator::after_prepare_persisted".into(),
            },
        ]
    }

    fn generate(topology: &Topology, kinds: &str, secs: u64, seed: u64) -> Schedule {
        let config = ScheduleConfig {
            topology,
            kinds: kinds.parse::<FaultKinds>().unwrap().0,
            time_limit: Duration::from_secs(secs),
            failpoints: sites(),
        };
        Schedule::generate(&config, seed)
    }

    // Proves one seed gives one schedule, and another seed another.
    #[test]
    fn same_seed_same_schedule() {
        let t = Topology::in_netns("xo-jepsen-1", true, 3);
        let a = generate(&t, "all", 60, 42);
        assert_eq!(a, generate(&t, "all", 60, 42));
        assert_ne!(a, generate(&t, "all", 60, 43));
        assert!(a.steps.len() >= 10, "a minute holds many faults: {}", a.steps.len());
    }

    // Proves every start has its stop before the time limit, for many seeds, and
    // that every kind asked for shows up.
    #[test]
    fn every_fault_has_an_end() {
        let t = Topology::in_netns("xo-jepsen-1", true, 3);
        let mut seen = BTreeSet::new();
        for seed in 0..200 {
            let s = generate(&t, "all", 30, seed);
            s.assert_well_formed(Duration::from_secs(30));
            let starts = s.steps.iter().filter(|x| matches!(x.action, Action::Start { .. }));
            let stops = s.steps.iter().filter(|x| matches!(x.action, Action::Stop { .. }));
            assert_eq!(starts.count(), stops.count());
            for step in &s.steps {
                if let Action::Start { fault } = &step.action {
                    seen.insert(fault.kind());
                }
            }
        }
        assert_eq!(seen, FaultKind::ALL.into_iter().collect());
    }

    // Proves that stopping at any point and healing leaves nothing open.
    #[test]
    fn heal_ends_all() {
        let t = Topology::in_netns("xo-jepsen-1", true, 3);
        let s = generate(&t, "all", 60, 7);
        let mut max_open = 0;
        for cut in 0..=s.steps.len() {
            let mut open = s.open_after(cut);
            max_open = max_open.max(open.len());
            assert!(open.len() <= MIX_KINDS_MAX);
            for action in heal_actions(&open) {
                let Action::Stop { kind } = action else { panic!("heal only stops") };
                assert!(open.remove(&kind));
            }
            assert!(open.is_empty());
        }
        assert!(max_open >= 1);
    }

    // Proves a mix never aims two process faults at one node, partitions are left out
    // on the host, and failpoints only aim at roles that run.
    #[test]
    fn targets_respect_the_topology() {
        let host = Topology::on_host(false, 3, &[1, 2, 3]);
        for seed in 0..100 {
            let s = generate(&host, "all", 30, seed);
            let mut active: Vec<(FaultKind, Vec<NodeId>)> = Vec::new();
            for step in &s.steps {
                match &step.action {
                    Action::Start { fault } => {
                        assert_ne!(fault.kind(), FaultKind::Partition, "no partitions on the host");
                        if let Fault::Failpoint { site, .. } = fault {
                            assert!(site.starts_with("partition::"), "no coordinator here");
                        }
                        let targets = fault.process_targets();
                        for (_, others) in &active {
                            assert!(targets.iter().all(|n| !others.contains(n)), "shared target");
                        }
                        active.push((fault.kind(), targets));
                    }
                    Action::Stop { kind } => active.retain(|(k, _)| k != kind),
                }
            }
        }
        assert!(generate(&host, "none", 30, 1).steps.is_empty());
        assert!("kill,bogus".parse::<FaultKinds>().is_err());
    }
}
