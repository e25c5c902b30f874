//! Goal: prove the exactly-once pipeline end to end against `xo dev` run as
//! a real process: a consume-transform-produce worker reads 3 input
//! partitions as a group member and writes into 2 output topics in
//! transactions that carry its consumed offsets; the worker process is
//! killed with SIGKILL and restarted several times mid-run; afterwards every
//! input record appears exactly once in the outputs and the group's
//! committed offsets are the end of the input.
//!
//! The worker is this test binary re-executed with `--ignored --exact
//! pipeline_worker` and the cluster address in `XO_PIPELINE_BOOTSTRAP`.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Server;
use xo_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, NewTopic,
    Offset, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
    TransactionalProducer,
};

const INPUT: &str = "pipeline-in";
const OUTPUTS: [&str; 2] = ["pipeline-out-even", "pipeline-out-odd"];
const GROUP: &str = "pipeline";
const INPUT_PARTITIONS: u32 = 3;
const RECORDS: usize = 3000;
/// Records per transaction and a pause after each, so the run lasts long
/// enough for the kills to land mid-way.
const RECORDS_PER_TXN: usize = 25;
const TXN_PAUSE: Duration = Duration::from_millis(60);
/// Kills of the worker before the last one is left to finish.
const WORKER_KILLS: usize = 5;
const BOOTSTRAP_ENV: &str = "XO_PIPELINE_BOOTSTRAP";
/// Bound on waiting for the last worker to drain the input.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(120);

fn output_for(value: usize) -> &'static str {
    OUTPUTS[value % 2]
}

/// The worker loop; runs until killed.
async fn run_worker(bootstrap: &str) {
    let client = ClientConfig::new(bootstrap);
    let mut consumer_config = ConsumerConfig::new(client.clone()).group(GROUP);
    consumer_config.isolation = IsolationLevel::ReadCommitted;
    consumer_config.offset_reset = OffsetReset::Earliest;
    consumer_config.poll_records = RECORDS_PER_TXN;
    let mut consumer = Consumer::new(consumer_config).unwrap();
    consumer.subscribe(&[INPUT], GROUP).unwrap();
    // One transactional id for every incarnation: a restart fences the
    // killed one and aborts whatever it left open.
    let producer =
        TransactionalProducer::new(ProducerConfig::new(client), "pipeline-worker").unwrap();
    producer.init_transactions().await.unwrap();
    loop {
        let records = match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => records,
            Err(e) if e.is_retriable() || e.is_abortable() => continue,
            Err(e) => panic!("poll: {e}"),
        };
        if records.is_empty() {
            continue;
        }
        if let Err(e) = transform(&producer, &consumer, &records).await {
            assert!(!e.is_fatal(), "worker fenced or broken: {e}");
            producer.abort_transaction().await.unwrap();
            consumer.seek_to_committed();
        }
        tokio::time::sleep(TXN_PAUSE).await;
    }
}

async fn transform(
    producer: &TransactionalProducer,
    consumer: &Consumer,
    records: &[ConsumerRecord],
) -> xo_client::Result<()> {
    producer.begin_transaction()?;
    let values: Vec<(usize, Vec<u8>)> = records
        .iter()
        .map(|r| {
            let value = r.value.clone().unwrap();
            let n: usize = std::str::from_utf8(&value).unwrap().parse().unwrap();
            (n, value.to_vec())
        })
        .collect();
    let acks: Vec<_> =
        values.iter().map(|(n, v)| producer.send(ProducerRecord::new(output_for(*n), v))).collect();
    producer.send_offsets_to_transaction(consumer.positions(), &consumer.group_metadata()).await?;
    producer.commit_transaction().await?;
    for ack in futures::future::join_all(acks).await {
        ack?;
    }
    Ok(())
}

#[test]
#[ignore = "entry point of the worker child process that pipeline_survives_kill_9 starts"]
fn pipeline_worker() {
    let bootstrap = std::env::var(BOOTSTRAP_ENV).expect("started by pipeline_survives_kill_9");
    tokio::runtime::Runtime::new().unwrap().block_on(run_worker(&bootstrap));
}

/// A worker process, killed (SIGKILL) and reaped when dropped: at the
/// test's own kills, and when an assertion fails mid-test — an orphaned
/// worker would otherwise outlive the test and hold its output pipe open.
struct Worker(Child);

impl Worker {
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
        // Drop kills and waits again: both are no-ops on a reaped child.
    }

    fn is_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(bootstrap: &str) -> Worker {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "pipeline_worker", "--nocapture"])
        .env(BOOTSTRAP_ENV, bootstrap)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn pipeline worker");
    Worker(child)
}

