//! `xo bench compare`: xo and Apache Kafka side by side on this machine.
//!
//! 1. `bench/kafka/setup` (cached) and `bench/limits` (the machine's
//!    ceilings).
//! 2. For each durability mode — page-cache (xo `--fsync never`, Kafka's
//!    default) and fsync (xo `--fsync always`, Kafka `--fsync`) — a fresh
//!    local xo cluster; then every workload of [`plan`], first on xo (in
//!    this process, through the client library), then on Kafka
//!    (`bench/kafka/run`), with the very same flags.
//! 3. `results.json`, `results.md` and the plots in `--out`.
//!
//! Kafka's broker is stopped at the end (unless `--keep-kafka`), and so
//! is every xo process, also on Ctrl-C.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use clap::FromArgMatches;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use serde_json::{Value, json};

use super::cluster::LocalCluster;
use super::common::{self, Line};
use super::{consume, e2e, produce, report, tiny, txn};

#[derive(clap::Args)]
pub struct Args {
    /// Small sizes and a 2.5 s cap per workload: everything in under 5 minutes.
    #[arg(long)]
    quick: bool,
    /// Folder for results.json, results.md, the plots and the logs.
    #[arg(long, default_value = "out/bench")]
    out: PathBuf,
    /// Only this durability mode (both by default).
    #[arg(long, value_enum)]
    only: Option<Durability>,
    /// Only the workloads whose suite name contains this (e.g. `produce_txn`).
    #[arg(long, value_name = "TEXT")]
    workloads: Option<String>,
    /// Where the xo clusters keep their data: a temporary folder inside it,
    /// removed afterwards [the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The repository holding bench/ [found from the current folder or the
    /// xo binary's].
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// Partition servers of the local xo cluster.
    #[arg(long, default_value_t = 3)]
    partition_servers: usize,
    /// xo only: run no Kafka (the ratios stay empty).
    #[arg(long)]
    no_kafka: bool,
    /// Leave the Kafka broker running at the end.
    #[arg(long)]
    keep_kafka: bool,
}

/// The two ways both systems are run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// xo `--fsync never`; Kafka's default (the OS writes back).
    PageCache,
    /// xo `--fsync always` (group commit); Kafka flushes every message.
    Fsync,
}

impl Durability {
    pub fn word(self) -> &'static str {
        match self {
            Durability::PageCache => "page-cache",
            Durability::Fsync => "fsync",
        }
    }

    fn xo_fsync(self) -> &'static str {
        match self {
            Durability::PageCache => "never",
            Durability::Fsync => "always",
        }
    }
}

/// One workload run: `bench/kafka/run WORKLOAD --name NAME WORDS...` on
/// Kafka, `xo bench WORKLOAD --name NAME WORDS...` on xo.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    /// The Kafka harness's workload word (`commit` is `xo bench txn`).
    pub workload: &'static str,
    pub words: Vec<String>,
}

/// Sizes of one suite.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    records: u64,
    /// `produce_plain` and `produce_idempotent`: Kafka in fsync mode
    /// writes ~1.5 MB/s here, and drains its whole 32 MiB buffer after the
    /// deadline, so quick fsync runs send fewer.
    plain_records: u64,
    consume_records: u64,
    commit_txns: u64,
    tiny_txns: u64,
    max_seconds: f64,
    e2e_rate: f64,
    e2e_records: u64,
    /// Warm-up of `produce_txn_R`: min(R * this, cap) records.
    txn_warmup_per_record: u64,
    txn_warmup_cap: u64,
}

impl Sizes {
    /// The full sizes are `bench/kafka/run suite`'s; quick ones are
    /// smaller than the suite's `--quick` so that both systems and both
    /// modes fit in 5 minutes. The e2e rate stays below Kafka's
    /// saturation (see bench/README.md).
    fn of(quick: bool, durability: Durability) -> Sizes {
        let fsync = durability == Durability::Fsync;
        if quick {
            Sizes {
                records: 100_000,
                plain_records: if fsync { 10_000 } else { 100_000 },
                consume_records: 50_000,
                commit_txns: 1000,
                tiny_txns: 2000,
                max_seconds: 2.5,
                e2e_rate: if fsync { 20.0 } else { 500.0 },
                e2e_records: if fsync { 60 } else { 1000 },
                txn_warmup_per_record: 10,
                txn_warmup_cap: 10_000,
            }
        } else {
            Sizes {
                records: 500_000,
                plain_records: 500_000,
                consume_records: 1_000_000,
                commit_txns: 5000,
                tiny_txns: 10_000,
                max_seconds: 60.0,
                e2e_rate: if fsync { 20.0 } else { 500.0 },
                e2e_records: if fsync { 1000 } else { 20_000 },
                txn_warmup_per_record: 20,
                txn_warmup_cap: 20_000,
            }
        }
    }
}

