//! `xo bench txn` (alias `commit`): commit latency. One producer runs
//! back-to-back transactions of R records on one topic; each
//! transaction's records are flushed first, then `commit_transaction` is
//! timed (EndTxn until the client returns), and the whole transaction too
//! — the Kafka harness's `commit`.

use indicatif::ProgressBar;

use super::common::{self, Common, Line, Serial, Session};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Records per transaction.
    #[arg(long, value_name = "R", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records_per_txn: u64,
    /// Transactions to time (instead of --records / R).
    #[arg(long, value_name = "N")]
    pub txns: Option<u64>,
    /// Records to send: N/R transactions.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub records: u64,
    /// Untimed records first, in whole transactions.
    #[arg(long, value_name = "W", default_value_t = 100)]
    pub warmup_records: u64,
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    Session::around(&args.common, "commit", async |session| body(args, session, bar).await).await
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let per_txn = args.records_per_txn;
    let serial = Serial {
        per_txn,
        warmup: args.warmup_records / per_txn,
        txns: args.txns.unwrap_or(args.records / per_txn),
        flush_first: true,
    };
    let mut line = common::header("commit", c);
    line.put("records_per_txn", per_txn);
    bar.set_message(format!("transactions of {per_txn}"));
    let latencies = common::serial_transactions(session, c, &serial, &mut line, bar).await?;
    common::put_percentiles(&mut line, "commit", &latencies.commit);
    common::put_percentiles(&mut line, "txn", &latencies.txn);
    Ok(line)
}
