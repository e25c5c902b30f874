//! `xo-jepsen`: the fault-injection suite's command line.
//!
//! `xo-jepsen check HISTORY.jsonl [--out DIR]` checks a recorded history, prints a
//! summary and writes `DIR/results.json` (DIR defaults to the history's directory).
//! Exit status: 0 when the history is valid, 1 when it has anomalies, 2 when it cannot
//! be read or the results cannot be written.
//!
//! `xo-jepsen test [--time-limit 60] [--nemesis kill,pause,partition,failpoint|all|none]
//! [--workload noop|queue|pipeline] [--seed N] [--rate R] [--out DIR] [--no-netns]
//! [--xo-bin PATH]` runs the release `xo` binary as a cluster inside a private network
//! namespace, injects faults, checks the history and writes `history.jsonl`,
//! `results.json` and `report.html` to DIR. Exit status: 0 valid, 1 invalid, 2 could
//! not run, 130 interrupted.
//!
//! `xo-jepsen simulate [--seeds N] [--seed-from S] | --seed S [--tries N] [--keep]
//! [--out DIR]` runs the deterministic simulation (the whole cluster in this
//! process on turmoil, see `xo_jepsen::sim`) for many seeds, or one seed again, one
//! line per run. Exit status: 0 when every run was valid, 1 otherwise.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use xo_jepsen::checker;
use xo_jepsen::history::History;
use xo_jepsen::netns;
use xo_jepsen::runner::{self, TestOptions, Verdict};
use xo_jepsen::schedule::{FaultKind, FaultKinds};
use xo_jepsen::workload::append::Append;
use xo_jepsen::workload::ping::Ping;
use xo_jepsen::workload::pipeline::Pipeline;
use xo_jepsen::workload::queue::Queue;

