//! The simulation's nemesis: a schedule of fault windows drawn from the
//! seed, applied to the simulated world between steps, and the heal that
//! removes every fault at the end of the run.
//!
//! Faults (each window holds one, on hosts no other open window touches):
//! - `crash`: a host's process dies (its runtime is dropped: tasks, sockets,
//!   open files) and restarts on the same data directory when the window
//!   closes. Any node: the coordinator or a partition server.
//! - `partition`: every segment between two hosts is dropped. turmoil does
//!   not retransmit, so a connection that loses a segment stays stalled:
//!   this is the partition TCP does not recover from (a peer gone silent, a
//!   partition longer than the retransmission budget), and it finds the
//!   calls that wait without a timeout or a keep-alive.
//! - `hold`: messages between two hosts are held and all delivered at the
//!   end: the partition TCP rides out, seen as a long delay.
//! - `slow`: one link's latency goes up to `SLOW_LATENCY_MAX`: messages on
//!   it overtake and are overtaken by messages on other links (markers vs
//!   produces vs verifications reorder).
//!
//! Partitions and holds are mostly between the coordinator and a partition
//! server (the 2PC path), sometimes between the clients' host and a node.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::rng::Rng;

use super::nodes::{CLIENT, COORDINATOR};

/// Windows one run may hold.
pub const WINDOWS_MAX: usize = 200;
/// The longest a fault lasts.
pub const WINDOW_MAX: Duration = Duration::from_secs(4);
/// The shortest a fault lasts.
pub const WINDOW_MIN: Duration = Duration::from_millis(300);
/// Longest pause between one window's start and the next one's.
pub const GAP_MAX: Duration = Duration::from_millis(2_500);
/// A slowed link's latency, at most.
pub const SLOW_LATENCY_MAX: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Crash { host: String },
    Partition { a: String, b: String },
    Hold { a: String, b: String },
    Slow { a: String, b: String, latency_max: Duration },
}

