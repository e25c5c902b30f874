//! What every workload shares: the common flags, the JSON line, the value
//! pool, where record `i` goes, the send loop, the serial-transactions loop
//! (`txn`, `tiny`), latency histograms and the progress bar. The rules are the Kafka harness's (`bench/README.md`,
//! "choices the xo side must copy"), so both sides measure the same thing.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cmd::client::ClusterArgs;
use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use xo_client::config::BUFFER_BYTES_DEFAULT;
use xo_client::{
    Admin, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord, TransactionalProducer,
};

/// MB in every rate: 10^6 bytes of values, as the Kafka side counts.
pub const MB: f64 = 1_000_000.0;
/// Distinct random values records cycle through (record `i` carries value
/// `i mod 256`), as in the Kafka harness.
pub const VALUE_POOL_SIZE: usize = 256;
/// Values carry a send time and a sequence number in e2e: 16 bytes.
pub const RECORD_SIZE_MIN: u32 = 16;
/// Largest latency a histogram holds (µs): 120 s, as the Kafka harness's.
pub const HISTOGRAM_MICROS_MAX: u64 = 120_000_000;
pub const HISTOGRAM_SIGFIGS: u8 = 3;
/// Records sent between two deadline checks outside transactions (the
/// Kafka harness's 1000).
pub const CHUNK_RECORDS: u64 = 1000;
/// Bytes of values sent and not yet acknowledged, at most, outside
/// transactions: the producer's buffer. Kafka's `send()` blocks once its
/// `buffer.memory` (32 MiB) is full; here the loop waits for the oldest
/// acknowledgements instead, so `send` never meets `QueueFull`.
pub const UNACKED_BYTES_MAX: usize = BUFFER_BYTES_DEFAULT;
/// Topics one workload creates, at most.
pub const TOPICS_MAX: usize = 2;

/// Flags every workload takes, named as `bench/kafka/run`'s.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Bytes per record value (random bytes; records have no key).
    #[arg(long, value_name = "S", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(RECORD_SIZE_MIN as i64..))]
    pub record_size: u32,
    /// Partitions per topic; the topics are created fresh for the run.
    #[arg(long, value_name = "P", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Stop the timed part after T seconds; the line then says
    /// `"truncated":true` and rates are over what was done.
    #[arg(long, value_name = "T", default_value_t = 120.0)]
    pub max_seconds: f64,
    /// A name carried in the JSON line (suites and `compare` set it).
    #[arg(long)]
    pub name: Option<String>,
    /// Prefix of the benchmark topics' names.
    #[arg(long, default_value = "xo-bench")]
    pub topic_prefix: String,
    /// Keep the benchmark topics (normally deleted afterwards).
    #[arg(long)]
    pub keep_topics: bool,
}

impl Common {
    pub fn max_duration(&self) -> Duration {
        Duration::try_from_secs_f64(self.max_seconds.max(0.0)).unwrap_or(Duration::MAX)
    }

    pub fn deadline_from(&self, start: Instant) -> Instant {
        start.checked_add(self.max_duration()).unwrap_or(start + Duration::from_secs(1 << 32))
    }
}

/// How a producer writes: Kafka's `acks=all` without idempotence, with
/// it, or in transactions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Idempotent,
    Txn,
}

impl Mode {
    pub fn word(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Idempotent => "idempotent",
            Mode::Txn => "txn",
        }
    }
}

/// One JSON object, its fields in the order they were put (the Kafka
/// harness's lines read the same way: system, workload, name, settings,
/// results, ok).
#[derive(Clone, Debug, Default)]
pub struct Line {
    fields: Vec<(String, Value)>,
}

impl Line {
    pub fn new(workload: &str) -> Line {
        let mut line = Line::default();
        line.put("system", "xo").put("workload", workload);
        line
    }

    /// Sets `key` (in place if it is already there).
    pub fn put(&mut self, key: &str, value: impl Into<Value>) -> &mut Line {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.fields.push((key.to_string(), value)),
        }
        self
    }

    /// A measured number, to 3 decimals as the Kafka harness prints them;
    /// NaN or infinite becomes null.
    pub fn num(&mut self, key: &str, x: f64) -> &mut Line {
        let value = if x.is_finite() {
            serde_json::Number::from_f64((x * 1000.0).round() / 1000.0)
                .map_or(Value::Null, Value::Number)
        } else {
            Value::Null
        };
        self.put(key, value)
    }

    pub fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(k.clone()).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
        out
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.fields.iter().cloned().collect())
    }
}

/// The header fields every line starts with.
pub fn header(workload: &str, common: &Common) -> Line {
    let mut line = Line::new(workload);
    if let Some(name) = &common.name {
        line.put("name", name.as_str());
    }
    line.put("xo_version", env!("CARGO_PKG_VERSION"));
    line.put("record_size", common.record_size).put("partitions", common.partitions);
    line
}

