//! Goal: prove that the client library's producers, consumer and admin work
//! against a real cluster (the `xo` binary as one coordinator and three
//! partition servers): metadata comes from the bootstrap coordinator; a
//! committed transaction is visible to read_committed consumers and an
//! aborted one is not (though read_uncommitted sees its records); every
//! commit and abort moves the producer to a new epoch; a newer instance of
//! a transactional id, or the coordinator's timeout, fences the old
//! producer and the client reports that as fatal.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::Cluster;
use xo_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, IsolationLevel, ListTransactionsFilter,
    NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
    TransactionalProducer,
};

/// How long a consumer gets to see what it expects.
const CONSUME_WAIT_MAX: Duration = Duration::from_secs(60);

async fn start() -> (Cluster, ClientConfig, Admin) {
    let cluster = Cluster::start(&[], &[]).await;
    let mut config = ClientConfig::new(&cluster.coordinator.addr.to_string());
    config.request_timeout = Duration::from_secs(5);
    config.operation_timeout = Duration::from_secs(30);
    let admin = Admin::new(config.clone()).unwrap();
    (cluster, config, admin)
}

fn partitions(topics: &[(&str, u32)]) -> Vec<TopicPartition> {
    topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t, p))).collect()
}

/// Values read from `partitions` at `isolation` until `done` holds for
/// them (then a short extra poll, so an unexpected extra record shows up).
async fn read_until(
    config: &ClientConfig,
    partitions: &[TopicPartition],
    isolation: IsolationLevel,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut consumer_config = ConsumerConfig::new(config.clone());
    consumer_config.offset_reset = OffsetReset::Earliest;
    consumer_config.isolation = isolation;
    consumer_config.fetch_wait = Duration::from_millis(200);
    let mut consumer = Consumer::new(consumer_config).unwrap();
    consumer.assign(partitions).unwrap();
    let deadline = Instant::now() + CONSUME_WAIT_MAX;
    let mut values = Vec::new();
    while !done(&values) {
        assert!(Instant::now() < deadline, "gave up waiting; read so far: {values:?}");
        for r in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    for r in consumer.poll(Duration::from_millis(300)).await.unwrap() {
        values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
    }
    values
}

fn set(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t10_idempotent_producer_and_admin_through_the_coordinator() {
    let (_cluster, config, admin) = start().await;
    let created = admin.create_topic(NewTopic::new("plain", 3)).await.unwrap();
    assert_eq!(created.partitions.len(), 3);
    assert!(admin.list_topics().await.unwrap().contains(&"plain".to_string()));
    let producer = Producer::new(ProducerConfig::new(config.clone())).await.unwrap();
    let (producer_id, _) = producer.producer_id().unwrap();
    let sent: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
    let pending: Vec<_> =
        sent.iter().map(|v| producer.send(ProducerRecord::new("plain", v).key(v))).collect();
    for ack in futures::future::join_all(pending).await {
        ack.unwrap();
    }
    producer.close().await.unwrap();
    let all = partitions(&[("plain", 3)]);
    let values =
        read_until(&config, &all, IsolationLevel::ReadCommitted, |v| v.len() >= sent.len()).await;
    assert_eq!(values.len(), sent.len(), "exactly once");
    assert_eq!(set(&values), set(&sent));
    // The partitions keep dedupe state for our producer.
    let mut described = Vec::new();
    for p in 0..3 {
        described.extend(admin.describe_producers("plain", p).await.unwrap());
    }
    assert!(described.iter().any(|d| d.producer_id == producer_id), "{described:?}");
    let offsets = admin.partition_offsets("plain", 0).await.unwrap();
    assert_eq!(offsets.high_watermark, offsets.last_stable_offset);
    admin.delete_topic("plain").await.unwrap();
    assert!(!admin.list_topics().await.unwrap().contains(&"plain".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t20_committed_is_visible_aborted_is_not_and_epochs_move_on() {
    let (_cluster, config, admin) = start().await;
    admin.create_topic(NewTopic::new("a", 2)).await.unwrap();
    admin.create_topic(NewTopic::new("b", 1)).await.unwrap();
    let producer = TransactionalProducer::new(ProducerConfig::new(config.clone()), "tx-1").unwrap();
    assert!(producer.begin_transaction().is_err(), "init_transactions comes first");
    producer.init_transactions().await.unwrap();
    let first = producer.producer_id().unwrap();

    let mut committed = Vec::new();
    producer.begin_transaction().unwrap();
    let mut pending = Vec::new();
    for i in 0..10 {
        committed.push(format!("c1-a-{i}"));
        committed.push(format!("c1-b-{i}"));
    }
    for v in &committed {
        let topic = if v.contains("-a-") { "a" } else { "b" };
        pending.push(producer.send(ProducerRecord::new(topic, v).key(v)));
    }
    producer.commit_transaction().await.unwrap();
    for ack in futures::future::join_all(pending).await {
        ack.unwrap();
    }
    let second = producer.producer_id().unwrap();
    assert_eq!(second.0, first.0);
    assert!(second.1 > first.1, "commit bumps the epoch: {first:?} → {second:?}");
    let described = admin.describe_transaction("tx-1").await.unwrap();
    assert_eq!(described.producer_epoch, second.1);
    let listed = admin.list_transactions(&ListTransactionsFilter::default()).await.unwrap();
    assert!(listed.iter().any(|t| t.transactional_id == "tx-1"));

    // An aborted transaction whose records were all written.
    producer.begin_transaction().unwrap();
    let aborted: Vec<String> = (0..10).map(|i| format!("ab-{i}")).collect();
    let pending: Vec<_> = aborted
        .iter()
        .enumerate()
        .map(|(i, v)| producer.send(ProducerRecord::new(if i % 2 == 0 { "a" } else { "b" }, v)))
        .collect();
    for ack in futures::future::join_all(pending).await {
        ack.unwrap();
    }
    producer.abort_transaction().await.unwrap();
    let third = producer.producer_id().unwrap();
    assert!(third.1 > second.1, "abort bumps the epoch too");

    // An empty transaction needs no coordinator round trip.
    producer.begin_transaction().unwrap();
    producer.commit_transaction().await.unwrap();
    assert_eq!(producer.producer_id().unwrap(), third);

    producer.begin_transaction().unwrap();
    let after: Vec<String> = (0..6).map(|i| format!("c2-{i}")).collect();
    let pending: Vec<_> = after
        .iter()
        .enumerate()
        .map(|(i, v)| producer.send(ProducerRecord::new(if i % 2 == 0 { "a" } else { "b" }, v)))
        .collect();
    producer.commit_transaction().await.unwrap();
    for ack in futures::future::join_all(pending).await {
        ack.unwrap();
    }
    committed.extend(after.iter().cloned());

    let all = partitions(&[("a", 2), ("b", 1)]);
    let expected = set(&committed);
    let read =
        read_until(&config, &all, IsolationLevel::ReadCommitted, |v| set(v).is_superset(&expected))
            .await;
    assert_eq!(read.len(), committed.len(), "each committed record once: {read:?}");
    assert!(read.iter().all(|v| !v.starts_with("ab-")), "an aborted record was read: {read:?}");
    // The aborted records are in the log: read_uncommitted sees them.
    let everything = expected.union(&set(&aborted)).cloned().collect::<BTreeSet<_>>();
    let raw = read_until(&config, &all, IsolationLevel::ReadUncommitted, |v| {
        set(v).is_superset(&everything)
    })
    .await;
    assert_eq!(raw.len(), committed.len() + aborted.len());
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t30_a_newer_instance_fences_the_old_one() {
    let (_cluster, config, admin) = start().await;
    admin.create_topic(NewTopic::new("f", 1)).await.unwrap();
    let old = TransactionalProducer::new(ProducerConfig::new(config.clone()), "tx-f").unwrap();
    old.init_transactions().await.unwrap();
    old.begin_transaction().unwrap();
    old.send(ProducerRecord::new("f", "zombie")).await.unwrap();

    // The new instance aborts the old one's open transaction and fences it.
    let new = TransactionalProducer::new(ProducerConfig::new(config.clone()), "tx-f").unwrap();
    new.init_transactions().await.unwrap();

    let error = old.commit_transaction().await.unwrap_err();
    assert!(error.is_fatal() && error.is_fenced(), "{error:?}");
    assert!(old.begin_transaction().unwrap_err().is_fatal(), "the old producer stays unusable");

    new.begin_transaction().unwrap();
    let ack = new.send(ProducerRecord::new("f", "live"));
    new.commit_transaction().await.unwrap();
    ack.await.unwrap();
    let all = partitions(&[("f", 1)]);
    let read =
        read_until(&config, &all, IsolationLevel::ReadCommitted, |v| v.contains(&"live".into()))
            .await;
    assert_eq!(read, vec!["live".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t31_a_transaction_past_its_timeout_is_fenced() {
    let (_cluster, config, admin) = start().await;
    admin.create_topic(NewTopic::new("slow", 1)).await.unwrap();
    let mut producer_config = ProducerConfig::new(config.clone());
    producer_config.transaction_timeout = Duration::from_millis(500);
    let producer = TransactionalProducer::new(producer_config, "tx-slow").unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    producer.send(ProducerRecord::new("slow", "late")).await.unwrap();
    // The coordinator checks for overdue transactions every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let error = producer.commit_transaction().await.unwrap_err();
    assert!(error.is_fatal() && error.is_fenced(), "{error:?}");
    let offsets = admin.partition_offsets("slow", 0).await.unwrap();
    assert_eq!(offsets.last_stable_offset, offsets.high_watermark, "the abort marker landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t40_abortable_send_error_then_abort_and_retry() {
    // Proves: a record to a partition that does not exist fails the
    // transaction as abortable; after abort the producer works again.
    let (_cluster, config, admin) = start().await;
    admin.create_topic(NewTopic::new("x", 1)).await.unwrap();
    let producer = TransactionalProducer::new(ProducerConfig::new(config.clone()), "tx-x").unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let bad = producer.send(ProducerRecord::new("x", "nope").partition(7)).await.unwrap_err();
    assert_eq!(bad.class(), xo_client::ErrorClass::Invalid, "{bad:?}");
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    let ack = producer.send(ProducerRecord::new("x", "ok"));
    producer.commit_transaction().await.unwrap();
    ack.await.unwrap();
    let read = read_until(&config, &partitions(&[("x", 1)]), IsolationLevel::ReadCommitted, |v| {
        !v.is_empty()
    })
    .await;
    assert_eq!(read, vec!["ok".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t50_admin_lists_and_aborts_an_open_transaction() {
    // Proves: the admin client sees an open transaction with its partitions,
    // an operator abort ends it (the LSO catches up, its record is never
    // read committed) and fences its producer.
    let (_cluster, config, admin) = start().await;
    admin.create_topic(NewTopic::new("ops", 1)).await.unwrap();
    let producer =
        TransactionalProducer::new(ProducerConfig::new(config.clone()), "tx-ops").unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    producer.send(ProducerRecord::new("ops", "stuck")).await.unwrap();
    let open = ListTransactionsFilter { states: vec!["Ongoing".into()], ..Default::default() };
    let listed = admin.list_transactions(&open).await.unwrap();
    let txn = listed.iter().find(|t| t.transactional_id == "tx-ops").expect("listed as Ongoing");
    assert_eq!(txn.partitions, vec![TopicPartition::new("ops", 0)]);
    assert!(txn.start_time_ms.is_some());
    let offsets = admin.partition_offsets("ops", 0).await.unwrap();
    assert!(offsets.last_stable_offset < offsets.high_watermark, "the open txn holds the LSO");
    assert!(admin.find_hanging_transactions(&["ops"]).await.unwrap().is_empty(), "not overdue");

    admin.abort_transaction("tx-ops").await.unwrap();
    let deadline = Instant::now() + CONSUME_WAIT_MAX;
    loop {
        let o = admin.partition_offsets("ops", 0).await.unwrap();
        if o.last_stable_offset == o.high_watermark {
            break;
        }
        assert!(Instant::now() < deadline, "abort marker never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = producer.commit_transaction().await.unwrap_err();
    assert!(error.is_fatal() && error.is_fenced(), "{error:?}");
    let described = admin.describe_transaction("tx-ops").await.unwrap();
    assert_ne!(described.state, "Ongoing");
}

#[test]
fn t60_a_transactional_producer_whose_runtime_shut_down_fails_at_once() {
    // Proves: once the runtime that ran the producer's background tasks is
    // gone, a send waiting in the open transaction, commit_transaction and
    // abort_transaction fail well under a second with a fatal error saying
    // why, instead of hanging.
    let main = tokio::runtime::Runtime::new().unwrap();
    let (_cluster, config, admin) = main.block_on(start());
    main.block_on(admin.create_topic(NewTopic::new("gone", 1))).unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let mut producer_config = ProducerConfig::new(config.clone());
    // The second record stays in its batch until the commit flushes it.
    producer_config.linger = Duration::from_secs(30);
    let producer = {
        let _runtime = first.enter();
        TransactionalProducer::new(producer_config, "tx-gone").unwrap()
    };
    first.block_on(async {
        producer.init_transactions().await.unwrap();
        producer.begin_transaction().unwrap();
        let ack = producer.send(ProducerRecord::new("gone", "sent"));
        producer.flush().await;
        ack.await.unwrap();
    });
    let waiting = producer.send(ProducerRecord::new("gone", "waiting"));
    drop(first);

    main.block_on(async {
        let started = Instant::now();
        let errors = [
            waiting.await.unwrap_err(),
            producer.commit_transaction().await.unwrap_err(),
            producer.abort_transaction().await.unwrap_err(),
        ];
        let took = started.elapsed();
        for e in errors {
            assert!(e.is_fatal(), "{e:?}");
            assert!(e.to_string().contains("task stopped: it was cancelled"), "{e}");
        }
        assert!(took < Duration::from_millis(500), "took {took:?}");
    });
}
