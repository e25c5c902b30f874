//! The `xo` command: runs xo's server roles and, in later issues, the
//! client tools. Each subcommand lives in `cmd/`, one file per role.

mod cmd;

use clap::{Parser, Subcommand};

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
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
