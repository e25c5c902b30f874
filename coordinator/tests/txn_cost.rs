//! Goal: prove that a committed transaction costs the coordinator a
//! constant amount of work whatever its size — exactly 3 durable writes
//! (AddPartitionsToTxn's Ongoing, PrepareCommit, CompleteCommit) and one
//! marker per partition in one WriteTxnMarkers request per partition server
//! — with 1 record or 1000 per partition. Runs a coordinator and a partition
//! server in this process over loopback gRPC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use xo_coordinator::driver::{Coordinator, CoordinatorConfig, CoordinatorStats};
use xo_coordinator::store::TopicSettings;
use xo_coordinator::{ProducerIdentity, TopicPartition};
use xo_partition_server::coordinator_client::CoordinatorVerifier;
use xo_partition_server::{Registry, ServerConfig};
use xo_proto::batch::records::{BatchBuilder, BatchMeta};
use xo_proto::partition::partition_service_client::PartitionServiceClient;
use xo_proto::partition::{PartitionBatch, ProduceRequest};
use xo_proto::{ProducerEpoch, Sequence};

const PARTITIONS: u32 = 2;

fn batch(who: ProducerIdentity, records: usize) -> Bytes {
    let mut meta = BatchMeta::plain(1_764_000_000_000);
    meta.producer_id = who.producer_id;
    meta.producer_epoch = who.producer_epoch;
    meta.base_sequence = Sequence(0);
    meta.transactional = true;
    let mut builder = BatchBuilder::new(meta);
    for _ in 0..records {
        builder.push(1_764_000_000_000, None, Some(b"0123456789"), &[]);
    }
    builder.finish().unwrap()
}

/// Waits until no transaction has markers or a completion in flight.
async fn quiesce(coordinator: &Arc<Coordinator>) -> CoordinatorStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    while coordinator.list().await.iter().any(|m| !m.partitions.is_empty()) {
        assert!(Instant::now() < deadline, "transaction never completed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    coordinator.stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_transaction_costs_three_writes_and_one_marker_per_partition() {
    let coordinator_dir = tempfile::tempdir().unwrap();
    let partition_dir = tempfile::tempdir().unwrap();
    let coordinator =
        Coordinator::open(coordinator_dir.path(), CoordinatorConfig::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coordinator_addr = listener.local_addr().unwrap();
    tokio::spawn(xo_coordinator::service::serve(
        coordinator.clone(),
        listener,
        std::future::pending(),
    ));
    let verifier = Arc::new(CoordinatorVerifier::new(&coordinator_addr.to_string()).unwrap());
    let registry =
        Registry::open(ServerConfig::new(partition_dir.path().to_path_buf()), verifier).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let partition_addr = listener.local_addr().unwrap();
    tokio::spawn(xo_partition_server::service::serve(registry, listener, std::future::pending()));
    coordinator.register_server("s1", &partition_addr.to_string()).await.unwrap();
    coordinator.create_topic("t", PARTITIONS, TopicSettings::default()).await.unwrap();
    let mut partitions_client =
        PartitionServiceClient::connect(format!("http://{partition_addr}")).await.unwrap();

    let mut who = coordinator.init_producer_id("cost", 60_000, None).await.unwrap();
    let partitions: std::collections::BTreeSet<_> =
        (0..PARTITIONS).map(|p| TopicPartition::new("t", p)).collect();
    for records in [1, 1000, 1, 1000] {
        let before = quiesce(&coordinator).await;
        coordinator.add_partitions("cost", who, partitions.clone()).await.unwrap();
        let batches = (0..PARTITIONS)
            .map(|p| PartitionBatch { topic: "t".into(), partition: p, batch: batch(who, records) })
            .collect();
        let produced =
            partitions_client.produce(ProduceRequest { batches }).await.unwrap().into_inner();
        assert!(produced.results.iter().all(|r| r.error == 0), "{:?}", produced.results);
        let (committed, next) = coordinator.end_txn("cost", who, true).await.unwrap();
        assert!(committed);
        assert_eq!(next.producer_epoch, ProducerEpoch(who.producer_epoch.0 + 1));
        who = next;
        let after = quiesce(&coordinator).await;
        assert_eq!(after.store_writes - before.store_writes, 3, "{records} records");
        assert_eq!(after.markers_acked - before.markers_acked, u64::from(PARTITIONS));
        assert_eq!(after.marker_requests - before.marker_requests, 1, "one server, one request");
    }
}
