//! Goal: prove that the real `xo partition-server` binary, killed with
//! SIGKILL in the middle of concurrent idempotent produce traffic with
//! retries, keeps every acknowledged record exactly once and in order after
//! it restarts, and that a batch retried across the crash is deduplicated.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use support::{Server, connect};
use xo_proto::batch::records::{BatchBuilder, BatchMeta, decode_batch};
use xo_proto::partition::{
    CreatePartitionRequest, ErrorCode, FetchRequest, IsolationLevel, PartitionBatch, ProduceRequest,
};
use xo_proto::{ProducerEpoch, ProducerId, Sequence};

const TOPIC: &str = "events";
const PRODUCERS: i64 = 3;
const BATCHES_PER_PRODUCER: i32 = 60;
const RECORDS_PER_BATCH: i32 = 10;

fn batch(producer: i64, index: i32) -> Bytes {
    let mut meta = BatchMeta::plain(1_764_000_000_000);
    meta.producer_id = ProducerId(producer);
    meta.producer_epoch = ProducerEpoch(0);
    meta.base_sequence = Sequence(index * RECORDS_PER_BATCH);
    let mut b = BatchBuilder::new(meta);
    for r in 0..RECORDS_PER_BATCH {
        let value = format!("p{producer}-b{index}-r{r}");
        b.push(1_764_000_000_000 + r as i64, None, Some(value.as_bytes()), &[]);
    }
    b.finish().unwrap()
}

/// Sends batches 0.. of one producer, each until acknowledged, resending
/// every third batch once more after its ack (a client retry whose first
/// answer was lost). Returns the acknowledged base offset of every batch.
async fn run_producer(
    addr: std::net::SocketAddr,
    producer: i64,
    acked: tokio::sync::mpsc::UnboundedSender<()>,
) -> BTreeMap<i32, i64> {
    let mut offsets = BTreeMap::new();
    for index in 0..BATCHES_PER_PRODUCER {
        let bytes = batch(producer, index);
        let resends = if index % 3 == 0 { 2 } else { 1 };
        let mut answers = Vec::new();
        while answers.len() < resends {
            let Ok(mut client) = connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let request = ProduceRequest {
                batches: vec![PartitionBatch {
                    topic: TOPIC.into(),
                    partition: 0,
                    batch: bytes.clone(),
                }],
            };
            match tokio::time::timeout(Duration::from_secs(5), client.produce(request)).await {
                Ok(Ok(response)) => {
                    let result = &response.get_ref().results[0];
                    assert_eq!(
                        result.error,
                        ErrorCode::None as i32,
                        "producer {producer} batch {index}: {}",
                        result.error_message
                    );
                    answers.push((result.base_offset, result.last_offset));
                    let _ = acked.send(());
                }
                // The server is down or restarting: the outcome is unknown, retry the same batch.
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "a retry got different offsets than the original: {answers:?}"
        );
        let (base, last) = answers[0];
        assert_eq!(last - base + 1, RECORDS_PER_BATCH as i64);
        offsets.insert(index, base);
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_exactly_once_in_order() {
    let mut server = Server::start(&["--fsync", "always"]);
    let mut client = connect(server.addr).await.unwrap();
    let created = client
        .create_partition(CreatePartitionRequest {
            topic: TOPIC.into(),
            partition: 0,
            // Small segments so the run rolls several and recovery meets snapshots.
            config: Some(xo_proto::partition::PartitionConfig {
                segment_bytes: 16 * 1024,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        created.get_ref().error,
        ErrorCode::None as i32,
        "{}",
        created.get_ref().error_message
    );

    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let producers: Vec<_> = (1..=PRODUCERS)
        .map(|p| tokio::spawn(run_producer(server.addr, p, acked_tx.clone())))
        .collect();
    drop(acked_tx);
    // Kill -9 twice, each time once a share of the traffic is acknowledged.
    let total = (PRODUCERS as usize) * (BATCHES_PER_PRODUCER as usize);
    for kill_after in [total / 3, total / 2] {
        let mut seen = 0;
        while seen < kill_after / 2 {
            acked_rx.recv().await.expect("producers stopped early (see their panic above)");
            seen += 1;
        }
        server.kill_9();
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.restart();
    }
    let mut acked: HashMap<i64, BTreeMap<i32, i64>> = HashMap::new();
    for (p, task) in (1..=PRODUCERS).zip(producers) {
        acked.insert(p, task.await.unwrap());
    }

    // Read the whole partition back and decode it.
    let mut client = connect(server.addr).await.unwrap();
    let mut offset = 0;
    let mut records: Vec<(i64, String)> = Vec::new();
    loop {
        let response = client
            .fetch(FetchRequest {
                topic: TOPIC.into(),
                partition: 0,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
                isolation: IsolationLevel::ReadUncommitted as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.error, ErrorCode::None as i32, "{}", response.error_message);
        if response.batches.is_empty() {
            assert_eq!(response.next_offset, response.high_watermark);
            break;
        }
        for b in &response.batches {
            let decoded = decode_batch(b).unwrap();
            for r in &decoded.records {
                let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
                records.push((r.offset(&decoded.header).0, value));
            }
        }
        offset = response.next_offset;
    }

    // Exactly once: every value appears once, at the offset its ack named.
    let mut seen: HashMap<&str, i64> = HashMap::new();
    for (offset, value) in &records {
        assert!(seen.insert(value, *offset).is_none(), "{value} stored twice");
    }
    assert_eq!(records.len(), total * RECORDS_PER_BATCH as usize, "records lost or duplicated");
    for (p, batches) in &acked {
        let mut previous = -1;
        for (index, base) in batches {
            for r in 0..RECORDS_PER_BATCH {
                let value = format!("p{p}-b{index}-r{r}");
                assert_eq!(seen.get(value.as_str()), Some(&(base + r as i64)), "{value}");
            }
            assert!(*base > previous, "producer {p} batches out of order");
            previous = *base;
        }
    }
    // Offsets are dense: no hole where a torn batch was cut away.
    for (i, (offset, _)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64);
    }
}
