//! Deterministic simulation of a whole xo cluster in one process, on
//! turmoil's simulated network and clock: a coordinator and partition
//! servers (the real server code, over tonic), the real client library
//! running Jepsen's queue workload, and a nemesis drawn from the seed
//! (crashes and restarts on real data directories, partitions, held and
//! slowed links). The history it records is judged by the suite's own
//! checker (`crate::checker`), and liveness after the heal by the
//! workload.
//!
//! Layout:
//! - [`net`]: tonic over turmoil (the crates' hooks, the accept stream).
//! - [`nodes`]: the hosts' software, started as `xo coordinator` and
//!   `xo partition-server` start it.
//! - [`nemesis`]: the fault schedule and its application between steps.
//! - [`workload`]: the clients, the history, liveness, final reads.
//! - this file: one run of one seed, [`run`], and its [`Outcome`]; many
//!   seeds, [`run_seeds`] (`xo-jepsen simulate`).
//!
//! What one seed fixes: the nemesis schedule, every worker's plan, and
//! turmoil's randomness (message latencies, host order within a step);
//! fsyncs and sled flushes run in blocking tasks, which hold a host's
//! simulated clock, so disk time is no simulated time. What it does not fix
//! (so a replay starts like the first run but drifts from it, by a
//! millisecond here and there after the first second or so): the order in
//! which concurrent blocking tasks finish, std's randomly seeded `HashMap`s
//! in the servers and the client, and tokio's `select!` fairness (seeded
//! only under `--cfg tokio_unstable`). [`Outcome::fingerprint`] tells
//! whether two runs were the same.

pub mod nemesis;
pub mod net;
pub mod nodes;
pub mod workload;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::checker::{self, CheckResult};
use crate::history::History;
use crate::rng::Rng;
use crate::workload::queue_gen::QueueGenConfig;
use xo_client::IsolationLevel;

use nemesis::{Faults, Nemesis};
use workload::{Liveness, Shared, WorkloadConfig};

/// Simulated time one run may take, setup to final reads; past it the run
/// fails (something hangs).
pub const SIMULATED_MAX: Duration = Duration::from_secs(240);
/// turmoil's step: every host runs this much simulated time per step.
pub const TICK: Duration = Duration::from_millis(1);
/// Steps one run may take (`SIMULATED_MAX / TICK`, plus slack).
pub const STEPS_MAX: u64 = 250_000;
/// Faults start this long after setup (topics created on a quiet network).
pub const FAULTS_FROM: Duration = Duration::from_secs(1);
/// The simulated clock starts here (a fixed wall-clock time, for replay).
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// Which nemesis stream of the seed the schedule uses.
const NEMESIS_STREAM: u64 = 1;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub partition_servers: usize,
    /// Client workers.
    pub processes: usize,
    /// Simulated time, from the end of setup, that the workers run (and the
    /// nemesis acts) before the heal.
    pub run: Duration,
    pub faults: Faults,
    /// Every link's latency is uniform in 0..this when not slowed.
    pub latency_max: Duration,
    pub txn_timeout: Duration,
    pub recovery_slack: Duration,
    /// ReadCommitted; ReadUncommitted plants a bug the checker must find.
    pub isolation: IsolationLevel,
    pub keys: QueueGenConfig,
    /// These fault windows instead of the ones drawn from the seed.
    pub schedule: Option<Vec<nemesis::Window>>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            partition_servers: 3,
            processes: 4,
            run: Duration::from_secs(20),
            faults: Faults::ALL,
            latency_max: Duration::from_millis(5),
            txn_timeout: Duration::from_secs(4),
            recovery_slack: Duration::from_secs(10),
            isolation: IsolationLevel::ReadCommitted,
            keys: QueueGenConfig {
                topics: vec!["t0".into(), "t1".into()],
                partitions: 3,
                ..QueueGenConfig::default()
            },
            schedule: None,
        }
    }
}

/// What one run produced.
pub struct Outcome {
    pub seed: u64,
    pub history: History,
    pub check: CheckResult,
    /// `None` when the clients never got to the heal (see `error`).
    pub liveness: Option<Liveness>,
    /// The simulation itself failed: a host's software returned an error or
    /// panicked, or the run took longer than [`SIMULATED_MAX`].
    pub error: Option<String>,
    pub nemesis_log: Vec<String>,
    pub notes: Vec<String>,
    pub simulated: Duration,
    pub real: Duration,
    /// The run's log lines when `XO_SIM_LOG` was set (empty otherwise).
    pub logs: Vec<u8>,
}

