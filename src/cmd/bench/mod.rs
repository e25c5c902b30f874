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
//!   file per workload, each of the same shape: clap `Args`, `measure`
//!   (returns the line) and `run` (prints it).
//! - `cluster`: a local xo cluster of child processes for `compare`.
//! - `compare`: xo and Kafka workload by workload, in both durability
//!   modes, with the machine's limits.
//! - `report`: result rows, ratios, the markdown table and the plots
//!   (pure, tested).

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
        Workload::Produce(args) => common::print_outcome("produce", produce::run(args).await),
        Workload::Consume(args) => common::print_outcome("consume", consume::run(args).await),
        Workload::Txn(args) => common::print_outcome("commit", txn::run(args).await),
        Workload::Tiny(args) => common::print_outcome("tiny", tiny::run(args).await),
        Workload::E2e(args) => common::print_outcome("e2e", e2e::run(args).await),
        Workload::Compare(args) => compare::run(args).await,
    }
}
