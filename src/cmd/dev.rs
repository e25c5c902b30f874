//! `xo dev`: a whole cluster in one process — a coordinator and N partition
//! servers on 127.0.0.1, each with its own data directory under one folder —
//! for trying xo out. Data is kept across restarts; Ctrl-C stops it cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::FromArgMatches;
use xo_partition_server::FsyncPolicy;

use super::{coordinator, partition_server};

/// Partition servers one dev cluster may run.
const PARTITION_SERVERS_MAX: u16 = 16;
/// How long the partition servers wait for the coordinator to listen.
const COORDINATOR_START_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(clap::Args)]
pub struct Args {
    /// Folder for all the cluster's data (one subfolder per process role).
    #[arg(long, default_value = "./xo-data")]
    data_dir: PathBuf,
    /// Number of partition servers to run.
    #[arg(long, default_value_t = 3)]
    partition_servers: u16,
    /// Coordinator address: the bootstrap address clients use. The partition
    /// servers listen on the ports right after it.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// fsync policy of the partition servers (always | interval:<ms> | never).
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,
}

/// Builds a role's `Args` from command-line words, so every flag the role
/// does not set here keeps the default `--help` documents.
fn role_args<T: clap::Args + FromArgMatches>(words: &[String]) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new("xo"));
    let matches = command
        .try_get_matches_from(std::iter::once("xo".to_string()).chain(words.iter().cloned()))?;
    Ok(T::from_arg_matches(&matches)?)
}

fn path_word(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.partition_servers == 0 || args.partition_servers > PARTITION_SERVERS_MAX {
        anyhow::bail!("--partition-servers must be 1 to {PARTITION_SERVERS_MAX}");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let mut roles = tokio::task::JoinSet::new();
    let coordinator_args: coordinator::Args = role_args(&[
        "--data-dir".into(),
        path_word(&args.data_dir.join("coordinator")),
        "--listen".into(),
        args.listen.to_string(),
    ])?;
    let coordinator_stopped = stopped();
    roles.spawn(async move {
        coordinator::run_until(coordinator_args, coordinator_stopped).await.context("coordinator")
    });
    // Partition servers register at start-up: let the coordinator listen first.
    let deadline = tokio::time::Instant::now() + COORDINATOR_START_WAIT_MAX;
    while tokio::net::TcpStream::connect(args.listen).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut servers = Vec::new();
    for i in 1..=args.partition_servers {
        let port = args
            .listen
            .port()
            .checked_add(i)
            .context("no free port numbers after --listen for the partition servers")?;
        let listen = SocketAddr::new(args.listen.ip(), port);
        servers.push(listen);
        let server_args: partition_server::Args = role_args(&[
            "--data-dir".into(),
            path_word(&args.data_dir.join(format!("partition-server-{i}"))),
            "--listen".into(),
            listen.to_string(),
            "--coordinator".into(),
            args.listen.to_string(),
            "--fsync".into(),
            fsync_word(args.fsync),
        ])?;
        let server_stopped = stopped();
        roles.spawn(async move {
            partition_server::run_until(server_args, server_stopped)
                .await
                .with_context(|| format!("partition server {i}"))
        });
    }
    let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
    println!(
        "xo dev: coordinator (bootstrap) on {}, partition servers on {}",
        args.listen,
        servers.join(", ")
    );
    println!(
        "data in {} (kept across restarts); Ctrl-C stops the cluster",
        args.data_dir.display()
    );
    println!();
    println!("Next, in another terminal:");
    println!("  cargo run --release -- topic create greetings --partitions 3");
    println!("  echo hello | cargo run --release -- produce greetings");
    println!("  cargo run --release -- consume greetings --from-beginning --max 1");

    let mut failure = None;
    tokio::select! {
        _ = super::shutdown_signal() => {}
        Some(ended) = roles.join_next() => {
            failure = Some(match ended {
                Ok(Ok(())) => anyhow::anyhow!("a cluster process stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a cluster process panicked: {e}"),
            });
        }
    }
    let _ = stop_tx.send(true);
    while let Some(ended) = roles.join_next().await {
        if let Ok(Err(e)) = ended {
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            println!("xo dev: stopped cleanly");
            Ok(())
        }
    }
}

fn fsync_word(policy: FsyncPolicy) -> String {
    match policy {
        FsyncPolicy::Always => "always".into(),
        FsyncPolicy::Never => "never".into(),
        FsyncPolicy::Interval(every) => format!("interval:{}", every.as_millis()),
    }
}