impl Outcome {
    pub fn valid(&self) -> bool {
        self.error.is_none() && self.check.valid && self.liveness.as_ref().is_some_and(Liveness::ok)
    }

    /// A digest of what the clients did and saw (the history without its
    /// times): two runs of a seed that print the same one were the same run.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a: a fixed function, unlike std's randomly seeded hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for op in &self.history.ops {
            let mut op = op.clone();
            op.time_ns = 0;
            let line = serde_json::to_string(&op).expect("ops serialise");
            for byte in line.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }

    /// Everything needed to understand a failed run, and how to replay it.
    pub fn report(&self) -> String {
        let mut out = format!(
            "seed {}: {} — {:?} simulated in {:?}, history {:016x}\n",
            self.seed,
            if self.valid() { "valid" } else { "INVALID" },
            self.simulated,
            self.real,
            self.fingerprint()
        );
        if let Some(error) = &self.error {
            out.push_str(&format!("simulation error: {error}\n"));
        }
        match &self.liveness {
            Some(l) => out.push_str(&format!(
                "liveness: recovered after {:?} (bound {:?}){}\n",
                l.recovered_after,
                l.bound,
                l.problem.as_ref().map(|p| format!("; last problem: {p}")).unwrap_or_default()
            )),
            None => out.push_str("liveness: not measured\n"),
        }
        out.push_str(&self.check.summary());
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str("nemesis:\n");
        for line in &self.nemesis_log {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }
}