/// Every workload of the suite, in `bench/kafka/run suite`'s order and
/// with its flags.
pub fn plan(quick: bool, durability: Durability) -> Vec<Step> {
    let s = Sizes::of(quick, durability);
    let common = |secs: f64| -> Vec<String> {
        ["--max-seconds", &secs.to_string(), "--record-size", "1024", "--partitions", "8"]
            .map(String::from)
            .to_vec()
    };
    let step = |name: &str, workload: &'static str, extra: &[String], secs: f64| {
        let mut words = common(secs);
        words.extend(extra.iter().cloned());
        Step { name: name.to_string(), workload, words }
    };
    let w = |words: &[&str]| -> Vec<String> { words.iter().map(|s| s.to_string()).collect() };
    let n = s.records.to_string();
    let plain_n = s.plain_records.to_string();
    let mut steps = vec![
        step(
            "produce_plain",
            "produce",
            &w(&["--mode", "plain", "--records", &plain_n]),
            s.max_seconds,
        ),
        step(
            "produce_idempotent",
            "produce",
            &w(&["--mode", "idempotent", "--records", &plain_n]),
            s.max_seconds,
        ),
    ];
    for r in [1u64, 10, 100, 1000] {
        let warmup = (r * s.txn_warmup_per_record).min(s.txn_warmup_cap).to_string();
        steps.push(step(
            &format!("produce_txn_{r}"),
            "produce",
            &w(&[
                "--mode",
                "txn",
                "--records-per-txn",
                &r.to_string(),
                "--records",
                &n,
                "--warmup-records",
                &warmup,
            ]),
            s.max_seconds,
        ));
    }
    steps.push(step(
        "commit_latency",
        "commit",
        &w(&["--records-per-txn", "10", "--txns", &s.commit_txns.to_string()]),
        s.max_seconds,
    ));
    // The e2e run's length is set by its rate: room beyond the usual cap.
    let e2e_secs = s.max_seconds.max(s.e2e_records as f64 * 1.1 / s.e2e_rate * 1.2 + 5.0);
    steps.push(step(
        "e2e_latency",
        "e2e",
        &w(&[
            "--records",
            &s.e2e_records.to_string(),
            "--rate",
            &s.e2e_rate.to_string(),
            "--records-per-txn",
            "10",
        ]),
        e2e_secs,
    ));
    steps.push(step("tiny_txn", "tiny", &w(&["--txns", &s.tiny_txns.to_string()]), s.max_seconds));
    steps.push(step(
        "consume",
        "consume",
        &w(&["--records", &s.consume_records.to_string()]),
        s.max_seconds,
    ));
    steps
}

/// Parses `words` as a workload's flags, as `xo bench WORKLOAD` would.
fn parse<T: clap::Args + FromArgMatches>(words: &[String]) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new("xo-bench"));
    let matches = command.try_get_matches_from(
        std::iter::once("xo-bench".to_string()).chain(words.iter().cloned()),
    )?;
    Ok(T::from_arg_matches(&matches)?)
}

/// Runs `step` on the xo cluster at `bootstrap`, in this process.
async fn run_xo(step: &Step, bootstrap: &str, bar: &ProgressBar) -> anyhow::Result<Line> {
    let mut words = vec![
        "--bootstrap-server".into(),
        bootstrap.to_string(),
        "--name".into(),
        step.name.clone(),
    ];
    words.extend(step.words.iter().cloned());
    match step.workload {
        "produce" => produce::measure(&parse(&words)?, bar).await,
        "commit" => txn::measure(&parse(&words)?, bar).await,
        "tiny" => tiny::measure(&parse(&words)?, bar).await,
        "e2e" => e2e::measure(&parse(&words)?, bar).await,
        "consume" => consume::measure(&parse(&words)?, bar).await,
        other => anyhow::bail!("no xo workload {other}"),
    }
}

