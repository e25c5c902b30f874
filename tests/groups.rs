//! Goal: prove the coordinator's consumer groups against real processes (the
//! `xo` binary as one coordinator and three partition servers) driven by
//! the xo-client library: members of a group split the partitions and
//! rebalance when one leaves or goes silent; plain commits are read back by
//! `committed()`, also after the coordinator is killed and restarted (the
//! offsets live in `__consumer_offsets`, not in the coordinator's memory);
//! a member of an old generation cannot commit, plainly or in a
//! transaction; transactional offsets become visible exactly when their
//! transaction commits, never when it aborts, and `committed()` waits
//! while the transaction is open instead of answering stale offsets.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{Cluster, connect_coordinator};
use xo_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, Error, NewTopic, Offset, OffsetReset,
    ProducerConfig, ProducerRecord, TopicPartition, TransactionalProducer,
};
use xo_proto::coordinator::{self as pb, ErrorCode, OffsetFetchRequest};

/// How long a group gets to settle into the expected assignment.
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(60);
const INPUT: &str = "in";
const INPUT_PARTITIONS: u32 = 4;

async fn start() -> (Cluster, ClientConfig) {
    let cluster = Cluster::start(&[], &[]).await;
    let config = client_config(&cluster);
    let admin = Admin::new(config.clone()).unwrap();
    admin.create_topic(NewTopic::new(INPUT, INPUT_PARTITIONS)).await.unwrap();
    admin.create_topic(NewTopic::new("out", 1)).await.unwrap();
    (cluster, config)
}

fn client_config(cluster: &Cluster) -> ClientConfig {
    let mut config = ClientConfig::new(&cluster.coordinator.addr.to_string());
    config.request_timeout = Duration::from_secs(5);
    config.operation_timeout = Duration::from_secs(30);
    config
}

fn member(config: &ClientConfig, group: &str) -> Consumer {
    let mut consumer_config = ConsumerConfig::new(config.clone()).group(group);
    consumer_config.offset_reset = OffsetReset::Earliest;
    consumer_config.session_timeout = Duration::from_millis(1_500);
    consumer_config.heartbeat_interval = Duration::from_millis(100);
    consumer_config.fetch_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(consumer_config).unwrap();
    consumer.subscribe(&[INPUT], group).unwrap();
    consumer
}

fn tp(partition: u32) -> TopicPartition {
    TopicPartition::new(INPUT, partition)
}

/// Polls every consumer in turn until `done` holds for their assignments.
async fn settle(consumers: &mut [&mut Consumer], done: impl Fn(&[Vec<TopicPartition>]) -> bool) {
    let deadline = Instant::now() + SETTLE_WAIT_MAX;
    loop {
        for c in consumers.iter_mut() {
            c.poll(Duration::from_millis(50)).await.unwrap();
        }
        let assignments: Vec<Vec<TopicPartition>> =
            consumers.iter().map(|c| c.assignment()).collect();
        if done(&assignments) {
            return;
        }
        assert!(Instant::now() < deadline, "group did not settle: {assignments:?}");
    }
}

/// Every input partition exactly once over the members, each with `share`.
fn split_evenly(assignments: &[Vec<TopicPartition>], share: usize) -> bool {
    let all: BTreeSet<&TopicPartition> = assignments.iter().flatten().collect();
    let total: usize = assignments.iter().map(Vec::len).sum();
    total == INPUT_PARTITIONS as usize
        && all.len() == total
        && assignments.iter().all(|a| a.len() == share)
}

async fn committed(consumer: &Consumer, partition: u32) -> Option<i64> {
    consumer.committed(&[tp(partition)]).await.unwrap()[&tp(partition)].map(|o| o.0)
}

/// The coordinator's raw OffsetFetch answer code for one partition.
async fn offset_fetch_code(cluster: &Cluster, group: &str, partition: u32) -> ErrorCode {
    let mut client = connect_coordinator(cluster.coordinator.addr).await.unwrap();
    let request = OffsetFetchRequest {
        group_id: group.into(),
        partitions: vec![pb::TopicPartition { topic: INPUT.into(), partition }],
    };
    let response = client.offset_fetch(request).await.unwrap().into_inner();
    ErrorCode::try_from(response.error).unwrap()
}

