//! `xo bench consume`: read-committed consume throughput. A backlog of N
//! records is written first, in transactions of R (1000) over P
//! partitions of one topic; then a fresh read-committed consumer, assigned
//! every partition, reads it from the start, timed from its first poll to
//! the arrival of the last record — the Kafka harness's `consume`.

use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use xo_client::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};

use super::common::{self, Common, Line, MB, Records, Sending, Session};

/// How long one consumer poll waits (the Kafka harness's 200 ms).
const POLL_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Records in the backlog, all read back.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub records: u64,
    /// Records per transaction of the backlog.
    #[arg(long, value_name = "R", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records_per_txn: u64,
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    Session::around(&args.common, "consume", async |session| body(args, session, bar).await).await
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let mut line = common::header("consume", c);
    line.put("backlog_records_per_txn", args.records_per_txn);
    let topics = session.create_topics(1, c.partitions).await?;
    let pool = common::value_pool(c.record_size);
    bar.set_length(2 * args.records);
    bar.set_message("backlog");

    let p0 = Instant::now();
    let producer = session.transactional_producer().await?;
    let sending = Sending::Transactions(&producer, args.records_per_txn);
    let records = Records { topics: &topics, partitions: c.partitions, pool: &pool };
    let written = common::send_batch(&sending, &records, 0, args.records, None, bar).await;
    let closed = producer.close().await;
    let written = written?;
    closed.context("closing the producer")?;
    anyhow::ensure!(written == args.records, "backlog short: {written} of {}", args.records);
    let backlog_secs = p0.elapsed().as_secs_f64();

    bar.set_message("reading");
    let mut config = ConsumerConfig::new(session.config.clone());
    config.offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).context("consumer")?;
    let tps: Vec<TopicPartition> =
        (0..c.partitions).map(|p| TopicPartition::new(&topics[0], p)).collect();
    consumer.assign(&tps).context("assign")?;
    consumer.seek_to_beginning(&tps).await.context("seek_to_beginning")?;
    let t0 = Instant::now();
    let deadline = c.deadline_from(t0);
    let mut t_end = t0;
    let mut count = 0u64;
    let mut bytes = 0u64;
    let reading: anyhow::Result<()> = async {
        while count < args.records && Instant::now() < deadline {
            let records = consumer.poll(POLL_WAIT).await.context("poll")?;
            for r in &records {
                bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
            }
            count += records.len() as u64;
            if !records.is_empty() {
                t_end = Instant::now();
                bar.inc(records.len() as u64);
            }
        }
        Ok(())
    }
    .await;
    let _ = consumer.close().await;
    reading?;
    let secs = (t_end - t0).as_secs_f64();
    line.num("backlog_produce_s", backlog_secs)
        .put("records", count)
        .num("elapsed_s", secs)
        .num("records_per_s", count as f64 / secs)
        .num("mb_per_s", bytes as f64 / MB / secs)
        .put("truncated", count < args.records);
    Ok(line)
}
