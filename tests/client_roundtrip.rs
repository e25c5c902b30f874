//! Goal: prove that the client library's idempotent producer and its
//! read_committed consumer work end to end against the real `xo
//! partition-server` binary, without a coordinator (static metadata): every
//! record sent is read back exactly once, in send order per partition, with
//! the offset its acknowledgement gave — also when the server is killed -9
//! and restarted in the middle of the stream, so that batches are retried
//! with their original sequence numbers and deduplicated.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{Server, connect};
use xo_client::{
    ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, StaticMetadata, TopicPartition,
};
use xo_proto::partition::{CreatePartitionRequest, ErrorCode};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 2;
/// How long a consumer gets to see every record.
const CONSUME_WAIT_MAX: Duration = Duration::from_secs(60);

async fn create_partitions(server: &Server) {
    let mut client = connect(server.addr).await.unwrap();
    for partition in 0..PARTITIONS {
        let response = client
            .create_partition(CreatePartitionRequest {
                topic: TOPIC.into(),
                partition,
                config: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.error, ErrorCode::None as i32, "{}", response.error_message);
    }
}

fn client_config(server: &Server, producer_id: i64) -> ClientConfig {
    let mut metadata = StaticMetadata::default().topic(TOPIC, PARTITIONS, &server.addr.to_string());
    metadata.producer_id = Some(producer_id);
    let mut config = ClientConfig::with_static_metadata(metadata);
    config.request_timeout = Duration::from_secs(5);
    config
}

/// Reads until `count` records arrived (or fails after the wait).
async fn consume(server: &Server, count: usize) -> Vec<ConsumerRecord> {
    let mut config = ConsumerConfig::new(client_config(server, 0));
    config.offset_reset = OffsetReset::Earliest;
    config.fetch_wait = Duration::from_millis(200);
    let mut consumer = Consumer::new(config).unwrap();
    let partitions: Vec<_> = (0..PARTITIONS).map(|p| TopicPartition::new(TOPIC, p)).collect();
    consumer.assign(&partitions).unwrap();
    let deadline = Instant::now() + CONSUME_WAIT_MAX;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} records arrived", records.len());
        records.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    // Nothing beyond what was sent.
    records.extend(consumer.poll(Duration::from_millis(300)).await.unwrap());
    assert_eq!(records.len(), count, "more records than were sent");
    for p in &partitions {
        let last = records.iter().filter(|r| r.partition == p.partition).map(|r| r.offset).max();
        assert_eq!(consumer.position(p), last.map(|o| o.next()).or(consumer.position(p)));
    }
    records
}

/// value → (partition, offset) from the acknowledgements.
type Acks = BTreeMap<String, (u32, i64)>;

