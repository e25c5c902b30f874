//! `xo bench produce`: produce throughput. `plain` (no idempotence),
//! `idempotent`, or `txn`: transactions of R records over two topics, one
//! producer, serial. Timed from the first send of the timed part until the
//! last acknowledgement (flush) or commit, after an untimed warm-up on the
//! same topics — the Kafka harness's `produce`.

use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use xo_client::Producer;

use super::common::{self, Common, Line, MB, Mode, Records, Sending, Session};

/// Warm-up records by default: min(N/10, this), as on the Kafka side.
pub const WARMUP_RECORDS_MAX_DEFAULT: u64 = 20_000;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// plain: no idempotence; idempotent; txn: in transactions over two topics.
    #[arg(long, value_enum, default_value = "plain")]
    pub mode: Mode,
    /// Records to send in the timed part.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub records: u64,
    /// Records per transaction (txn mode).
    #[arg(long, value_name = "R", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records_per_txn: u64,
    /// Untimed records sent first on the same topics [min(N/10, 20000)].
    #[arg(long, value_name = "W")]
    pub warmup_records: Option<u64>,
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    Session::around(&args.common, "produce", async |session| body(args, session, bar).await).await
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let txn = args.mode == Mode::Txn;
    let warmup = args.warmup_records.unwrap_or((args.records / 10).min(WARMUP_RECORDS_MAX_DEFAULT));
    let topics = session.create_topics(if txn { 2 } else { 1 }, c.partitions).await?;
    let pool = common::value_pool(c.record_size);
    let records = Records { topics: &topics, partitions: c.partitions, pool: &pool };
    let mut line = common::header("produce", c);
    line.put("mode", args.mode.word()).put("topics", topics.len());
    if txn {
        line.put("records_per_txn", args.records_per_txn);
    }
    bar.set_length(warmup + args.records);
    bar.set_message(format!("{} (warm-up {warmup})", args.mode.word()));

    let (sent, elapsed) = if txn {
        let producer = session.transactional_producer().await?;
        let sending = Sending::Transactions(&producer, args.records_per_txn);
        let timed = timed_run(&sending, &records, c, warmup, args.records, bar).await;
        producer.close().await.context("closing the producer")?;
        timed?
    } else {
        let producer =
            Producer::new(session.producer_config(args.mode)).await.context("producer")?;
        let sending = Sending::Records(&producer);
        let timed = timed_run(&sending, &records, c, warmup, args.records, bar).await;
        producer.close().await.context("closing the producer")?;
        timed?
    };
    let secs = elapsed.as_secs_f64();
    line.put("warmup_records", warmup)
        .put("records", sent)
        .num("elapsed_s", secs)
        .num("records_per_s", sent as f64 / secs)
        .num("mb_per_s", sent as f64 * f64::from(c.record_size) / MB / secs)
        .put("truncated", sent < args.records);
    if txn {
        let txns = sent.div_ceil(args.records_per_txn);
        line.put("txns", txns).num("txn_per_s", txns as f64 / secs);
    }
    Ok(line)
}

/// The untimed warm-up, then the timed part: (records sent, time taken).
async fn timed_run(
    sending: &Sending<'_>,
    records: &Records<'_>,
    c: &Common,
    warmup: u64,
    count: u64,
    bar: &ProgressBar,
) -> anyhow::Result<(u64, std::time::Duration)> {
    common::send_batch(sending, records, 0, warmup, None, bar).await?;
    let t0 = Instant::now();
    let deadline = c.deadline_from(t0);
    let sent = common::send_batch(sending, records, warmup, count, Some(deadline), bar).await?;
    Ok((sent, t0.elapsed()))
}