/// Prints the line of a finished workload, or a failure line
/// (`"ok":false` and the error) like the Kafka harness's.
pub fn print_outcome(workload: &str, outcome: anyhow::Result<Line>) -> anyhow::Result<()> {
    match outcome {
        Ok(mut line) => {
            line.put("ok", true);
            print_line(&line)
        }
        Err(e) => {
            let mut line = Line::new(workload);
            line.put("ok", false).put("error", format!("{e:#}"));
            print_line(&line)?;
            Err(e)
        }
    }
}

/// Writes `line` and a newline to stdout, at once.
pub fn print_line(line: &Line) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all((line.render() + "\n").as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn bar(what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    style(&bar, what);
    bar
}

/// Gives `bar` the workloads' look, labelled `what`.
pub fn style(bar: &ProgressBar, what: &str) {
    let style = ProgressStyle::with_template(
        "{prefix:>22} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg}",
    )
    .expect("a valid progress template");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
}

/// `VALUE_POOL_SIZE` values of `size` random bytes, the same every run
/// (splitmix64 from a fixed seed; what matters is that they do not
/// compress, not which bytes they are).
pub fn value_pool(size: u32) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x5EED;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..VALUE_POOL_SIZE)
        .map(|_| {
            let mut value = Vec::with_capacity(size as usize + 8);
            while value.len() < size as usize {
                value.extend_from_slice(&next().to_le_bytes());
            }
            value.truncate(size as usize);
            value
        })
        .collect()
}

/// Where record `i` goes: topic `i mod T`, partition `(i / T) mod P`
/// (with one topic simply partition `i mod P`), as on the Kafka side.
pub fn place(i: u64, topics: usize, partitions: u32) -> (usize, u32) {
    assert!(topics > 0 && partitions > 0, "placement needs topics and partitions");
    let topics = topics as u64;
    ((i % topics) as usize, ((i / topics) % u64::from(partitions)) as u32)
}

/// Nanoseconds on this process's monotonic clock (e2e carries them in the
/// values, as the Kafka harness carries `System.nanoTime()`).
pub fn clock_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MICROS_MAX, HISTOGRAM_SIGFIGS)
        .expect("valid histogram bounds")
}

/// Records `elapsed` in µs (at least 1, at most the histogram's top).
pub fn record(h: &mut Histogram<u64>, elapsed: Duration) {
    let micros = (elapsed.as_micros() as u64).clamp(1, HISTOGRAM_MICROS_MAX);
    h.saturating_record(micros);
}

/// `<prefix>_p50_ms`, `_p99_ms`, `_p999_ms`, `_max_ms`, `_mean_ms`, as the
/// Kafka harness reports them.
pub fn put_percentiles(line: &mut Line, prefix: &str, h: &Histogram<u64>) {
    let ms = |micros: u64| micros as f64 / 1000.0;
    line.num(&format!("{prefix}_p50_ms"), ms(h.value_at_quantile(0.50)));
    line.num(&format!("{prefix}_p99_ms"), ms(h.value_at_quantile(0.99)));
    line.num(&format!("{prefix}_p999_ms"), ms(h.value_at_quantile(0.999)));
    line.num(&format!("{prefix}_max_ms"), ms(h.max()));
    line.num(&format!("{prefix}_mean_ms"), h.mean() / 1000.0);
}

/// A unique transactional id for one run.
pub fn transactional_id(workload: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("xo-bench-{workload}-{}-{nanos}", std::process::id())
}

/// A workload's connection to the cluster and the topics it made, which
/// `close` deletes again (unless `--keep-topics`).
pub struct Session {
    pub config: ClientConfig,
    admin: Admin,
    workload: String,
    prefix: String,
    keep_topics: bool,
    topics: Vec<String>,
}

impl Session {
    pub async fn open(common: &Common, workload: &str) -> anyhow::Result<Session> {
        let config = common.cluster.connect().await?;
        let admin = Admin::new(config.clone()).context("admin client")?;
        Ok(Session {
            config,
            admin,
            workload: workload.to_string(),
            prefix: common.topic_prefix.clone(),
            keep_topics: common.keep_topics,
            topics: Vec::new(),
        })
    }

    /// Runs `body` in a new session for `workload`, then closes the session
    /// whatever `body` returned, so a failed workload leaves no topics
    /// behind either.
    pub async fn around(
        common: &Common,
        workload: &str,
        body: impl AsyncFnOnce(&mut Session) -> anyhow::Result<Line>,
    ) -> anyhow::Result<Line> {
        let mut session = Session::open(common, workload).await?;
        let result = body(&mut session).await;
        session.close().await;
        result
    }