/// The last JSON object line of a command's stdout.
fn last_json_line(stdout: &str) -> Option<Value> {
    stdout.lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('{').then(|| serde_json::from_str(l).ok()).flatten()
    })
}

/// Runs `step` on Kafka through `bench/kafka/run`; its stderr goes to `log`.
fn run_kafka(repo: &Path, step: &Step, durability: Durability, log: &Path) -> Value {
    let mut command = Command::new(repo.join("bench/kafka/run"));
    command.arg(step.workload).arg("--name").arg(&step.name).args(&step.words);
    if durability == Durability::Fsync {
        command.arg("--fsync");
    }
    let failure = |e: String| json!({"system": "kafka", "name": step.name, "workload": step.workload, "ok": false, "error": e});
    let stderr = match std::fs::File::options().create(true).append(true).open(log) {
        Ok(f) => Stdio::from(f),
        Err(e) => return failure(format!("opening {}: {e}", log.display())),
    };
    match command.stdin(Stdio::null()).stderr(stderr).output() {
        Ok(out) => last_json_line(&String::from_utf8_lossy(&out.stdout)).unwrap_or_else(|| {
            failure(format!(
                "bench/kafka/run printed no result ({}); see {}",
                out.status,
                log.display()
            ))
        }),
        Err(e) => failure(format!("running bench/kafka/run: {e}")),
    }
}