impl Fault {
    pub fn hosts(&self) -> Vec<&str> {
        match self {
            Fault::Crash { host } => vec![host],
            Fault::Partition { a, b } | Fault::Hold { a, b } | Fault::Slow { a, b, .. } => {
                vec![a, b]
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Partition { .. } => "partition",
            Fault::Hold { .. } => "hold",
            Fault::Slow { .. } => "slow",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Crash { host } => write!(f, "crash {host}"),
            Fault::Partition { a, b } => write!(f, "partition {a} | {b}"),
            Fault::Hold { a, b } => write!(f, "hold {a} ~ {b}"),
            Fault::Slow { a, b, latency_max } => write!(f, "slow {a} ~ {b} ({latency_max:?})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
    pub fault: Fault,
}

/// Which faults a run may use.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub crash: bool,
    pub partition: bool,
    pub hold: bool,
    pub slow: bool,
}

impl Faults {
    pub const ALL: Faults = Faults { crash: true, partition: true, hold: true, slow: true };
    pub const NONE: Faults = Faults { crash: false, partition: false, hold: false, slow: false };
}

/// The fault windows of a run of `partition_servers` servers, inside
/// `[from, until)`, drawn from `rng`.
pub fn schedule(
    rng: &mut Rng,
    faults: Faults,
    partition_servers: &[String],
    from: Duration,
    until: Duration,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let kinds: Vec<&str> = [
        (faults.crash, "crash"),
        (faults.partition, "partition"),
        (faults.hold, "hold"),
        (faults.slow, "slow"),
    ]
    .into_iter()
    .filter_map(|(on, kind)| on.then_some(kind))
    .collect();
    if kinds.is_empty() {
        return windows;
    }
    let nodes: Vec<String> =
        std::iter::once(COORDINATOR.to_string()).chain(partition_servers.iter().cloned()).collect();
    let mut start = from;
    while start < until && windows.len() < WINDOWS_MAX {
        let length = rng.duration(WINDOW_MIN, WINDOW_MAX);
        let end = (start + length).min(until);
        let fault = match *rng.pick(&kinds) {
            "crash" => Fault::Crash { host: rng.pick(&nodes).clone() },
            "partition" => {
                let (a, b) = link(rng, partition_servers);
                Fault::Partition { a, b }
            }
            "hold" => {
                let (a, b) = link(rng, partition_servers);
                Fault::Hold { a, b }
            }
            _ => {
                let (a, b) = link(rng, partition_servers);
                let latency_max = rng.duration(Duration::from_millis(20), SLOW_LATENCY_MAX);
                Fault::Slow { a, b, latency_max }
            }
        };
        // One fault per host at a time: undoing one must not undo another.
        let busy: BTreeSet<&str> = windows
            .iter()
            .filter(|w: &&Window| w.end > start)
            .flat_map(|w| w.fault.hosts())
            .collect();
        if fault.hosts().iter().all(|h| !busy.contains(h)) {
            windows.push(Window { start, end, fault });
        }
        start += rng.duration(Duration::from_millis(100), GAP_MAX);
    }
    windows
}

/// A link to disturb: coordinator–partition server three times in four,
/// else the clients' host and a node.
fn link(rng: &mut Rng, partition_servers: &[String]) -> (String, String) {
    let server = rng.pick(partition_servers).clone();
    if rng.chance(0.75) {
        (COORDINATOR.to_string(), server)
    } else if rng.chance(0.5) {
        (CLIENT.to_string(), server)
    } else {
        (CLIENT.to_string(), COORDINATOR.to_string())
    }
}

/// Applies a schedule to a simulation as its clock passes the windows.
pub struct Nemesis {
    windows: Vec<Window>,
    /// Windows started, in start order; `open` marks those not yet undone.
    started: usize,
    open: Vec<usize>,
    /// The link latency the run has when nothing is slowed.
    latency_max: Duration,
    /// What was done, with the simulated time: for the failure report.
    pub log: Vec<String>,
}

impl Nemesis {
    pub fn new(windows: Vec<Window>, latency_max: Duration) -> Nemesis {
        Nemesis { windows, started: 0, open: Vec::new(), latency_max, log: Vec::new() }
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Starts and ends the windows due at `at` on the schedule's clock;
    /// `now` is the simulated time, for the log.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>, at: Duration, now: Duration) {
        let mut still_open = Vec::new();
        for i in std::mem::take(&mut self.open) {
            if self.windows[i].end <= at {
                let fault = self.windows[i].fault.clone();
                self.undo(sim, &fault, now);
            } else {
                still_open.push(i);
            }
        }
        self.open = still_open;
        while self.started < self.windows.len() && self.windows[self.started].start <= at {
            let fault = self.windows[self.started].fault.clone();
            self.apply(sim, &fault, now);
            self.open.push(self.started);
            self.started += 1;
        }
    }

    /// Ends every open window and skips the ones not started: the heal.
    pub fn heal(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        for i in std::mem::take(&mut self.open) {
            let fault = self.windows[i].fault.clone();
            self.undo(sim, &fault, now);
        }
        self.started = self.windows.len();
        self.log.push(format!("{now:?} heal"));
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) {
        match fault {
            Fault::Crash { host } => sim.crash(host.as_str()),
            Fault::Partition { a, b } => sim.partition(a.as_str(), b.as_str()),
            Fault::Hold { a, b } => sim.hold(a.as_str(), b.as_str()),
            Fault::Slow { a, b, latency_max } => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), *latency_max)
            }
        }
        self.log.push(format!("{now:?} start {fault}"));
    }

    fn undo(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) {
        match fault {
            Fault::Crash { host } => sim.bounce(host.as_str()),
            Fault::Partition { a, b } => sim.repair(a.as_str(), b.as_str()),
            Fault::Hold { a, b } => sim.release(a.as_str(), b.as_str()),
            Fault::Slow { a, b, .. } => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), self.latency_max)
            }
        }
        self.log.push(format!("{now:?} stop {fault}"));
    }
}