    /// `count` fresh topics of `partitions` partitions.
    pub async fn create_topics(
        &mut self,
        count: usize,
        partitions: u32,
    ) -> anyhow::Result<Vec<String>> {
        assert!((1..=TOPICS_MAX).contains(&count), "1..={TOPICS_MAX} topics per workload");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("{}-{}-{stamp}-{i}", self.prefix, self.workload);
            self.admin
                .create_topic(NewTopic::new(&name, partitions))
                .await
                .with_context(|| format!("creating topic {name}"))?;
            self.topics.push(name.clone());
            names.push(name);
        }
        Ok(names)
    }

    /// Deletes the topics made (a failure is a warning: the results stand).
    pub async fn close(self) {
        if self.keep_topics {
            return;
        }
        for topic in &self.topics {
            if let Err(e) = self.admin.delete_topic(topic).await {
                eprintln!("warning: could not delete topic {topic}: {e}");
            }
        }
    }

    /// A producer config for this cluster with the client's defaults
    /// (Kafka 4's: 16 KiB batches, 5 ms linger, 5 in flight).
    pub fn producer_config(&self, mode: Mode) -> ProducerConfig {
        let mut config = ProducerConfig::new(self.config.clone());
        config.idempotence = mode != Mode::Plain;
        config
    }

    /// A transactional producer, initialised.
    pub async fn transactional_producer(&self) -> anyhow::Result<TransactionalProducer> {
        let producer = TransactionalProducer::new(
            self.producer_config(Mode::Txn),
            &transactional_id(&self.workload),
        )
        .context("transactional producer")?;
        producer.init_transactions().await.context("init_transactions")?;
        Ok(producer)
    }
}

/// The producer a send loop writes with.
pub enum Sending<'a> {
    /// Plain or idempotent: no transactions.
    Records(&'a Producer),
    /// Every `per_txn` records in a transaction.
    Transactions(&'a TransactionalProducer, u64),
}

/// What record `i` is: its topic and partition (as [`place`]) and its
/// value from the pool.
pub struct Records<'a> {
    pub topics: &'a [String],
    pub partitions: u32,
    pub pool: &'a [Vec<u8>],
}

impl<'a> Records<'a> {
    pub fn record(&self, i: u64) -> ProducerRecord<'a> {
        let (topic, partition) = place(i, self.topics.len(), self.partitions);
        ProducerRecord::new(&self.topics[topic], &self.pool[(i % VALUE_POOL_SIZE as u64) as usize])
            .partition(partition)
    }
}

/// Sends `count` records numbered from `first`; returns once all are
/// acknowledged (flushed, or committed), or stops early, at a transaction
/// or `CHUNK_RECORDS` boundary, once `deadline` has passed. Returns how
/// many were sent.
pub async fn send_batch(
    sending: &Sending<'_>,
    records: &Records<'_>,
    first: u64,
    count: u64,
    deadline: Option<Instant>,
    progress: &ProgressBar,
) -> anyhow::Result<u64> {
    assert!(!records.topics.is_empty() && records.pool.len() == VALUE_POOL_SIZE);
    let past = || deadline.is_some_and(|d| Instant::now() > d);
    let record = |i: u64| records.record(i);
    let mut sent = 0u64;
    match sending {
        Sending::Transactions(producer, per_txn) => {
            assert!(*per_txn > 0, "transactions of at least one record");
            while sent < count && !past() {
                let chunk = (*per_txn).min(count - sent);
                producer.begin_transaction().context("begin_transaction")?;
                for j in 0..chunk {
                    // The commit fails if any record of the transaction
                    // failed, so the acknowledgements need no awaiting.
                    drop(producer.send(record(first + sent + j)));
                }
                producer.commit_transaction().await.context("commit_transaction")?;
                sent += chunk;
                progress.inc(chunk);
            }
        }
        Sending::Records(producer) => {
            let value_bytes = records.pool[0].len().max(1);
            let unacked_max = (UNACKED_BYTES_MAX / value_bytes).max(1);
            // Awaited oldest first, the way Kafka's send() waits for buffer
            // space: the oldest acknowledgement is the first to come, and
            // the ones behind it are mostly complete when their turn comes,
            // so they are polled once (a FuturesUnordered of 32k futures
            // cost ~10% of the client's CPU in wake-ups).
            let mut unacked = VecDeque::with_capacity(unacked_max);
            while sent < count && !past() {
                let chunk = CHUNK_RECORDS.min(count - sent);
                for j in 0..chunk {
                    if unacked.len() >= unacked_max
                        && let Some(ack) = unacked.pop_front()
                    {
                        acknowledged(ack.await)?;
                    }
                    unacked.push_back(Box::pin(producer.send(record(first + sent + j))));
                }
                sent += chunk;
                progress.inc(chunk);
            }
            producer.flush().await;
            for ack in unacked {
                acknowledged(ack.await)?;
            }
        }
    }
    Ok(sent)
}