fn check_exactly_once_in_order(records: &[ConsumerRecord], acks: &Acks, sent: &[String]) {
    let mut seen = BTreeMap::new();
    for r in records {
        let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
        assert!(seen.insert(value.clone(), (r.partition, r.offset.0)).is_none(), "{value} twice");
        assert_eq!(acks.get(&value), Some(&(r.partition, r.offset.0)), "{value}: ack disagrees");
    }
    assert_eq!(seen.len(), sent.len());
    // Per partition, offsets follow the send order.
    for p in 0..PARTITIONS {
        let order: Vec<&String> = sent.iter().filter(|v| acks[*v].0 == p).collect();
        let offsets: Vec<i64> = order.iter().map(|v| acks[*v].1).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {p} reordered: {offsets:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t10_idempotent_produce_then_consume_round_trip() {
    let server = Server::start(&[]);
    create_partitions(&server).await;
    let producer = Producer::new(ProducerConfig::new(client_config(&server, 1))).await.unwrap();
    let sent: Vec<String> = (0..2_000).map(|i| format!("value-{i}")).collect();
    let keys: Vec<String> = (0..2_000).map(|i| format!("key-{}", i % 37)).collect();
    let pending: Vec<_> = sent
        .iter()
        .zip(&keys)
        .map(|(v, k)| producer.send(ProducerRecord::new(TOPIC, v).key(k)))
        .collect();
    let mut acks = Acks::new();
    for (value, ack) in sent.iter().zip(futures::future::join_all(pending).await) {
        let meta = ack.unwrap();
        assert_eq!(&*meta.topic, TOPIC);
        acks.insert(value.clone(), (meta.partition, meta.offset.0));
    }
    // The same key always went to the same partition.
    let mut key_partition = BTreeMap::new();
    for (v, k) in sent.iter().zip(&keys) {
        assert_eq!(*key_partition.entry(k).or_insert(acks[v].0), acks[v].0);
    }
    producer.close().await.unwrap();
    let records = consume(&server, sent.len()).await;
    check_exactly_once_in_order(&records, &acks, &sent);
    // Keys and timestamps come through.
    let r = records.iter().find(|r| r.value.as_deref() == Some(b"value-5")).unwrap();
    assert_eq!(r.key.as_deref(), Some(&b"key-5"[..]));
    assert!(r.timestamp > 1_700_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t20_server_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut server = Server::start(&["--fsync", "always"]);
    create_partitions(&server).await;
    let mut config = ProducerConfig::new(client_config(&server, 2));
    config.linger = Duration::from_millis(2);
    config.batch_bytes = 512; // many small batches, several in flight
    let producer = Producer::new(config).await.unwrap();
    let sent: Vec<String> = (0..20_000).map(|i| format!("v{i:05}")).collect();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let producer = producer.clone();
        let sent = sent.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut acks = Acks::new();
            for chunk in sent.chunks(100) {
                let pending: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        producer
                            .send(ProducerRecord::new(TOPIC, v).partition(i as u32 % PARTITIONS))
                    })
                    .collect();
                for (v, ack) in chunk.iter().zip(futures::future::join_all(pending).await) {
                    let meta = ack.unwrap_or_else(|e| panic!("{v}: {e}"));
                    acks.insert(v.clone(), (meta.partition, meta.offset.0));
                }
                progress.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            }
            acks
        })
    };
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 2_000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill_9();
    let at_kill = progress.load(std::sync::atomic::Ordering::Relaxed);
    assert!(at_kill < sent.len(), "the stream must still be running at the kill");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    let acks = tokio::time::timeout(Duration::from_secs(120), sender).await.unwrap().unwrap();
    producer.close().await.unwrap();
    let records = consume(&server, sent.len()).await;
    check_exactly_once_in_order(&records, &acks, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t30_seek_and_positions() {
    let server = Server::start(&[]);
    create_partitions(&server).await;
    let producer = Producer::new(ProducerConfig::new(client_config(&server, 3))).await.unwrap();
    for i in 0..20 {
        producer.send(ProducerRecord::new(TOPIC, &format!("r{i}")).partition(0)).await.unwrap();
    }
    let mut config = ConsumerConfig::new(client_config(&server, 0));
    config.offset_reset = OffsetReset::Latest;
    let mut consumer = Consumer::new(config).unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    consumer.assign(std::slice::from_ref(&tp)).unwrap();
    // Latest: nothing old is returned.
    assert!(consumer.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    assert_eq!(consumer.position(&tp).map(|o| o.0), Some(20));
    // Seek into the middle of a batch: records below are skipped.
    consumer.seek(&tp, xo_client::Offset(15)).unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(consumer.poll(Duration::from_secs(2)).await.unwrap());
    }
    let offsets: Vec<i64> = got.iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, vec![15, 16, 17, 18, 19]);
    consumer.seek_to_beginning(std::slice::from_ref(&tp)).await.unwrap();
    let first = consumer.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(first[0].offset.0, 0);
    assert_eq!(consumer.positions(), vec![(tp.clone(), first.last().unwrap().offset.next())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t40_a_full_buffer_refuses_records_and_keeps_the_order_of_the_rest() {
    // Proves: with a tiny buffer, sends beyond it fail at once with the
    // retriable QueueFull, and every record that was taken in is written
    // once, in the order of the send calls, including those that went
    // through the waiting queue.
    let server = Server::start(&[]);
    create_partitions(&server).await;
    let mut config = ProducerConfig::new(client_config(&server, 4));
    config.batch_bytes = 1024;
    config.buffer_bytes = 4096;
    config.record_bytes_max = 1024;
    config.linger = Duration::from_millis(1);
    let producer = Producer::new(config).await.unwrap();
    let sent: Vec<String> = (0..20_000).map(|i| format!("q{i:06}")).collect();
    let pending: Vec<_> =
        sent.iter().map(|v| producer.send(ProducerRecord::new(TOPIC, v).partition(0))).collect();
    let mut acks = Acks::new();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for (v, ack) in sent.iter().zip(futures::future::join_all(pending).await) {
        match ack {
            Ok(meta) => {
                acks.insert(v.clone(), (meta.partition, meta.offset.0));
                accepted.push(v.clone());
            }
            Err(xo_client::Error::QueueFull { .. }) => refused += 1,
            Err(e) => panic!("{v}: {e}"),
        }
    }
    assert!(refused > 0, "the buffer never filled");
    assert!(!accepted.is_empty());
    producer.close().await.unwrap();
    let records = consume(&server, accepted.len()).await;
    check_exactly_once_in_order(&records, &acks, &accepted);
}

#[test]
fn t50_a_producer_whose_runtime_shut_down_fails_at_once() {
    // Proves: when the runtime that ran the producer's background tasks
    // shuts down, a send that was waiting (its server is down) and every
    // later send fail well under a second with a fatal error saying why,
    // and flush and close return, instead of waiting out the 120 s
    // delivery timeout.
    let mut server = Server::start(&[]);
    let first = tokio::runtime::Runtime::new().unwrap();
    let producer = first.block_on(async {
        create_partitions(&server).await;
        let producer = Producer::new(ProducerConfig::new(client_config(&server, 5))).await.unwrap();
        producer.send(ProducerRecord::new(TOPIC, "before").partition(0)).await.unwrap();
        producer
    });
    server.kill_9();
    let waiting = producer.send(ProducerRecord::new(TOPIC, "waiting").partition(0));
    // Long enough for its batch to be sent, fail and wait for a retry.
    first.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    drop(first);

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let started = Instant::now();
        let waited = waiting.await.unwrap_err();
        let later = producer.send(ProducerRecord::new(TOPIC, "later")).await.unwrap_err();
        producer.flush().await;
        producer.close().await.unwrap();
        let took = started.elapsed();
        for e in [waited, later] {
            assert!(e.is_fatal(), "{e:?}");
            // The sender's or the appender's: the shutdown drops both, in
            // either order.
            assert!(e.to_string().contains("task stopped: it was cancelled"), "{e}");
        }
        assert!(took < Duration::from_millis(500), "took {took:?}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t60_a_producer_the_partitions_forgot_bumps_its_epoch_and_resends() {
    // Proves (Kafka's KIP-360, for the idempotent producer): when the
    // partition server has expired an idle producer's state, the batches
    // it refuses with UNKNOWN_PRODUCER_ID do not fail: the producer bumps
    // its epoch, restarts every partition's sequence at 0 and resends
    // them; every record is written once, in send order.
    let server =
        Server::start(&["--producer-expiry-ms", "200", "--housekeeping-interval-ms", "50"]);
    create_partitions(&server).await;
    let producer = Producer::new(ProducerConfig::new(client_config(&server, 6))).await.unwrap();
    let (id, epoch) = producer.producer_id().unwrap();
    let mut acks = Acks::new();
    let mut sent = Vec::new();
    for round in 0..3 {
        if round > 0 {
            // Idle for longer than the expiry plus a housekeeping run.
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        let values: Vec<String> = (0..20).map(|i| format!("r{round}-{i:02}")).collect();
        let pending: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                producer.send(ProducerRecord::new(TOPIC, v).partition(i as u32 % PARTITIONS))
            })
            .collect();
        for (v, ack) in values.iter().zip(futures::future::join_all(pending).await) {
            let meta = ack.unwrap_or_else(|e| panic!("{v}: {e}"));
            acks.insert(v.clone(), (meta.partition, meta.offset.0));
        }
        sent.extend(values);
    }
    let (id_after, epoch_after) = producer.producer_id().unwrap();
    assert_eq!(id_after, id, "the same producer id, at a new epoch");
    assert!(epoch_after.0 > epoch.0, "{epoch:?} -> {epoch_after:?}");
    producer.close().await.unwrap();
    let records = consume(&server, sent.len()).await;
    check_exactly_once_in_order(&records, &acks, &sent);
}
