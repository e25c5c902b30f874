//! Transaction throughput and commit latency, end to end over gRPC on
//! loopback, all in this process: one coordinator and one partition server
//! (fsync `always`) hosting a 2-partition topic. Each of `XO_BENCH_PRODUCERS`
//! (default 16) transactional producers runs transactions back to back for
//! `XO_BENCH_SECS` (default 5) per setting: AddPartitionsToTxn (both
//! partitions), one Produce carrying one batch per partition, EndTxn(commit).
//! Settings: 1, 10 and 100 records per transaction (100-byte values).
//!
//! Printed per setting: transactions/s, EndTxn latency (the commit: until
//! PrepareCommit is durable and answered) and whole-transaction latency
//! p50/p99 (hdrhistogram), and — from the coordinator's counters — durable
//! coordinator writes and marker acknowledgements per transaction, which
//! stay the same whatever the record count (3 writes: AddPartitions,
//! PrepareCommit, CompleteCommit; one marker per partition), and the fsyncs
//! those writes took (fewer: concurrent writes share a flush).
//!
//! Run: `cargo bench -p xo-coordinator --bench txn`. Needs no running process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use xo_coordinator::driver::{Coordinator, CoordinatorConfig};
use xo_coordinator::store::TopicSettings;
use xo_partition_server::coordinator_client::CoordinatorVerifier;
use xo_partition_server::{FsyncPolicy, Registry, ServerConfig};
use xo_proto::batch::records::{BatchBuilder, BatchMeta};
use xo_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use xo_proto::coordinator::{
    AddPartitionsToTxnRequest, EndTxnRequest, ErrorCode, InitProducerIdRequest, TopicPartition,
};
use xo_proto::partition::partition_service_client::PartitionServiceClient;
use xo_proto::partition::{PartitionBatch, ProduceRequest};
use xo_proto::{ProducerEpoch, ProducerId, Sequence};

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 2;
const VALUE_BYTES: usize = 100;
const RECORDS_PER_TXN: [usize; 3] = [1, 10, 100];
/// Retries of a request answered CONCURRENT_TRANSACTIONS (the previous
/// transaction's markers are still being completed).
const CONCURRENT_RETRIES_MAX: u32 = 10_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

struct Run {
    txns: u64,
    elapsed: Duration,
    commit_us: Histogram<u64>,
    txn_us: Histogram<u64>,
}