/// The repository root: the first folder holding `bench/kafka/run`,
/// going up from the current folder, then from the binary's.
fn find_repo(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        anyhow::ensure!(
            dir.join("bench/kafka/run").exists(),
            "{} has no bench/kafka/run",
            dir.display()
        );
        return Ok(dir.to_path_buf());
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            if dir.join("bench/kafka/run").exists() && dir.join("bench/limits").exists() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    anyhow::bail!(
        "cannot find the repository's bench/ folder; run from the repository or pass --repo"
    )
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn load_avg_1m() -> Option<f64> {
    read_trimmed("/proc/loadavg")?.split_whitespace().next()?.parse().ok()
}

fn command_text(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    let text = String::from_utf8_lossy(&text).lines().next()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// What the machine is, beyond what `bench/limits` says.
fn machine(repo: &Path, quick: bool) -> serde_json::Map<String, Value> {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    let mem_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let kb: f64 = s
            .lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
    });
    let repo_str = repo.to_string_lossy().to_string();
    let git = command_text("git", &["-C", &repo_str, "rev-parse", "--short", "HEAD"]);
    let dirty =
        command_text("git", &["-C", &repo_str, "status", "--porcelain", "--untracked-files=no"])
            .is_some();
    let mut m = serde_json::Map::new();
    m.insert("date".into(), json!(command_text("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])));
    m.insert("quick".into(), json!(quick));
    m.insert("cpu_model".into(), json!(cpu_model));
    m.insert("cores".into(), json!(std::thread::available_parallelism().map(|n| n.get()).ok()));
    m.insert("mem_gib".into(), json!(mem_gib));
    m.insert("kernel".into(), json!(read_trimmed("/proc/sys/kernel/osrelease")));
    m.insert("java_version".into(), json!(command_text("java", &["-version"])));
    m.insert("xo_version".into(), json!(env!("CARGO_PKG_VERSION")));
    m.insert("xo_git".into(), json!(git.map(|g| if dirty { format!("{g}+changes") } else { g })));
    m.insert("xo_build".into(), json!(if cfg!(debug_assertions) { "debug" } else { "release" }));
    m.insert("load_avg_1m_start".into(), json!(load_avg_1m()));
    m
}

/// A script of the repository's bench/ run to completion, its output in
/// `log`; its stdout is returned.
fn script(repo: &Path, rel: &str, args: &[&str], log: &Path) -> anyhow::Result<String> {
    let stderr = std::fs::File::options().create(true).append(true).open(log)?;
    let out = Command::new(repo.join(rel))
        .args(args)
        .stdin(Stdio::null())
        .stderr(stderr)
        .output()
        .with_context(|| format!("running {rel}"))?;
    anyhow::ensure!(out.status.success(), "{rel} failed ({}); see {}", out.status, log.display());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stops the broker when dropped (also on an error or Ctrl-C).
struct KafkaGuard {
    repo: PathBuf,
    log: PathBuf,
    armed: bool,
}

impl Drop for KafkaGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = script(&self.repo, "bench/kafka/stop", &[], &self.log);
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let repo = find_repo(args.repo.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    let kafka_guard = KafkaGuard {
        repo: repo.clone(),
        log: out.join("kafka.log"),
        armed: !args.no_kafka && !args.keep_kafka,
    };
    let outcome = tokio::select! {
        outcome = compare(&args, &repo, &out) => outcome,
        _ = crate::cmd::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    drop(kafka_guard);
    outcome
}

async fn compare(args: &Args, repo: &Path, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = out.join("kafka.log");
    let _ = std::fs::remove_file(&log);
    let data_base = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&data_base)?;
    let modes: Vec<Durability> = [Durability::PageCache, Durability::Fsync]
        .into_iter()
        .filter(|d| args.only.is_none_or(|o| o == *d))
        .collect();
    let plans: Vec<(Durability, Vec<Step>)> = modes
        .iter()
        .map(|d| {
            let steps = plan(args.quick, *d)
                .into_iter()
                .filter(|s| args.workloads.as_deref().is_none_or(|w| s.name.contains(w)))
                .collect();
            (*d, steps)
        })
        .collect();
    let total: usize = plans.iter().map(|(_, s)| s.len()).sum();
    anyhow::ensure!(total > 0, "no workload matches --workloads");

    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let multi = MultiProgress::with_draw_target(target);
    let overall = multi.add(ProgressBar::new(2 + total as u64 * if args.no_kafka { 1 } else { 2 }));
    common::style(&overall, "compare");
    let say = |what: String| {
        overall.set_message(what.clone());
        if !std::io::stderr().is_terminal() {
            eprintln!("xo bench compare: {what}");
        }
    };

    if !args.no_kafka {
        say("bench/kafka/setup".into());
        tokio::task::block_in_place(|| script(repo, "bench/kafka/setup", &[], &log))?;
    }
    overall.inc(1);
    say("bench/limits".into());
    let data_base_str = data_base.to_string_lossy().to_string();
    let mut limit_args = vec!["--data-dir", &data_base_str];
    if args.quick {
        limit_args.push("--quick");
    }
    let limits = tokio::task::block_in_place(|| script(repo, "bench/limits", &limit_args, &log))
        .map(|s| last_json_line(&s).unwrap_or(Value::Null))
        .unwrap_or_else(|e| json!({"ok": false, "error": format!("{e:#}")}));
    overall.inc(1);
    let mut machine = machine(repo, args.quick);

    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for (durability, steps) in &plans {
        say(format!("{}: starting xo (--fsync {})", durability.word(), durability.xo_fsync()));
        let cluster =
            LocalCluster::start(&data_base, durability.xo_fsync(), args.partition_servers, out)
                .await?;
        let pids: Vec<String> = cluster.pids().iter().map(|(n, p)| format!("{n} {p}")).collect();
        say(format!(
            "{}: xo cluster at {} ({})",
            durability.word(),
            cluster.bootstrap,
            pids.join(", ")
        ));
        let mut xo_lines = BTreeMap::new();
        let mut kafka_lines = BTreeMap::new();
        for step in steps {
            say(format!("{}: {} on xo", durability.word(), step.name));
            let bar = multi.add(common::bar(&step.name));
            common::style(&bar, &format!("xo {}", step.name));
            let line = match run_xo(step, &cluster.bootstrap, &bar).await {
                Ok(mut line) => {
                    line.put("ok", true);
                    line
                }
                Err(e) => {
                    let mut line = Line::new(step.workload);
                    line.put("name", step.name.as_str())
                        .put("ok", false)
                        .put("error", format!("{e:#}"));
                    line
                }
            };
            bar.finish_and_clear();
            multi.remove(&bar);
            let mut value = line.to_value();
            value["fsync"] = json!(*durability == Durability::Fsync);
            value["durability"] = json!(durability.word());
            if !std::io::stderr().is_terminal() {
                eprintln!("{}", line.render());
            }
            xo_lines.insert(step.name.clone(), value.clone());
            runs.push(value);
            overall.inc(1);
            if args.no_kafka {
                continue;
            }
            say(format!("{}: {} on Kafka", durability.word(), step.name));
            let mut kafka =
                tokio::task::block_in_place(|| run_kafka(repo, step, *durability, &log));
            kafka["durability"] = json!(durability.word());
            if !std::io::stderr().is_terminal() {
                eprintln!("{kafka}");
            }
            if let Some(v) = kafka.get("kafka_version") {
                machine.insert("kafka_version".into(), v.clone());
            }
            kafka_lines.insert(step.name.clone(), kafka.clone());
            runs.push(kafka);
            overall.inc(1);
        }
        cluster.stop();
        rows.extend(report::rows(durability.word(), &xo_lines, &kafka_lines));
    }
    overall.finish_and_clear();
    machine.insert("load_avg_1m_end".into(), json!(load_avg_1m()));
    machine
        .insert("elapsed_s".into(), json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0));

    let limit_rows = report::limit_rows(&rows, &limits);
    let results = json!({
        "machine": Value::Object(machine),
        "limits": limits,
        "workloads": rows.iter().map(report::Row::to_json).collect::<Vec<_>>(),
        "xo_vs_limits": limit_rows.iter().map(report::LimitRow::to_json).collect::<Vec<_>>(),
        "runs": runs,
    });
    let markdown = report::markdown(&results, &rows, &limit_rows);
    write(out, "results.json", &(serde_json::to_string_pretty(&results)? + "\n"))?;
    write(out, "results.md", &markdown)?;
    write(out, "throughput.svg", &report::throughput_svg(&rows))?;
    write(out, "latency.svg", &report::latency_svg(&rows))?;
    let mut stdout = markdown;
    stdout.push_str(&format!(
        "\nWritten to {} in {:.0} s.\n",
        out.display(),
        started.elapsed().as_secs_f64()
    ));
    print!("{stdout}");
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_plan_is_the_kafka_suite_s_and_parses_as_xo_flags() {
        // Proves: every step of both plans parses as the xo workload's
        // flags (the same words go to bench/kafka/run), in suite order.
        for quick in [true, false] {
            for durability in [Durability::PageCache, Durability::Fsync] {
                let steps = plan(quick, durability);
                let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(
                    names,
                    [
                        "produce_plain",
                        "produce_idempotent",
                        "produce_txn_1",
                        "produce_txn_10",
                        "produce_txn_100",
                        "produce_txn_1000",
                        "commit_latency",
                        "e2e_latency",
                        "tiny_txn",
                        "consume"
                    ]
                );
                for step in &steps {
                    let words = step.words.clone();
                    let parsed = match step.workload {
                        "produce" => parse::<produce::Args>(&words).map(|_| ()),
                        "commit" => parse::<txn::Args>(&words).map(|_| ()),
                        "tiny" => parse::<tiny::Args>(&words).map(|_| ()),
                        "e2e" => parse::<e2e::Args>(&words).map(|_| ()),
                        "consume" => parse::<consume::Args>(&words).map(|_| ()),
                        other => panic!("unknown workload {other}"),
                    };
                    assert!(parsed.is_ok(), "{}: {:?}", step.name, parsed.err());
                }
            }
        }
        let txn1000 = plan(false, Durability::Fsync).remove(5);
        let p: produce::Args = parse(&txn1000.words).unwrap();
        assert_eq!(
            (p.mode, p.records_per_txn, p.warmup_records),
            (common::Mode::Txn, 1000, Some(20_000))
        );
        assert_eq!(p.common.max_seconds, 60.0);
    }

    #[test]
    fn t11_the_last_json_line_is_the_result() {
        let out = "noise\n{\"a\":1}\n{\"ok\":true,\"x\":2}\n\n";
        assert_eq!(last_json_line(out), Some(json!({"ok": true, "x": 2})));
        assert_eq!(last_json_line("nothing"), None);
    }
}