/// Every record of `topic`, read_committed from the beginning up to the LSO.
async fn read_all(
    client: &ClientConfig,
    admin: &Admin,
    topic: &str,
    partitions: u32,
) -> Vec<String> {
    let mut config = ConsumerConfig::new(client.clone());
    config.isolation = IsolationLevel::ReadCommitted;
    let mut consumer = Consumer::new(config).unwrap();
    let all: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(&all).unwrap();
    consumer.seek_to_beginning(&all).await.unwrap();
    let mut ends = BTreeMap::new();
    for tp in &all {
        ends.insert(
            tp.partition,
            admin.partition_offsets(topic, tp.partition).await.unwrap().last_stable_offset,
        );
    }
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while all.iter().any(|tp| consumer.position(tp).unwrap_or(Offset(0)) < ends[&tp.partition]) {
        assert!(Instant::now() < deadline, "could not read {topic} up to its LSO");
        for r in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_survives_kill_9() {
    let dev = Server::start_role("dev", &["--fsync", "always"], &[]);
    let bootstrap = dev.addr.to_string();
    let client = ClientConfig::new(&bootstrap);
    let admin = Admin::new(client.clone()).unwrap();
    // `xo dev` answers once its partition servers have registered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.create_topic(NewTopic::new(INPUT, INPUT_PARTITIONS)).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "cluster not ready: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for out in OUTPUTS {
        admin.create_topic(NewTopic::new(out, 2)).await.unwrap();
    }
    let producer = Producer::new(ProducerConfig::new(client.clone())).await.unwrap();
    let values: Vec<String> = (0..RECORDS).map(|n| n.to_string()).collect();
    let acks: Vec<_> =
        values.iter().map(|v| producer.send(ProducerRecord::new(INPUT, v).key(v))).collect();
    for ack in futures::future::join_all(acks).await {
        ack.unwrap();
    }

    // Kill the worker at varying points of its work, then let one finish.
    for kill in 0..WORKER_KILLS {
        let worker = spawn_worker(&bootstrap);
        tokio::time::sleep(Duration::from_millis(500 + 250 * kill as u64)).await;
        worker.kill();
    }
    let input: Vec<TopicPartition> =
        (0..INPUT_PARTITIONS).map(|p| TopicPartition::new(INPUT, p)).collect();
    let mut group_view = ConsumerConfig::new(client.clone()).group(GROUP);
    group_view.isolation = IsolationLevel::ReadCommitted;
    let group_view = Consumer::new(group_view).unwrap();
    let mut input_ends = BTreeMap::new();
    for tp in &input {
        input_ends.insert(
            tp.clone(),
            admin.partition_offsets(INPUT, tp.partition).await.unwrap().high_watermark,
        );
    }
    // The kills must have landed mid-run: some output committed, not all.
    // (Read below the LSO: a killed worker's open transaction holds it back
    // until the next worker fences it.)
    let mut committed_before = 0;
    for out in OUTPUTS {
        committed_before += read_all(&client, &admin, out, 2).await.len();
    }
    eprintln!("after {WORKER_KILLS} kills: {committed_before} of {RECORDS} records in the outputs");
    assert!(committed_before > 0, "no killed worker committed anything: the kills proved nothing");
    assert!(committed_before < RECORDS, "the input was drained before the last kill");
    let mut worker = spawn_worker(&bootstrap);
    let deadline = Instant::now() + DRAIN_WAIT_MAX;
    loop {
        assert!(worker.is_running(), "the last worker died");
        if let Ok(committed) = group_view.committed(&input).await
            && input.iter().all(|tp| committed.get(tp).copied().flatten() == Some(input_ends[tp]))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not drain the input in {DRAIN_WAIT_MAX:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.kill();

    // Exactly once: each input value in exactly one output record, in its topic.
    let mut seen: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let mut outputs = Vec::new();
    for out in OUTPUTS {
        outputs.push((out, read_all(&client, &admin, out, 2).await));
    }
    for (out, values) in &outputs {
        for v in values {
            seen.entry(v.parse().unwrap()).or_default().push(out);
        }
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, outs)| outs.len() > 1).collect();
    assert!(duplicated.is_empty(), "values written more than once: {duplicated:?}");
    let missing: Vec<usize> = (0..RECORDS).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "values never written: {missing:?}");
    assert_eq!(seen.len(), RECORDS, "values that were never input appeared");
    for (n, outs) in &seen {
        assert_eq!(outs, &vec![output_for(*n)], "value {n} in the wrong topic");
    }
}
