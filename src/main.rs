//! The `xo` command: runs xo's server roles (`partition-server`,
//! `coordinator`, `dev`) and the client tools (`topic`, `produce`,
//! `consume`, `txn`, `producers`). Each subcommand lives in `cmd/`, one
//! file per command.

mod cmd;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

/// xo: an exactly-once transactional log.
#[derive(Parser)]
#[command(name = "xo", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one partition server: stores partitions' logs and serves produce and fetch.
    PartitionServer(cmd::partition_server::Args),
    /// Run the transaction coordinator: producer ids, transactions (two-phase
    /// commit), topics and the registry of partition servers.
    Coordinator(cmd::coordinator::Args),
    /// Run a development cluster in one process: a coordinator and N partition
    /// servers on 127.0.0.1, data kept in one folder. Ctrl-C stops it.
    Dev(cmd::dev::Args),
    /// Create, list, describe and delete topics.
    Topic(cmd::topic::Args),
    /// Write stdin to a topic, one record per line.
    Produce(cmd::produce::Args),
    /// Print a topic's records, one per line.
    Consume(cmd::consume::Args),
    /// List, describe and abort transactions; find hanging ones.
    Txn(cmd::txn::Args),
    /// Show the producer state a partition keeps.
    Producers(cmd::producers::Args),
    /// Benchmark an xo cluster (produce, consume, txn, tiny, e2e), or compare
    /// xo with Apache Kafka on this machine (compare).
    Bench(cmd::bench::Args),
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if e.use_stderr()
                && e.kind() != ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // Errors are one line; help and version print as clap has them.
            let words: Vec<String> = std::env::args().collect();
            eprintln!("{}", cmd::usage_error_line(&e, &Cli::command(), &words));
            return std::process::ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::PartitionServer(args) => {
                init_tracing("info");
                cmd::partition_server::run(args).await
            }
            Command::Coordinator(args) => {
                init_tracing("info");
                cmd::coordinator::run(args).await
            }
            Command::Dev(args) => {
                init_tracing("warn");
                cmd::dev::run(args).await
            }
            Command::Topic(args) => {
                init_tracing("warn");
                cmd::topic::run(args).await
            }
            Command::Produce(args) => {
                init_tracing("warn");
                cmd::produce::run(args).await
            }
            Command::Consume(args) => {
                init_tracing("warn");
                cmd::consume::run(args).await
            }
            Command::Txn(args) => {
                init_tracing("warn");
                cmd::txn::run(args).await
            }
            Command::Producers(args) => {
                init_tracing("warn");
                cmd::producers::run(args).await
            }
            Command::Bench(args) => {
                init_tracing("warn");
                cmd::bench::run(args).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
