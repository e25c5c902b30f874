//! Workloads: the clients of a test run. The runner owns the cluster, the nemesis,
//! the clock and the history; a workload owns what its clients do. It is driven in
//! four phases:
//!
//! 1. [`Workload::setup`] once the cluster listens: create topics, nothing recorded.
//! 2. [`Workload::run`] while the nemesis runs: `ctx.concurrency` logical processes
//!    invoke operations at about `ctx.rate` per second in total until `ctx.deadline`,
//!    recording each invocation and its completion through `ctx.recorder`.
//! 3. After the heal, the runner polls [`Workload::resolved`] (with its own check
//!    that every partition's LSO reached its high watermark) until both hold: the
//!    time that takes is the time to recover, bounded by the transaction timeout
//!    plus [`RECOVERY_SLACK`].
//! 4. [`Workload::final_reads`]: read everything back (`final-poll` operations).
//!
//! Obligations: a process has at most one operation outstanding (the history's
//! rule); an operation whose outcome the client cannot know is completed as `info`,
//! after which the process must not be reused — take [`WorkloadCtx::next_process`];
//! values are unique per key; every loop ends at the deadline or on cancellation.

pub mod append;
pub mod ping;
pub mod pipeline;
pub mod queue;
pub mod queue_gen;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::recorder::Recorder;
use crate::rng::Rng;
use crate::topology::{Role, Topology};

/// Added to the transaction timeout to bound the time to recover after the heal: the
/// nodes' restart and log recovery, the coordinator's timeout scan interval, and the
/// markers' retries fit in it.
pub const RECOVERY_SLACK: Duration = Duration::from_secs(10);

/// The transaction timeout a workload that does not say otherwise runs with.
pub const TRANSACTION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Logical client processes of one run.
pub const CONCURRENCY_MAX: usize = 256;

/// Everything a workload's phase gets from the runner.
#[derive(Debug, Clone)]
pub struct WorkloadCtx {
    pub recorder: Arc<Recorder>,
    /// Where the nodes listen; the coordinator, when there is one, is the bootstrap.
    pub topology: Arc<Topology>,
    /// Initial processes are `0..concurrency`.
    pub concurrency: usize,
    /// Target operations per second, over all processes.
    pub rate: f64,
    /// When `run` must return (a phase-specific deadline for `final_reads`).
    pub deadline: Instant,
    /// Seeded from the run's seed; fork it per worker.
    pub rng: Rng,
    pub cancel: Cancel,
}

impl WorkloadCtx {
    /// The process that takes over from `process` after an indeterminate outcome:
    /// Jepsen's convention, so every process number stays one logical client.
    pub fn next_process(&self, process: u64) -> u64 {
        process + self.concurrency as u64
    }

    /// Time between one process's operations at the target rate.
    pub fn interval_per_process(&self) -> Duration {
        assert!(self.rate > 0.0, "rate must be positive");
        Duration::from_secs_f64(self.concurrency as f64 / self.rate)
    }

    /// Whether phase-ending time (deadline or cancellation) has come.
    pub fn done(&self) -> bool {
        self.cancel.is_cancelled() || Instant::now() >= self.deadline
    }

    /// Sleeps about one interval (uniform in 0.5–1.5 of it, so processes do not march
    /// in step), cut short by the deadline or cancellation. Returns `done()`.
    pub async fn pace(&self, rng: &mut Rng) -> bool {
        let interval = self.interval_per_process();
        let jittered = interval.mul_f64(0.5 + rng.below(1001) as f64 / 1000.0);
        let until = (Instant::now() + jittered).min(self.deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = self.cancel.cancelled() => {}
        }
        self.done()
    }
}

/// Whether the workload's own view of the cluster has settled after the heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Every transaction the workload began is committed or aborted.
    Resolved,
    /// Not yet, and why (e.g. "2 transactions ongoing: t3, t7").
    Pending(String),
}

/// A client workload. Methods return `Send` futures so the runner can drive them
/// on any runtime thread; implementations may write them as `async fn`.
pub trait Workload: Send + Sync + 'static {
    /// The `--workload` name.
    fn name(&self) -> &'static str;

    /// Whether the workload cannot run without `xo coordinator` (transactions,
    /// metadata). The runner refuses to start it against a binary without one.
    fn needs_coordinator(&self) -> bool {
        true
    }

    /// The transaction timeout the workload's producers ask for; with
    /// [`RECOVERY_SLACK`] it bounds the time to recover after the heal.
    fn transaction_timeout(&self) -> Duration {
        TRANSACTION_TIMEOUT_DEFAULT
    }

    /// Extra command-line flags for every node of `role`, e.g. a coordinator's
    /// `--expiry-check-interval-ms` for a workload with short transaction timeouts.
    fn node_args(&self, _role: Role) -> Vec<String> {
        Vec::new()
    }

    /// Prepares the cluster (topics, partitions). Nothing is recorded.
    fn setup(&self, topology: &Topology) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The operations under faults, until `ctx.deadline`.
    fn run(&self, ctx: WorkloadCtx) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// After the heal: are all of the workload's transactions resolved? Polled until
    /// it says so (and every LSO caught up) or the liveness bound passes.
    fn resolved(
        &self,
        _topology: &Topology,
    ) -> impl Future<Output = anyhow::Result<Resolution>> + Send {
        async { Ok(Resolution::Resolved) }
    }

    /// Reads every key back from the beginning, recording `final-poll` operations.
    fn final_reads(&self, ctx: WorkloadCtx) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Only a refused connection proves the node did not serve the request; any other
/// transport error leaves the outcome unknown.
pub(crate) fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    const CAUSES_MAX: usize = 16;
    let mut cause = Some(error);
    for _ in 0..CAUSES_MAX {
        let Some(e) = cause else { return false };
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = e.source();
    }
    false
}
