//! `xo-jepsen`: the fault-injection suite's command line.
//!
//! `xo-jepsen check HISTORY.jsonl [--out DIR]` checks a recorded history, prints a
//! summary and writes `DIR/results.json` (DIR defaults to the history's directory).
//! Exit status: 0 when the history is valid, 1 when it has anomalies, 2 when it cannot
//! be read or the results cannot be written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use xo_jepsen::checker;
use xo_jepsen::history::History;

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
    }
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
