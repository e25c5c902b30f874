//! xo's fault-injection suite: it runs a real cluster as separate processes,
//! injects faults (kill -9, pauses, network partitions, failpoints), records
//! every client operation into a history, and checks that history for each
//! anomaly Jepsen's Kafka workload knows. It only observes xo from outside,
//! through the client, the processes' signals and the partition service's
//! public RPCs; it never reaches into a server's state.
//!
//! Layout:
//! - [`history`]: the history format (`history.jsonl`) and a builder for tests.
//! - [`checker`]: every anomaly class, from a history alone.
//! - [`topology`]: node names, roles, addresses, netns names. Pure.
//! - [`schedule`]: the nemesis schedule from a seed. Pure.
//! - [`partition`]: partition specs to iptables rules. Pure.
//! - [`rng`]: the seeded generator both of those use.
//! - [`recorder`]: the live history the workload and the nemesis append to.
//! - [`cluster`]: the node processes and the signals the faults are made of.
//! - [`nemesis`]: executes a schedule on the cluster, recording each fault, and heals.
//! - [`netns`]: the private network namespace and the supervisor around the run.
//! - [`workload`]: the trait client workloads implement; `ping` needs no client.
//! - [`liveness`]: time to recover after the heal (LSO = high watermark, txns resolved).
//! - [`report`]: results.json and report.html with the timeline plots.
//! - [`runner`]: one `xo-jepsen test` run, phase by phase.
//! - [`sim`]: the deterministic simulation (turmoil, one process), `xo-jepsen simulate`.

pub mod cancel;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod liveness;
pub mod nemesis;
pub mod netns;
pub mod partition;
pub mod recorder;
pub mod report;
pub mod rng;
pub mod runner;
pub mod schedule;
pub mod sim;
pub mod topology;
pub mod workload;
