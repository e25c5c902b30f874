//! `xo bench tiny`: tiny transactions. One producer, one record per
//! transaction, serial (begin, send, commit); the whole transaction is
//! timed — the Kafka harness's `tiny`.

use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use xo_client::ProducerRecord;

use super::common::{self, Common, Line, Session, VALUE_POOL_SIZE};

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

pub async fn run(args: Args) -> anyhow::Result<Line> {
    let bar = common::bar("tiny");
    let line = measure(&args, &bar).await;
    bar.finish_and_clear();
    line
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    let mut session = Session::open(&args.common, "tiny").await?;
    let result = body(args, &mut session, bar).await;
    session.close().await;
    result
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let txns = args.txns.unwrap_or(args.records);
    let warmup = args.warmup_records;
    let mut line = common::header("tiny", c);
    line.put("records_per_txn", 1);
    let topic = session.create_topics(1, c.partitions).await?.remove(0);
    let pool = common::value_pool(c.record_size);
    let mut txn_h = common::histogram();
    let producer = session.transactional_producer().await?;
    bar.set_length(warmup + txns);
    bar.set_message("one record per transaction");

    let mut done = 0u64;
    let mut t0 = Instant::now();
    let mut deadline = None;
    let outcome: anyhow::Result<()> = async {
        for t in 0..warmup + txns {
            if t == warmup {
                t0 = Instant::now();
                deadline = Some(c.deadline_from(t0));
            }
            let begin = Instant::now();
            if deadline.is_some_and(|d| begin > d) {
                break;
            }
            producer.begin_transaction().context("begin_transaction")?;
            let partition = (t % u64::from(c.partitions)) as u32;
            let value = &pool[(t % VALUE_POOL_SIZE as u64) as usize];
            drop(producer.send(ProducerRecord::new(&topic, value).partition(partition)));
            producer.commit_transaction().await.context("commit_transaction")?;
            if t >= warmup {
                common::record(&mut txn_h, begin.elapsed());
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
    common::put_percentiles(&mut line, "txn", &txn_h);
    Ok(line)
}
