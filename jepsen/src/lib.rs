//! xo's fault-injection suite: it runs a real cluster as separate processes,
//! injects faults (kill -9, pauses, network partitions, failpoints), records
//! every client operation into a history, and checks that history for each
//! anomaly Jepsen's Kafka workload knows. It only observes xo from outside,
//! through the client and the processes' signals; it never reaches into a
//! server's state.

pub mod checker;
pub mod history;
