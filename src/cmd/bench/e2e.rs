//! `xo bench e2e`: end-to-end latency at a fixed rate. A transaction of R
//! records is due every R/rate seconds (its records sent back to back,
//! then committed; without transactions one record every 1/rate s); a
//! read-committed consumer in the same process measures delivery time
//! minus send time, the send time taken just before `send` and carried in
//! the value's first 8 bytes (its sequence number in the next 8). Records
//! of the first transactions, up to the warm-up, are not counted — the
//! Kafka harness's `e2e`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use xo_client::{
    ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerRecord, TopicPartition,
    TransactionalProducer,
};

use super::common::{self, Common, Line, Mode, Session, VALUE_POOL_SIZE};

/// How long one consumer poll waits (the Kafka harness's 100 ms).
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long past --max-seconds the consumer may still wait for records.
const CONSUMER_GRACE: Duration = Duration::from_secs(30);
/// Below this share of the asked rate, the run is "saturated".
const SATURATED_BELOW: f64 = 0.95;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// txn: transactions of R records; plain / idempotent: single records.
    #[arg(long, value_enum, default_value = "txn")]
    pub mode: Mode,
    /// Records to time.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub records: u64,
    /// Records per second asked.
    #[arg(long, value_name = "R", default_value_t = 1000.0)]
    pub rate: f64,
    /// Records per transaction (txn mode).
    #[arg(long, value_name = "R", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records_per_txn: u64,
    /// Untimed records first, rounded up to whole transactions [min(N/10, rate)].
    #[arg(long, value_name = "W")]
    pub warmup_records: Option<u64>,
}

pub async fn measure(args: &Args, bar: &ProgressBar) -> anyhow::Result<Line> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        anyhow::bail!("--rate must be a positive number");
    }
    Session::around(&args.common, "e2e", async |session| body(args, session, bar).await).await
}

/// Which producer the schedule sends with.
enum Writer {
    Records(Producer),
    Transactions(TransactionalProducer),
}