/// Runs the simulation of `seed` to the end and checks its history.
pub fn run(seed: u64, config: &SimConfig) -> Outcome {
    net::install_hooks();
    install_logging();
    take_log();
    let started = Instant::now();
    let data = tempfile::tempdir().expect("a temporary directory for the hosts' data");
    let mut sim = turmoil::Builder::new()
        .simulation_duration(SIMULATED_MAX)
        .tick_duration(TICK)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(config.latency_max)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .enable_random_order()
        .rng_seed(seed)
        .build();

    let coordinator_dir = data.path().join(nodes::COORDINATOR);
    std::fs::create_dir_all(&coordinator_dir).expect("coordinator data directory");
    sim.host(nodes::COORDINATOR, nodes::coordinator(coordinator_dir));
    let servers: Vec<String> =
        (1..=config.partition_servers).map(nodes::partition_server_name).collect();
    for name in &servers {
        let dir = data.path().join(name);
        std::fs::create_dir_all(&dir).expect("partition server data directory");
        // A fixed server id, so placement is the same on every replay.
        let id_file = dir.join(xo_partition_server::coordinator_client::SERVER_ID_FILE);
        std::fs::write(id_file, name).expect("server id");
        sim.host(name.as_str(), nodes::partition_server(name.clone(), dir));
    }

    let shared = Rc::new(Shared::default());
    let workload_config = Rc::new(WorkloadConfig {
        seed,
        processes: config.processes,
        keys: config.keys.clone(),
        txn_timeout: config.txn_timeout,
        recovery_slack: config.recovery_slack,
        isolation: config.isolation,
    });
    sim.client(nodes::CLIENT, workload::run(shared.clone(), workload_config));

    let mut rng = Rng::new(seed).fork(NEMESIS_STREAM);
    let windows = match &config.schedule {
        Some(windows) => windows.clone(),
        None => nemesis::schedule(&mut rng, config.faults, &servers, FAULTS_FROM, config.run),
    };
    let mut nemesis = Nemesis::new(windows, config.latency_max);
    let mut error = None;
    let mut finished = false;
    for _ in 0..STEPS_MAX {
        let now = sim.elapsed();
        // The schedule's times count from the end of setup.
        if let Some(setup_done) = shared.setup_done_at.get()
            && shared.healed_at.get().is_none()
        {
            let logged = nemesis.log.len();
            if now >= setup_done + config.run {
                nemesis.heal(&mut sim, now);
                shared.healed_at.set(Some(now));
            } else {
                nemesis.tick(&mut sim, now - setup_done, now);
            }
            for line in &nemesis.log[logged..] {
                shared.nemesis(now, nemesis_f(line), line.clone());
            }
        }
        match sim.step() {
            Ok(true) => {
                finished = true;
                break;
            }
            Ok(false) => {}
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if !finished && error.is_none() {
        error = Some(format!("still running after {STEPS_MAX} steps"));
    }
    let simulated = sim.elapsed();
    // The hosts (and their open files) go before their data directories.
    drop(sim);
    drop(data);

    let history = shared.take_history();
    let check = checker::check(&history).expect("the simulation records well-formed histories");
    Outcome {
        seed,
        history,
        check,
        liveness: shared.liveness.take(),
        error,
        nemesis_log: nemesis.log.clone(),
        notes: shared.notes.take(),
        simulated,
        real: started.elapsed(),
        logs: take_log(),
    }
}

/// Seeds one [`run_seeds`] call may be asked for.
pub const SEEDS_MAX: u64 = 100_000;

/// What [`run_seeds`] found.
#[derive(Debug, Default)]
pub struct SeedsSummary {
    pub runs: u64,
    pub failed: Vec<u64>,
    /// The longest time to recover after the heal over the valid runs.
    pub recovery_max: Duration,
    pub real: Duration,
}

/// Runs `seeds` one after the other with the default configuration, printing
/// one line per seed; a failing seed's report goes to stdout and its history
/// (and logs, when `XO_SIM_LOG` is set) to `keep_dir`. With `keep_all`, every
/// seed's history is kept; with `stop_at_failure`, the first invalid run ends
/// it (replaying one seed until it fails).
pub fn run_seeds(
    seeds: impl IntoIterator<Item = u64>,
    keep_dir: &Path,
    keep_all: bool,
    stop_at_failure: bool,
) -> SeedsSummary {
    let started = Instant::now();
    let mut summary = SeedsSummary::default();
    for seed in seeds {
        let outcome = run(seed, &SimConfig::default());
        summary.runs += 1;
        if let Some(t) = outcome.liveness.as_ref().and_then(|l| l.recovered_after) {
            summary.recovery_max = summary.recovery_max.max(t);
        }
        let s = &outcome.check.stats;
        println!(
            "seed {seed}: {} ({} ok, {} fail, {} info; {} fault windows; {:?} real; history {:016x})",
            if outcome.valid() { "valid" } else { "INVALID" },
            s.ok,
            s.fail,
            s.info,
            s.faults.len(),
            outcome.real,
            outcome.fingerprint()
        );
        if !outcome.valid() {
            println!("{}{}", outcome.report(), outcome.keep(keep_dir));
            summary.failed.push(seed);
            if stop_at_failure {
                break;
            }
        } else if keep_all {
            println!("{}", outcome.keep(keep_dir));
        }
    }
    summary.real = started.elapsed();
    summary
}

impl Outcome {
    /// Writes the run's history (and logs, if any) under `dir`, and says
    /// where.
    pub fn keep(&self, dir: &Path) -> String {
        let _ = std::fs::create_dir_all(dir);
        let file = |suffix: &str| -> PathBuf { dir.join(format!("seed-{}.{suffix}", self.seed)) };
        let path = file("history.jsonl");
        let mut kept = match std::fs::write(&path, self.history.to_jsonl()) {
            Ok(()) => format!("history: {}", path.display()),
            Err(e) => format!("history not written to {}: {e}", path.display()),
        };
        if !self.logs.is_empty() {
            let path = file("log");
            match std::fs::write(&path, &self.logs) {
                Ok(()) => kept.push_str(&format!("\nlogs: {}", path.display())),
                Err(e) => kept.push_str(&format!("\nlogs not written to {}: {e}", path.display())),
            }
        }
        kept
    }
}

/// The history's name for a nemesis log line: `start-crash`, `stop-hold`, ...
fn nemesis_f(line: &str) -> String {
    let mut words = line.split_whitespace().skip(1);
    match (words.next(), words.next()) {
        (Some(verb @ ("start" | "stop")), Some(fault)) => format!("{verb}-{fault}"),
        _ => "heal".to_string(),
    }
}

/// Server and client logs of the run, when `XO_SIM_LOG` holds a filter
/// (e.g. `XO_SIM_LOG=info,xo_coordinator=debug`): kept in memory, each line
/// stamped with the simulated time and naming its host, and written next to
/// a failed run's history (see [`Outcome::logs`]).
fn install_logging() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Ok(filter) = std::env::var("XO_SIM_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(|| LogBuffer)
                .with_ansi(false)
                .with_timer(SimulatedTime)
                .try_init();
        }
    });
}

/// The current run's log lines, at most [`LOG_BYTES_MAX`] (the oldest go).
static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
pub const LOG_BYTES_MAX: usize = 256 << 20;

struct LogBuffer;

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() + bytes.len() > LOG_BYTES_MAX {
            let cut = (log.len() / 2).max(bytes.len()).min(log.len());
            log.drain(..cut);
        }
        log.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn take_log() -> Vec<u8> {
    std::mem::take(&mut *LOG.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Log lines stamped with the simulated time.
struct SimulatedTime;

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "{:>9.3}s", t.as_secs_f64()),
            None => write!(w, "{:>10}", "-"),
        }
    }
}
