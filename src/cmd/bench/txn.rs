//! `xo bench txn` (alias `commit`): commit latency. One producer runs
//! back-to-back transactions of R records on one topic; each
//! transaction's records are flushed first, then `commit_transaction` is
//! timed (EndTxn until the client returns), and the whole transaction too
//! — the Kafka harness's `commit`.

use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use xo_client::ProducerRecord;

use super::common::{self, Common, Line, Session, VALUE_POOL_SIZE};

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

pub async fn run(args: Args) -> anyhow::Result<Line> {
    let bar = common::bar("commit");
    let line = measure(&args, &bar).await;
    bar.finish_and_clear();
    line
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    let mut session = Session::open(&args.common, "commit").await?;
    let result = body(args, &mut session, bar).await;
    session.close().await;
    result
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let per_txn = args.records_per_txn;
    let txns = args.txns.unwrap_or(args.records / per_txn);
    let warmup = args.warmup_records / per_txn;
    let mut line = common::header("commit", c);
    line.put("records_per_txn", per_txn);
    let topic = session.create_topics(1, c.partitions).await?.remove(0);
    let pool = common::value_pool(c.record_size);
    let mut commit_h = common::histogram();
    let mut txn_h = common::histogram();
    let producer = session.transactional_producer().await?;
    bar.set_length(warmup + txns);
    bar.set_message(format!("transactions of {per_txn}"));

    let mut i = 0u64;
    let mut done = 0u64;
    let mut t0 = Instant::now();
    let mut deadline = None;
    let outcome: anyhow::Result<()> = async {
        for t in 0..warmup + txns {
            if t == warmup {
                t0 = Instant::now();
                deadline = Some(c.deadline_from(t0));
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                break;
            }
            let begin = Instant::now();
            producer.begin_transaction().context("begin_transaction")?;
            for _ in 0..per_txn {
                let partition = (i % u64::from(c.partitions)) as u32;
                let value = &pool[(i % VALUE_POOL_SIZE as u64) as usize];
                drop(producer.send(ProducerRecord::new(&topic, value).partition(partition)));
                i += 1;
            }
            producer.flush().await;
            let c0 = Instant::now();
            producer.commit_transaction().await.context("commit_transaction")?;
            let end = Instant::now();
            if t >= warmup {
                common::record(&mut commit_h, end - c0);
                common::record(&mut txn_h, end - begin);
                done += 1;
            }
            bar.inc(1);
        }
        Ok(())
    }
    .await;
    let secs = t0.elapsed().as_secs_f64();
    let closed = producer.close().await;
    outcome?;
    closed.context("closing the producer")?;
    line.put("txns", done)
        .num("elapsed_s", secs)
        .num("txn_per_s", done as f64 / secs)
        .put("truncated", done < txns);
    common::put_percentiles(&mut line, "commit", &commit_h);
    common::put_percentiles(&mut line, "txn", &txn_h);
    Ok(line)
}
