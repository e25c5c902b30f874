//! `xo bench tiny`: tiny transactions. One producer, one record per
//! transaction, serial (begin, send, commit); the whole transaction is
//! timed — the Kafka harness's `tiny`.

use indicatif::ProgressBar;

use super::common::{self, Common, Line, Serial, Session};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Transactions to time (instead of --records).
    #[arg(long, value_name = "N")]
    pub txns: Option<u64>,
    /// Transactions to time, one record each.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    pub records: u64,
    /// Untimed transactions first.
    #[arg(long, value_name = "W", default_value_t = 100)]
    pub warmup_records: u64,
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    Session::around(&args.common, "tiny", async |session| body(args, session, bar).await).await
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let serial = Serial {
        per_txn: 1,
        warmup: args.warmup_records,
        txns: args.txns.unwrap_or(args.records),
        flush_first: false,
    };
    let mut line = common::header("tiny", c);
    line.put("records_per_txn", 1);
    bar.set_message("one record per transaction");
    let latencies = common::serial_transactions(session, c, &serial, &mut line, bar).await?;
    common::put_percentiles(&mut line, "txn", &latencies.txn);
    Ok(line)
}
