//! Goal: prove, across real processes (the `xo` binary as one coordinator
//! and three partition servers), that transactions are atomic for
//! read_committed readers — all of a committed transaction, none of an
//! aborted one — through zombie producers, timeouts, kill -9 of the
//! coordinator at each step of two-phase commit, kill -9 of a partition
//! server with markers pending, and delayed produces from an old epoch.
//!
//! The tests speak raw gRPC (xo_proto clients) and build their own batches,
//! playing the client library's part by hand.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::{Cluster, CoordinatorClient, connect};
use xo_proto::batch::records::{BatchBuilder, BatchMeta, decode_batch};
use xo_proto::coordinator::{
    AbortTransactionRequest, AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, CreateTopicRequest,
    DescribeTransactionRequest, EndTxnRequest, ErrorCode as CoordCode, FindHangingRequest,
    InitProducerIdRequest, ListTransactionsRequest, MetadataRequest,
    TopicPartition as CoordPartition,
};
use xo_proto::partition::{
    ErrorCode as PartCode, FetchRequest, IsolationLevel, ListOffsetsRequest, PartitionBatch,
    ProduceRequest, list_offsets_request::Spec,
};
use xo_proto::{ProducerEpoch, ProducerId, Sequence};

/// How long markers get to land (LSO catching up) after a decision.
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(30);
/// Retries of a request answered CONCURRENT_TRANSACTIONS.
const CONCURRENT_RETRIES_MAX: u32 = 300;

type Tp = (String, u32);

fn tp(topic: &str, partition: u32) -> Tp {
    (topic.to_string(), partition)
}

/// Where each partition lives: (topic, partition) → server address.
async fn create_topic(c: &mut CoordinatorClient, name: &str, partitions: u32) {
    let response = c
        .create_topic(CreateTopicRequest { topic: name.into(), partitions, config: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.error, CoordCode::None as i32, "{}", response.error_message);
    let topic = response.topic.unwrap();
    assert_eq!(topic.partitions.len(), partitions as usize);
}

async fn placement(c: &mut CoordinatorClient) -> BTreeMap<Tp, String> {
    let response = c.metadata(MetadataRequest::default()).await.unwrap().into_inner();
    assert_eq!(response.error, CoordCode::None as i32, "{}", response.error_message);
    let mut map = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            map.insert((topic.name.clone(), p.partition), p.address);
        }
    }
    map
}

/// A transactional producer played by hand: its identity, and the next
/// sequence per partition under that identity.
#[derive(Clone, Debug)]
struct Producer {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i32,
    sequences: BTreeMap<Tp, i32>,
}

async fn init(c: &mut CoordinatorClient, transactional_id: &str, timeout_ms: i64) -> Producer {
    for _ in 0..CONCURRENT_RETRIES_MAX {
        let response = c
            .init_producer_id(InitProducerIdRequest {
                transactional_id: transactional_id.into(),
                transaction_timeout_ms: timeout_ms,
                producer_id: -1,
                producer_epoch: -1,
            })
            .await
            .unwrap()
            .into_inner();
        if response.error == CoordCode::ConcurrentTransactions as i32 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(response.error, CoordCode::None as i32, "{}", response.error_message);
        return Producer {
            transactional_id: transactional_id.into(),
            producer_id: response.producer_id,
            producer_epoch: response.producer_epoch,
            sequences: BTreeMap::new(),
        };
    }
    panic!("InitProducerId stayed CONCURRENT_TRANSACTIONS");
}