#[derive(Parser)]
#[command(name = "xo-jepsen", about = "xo fault-injection suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history.jsonl for anomalies; exit 0 only when it is valid.
    Check {
        /// The history, one JSON operation per line.
        history: PathBuf,
        /// Where to write results.json (default: the history's directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a cluster under faults with a workload, check the history, write a report.
    Test(TestArgs),
    /// Run the deterministic simulation (one process, simulated network and clock)
    /// for many seeds, or replay one seed.
    Simulate(SimulateArgs),
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// How many seeds to run, from --seed-from on.
    #[arg(long, default_value_t = 20, conflicts_with = "seed")]
    seeds: u64,
    /// The first seed of a --seeds run (CI's fixed seeds are 1 to 24).
    #[arg(long, default_value_t = 1000, conflicts_with = "seed")]
    seed_from: u64,
    /// Replay this one seed instead (a replay may drift from the first run: see
    /// --tries).
    #[arg(long)]
    seed: Option<u64>,
    /// With --seed: run it up to this many times, stopping at the first invalid run.
    #[arg(long, default_value_t = 1, requires = "seed")]
    tries: u32,
    /// Keep every run's history, not only the failing ones'.
    #[arg(long)]
    keep: bool,
    /// Where histories (and logs, with XO_SIM_LOG=<filter>) are written
    /// (default: $TMPDIR/xo-simulation).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct TestArgs {
    /// Seconds of workload under faults (the heal, recovery and final reads follow).
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Fault kinds: a comma list of kill, pause, partition, failpoint; or all, none.
    #[arg(long, default_value = "all")]
    nemesis: FaultKinds,
    /// noop (alias ping: pings the nodes), append (raw appends and read-back: lost
    /// and duplicate writes), queue, pipeline. noop and append need no client library.
    #[arg(long, default_value = "queue")]
    workload: String,
    /// Seed of the nemesis schedule and the workload (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Target client operations per second, over all processes.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Logical client processes.
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Partition servers to run (plus one coordinator when the binary has the role).
    #[arg(long, default_value_t = 3)]
    partition_servers: usize,
    /// Output directory (default: <workspace>/out/jepsen/<time>-seed<N>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run on the host loopback instead of a private namespace (no root needed;
    /// no partitions).
    #[arg(long)]
    no_netns: bool,
    /// The xo binary (default: `xo` beside this program, else target/release/xo).
    #[arg(long)]
    xo_bin: Option<PathBuf>,
    /// Set by the supervisor when it re-executes the runner inside the namespace.
    #[arg(long, hide = true)]
    inside_netns: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { history, out } => match check(&history, out.as_deref()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("xo-jepsen check: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Simulate(args) => match simulate(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("xo-jepsen simulate: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Test(args) => match test(args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("xo-jepsen test: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Most replays of one seed (`--tries`).
const TRIES_MAX: u32 = 1_000;

fn simulate(args: SimulateArgs) -> anyhow::Result<bool> {
    let out = args.out.unwrap_or_else(|| std::env::temp_dir().join("xo-simulation"));
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => {
            if !(1..=TRIES_MAX).contains(&args.tries) {
                bail!("--tries must be 1 to {TRIES_MAX}");
            }
            vec![seed; args.tries as usize]
        }
        None => {
            if !(1..=xo_jepsen::sim::SEEDS_MAX).contains(&args.seeds) {
                bail!("--seeds must be 1 to {}", xo_jepsen::sim::SEEDS_MAX);
            }
            let end = args.seed_from.checked_add(args.seeds).context("--seed-from too large")?;
            (args.seed_from..end).collect()
        }
    };
    // A replay stops at its first invalid run; a sweep runs every seed.
    let stop_at_failure = args.seed.is_some();
    let summary = xo_jepsen::sim::run_seeds(seeds, &out, args.keep, stop_at_failure);
    println!(
        "{} runs in {:?}; worst recovery after heal {:?}; failed seeds: {:?}",
        summary.runs, summary.real, summary.recovery_max, summary.failed
    );
    Ok(summary.failed.is_empty())
}

fn test(args: TestArgs) -> anyhow::Result<u8> {
    if !matches!(args.workload.as_str(), "noop" | "ping" | "append" | "queue" | "pipeline") {
        bail!("unknown workload {:?}: noop, append, queue, pipeline", args.workload);
    }
    if !(args.time_limit > 0.0 && args.time_limit <= runner::TIME_LIMIT_MAX.as_secs_f64()) {
        bail!("--time-limit must be in (0, {}] seconds", runner::TIME_LIMIT_MAX.as_secs());
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    if !(1..=xo_jepsen::workload::CONCURRENCY_MAX).contains(&args.concurrency) {
        bail!("--concurrency must be in 1..={}", xo_jepsen::workload::CONCURRENCY_MAX);
    }
    let nodes_max = xo_jepsen::topology::NODES_MAX - 1;
    if !(1..=nodes_max).contains(&args.partition_servers) {
        bail!("--partition-servers must be in 1..={nodes_max}");
    }
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_nanos() as u64 % 1_000_000_000)
    });
    let out = match args.out {
        Some(out) => out,
        None => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            Path::new(WORKSPACE).join("out/jepsen").join(format!("{}-seed{seed}", now.as_secs()))
        }
    };
    let xo_bin = match args.xo_bin {
        Some(path) => path,
        None => default_xo_bin(),
    };
    let mut options = TestOptions {
        time_limit: Duration::from_secs_f64(args.time_limit),
        nemesis: args.nemesis.0.iter().copied().collect(),
        workload: args.workload,
        seed,
        rate: args.rate,
        concurrency: args.concurrency,
        partition_servers: args.partition_servers,
        out: std::path::absolute(&out)?,
        xo_bin: std::path::absolute(&xo_bin)?,
        netns: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(netns) = args.inside_netns {
        options.netns = Some(netns);
        return runtime.block_on(run_inside(options));
    }
    if args.no_netns {
        return runtime.block_on(run_inside(options));
    }
    if !netns::is_root() {
        bail!(
            "creating a network namespace needs root: run as root, or pass --no-netns \
             (host loopback, no partitions)"
        );
    }
    let mut needed = netns::TOOLS_NETNS.to_vec();
    if options.nemesis.contains(&FaultKind::Partition) {
        needed.extend(netns::TOOLS_PARTITION);
    }
    let missing = netns::missing_tools(&needed);
    if !missing.is_empty() {
        bail!("missing tools: {}", missing.join(", "));
    }
    let code = runtime.block_on(netns::supervise(inner_args(&options)))?;
    Ok(u8::try_from(code).unwrap_or(2))
}

async fn run_inside(options: TestOptions) -> anyhow::Result<u8> {
    let verdict = match options.workload.as_str() {
        "append" => runner::run(options, Append::default()).await?,
        "queue" => runner::run(options, Queue::default()).await?,
        "pipeline" => runner::run(options, Pipeline::default()).await?,
        _ => runner::run(options, Ping).await?,
    };
    Ok(match verdict {
        Verdict::Valid => 0,
        Verdict::Invalid => 1,
        Verdict::Interrupted => 130,
    })
}

/// `xo` beside this program (`cargo run --release` puts both in target/release),
/// else the workspace's target/release/xo.
fn default_xo_bin() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("xo")));
    match beside {
        Some(path) if path.is_file() => path,
        _ => Path::new(WORKSPACE).join("target/release/xo"),
    }
}

/// The command line of the runner inside the namespace: every default resolved, so
/// both sides agree on the seed and the output directory.
fn inner_args(o: &TestOptions) -> Vec<OsString> {
    let nemesis = if o.nemesis.is_empty() {
        "none".to_string()
    } else {
        o.nemesis.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    };
    let mut args: Vec<OsString> = vec!["test".into()];
    for (flag, value) in [
        ("--time-limit", o.time_limit.as_secs_f64().to_string()),
        ("--nemesis", nemesis),
        ("--workload", o.workload.clone()),
        ("--seed", o.seed.to_string()),
        ("--rate", o.rate.to_string()),
        ("--concurrency", o.concurrency.to_string()),
        ("--partition-servers", o.partition_servers.to_string()),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args.push("--out".into());
    args.push(o.out.clone().into_os_string());
    args.push("--xo-bin".into());
    args.push(o.xo_bin.clone().into_os_string());
    args
}

/// Returns whether the history is valid.
fn check(history_path: &Path, out: Option<&Path>) -> anyhow::Result<bool> {
    let history = History::read_jsonl(history_path)?;
    let result =
        checker::check(&history).with_context(|| format!("checking {}", history_path.display()))?;
    let dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => history_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let results = dir.join("results.json");
    let json = serde_json::to_string_pretty(&result)?;
    std::fs::write(&results, json + "\n")
        .with_context(|| format!("writing {}", results.display()))?;
    print!("{}", result.summary());
    println!("results: {}", results.display());
    Ok(result.valid)
}