/// One producer's loop: transactions back to back until `until`.
async fn producer_loop(
    coordinator: Channel,
    partition: Channel,
    index: usize,
    records: usize,
    until: Instant,
) -> Run {
    let mut c = CoordinatorServiceClient::new(coordinator);
    let mut ps = PartitionServiceClient::new(partition);
    let transactional_id = format!("bench-{records}-{index}");
    let init = c
        .init_producer_id(InitProducerIdRequest {
            transactional_id: transactional_id.clone(),
            transaction_timeout_ms: 60_000,
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(init.error, ErrorCode::None as i32, "{}", init.error_message);
    let (mut producer_id, mut producer_epoch) = (init.producer_id, init.producer_epoch);
    let value = vec![b'x'; VALUE_BYTES];
    let mut run = Run {
        txns: 0,
        elapsed: Duration::ZERO,
        commit_us: Histogram::new(3).unwrap(),
        txn_us: Histogram::new(3).unwrap(),
    };
    let started = Instant::now();
    while Instant::now() < until {
        let txn_started = Instant::now();
        let partitions: Vec<TopicPartition> =
            (0..PARTITIONS).map(|p| TopicPartition { topic: TOPIC.into(), partition: p }).collect();
        let mut retries = 0;
        loop {
            let added = c
                .add_partitions_to_txn(AddPartitionsToTxnRequest {
                    transactional_id: transactional_id.clone(),
                    producer_id,
                    producer_epoch,
                    partitions: partitions.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if added.error == ErrorCode::ConcurrentTransactions as i32 {
                retries += 1;
                assert!(retries < CONCURRENT_RETRIES_MAX, "stuck behind markers");
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            assert_eq!(added.error, ErrorCode::None as i32, "{}", added.error_message);
            break;
        }
        let batches = (0..PARTITIONS)
            .map(|p| PartitionBatch {
                topic: TOPIC.into(),
                partition: p,
                batch: batch(producer_id, producer_epoch, records, &value),
            })
            .collect();
        let produced = ps.produce(ProduceRequest { batches }).await.unwrap().into_inner();
        for result in &produced.results {
            assert_eq!(result.error, 0, "produce: {}", result.error_message);
        }
        let commit_started = Instant::now();
        let ended = c
            .end_txn(EndTxnRequest {
                transactional_id: transactional_id.clone(),
                producer_id,
                producer_epoch,
                commit: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ended.error, ErrorCode::None as i32, "{}", ended.error_message);
        run.commit_us.record(commit_started.elapsed().as_micros() as u64).unwrap();
        run.txn_us.record(txn_started.elapsed().as_micros() as u64).unwrap();
        (producer_id, producer_epoch) = (ended.producer_id, ended.producer_epoch);
        run.txns += 1;
    }
    run.elapsed = started.elapsed();
    run
}

/// One transactional batch: a new epoch per transaction, so sequence 0.
fn batch(producer_id: i64, producer_epoch: i32, records: usize, value: &[u8]) -> Bytes {
    let mut meta = BatchMeta::plain(1_764_000_000_000);
    meta.producer_id = ProducerId(producer_id);
    meta.producer_epoch = ProducerEpoch(producer_epoch as i16);
    meta.base_sequence = Sequence(0);
    meta.transactional = true;
    let mut builder = BatchBuilder::new(meta);
    for _ in 0..records {
        builder.push(1_764_000_000_000, None, Some(value), &[]);
    }
    builder.finish().unwrap()
}

/// Waits until every transaction's markers are acknowledged and completed.
async fn quiesce(coordinator: &Arc<Coordinator>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open =
            coordinator.list().await.into_iter().filter(|m| !m.partitions.is_empty()).count();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} transactions never completed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let seconds = env_or("XO_BENCH_SECS", 5);
    let producers = env_or("XO_BENCH_PRODUCERS", 16) as usize;
    let coordinator_dir = tempfile::tempdir().unwrap();
    let partition_dir = tempfile::tempdir().unwrap();

    let coordinator =
        Coordinator::open(coordinator_dir.path(), CoordinatorConfig::default()).await.unwrap();
    let coordinator_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coordinator_addr = coordinator_listener.local_addr().unwrap();
    tokio::spawn(xo_coordinator::service::serve(
        coordinator.clone(),
        coordinator_listener,
        std::future::pending(),
    ));

    let mut server_config = ServerConfig::new(partition_dir.path().to_path_buf());
    server_config.fsync = FsyncPolicy::Always;
    let verifier = Arc::new(CoordinatorVerifier::new(&coordinator_addr.to_string()).unwrap());
    let registry = Registry::open(server_config, verifier).unwrap();
    let partition_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let partition_addr = partition_listener.local_addr().unwrap();
    tokio::spawn(xo_partition_server::service::serve(
        registry,
        partition_listener,
        std::future::pending(),
    ));
    coordinator.register_server("bench-server", &partition_addr.to_string()).await.unwrap();
    coordinator.create_topic(TOPIC, PARTITIONS, TopicSettings::default()).await.unwrap();

    println!(
        "xo transactions: coordinator + 1 partition server in-process, {PARTITIONS} partitions, \
         fsync always, {producers} producers, {seconds} s per setting, {VALUE_BYTES}-byte values"
    );
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>12} {:>12} {:>11} {:>12} {:>12}",
        "records",
        "txn/s",
        "commit p50",
        "commit p99",
        "txn p50",
        "txn p99",
        "writes/txn",
        "fsyncs/txn",
        "markers/txn"
    );
    for records in RECORDS_PER_TXN {
        quiesce(&coordinator).await;
        let before = coordinator.stats();
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for index in 0..producers {
            let (c, p) = (channel(coordinator_addr).await, channel(partition_addr).await);
            tasks.push(tokio::spawn(producer_loop(c, p, index, records, until)));
        }
        let mut txns = 0;
        let mut elapsed = Duration::ZERO;
        let mut commit_us = Histogram::<u64>::new(3).unwrap();
        let mut txn_us = Histogram::<u64>::new(3).unwrap();
        for task in tasks {
            let run = task.await.unwrap();
            txns += run.txns;
            elapsed = elapsed.max(run.elapsed);
            commit_us.add(&run.commit_us).unwrap();
            txn_us.add(&run.txn_us).unwrap();
        }
        quiesce(&coordinator).await;
        let after = coordinator.stats();
        // InitProducerId of each producer is one write of its own.
        let writes = after.store_writes - before.store_writes - producers as u64;
        let flushes = after.store_flushes - before.store_flushes;
        let markers = after.markers_acked - before.markers_acked;
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        println!(
            "{:>8} {:>9.0} {:>12} {:>12} {:>12} {:>12} {:>11.2} {:>12.2} {:>12.2}",
            records,
            txns as f64 / elapsed.as_secs_f64(),
            ms(commit_us.value_at_quantile(0.50)),
            ms(commit_us.value_at_quantile(0.99)),
            ms(txn_us.value_at_quantile(0.50)),
            ms(txn_us.value_at_quantile(0.99)),
            writes as f64 / txns as f64,
            flushes as f64 / txns as f64,
            markers as f64 / txns as f64,
        );
    }
}