/// How [`serial_transactions`] runs: `warmup` untimed transactions, then
/// up to `txns` timed ones (until the deadline), each of `per_txn`
/// records.
pub struct Serial {
    pub per_txn: u64,
    pub warmup: u64,
    pub txns: u64,
    /// Flush each transaction's records before `commit_transaction`, so the
    /// commit is timed alone (EndTxn until the client returns), as `txn`
    /// does; `tiny` leaves the sending to the commit.
    pub flush_first: bool,
}

/// What [`serial_transactions`] measured over the timed transactions.
pub struct SerialLatencies {
    /// `commit_transaction` alone.
    pub commit: Histogram<u64>,
    /// Whole transactions, begin until the commit returned.
    pub txn: Histogram<u64>,
}

/// The body `txn` and `tiny` share: one transactional producer on one new
/// topic runs back-to-back transactions as `serial` says. Puts `txns`,
/// `elapsed_s`, `txn_per_s` and `truncated` on `line`; the latencies are
/// the caller's to put (each workload reports its own).
pub async fn serial_transactions(
    session: &mut Session,
    c: &Common,
    serial: &Serial,
    line: &mut Line,
    bar: &ProgressBar,
) -> anyhow::Result<SerialLatencies> {
    let topics = session.create_topics(1, c.partitions).await?;
    let pool = value_pool(c.record_size);
    let records = Records { topics: &topics, partitions: c.partitions, pool: &pool };
    let mut latencies = SerialLatencies { commit: histogram(), txn: histogram() };
    let producer = session.transactional_producer().await?;
    bar.set_length(serial.warmup + serial.txns);

    let mut i = 0u64;
    let mut done = 0u64;
    let mut t0 = Instant::now();
    let mut deadline = None;
    let outcome: anyhow::Result<()> = async {
        for t in 0..serial.warmup + serial.txns {
            if t == serial.warmup {
                t0 = Instant::now();
                deadline = Some(c.deadline_from(t0));
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                break;
            }
            let begin = Instant::now();
            producer.begin_transaction().context("begin_transaction")?;
            for _ in 0..serial.per_txn {
                // The commit fails if any record of the transaction failed,
                // so the acknowledgements need no awaiting.
                drop(producer.send(records.record(i)));
                i += 1;
            }
            if serial.flush_first {
                producer.flush().await;
            }
            let c0 = Instant::now();
            producer.commit_transaction().await.context("commit_transaction")?;
            let end = Instant::now();
            if t >= serial.warmup {
                record(&mut latencies.commit, end - c0);
                record(&mut latencies.txn, end - begin);
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
        .put("truncated", done < serial.txns);
    Ok(latencies)
}

fn acknowledged(ack: xo_client::Result<xo_client::RecordMetadata>) -> anyhow::Result<()> {
    ack.map(|_| ()).context("send")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_placement_is_the_kafka_harness_s() {
        // Proves: record i goes to partition i mod P on one topic, and to
        // topic i mod 2, partition (i / 2) mod P on two.
        assert_eq!(place(0, 1, 8), (0, 0));
        assert_eq!(place(9, 1, 8), (0, 1));
        assert_eq!(place(0, 2, 8), (0, 0));
        assert_eq!(place(1, 2, 8), (1, 0));
        assert_eq!(place(2, 2, 8), (0, 1));
        assert_eq!(place(17, 2, 8), (1, 0));
        // A transaction of 10 records over one topic of 8 touches all 8.
        let touched: std::collections::BTreeSet<_> = (0..10).map(|i| place(i, 1, 8)).collect();
        assert_eq!(touched.len(), 8);
    }

    #[test]
    fn t11_lines_keep_field_order_and_round_numbers() {
        // Proves: a line reads like the Kafka harness's (order kept, three
        // decimals, NaN as null, a key put twice kept once).
        let mut line = Line::new("produce");
        line.num("mb_per_s", 31.87249).num("gone", f64::NAN).put("ok", true).put("ok", false);
        assert_eq!(
            line.render(),
            r#"{"system":"xo","workload":"produce","mb_per_s":31.872,"gone":null,"ok":false}"#
        );
    }

    #[test]
    fn t12_value_pool_is_fixed_and_sized() {
        let pool = value_pool(1024);
        assert_eq!(pool.len(), VALUE_POOL_SIZE);
        assert!(pool.iter().all(|v| v.len() == 1024));
        assert_ne!(pool[0], pool[1]);
        assert_eq!(pool, value_pool(1024));
    }
}