async fn body(args: &Args, session: &mut Session, bar: &ProgressBar) -> anyhow::Result<Line> {
    let c = &args.common;
    let per_txn = if args.mode == Mode::Txn { args.records_per_txn } else { 0 };
    let warmup_asked = args.warmup_records.unwrap_or((args.records / 10).min(args.rate as u64));
    let warmup = if per_txn > 0 { warmup_asked.div_ceil(per_txn) * per_txn } else { warmup_asked };
    let total = warmup + args.records;
    let mut line = common::header("e2e", c);
    line.put("mode", args.mode.word()).num("rate", args.rate);
    if per_txn > 0 {
        line.put("records_per_txn", per_txn);
    }
    let topic = session.create_topics(1, c.partitions).await?.remove(0);
    let pool = common::value_pool(c.record_size);
    let hard_deadline = c.deadline_from(Instant::now()) + CONSUMER_GRACE;
    bar.set_length(total);
    bar.set_message(format!("{} records/s", args.rate));

    // The consumer stops once it has this many records (lowered to what
    // was sent if the producer stops early).
    let expected = Arc::new(AtomicU64::new(total));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let consumer = tokio::spawn(consume(
        session.config.clone(),
        topic.clone(),
        c.partitions,
        warmup,
        expected.clone(),
        hard_deadline,
        ready_tx,
    ));
    if ready_rx.await.is_err() {
        // The consumer could not position itself; its error says why.
        return Err(match consumer.await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => anyhow::anyhow!("the consumer stopped before it was ready"),
            Err(e) => anyhow::Error::from(e).context("consumer task"),
        });
    }

    let writer = match args.mode {
        Mode::Txn => Writer::Transactions(session.transactional_producer().await?),
        mode => {
            Writer::Records(Producer::new(session.producer_config(mode)).await.context("producer")?)
        }
    };
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let deadline = c.deadline_from(Instant::now());
    let mut sent = 0u64;
    let start = Instant::now();
    let mut timed_start = None;
    let mut last_slot_end = start;
    let sending: anyhow::Result<()> = async {
        while sent < total && Instant::now() < deadline {
            let chunk = if per_txn > 0 { per_txn.min(total - sent) } else { 1 };
            let due = start + interval.mul_f64(sent as f64);
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            let now = Instant::now();
            if timed_start.is_none() && sent + chunk > warmup {
                // The schedule's slot, so a late start does not inflate the rate.
                timed_start = Some(due);
            }
            if let Writer::Transactions(p) = &writer {
                p.begin_transaction().context("begin_transaction")?;
            }
            for _ in 0..chunk {
                let mut value = pool[(sent % VALUE_POOL_SIZE as u64) as usize].clone();
                value[0..8].copy_from_slice(&common::clock_nanos().to_be_bytes());
                value[8..16].copy_from_slice(&sent.to_be_bytes());
                let partition = (sent % u64::from(c.partitions)) as u32;
                let record = ProducerRecord::new(&topic, &value).partition(partition);
                // A record that fails shows as one the consumer never gets
                // (and, in a transaction, as a failed commit).
                match &writer {
                    Writer::Records(p) => drop(p.send(record)),
                    Writer::Transactions(p) => drop(p.send(record)),
                }
                sent += 1;
            }
            if let Writer::Transactions(p) = &writer {
                p.commit_transaction().await.context("commit_transaction")?;
            }
            bar.inc(chunk);
            last_slot_end = now + interval.mul_f64(chunk as f64);
        }
        Ok(())
    }
    .await;
    let closed = match &writer {
        Writer::Records(p) => p.close().await,
        Writer::Transactions(p) => p.close().await,
    };
    expected.store(sent, Ordering::SeqCst);
    if let Err(e) = sending {
        consumer.abort();
        return Err(e);
    }
    closed.context("closing the producer")?;
    let measured_secs = timed_start.map_or(f64::NAN, |t| (last_slot_end - t).as_secs_f64());
    let (latency, received) = consumer.await.context("consumer task")??;
    if received < sent {
        anyhow::bail!("consumer received {received} of {sent} records");
    }
    let achieved = (sent - warmup) as f64 / measured_secs;
    line.put("warmup_records", warmup)
        .put("records", sent - warmup)
        .num("achieved_rate", achieved)
        .put("saturated", achieved < SATURATED_BELOW * args.rate)
        .put("truncated", sent < total);
    common::put_percentiles(&mut line, "e2e", &latency);
    Ok(line)
}

/// The read-committed consumer: reads every partition from its end at
/// the start until `expected` records arrived (or `hard_deadline`), and
/// returns the latency histogram of records from sequence `warmup` on and
/// how many records it got.
async fn consume(
    config: ClientConfig,
    topic: String,
    partitions: u32,
    warmup: u64,
    expected: Arc<AtomicU64>,
    hard_deadline: Instant,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut consumer_config = ConsumerConfig::new(config);
    consumer_config.offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(consumer_config).context("consumer")?;
    let tps: Vec<TopicPartition> =
        (0..partitions).map(|p| TopicPartition::new(&topic, p)).collect();
    consumer.assign(&tps).context("assign")?;
    consumer.seek_to_end(&tps).await.context("seeking to the end")?;
    let _ = ready.send(());
    let mut latency = common::histogram();
    let mut received = 0u64;
    while received < expected.load(Ordering::SeqCst) && Instant::now() < hard_deadline {
        let records = consumer.poll(POLL_WAIT).await.context("poll")?;
        let now = common::clock_nanos();
        for r in &records {
            let value = r.value.as_deref().unwrap_or_default();
            anyhow::ensure!(value.len() >= 16, "a record without a send time");
            let sent_at = u64::from_be_bytes(value[0..8].try_into().expect("8 bytes"));
            let seq = u64::from_be_bytes(value[8..16].try_into().expect("8 bytes"));
            if seq >= warmup {
                common::record(&mut latency, Duration::from_nanos(now.saturating_sub(sent_at)));
            }
            received += 1;
        }
    }
    let _ = consumer.close().await;
    Ok((latency, received))
}
