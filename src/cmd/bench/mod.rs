//! `xo bench`: the xo side of the benchmark beside Apache Kafka (issue 6).
//!
//! Each workload runs against any xo cluster through the client library
//! and prints one JSON line on stdout in the shape of the Kafka harness's
//! (`bench/kafka/run`): the same workloads, the same flags, the same
//! placement of records and the same timing rules, so that a line from
//! either side can be compared field by field. Progress goes to stderr.
//!
//! Layout:
//! - `common`: the flags every workload takes, the JSON line, value pool,
//!   record placement, the send loop, histograms and progress bars.
//! - `produce`, `txn` (Kafka's `commit`), `tiny`, `e2e`, `consume`: one
//!   file per workload, each of the same shape: clap `Args` and `measure`
//!   (returns the line; `run` below prints it, `compare` collects it).
//! - `cluster`: a local xo cluster of child processes for `compare`.
//! - `compare`: xo and Kafka workload by workload, in both durability
//!   modes, with the machine's limits.
//! - `report`: result rows, ratios, the markdown table and the plots
//!   (pure, tested).

use indicatif::ProgressBar;

use common::Line;

mod cluster;
mod common;
mod compare;
mod consume;
mod e2e;
mod produce;
mod report;
mod tiny;
mod txn;

/// Benchmark workloads against an xo cluster, and the comparison with Kafka.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Workload,
}

#[derive(clap::Subcommand)]
enum Workload {
    /// Produce throughput: plain, idempotent, or in transactions over two topics.
    Produce(produce::Args),
    /// Read-committed consume throughput from a backlog written first.
    Consume(consume::Args),
    /// Commit latency: back-to-back transactions, the records flushed first,
    /// then commit_transaction timed (Kafka's `commit` workload).
    #[command(visible_alias = "commit")]
    Txn(txn::Args),
    /// Tiny transactions: one record per transaction, serial.
    Tiny(tiny::Args),
    /// End-to-end latency (send to read-committed delivery) at a fixed rate.
    E2e(e2e::Args),
    /// Every workload on a fresh local xo cluster and on Apache Kafka, in
    /// page-cache and fsync mode; writes results.json, results.md and plots.
    Compare(compare::Args),
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Workload::Produce(args) => {
            show("produce", async |bar| produce::measure(&args, bar).await).await
        }
        Workload::Consume(args) => {
            show("consume", async |bar| consume::measure(&args, bar).await).await
        }
        Workload::Txn(args) => show("commit", async |bar| txn::measure(&args, bar).await).await,
        Workload::Tiny(args) => show("tiny", async |bar| tiny::measure(&args, bar).await).await,
        Workload::E2e(args) => show("e2e", async |bar| e2e::measure(&args, bar).await).await,
        Workload::Compare(args) => compare::run(args).await,
    }
}

/// One workload from the command line: measured under a progress bar of
/// its own (cleared before the line is printed), its line on stdout.
async fn show(
    workload: &str,
    measure: impl AsyncFnOnce(&ProgressBar) -> anyhow::Result<Line>,
) -> anyhow::Result<()> {
    let bar = common::bar(workload);
    let line = measure(&bar).await;
    bar.finish_and_clear();
    common::print_outcome(workload, line)
}