/// The coordinator's code, also when the transactional producer wrapped
/// the refusal as "abort the transaction".
fn group_code(e: &Error) -> Option<ErrorCode> {
    match e {
        Error::TransactionAbortable { cause } => cause.coordinator_code(),
        e => e.coordinator_code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t10_members_split_partitions_and_rebalance_when_one_leaves() {
    // Proves: one member gets every partition; a second one joining makes
    // them split 2/2 with no partition owned twice; when it leaves, the
    // first gets all four back.
    let (_cluster, config) = start().await;
    let mut a = member(&config, "split");
    settle(&mut [&mut a], |x| split_evenly(x, 4)).await;
    let first_generation = a.group_metadata().generation_id;
    let mut b = member(&config, "split");
    settle(&mut [&mut a, &mut b], |x| split_evenly(x, 2)).await;
    assert!(a.group_metadata().generation_id > first_generation);
    assert_eq!(a.group_metadata().generation_id, b.group_metadata().generation_id);
    b.close().await.unwrap();
    settle(&mut [&mut a], |x| split_evenly(x, 4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t11_a_silent_member_is_evicted_after_its_session_timeout() {
    // Proves: a member that stops heartbeating without leaving (dropped,
    // as if its process died) loses its partitions once its session times
    // out, and the survivor takes them all.
    let (_cluster, config) = start().await;
    let mut a = member(&config, "evict");
    let mut b = member(&config, "evict");
    settle(&mut [&mut a, &mut b], |x| split_evenly(x, 2)).await;
    let silent_since = Instant::now();
    drop(b);
    settle(&mut [&mut a], |x| split_evenly(x, 4)).await;
    assert!(
        silent_since.elapsed() >= Duration::from_millis(1_000),
        "evicted only after (about) the 1.5 s session timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t20_plain_commits_are_read_back_also_after_a_coordinator_restart() {
    // Proves: a member's commit is what committed() returns, to it and to
    // another consumer of the group; a later commit replaces it; after the
    // coordinator is killed -9 and restarted, the offsets are read back from
    // `__consumer_offsets` on the partition servers.
    let (mut cluster, config) = start().await;
    let mut a = member(&config, "plain");
    settle(&mut [&mut a], |x| split_evenly(x, 4)).await;
    assert_eq!(committed(&a, 1).await, None, "nothing committed yet");
    a.commit_offsets(&[(tp(1), Offset(42)), (tp(2), Offset(7))]).await.unwrap();
    a.commit_offsets(&[(tp(1), Offset(43))]).await.unwrap();
    assert_eq!(committed(&a, 1).await, Some(43));
    assert_eq!(committed(&a, 2).await, Some(7));
    a.close().await.unwrap();

    cluster.coordinator.kill_9();
    cluster.coordinator.restart();
    cluster.wait_registered().await;
    let mut reader_config = ConsumerConfig::new(config.clone()).group("plain");
    reader_config.offset_reset = OffsetReset::Earliest;
    let reader = Consumer::new(reader_config).unwrap();
    assert_eq!(committed(&reader, 1).await, Some(43));
    assert_eq!(committed(&reader, 2).await, Some(7));
    assert_eq!(committed(&reader, 3).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t30_a_commit_from_an_old_generation_fails() {
    // Proves: once a second member joined, the first one's commit with its
    // old generation is refused with ILLEGAL_GENERATION (abortable) and
    // changes nothing; after it rejoins (next poll) it can commit again.
    let (_cluster, config) = start().await;
    let mut a = member(&config, "zombie");
    settle(&mut [&mut a], |x| split_evenly(x, 4)).await;
    a.commit_offsets(&[(tp(0), Offset(5))]).await.unwrap();
    let mut b = member(&config, "zombie");
    settle(&mut [&mut b], |x| !x[0].is_empty()).await;
    assert!(b.group_metadata().generation_id > a.group_metadata().generation_id);
    let stale = a.commit_offsets(&[(tp(0), Offset(99))]).await.unwrap_err();
    assert_eq!(group_code(&stale), Some(ErrorCode::IllegalGeneration), "{stale:?}");
    assert!(stale.is_abortable());
    assert_eq!(committed(&b, 0).await, Some(5), "the zombie's commit left no trace");
    settle(&mut [&mut a, &mut b], |x| split_evenly(x, 2)).await;
    let owner = if a.assignment().contains(&tp(0)) { &mut a } else { &mut b };
    owner.commit_offsets(&[(tp(0), Offset(6))]).await.unwrap();
    assert_eq!(committed(&a, 0).await, Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t40_transactional_offsets_visible_on_commit_not_on_abort() {
    // Proves: offsets sent in a transaction are UNSTABLE while it is open
    // (and committed() waits the transaction out rather than answer the old
    // offset), become the committed offsets when it commits, and leave no
    // trace when it aborts.
    let (cluster, config) = start().await;
    let mut consumer = member(&config, "eos");
    settle(&mut [&mut consumer], |x| split_evenly(x, 4)).await;
    let producer =
        TransactionalProducer::new(ProducerConfig::new(config.clone()), "eos-0").unwrap();
    producer.init_transactions().await.unwrap();

    producer.begin_transaction().unwrap();
    let sent = producer.send(ProducerRecord::new("out", "v1"));
    producer
        .send_offsets_to_transaction([(tp(0), Offset(5))], &consumer.group_metadata())
        .await
        .unwrap();
    assert_eq!(offset_fetch_code(&cluster, "eos", 0).await, ErrorCode::UnstableOffsetCommit);
    assert_eq!(offset_fetch_code(&cluster, "eos", 1).await, ErrorCode::None, "others are stable");
    // committed() retries through UNSTABLE: started now, it answers only
    // once the commit below lands, and with the new offset.
    let reader_config = ConsumerConfig::new(config.clone()).group("eos");
    let reader = Consumer::new(reader_config).unwrap();
    let waiting = committed(&reader, 0);
    tokio::pin!(waiting);
    tokio::select! {
        answer = &mut waiting => panic!("committed() answered {answer:?} while offsets are pending"),
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    let (_, answer) = tokio::join!(async { producer.commit_transaction().await.unwrap() }, waiting);
    sent.await.unwrap();
    assert_eq!(answer, Some(5));
    assert_eq!(committed(&consumer, 0).await, Some(5));

    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction([(tp(0), Offset(9))], &consumer.group_metadata())
        .await
        .unwrap();
    producer.abort_transaction().await.unwrap();
    assert_eq!(committed(&consumer, 0).await, Some(5), "aborted offsets are never visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t41_a_zombie_cannot_commit_offsets_in_a_transaction() {
    // Proves: a member rebalanced out (old generation) sending offsets in
    // its transaction is refused with ILLEGAL_GENERATION, an abortable
    // error: the application aborts and nothing becomes visible.
    let (_cluster, config) = start().await;
    let mut a = member(&config, "eos-zombie");
    settle(&mut [&mut a], |x| split_evenly(x, 4)).await;
    let old = a.group_metadata();
    let mut b = member(&config, "eos-zombie");
    settle(&mut [&mut b], |x| !x[0].is_empty()).await;
    let producer =
        TransactionalProducer::new(ProducerConfig::new(config.clone()), "eos-zombie-0").unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let refused =
        producer.send_offsets_to_transaction([(tp(0), Offset(3))], &old).await.unwrap_err();
    assert_eq!(group_code(&refused), Some(ErrorCode::IllegalGeneration), "{refused:?}");
    assert!(refused.is_abortable());
    producer.abort_transaction().await.unwrap();
    assert_eq!(committed(&b, 0).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t50_offsets_of_a_transaction_open_across_a_coordinator_restart() {
    // Proves: when the coordinator restarts while a transaction holds a
    // group's offsets, the group's offsets are UNSTABLE (not the stale
    // value) until that transaction ends; once the producer commits it, the
    // offsets are read back from the log.
    let (mut cluster, config) = start().await;
    let mut consumer = member(&config, "restart");
    settle(&mut [&mut consumer], |x| split_evenly(x, 4)).await;
    consumer.commit_offsets(&[(tp(2), Offset(1))]).await.unwrap();
    let producer =
        TransactionalProducer::new(ProducerConfig::new(config.clone()), "restart-0").unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction([(tp(2), Offset(20))], &consumer.group_metadata())
        .await
        .unwrap();
    consumer.close().await.unwrap();

    cluster.coordinator.kill_9();
    cluster.coordinator.restart();
    cluster.wait_registered().await;
    assert_eq!(offset_fetch_code(&cluster, "restart", 2).await, ErrorCode::UnstableOffsetCommit);
    producer.commit_transaction().await.unwrap();
    let mut reader_config = ConsumerConfig::new(config.clone()).group("restart");
    reader_config.offset_reset = OffsetReset::Earliest;
    let reader = Consumer::new(reader_config).unwrap();
    assert_eq!(committed(&reader, 2).await, Some(20));
}