/// AddPartitionsToTxn, retried while the previous transaction's markers
/// are still being completed (as a client does); the final error code.
async fn add(c: &mut CoordinatorClient, p: &Producer, partitions: &[Tp]) -> i32 {
    for _ in 0..CONCURRENT_RETRIES_MAX {
        let response = c
            .add_partitions_to_txn(AddPartitionsToTxnRequest {
                transactional_id: p.transactional_id.clone(),
                producer_id: p.producer_id,
                producer_epoch: p.producer_epoch,
                partitions: partitions
                    .iter()
                    .map(|(topic, partition)| CoordPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner();
        if response.error != CoordCode::ConcurrentTransactions as i32 {
            return response.error;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("AddPartitionsToTxn stayed CONCURRENT_TRANSACTIONS");
}

/// EndTxn; on success the producer moves to the identity of the reply.
async fn end(c: &mut CoordinatorClient, p: &mut Producer, commit: bool) -> i32 {
    let response = c
        .end_txn(EndTxnRequest {
            transactional_id: p.transactional_id.clone(),
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            commit,
        })
        .await
        .unwrap()
        .into_inner();
    if response.error == CoordCode::None as i32 {
        assert_eq!(response.committed, commit);
        assert!(
            (response.producer_id, response.producer_epoch) != (p.producer_id, p.producer_epoch),
            "a transaction's end bumps the identity"
        );
        p.producer_id = response.producer_id;
        p.producer_epoch = response.producer_epoch;
        p.sequences.clear();
    }
    response.error
}

/// The next transactional batch of `p` for `partition`, without sending it
/// (advances the producer's sequence).
fn next_batch(p: &mut Producer, partition: &Tp, values: &[String]) -> Bytes {
    let sequence = p.sequences.entry(partition.clone()).or_insert(0);
    let mut meta = BatchMeta::plain(1_764_000_000_000);
    meta.producer_id = ProducerId(p.producer_id);
    meta.producer_epoch = ProducerEpoch(p.producer_epoch as i16);
    meta.base_sequence = Sequence(*sequence);
    meta.transactional = true;
    let mut builder = BatchBuilder::new(meta);
    for value in values {
        builder.push(1_764_000_000_000, None, Some(value.as_bytes()), &[]);
    }
    *sequence += values.len() as i32;
    builder.finish().unwrap()
}

/// Sends one batch to its partition's server; the partition error code.
async fn send(places: &BTreeMap<Tp, String>, partition: &Tp, batch: Bytes) -> (i32, String) {
    let address = &places[partition];
    let mut client = connect(address.parse().unwrap()).await.unwrap();
    let response = client
        .produce(ProduceRequest {
            batches: vec![PartitionBatch {
                topic: partition.0.clone(),
                partition: partition.1,
                batch,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let result = &response.results[0];
    (result.error, result.error_message.clone())
}

/// Produces `values` into `partition` as `p`; must succeed.
async fn produce(
    places: &BTreeMap<Tp, String>,
    p: &mut Producer,
    partition: &Tp,
    values: &[String],
) {
    let batch = next_batch(p, partition, values);
    let (error, message) = send(places, partition, batch).await;
    assert_eq!(error, PartCode::None as i32, "produce to {partition:?}: {message}");
}

fn values(prefix: &str, partition: &Tp, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}/{}-{}/{i}", partition.0, partition.1)).collect()
}

/// Every value visible at `isolation`, in offset order.
async fn read(
    places: &BTreeMap<Tp, String>,
    partition: &Tp,
    isolation: IsolationLevel,
) -> Vec<String> {
    let mut client = connect(places[partition].parse().unwrap()).await.unwrap();
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let response = client
            .fetch(FetchRequest {
                topic: partition.0.clone(),
                partition: partition.1,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
                isolation: isolation as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.error, PartCode::None as i32, "{}", response.error_message);
        for batch in &response.batches {
            let decoded = decode_batch(batch).unwrap();
            for record in decoded.records {
                seen.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
        if response.batches.is_empty() && response.next_offset == offset {
            return seen;
        }
        offset = response.next_offset;
    }
}

/// (high watermark, last stable offset) of a partition.
async fn offsets(places: &BTreeMap<Tp, String>, partition: &Tp) -> Option<(i64, i64)> {
    let mut client = connect(places[partition].parse().ok()?).await.ok()?;
    let response = client
        .list_offsets(ListOffsetsRequest {
            topic: partition.0.clone(),
            partition: partition.1,
            spec: Some(Spec::Latest(true)),
            isolation: IsolationLevel::ReadCommitted as i32,
        })
        .await
        .ok()?
        .into_inner();
    (response.error == PartCode::None as i32)
        .then_some((response.high_watermark, response.last_stable_offset))
}

/// Waits until no transaction holds back any of `partitions` (LSO = HW).
async fn settle(places: &BTreeMap<Tp, String>, partitions: &[Tp]) {
    let deadline = Instant::now() + SETTLE_WAIT_MAX;
    for partition in partitions {
        loop {
            if let Some((hw, lso)) = offsets(places, partition).await
                && hw == lso
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{partition:?}: LSO still held after {SETTLE_WAIT_MAX:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Asserts each partition shows, read_committed, exactly `expected`.
async fn assert_committed(places: &BTreeMap<Tp, String>, expected: &BTreeMap<Tp, Vec<String>>) {
    for (partition, values) in expected {
        let seen = read(places, partition, IsolationLevel::ReadCommitted).await;
        assert_eq!(&seen, values, "read_committed view of {partition:?}");
    }
}

async fn describe_state(c: &mut CoordinatorClient, transactional_id: &str) -> String {
    let response = c
        .describe_transaction(DescribeTransactionRequest {
            transactional_id: transactional_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.error, CoordCode::None as i32, "{}", response.error_message);
    response.transaction.unwrap().state
}

fn all_partitions(topics: &[(&str, u32)]) -> Vec<Tp> {
    topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| tp(t, p))).collect()
}

// ---- t10: commit and abort ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_commit_and_abort_across_two_topics() {
    // Proves: a transaction over 2 topics × 3 partitions (on 3 servers)
    // commits everywhere and the next one aborts everywhere; read_committed
    // sees all of the first and none of the second, read_uncommitted sees
    // both; the coordinator lists the id as CompleteAbort.
    let cluster = Cluster::start(&[], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 3).await;
    create_topic(&mut c, "beta", 3).await;
    let places = placement(&mut c).await;
    let servers: BTreeSet<&String> = places.values().collect();
    assert_eq!(servers.len(), 3, "round-robin placement uses every server");
    let partitions = all_partitions(&[("alpha", 3), ("beta", 3)]);

    let mut p = init(&mut c, "t10", 60_000).await;
    let mut committed = BTreeMap::new();
    let mut everything: BTreeMap<Tp, Vec<String>> = BTreeMap::new();
    for (round, commit) in [(0, true), (1, false)] {
        assert_eq!(add(&mut c, &p, &partitions).await, CoordCode::None as i32);
        for partition in &partitions {
            let batch = values(&format!("round{round}"), partition, 3);
            produce(&places, &mut p, partition, &batch).await;
            everything.entry(partition.clone()).or_default().extend(batch.clone());
            if commit {
                committed.insert(partition.clone(), batch);
            }
        }
        assert_eq!(end(&mut c, &mut p, commit).await, CoordCode::None as i32);
        settle(&places, &partitions).await;
    }
    assert_committed(&places, &committed).await;
    for partition in &partitions {
        let uncommitted = read(&places, partition, IsolationLevel::ReadUncommitted).await;
        assert_eq!(uncommitted, everything[partition], "read_uncommitted sees aborted data too");
    }
    assert_eq!(describe_state(&mut c, "t10").await, "CompleteAbort");
    let listed = c
        .list_transactions(ListTransactionsRequest {
            states: vec!["CompleteAbort".into()],
            min_duration_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.transactions.len(), 1);
    assert_eq!(listed.transactions[0].transactional_id, "t10");
}

// ---- t20: zombie fencing -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_zombie_producer_is_fenced_everywhere() {
    // Proves: once a second producer initialises the same transactional id,
    // the first one's open transaction is aborted, and its produce (to a
    // partition it wrote to, and to a new one), AddPartitions, commit and
    // abort all fail; none of its data is ever read_committed, while the new
    // producer's commit is.
    let cluster = Cluster::start(&[], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 3).await;
    let places = placement(&mut c).await;
    let (a0, a1, a2) = (tp("alpha", 0), tp("alpha", 1), tp("alpha", 2));

    let mut zombie = init(&mut c, "t20", 60_000).await;
    assert_eq!(add(&mut c, &zombie, &[a0.clone(), a1.clone()]).await, CoordCode::None as i32);
    produce(&places, &mut zombie, &a0, &values("zombie", &a0, 2)).await;
    // The takeover: retried until the zombie's transaction is aborted.
    let mut live = init(&mut c, "t20", 60_000).await;
    assert_eq!(live.producer_id, zombie.producer_id);
    assert!(live.producer_epoch > zombie.producer_epoch + 1);

    let late = next_batch(&mut zombie, &a0, &values("zombie-late", &a0, 1));
    assert_eq!(send(&places, &a0, late).await.0, PartCode::InvalidProducerEpoch as i32);
    // a-1 was in the aborted transaction: its abort marker closed the epoch.
    let added = next_batch(&mut zombie, &a1, &values("zombie-added", &a1, 1));
    assert_eq!(send(&places, &a1, added).await.0, PartCode::InvalidProducerEpoch as i32);
    // a-2 never heard of the producer: the coordinator refuses to verify it.
    let fresh = next_batch(&mut zombie, &a2, &values("zombie-new", &a2, 1));
    assert_eq!(send(&places, &a2, fresh).await.0, PartCode::TransactionNotVerified as i32);
    assert_eq!(
        add(&mut c, &zombie, std::slice::from_ref(&a2)).await,
        CoordCode::ProducerFenced as i32
    );
    for commit in [true, false] {
        let mut z = zombie.clone();
        assert_eq!(end(&mut c, &mut z, commit).await, CoordCode::ProducerFenced as i32);
    }

    assert_eq!(add(&mut c, &live, std::slice::from_ref(&a0)).await, CoordCode::None as i32);
    produce(&places, &mut live, &a0, &values("live", &a0, 2)).await;
    assert_eq!(end(&mut c, &mut live, true).await, CoordCode::None as i32);
    let partitions = [a0.clone(), a1.clone(), a2.clone()];
    settle(&places, &partitions).await;
    let expected = BTreeMap::from([
        (a0.clone(), values("live", &a0, 2)),
        (a1.clone(), vec![]),
        (a2.clone(), vec![]),
    ]);
    assert_committed(&places, &expected).await;
}

// ---- t30: timeouts and operator aborts ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_transaction_past_its_timeout_is_aborted_and_fenced() {
    // Proves: a transaction left open past its timeout holds the LSO until
    // the coordinator aborts it; then the LSO catches up, its data is not
    // read_committed, and its producer is fenced at the coordinator and at
    // the partition.
    let cluster = Cluster::start(&["--expiry-check-interval-ms", "100"], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 2).await;
    let places = placement(&mut c).await;
    let partitions = all_partitions(&[("alpha", 2)]);
    // Long enough that the LSO check below runs before the abort, even on
    // a loaded machine.
    let mut p = init(&mut c, "t30", 2_000).await;
    assert_eq!(add(&mut c, &p, &partitions).await, CoordCode::None as i32);
    for partition in &partitions {
        produce(&places, &mut p, partition, &values("doomed", partition, 2)).await;
    }
    let (hw, lso) = offsets(&places, &partitions[0]).await.unwrap();
    assert!(lso < hw, "an open transaction holds the LSO back");
    settle(&places, &partitions).await;
    let none = partitions.iter().map(|p| (p.clone(), vec![])).collect();
    assert_committed(&places, &none).await;
    assert_eq!(describe_state(&mut c, "t30").await, "CompleteAbort");
    let mut stale = p.clone();
    assert_eq!(end(&mut c, &mut stale, true).await, CoordCode::ProducerFenced as i32);
    let late = next_batch(&mut p, &partitions[0], &values("late", &partitions[0], 1));
    assert_eq!(send(&places, &partitions[0], late).await.0, PartCode::InvalidProducerEpoch as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_find_hanging_reports_an_overdue_txn_and_operator_abort_ends_it() {
    // Proves: with expiry effectively off, a transaction past its timeout
    // is reported by FindHanging (with its partition, identity and reason);
    // AbortTransaction aborts and fences it; afterwards nothing hangs, the
    // LSO caught up and none of its data is read_committed. Also that
    // AddOffsetsToTxn creates the internal `__consumer_offsets` topic.
    let cluster = Cluster::start(&["--expiry-check-interval-ms", "3600000"], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 1).await;
    let mut p = init(&mut c, "t31", 300).await;
    let a0 = tp("alpha", 0);
    assert_eq!(add(&mut c, &p, std::slice::from_ref(&a0)).await, CoordCode::None as i32);
    let offsets_added = c
        .add_offsets_to_txn(AddOffsetsToTxnRequest {
            transactional_id: "t31".into(),
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            group_id: "g1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offsets_added.error, CoordCode::None as i32, "{}", offsets_added.error_message);
    let metadata = c.metadata(MetadataRequest { topics: vec!["__consumer_offsets".into()] }).await;
    let internal = &metadata.unwrap().into_inner().topics[0];
    assert!(internal.internal && internal.config.as_ref().unwrap().compact);
    let places = placement(&mut c).await;
    produce(&places, &mut p, &a0, &values("hanging", &a0, 2)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let hanging = c.find_hanging(FindHangingRequest::default()).await.unwrap().into_inner();
    assert_eq!(hanging.error, CoordCode::None as i32, "{}", hanging.error_message);
    assert_eq!(hanging.hanging.len(), 1, "{:?}", hanging.hanging);
    let h = &hanging.hanging[0];
    assert_eq!(h.partition.as_ref().unwrap().topic, "alpha");
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.start_offset),
        (p.producer_id, p.producer_epoch, 0)
    );
    assert!(h.reason.contains("timeout"), "{}", h.reason);
    let overdue = c
        .list_transactions(ListTransactionsRequest { states: vec![], min_duration_ms: 500 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overdue.transactions.len(), 1);

    let aborted = c
        .abort_transaction(AbortTransactionRequest { transactional_id: "t31".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(aborted.error, CoordCode::None as i32, "{}", aborted.error_message);
    settle(&places, std::slice::from_ref(&a0)).await;
    let hanging = c.find_hanging(FindHangingRequest::default()).await.unwrap().into_inner();
    assert!(hanging.hanging.is_empty(), "{:?}", hanging.hanging);
    assert_committed(&places, &BTreeMap::from([(a0.clone(), vec![])])).await;
    assert_eq!(end(&mut c, &mut p.clone(), true).await, CoordCode::ProducerFenced as i32);
}

// ---- t40: coordinator crashes --------------------------------------------------

/// The transactions ended together in each crash test: (id, commit?).
const CRASH_TXNS: [(&str, bool); 3] = [("t40-a", true), ("t40-b", false), ("t40-c", true)];

/// Ends three transactions over 2 topics × 5 partitions at once (two
/// commits, one abort) with the coordinator armed to crash at `site`,
/// restarts it unarmed, retries every EndTxn as a client would, and checks
/// that each transaction ended all-or-nothing with the outcome it asked for.
async fn end_through_coordinator_crash(site: &str) {
    let mut cluster = Cluster::start(&[], &[("XO_CRASH_AT", site)]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 3).await;
    create_topic(&mut c, "beta", 2).await;
    let places = placement(&mut c).await;
    let partitions = all_partitions(&[("alpha", 3), ("beta", 2)]);
    let mut producers = Vec::new();
    for (id, _) in CRASH_TXNS {
        let p = init(&mut c, id, 60_000).await;
        assert_eq!(add(&mut c, &p, &partitions).await, CoordCode::None as i32);
        producers.push(p);
    }
    for partition in &partitions {
        for p in producers.iter_mut() {
            let batch = values(&format!("{site}/{}", p.transactional_id), partition, 3);
            produce(&places, p, partition, &batch).await;
        }
    }
    // All at once; some replies are lost in the crash: outcome unknown.
    let ends: Vec<_> = producers
        .iter()
        .zip(CRASH_TXNS)
        .map(|(p, (_, commit))| {
            let mut c = c.clone();
            let request = EndTxnRequest {
                transactional_id: p.transactional_id.clone(),
                producer_id: p.producer_id,
                producer_epoch: p.producer_epoch,
                commit,
            };
            tokio::spawn(async move { c.end_txn(request).await.is_ok() })
        })
        .collect();
    let mut answered = Vec::new();
    for end in ends {
        answered.push(end.await.unwrap());
    }
    let status = cluster.coordinator.wait_for_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()), "coordinator did not crash at {site}");
    if site == "coordinator::after_prepare_persisted" {
        assert!(answered.contains(&false), "crashed before answering, yet all were answered");
    }

    cluster.coordinator.env.clear();
    cluster.coordinator.restart();
    cluster.wait_registered().await;
    let mut c = cluster.coordinator_client().await;
    // The clients' retries, each with its transaction's own identity.
    for (p, (id, commit)) in producers.iter_mut().zip(CRASH_TXNS) {
        assert_eq!(end(&mut c, p, commit).await, CoordCode::None as i32, "retry of {id} at {site}");
    }
    settle(&places, &partitions).await;
    for partition in &partitions {
        let committed = read(&places, partition, IsolationLevel::ReadCommitted).await;
        let uncommitted = read(&places, partition, IsolationLevel::ReadUncommitted).await;
        for (id, commit) in CRASH_TXNS {
            let expected = values(&format!("{site}/{id}"), partition, 3);
            let mine = |all: &[String]| -> Vec<String> {
                all.iter().filter(|v| expected.contains(v)).cloned().collect()
            };
            let visible = if commit { expected.clone() } else { vec![] };
            assert_eq!(mine(&committed), visible, "{id} in {partition:?} read_committed");
            assert_eq!(mine(&uncommitted), expected, "{id} in {partition:?} read_uncommitted");
        }
    }
    for (id, commit) in CRASH_TXNS {
        let state = if commit { "CompleteCommit" } else { "CompleteAbort" };
        let deadline = Instant::now() + SETTLE_WAIT_MAX;
        while describe_state(&mut c, id).await != state {
            assert!(Instant::now() < deadline, "{id} never reached {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A producer carries on under the identity EndTxn handed it.
    let p = &mut producers[0];
    let a0 = tp("alpha", 0);
    assert_eq!(add(&mut c, p, std::slice::from_ref(&a0)).await, CoordCode::None as i32);
    let more = values("after", &a0, 1);
    produce(&places, p, &a0, &more).await;
    assert_eq!(end(&mut c, p, true).await, CoordCode::None as i32);
    settle(&places, std::slice::from_ref(&a0)).await;
    let committed = read(&places, &a0, IsolationLevel::ReadCommitted).await;
    assert_eq!(committed.last(), more.last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_coordinator_crash_after_prepare_persisted() {
    // Proves: a coordinator killed right after a PrepareCommit/PrepareAbort
    // is durable (that client unanswered, two other transactions ending at
    // the same moment) ends every transaction everywhere with the outcome
    // asked for after restart, and answers every retry with success.
    end_through_coordinator_crash("coordinator::after_prepare_persisted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_coordinator_crash_after_some_markers() {
    // Proves: a coordinator killed when some but not all partitions have
    // their markers finishes every transaction on the rest after restart,
    // all-or-nothing for readers.
    end_through_coordinator_crash("coordinator::after_some_markers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_coordinator_crash_before_complete_persisted() {
    // Proves: a coordinator killed after every marker landed but before
    // CompleteCommit is durable re-sends markers harmlessly (no duplicate
    // marker effect) and completes after restart.
    end_through_coordinator_crash("coordinator::before_complete_persisted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t43_coordinator_crash_with_an_abort_in_flight() {
    // Proves: an abort decided before a crash at the prepare failpoint ends
    // aborted everywhere after restart: nothing read_committed, LSO free.
    let mut cluster =
        Cluster::start(&[], &[("XO_CRASH_AT", "coordinator::after_prepare_persisted")]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 3).await;
    let places = placement(&mut c).await;
    let partitions = all_partitions(&[("alpha", 3)]);
    let mut p = init(&mut c, "t43", 60_000).await;
    assert_eq!(add(&mut c, &p, &partitions).await, CoordCode::None as i32);
    for partition in &partitions {
        produce(&places, &mut p, partition, &values("aborted", partition, 2)).await;
    }
    let lost = c
        .end_txn(EndTxnRequest {
            transactional_id: p.transactional_id.clone(),
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            commit: false,
        })
        .await;
    assert!(lost.is_err(), "crashed before answering, yet answered");
    assert!(cluster.coordinator.wait_for_exit(Duration::from_secs(20)).is_some());
    cluster.coordinator.env.clear();
    cluster.coordinator.restart();
    cluster.wait_registered().await;
    let mut c = cluster.coordinator_client().await;
    settle(&places, &partitions).await;
    let none = partitions.iter().map(|p| (p.clone(), vec![])).collect();
    assert_committed(&places, &none).await;
    // The opposite outcome is refused for the retry; the same one succeeds.
    assert_eq!(end(&mut c, &mut p.clone(), true).await, CoordCode::InvalidTxnState as i32);
    assert_eq!(end(&mut c, &mut p, false).await, CoordCode::None as i32);
}

// ---- t50: partition server crash ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_markers_land_after_a_partition_server_restarts() {
    // Proves: a commit decided while one partition server is down is
    // answered; the other partitions get their markers at once, and the dead
    // server's partitions get theirs once it is back — its data then reads
    // committed, all of it, and nothing else is held back.
    let mut cluster = Cluster::start(&[], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 3).await;
    let places = placement(&mut c).await;
    let partitions = all_partitions(&[("alpha", 3)]);
    let mut p = init(&mut c, "t50", 60_000).await;
    assert_eq!(add(&mut c, &p, &partitions).await, CoordCode::None as i32);
    let mut expected = BTreeMap::new();
    for partition in &partitions {
        let batch = values("survives", partition, 3);
        produce(&places, &mut p, partition, &batch).await;
        expected.insert(partition.clone(), batch);
    }
    let victim = tp("alpha", 1);
    let victim_address = places[&victim].clone();
    cluster.server_at(&victim_address).kill_9();
    assert_eq!(end(&mut c, &mut p, true).await, CoordCode::None as i32);
    let others: Vec<Tp> =
        partitions.iter().filter(|t| places[*t] != victim_address).cloned().collect();
    settle(&places, &others).await;
    // Markers for the dead server keep being retried meanwhile.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(describe_state(&mut c, "t50").await, "PrepareCommit");
    cluster.server_at(&victim_address).restart();
    settle(&places, &partitions).await;
    assert_committed(&places, &expected).await;
    let deadline = Instant::now() + SETTLE_WAIT_MAX;
    while describe_state(&mut c, "t50").await != "CompleteCommit" {
        assert!(Instant::now() < deadline, "commit never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_partition_server_crash_between_marker_append_and_lso_update() {
    // Proves: a partition server that dies right after appending a commit
    // marker, before updating its LSO (failpoint), recovers the marker from
    // its log; the coordinator's retried marker is acknowledged without a
    // second effect, and the transaction reads committed everywhere.
    let mut cluster = Cluster::start(&[], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 3).await;
    let places = placement(&mut c).await;
    let partitions = all_partitions(&[("alpha", 3)]);
    let victim_address = places[&tp("alpha", 2)].clone();
    {
        let victim = cluster.server_at(&victim_address);
        victim.kill_9();
        victim.env = vec![("XO_CRASH_AT".into(), "partition::after_marker_append".into())];
        victim.restart();
    }
    let mut p = init(&mut c, "t51", 60_000).await;
    assert_eq!(add(&mut c, &p, &partitions).await, CoordCode::None as i32);
    let mut expected = BTreeMap::new();
    for partition in &partitions {
        let batch = values("marker-crash", partition, 3);
        produce(&places, &mut p, partition, &batch).await;
        expected.insert(partition.clone(), batch);
    }
    assert_eq!(end(&mut c, &mut p, true).await, CoordCode::None as i32);
    let victim = cluster.server_at(&victim_address);
    let status = victim.wait_for_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()), "partition server did not crash at its marker");
    victim.env.clear();
    victim.restart();
    settle(&places, &partitions).await;
    assert_committed(&places, &expected).await;
    let deadline = Instant::now() + SETTLE_WAIT_MAX;
    while describe_state(&mut c, "t51").await != "CompleteCommit" {
        assert!(Instant::now() < deadline, "commit never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- t60: delayed produce ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_delayed_produce_from_an_old_epoch_is_rejected() {
    // Proves: a batch of transaction N held back in the network and
    // delivered after N committed — and again after N+1 began on the same
    // partition — is rejected with INVALID_PRODUCER_EPOCH, never appended,
    // and so never lands in N+1 (the hole KIP-890 closed in Kafka).
    let cluster = Cluster::start(&[], &[]).await;
    let mut c = cluster.coordinator_client().await;
    create_topic(&mut c, "alpha", 1).await;
    let places = placement(&mut c).await;
    let a0 = tp("alpha", 0);
    let mut p = init(&mut c, "t60", 60_000).await;
    assert_eq!(add(&mut c, &p, std::slice::from_ref(&a0)).await, CoordCode::None as i32);
    let first = values("n", &a0, 2);
    produce(&places, &mut p, &a0, &first).await;
    let delayed = next_batch(&mut p, &a0, &values("delayed", &a0, 1));
    assert_eq!(end(&mut c, &mut p, true).await, CoordCode::None as i32);
    settle(&places, std::slice::from_ref(&a0)).await;
    assert_eq!(send(&places, &a0, delayed.clone()).await.0, PartCode::InvalidProducerEpoch as i32);

    assert_eq!(add(&mut c, &p, std::slice::from_ref(&a0)).await, CoordCode::None as i32);
    let second = values("n+1", &a0, 2);
    produce(&places, &mut p, &a0, &second).await;
    assert_eq!(send(&places, &a0, delayed).await.0, PartCode::InvalidProducerEpoch as i32);
    assert_eq!(end(&mut c, &mut p, true).await, CoordCode::None as i32);
    settle(&places, std::slice::from_ref(&a0)).await;
    let committed: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_committed(&places, &BTreeMap::from([(a0.clone(), committed.clone())])).await;
    let uncommitted = read(&places, &a0, IsolationLevel::ReadUncommitted).await;
    assert_eq!(uncommitted, committed, "the delayed batch was never appended");
}
