//! Goal: prove the driver's bookkeeping around txn_core's decisions, in
//! process and without partition servers: idle transactional ids are
//! forgotten durably (and come back with a new producer id), identities
//! survive a restart, and verification follows the record.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use xo_coordinator::driver::{Coordinator, CoordinatorConfig};
use xo_coordinator::error::ServiceError;
use xo_coordinator::{CoordinatorError, TopicPartition, TxnConfig, TxnState};

fn config(idle_ms: u64) -> CoordinatorConfig {
    CoordinatorConfig {
        txn: TxnConfig { transactional_id_idle_ms_max: idle_ms, ..TxnConfig::default() },
        expiry_check_interval: Duration::from_secs(3600),
    }
}

/// sled frees the directory a moment after the last handle is dropped.
async fn reopen(dir: &Path, config: CoordinatorConfig) -> Arc<Coordinator> {
    for _ in 0..100 {
        if let Ok(coordinator) = Coordinator::open(dir, config.clone()).await {
            return coordinator;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("coordinator state did not reopen");
}

#[tokio::test]
async fn t10_idle_id_is_forgotten_durably_and_restarts_with_a_new_producer_id() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = reopen(dir.path(), config(1)).await;
    let first = coordinator.init_producer_id("idle", 10_000, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    coordinator.expire_once().await;
    assert_eq!(coordinator.describe("idle").await, None);
    assert!(coordinator.list().await.is_empty());
    drop(coordinator);
    let coordinator = reopen(dir.path(), config(60_000)).await;
    assert_eq!(coordinator.describe("idle").await, None, "the deletion was durable");
    let again = coordinator.init_producer_id("idle", 10_000, None).await.unwrap();
    assert_ne!(again.producer_id, first.producer_id);
    assert_eq!(again.producer_epoch.0, 0);
}

#[tokio::test]
async fn t11_identities_and_open_transactions_survive_restart() {
    // Without partition servers, topics cannot be created, so the record
    // is opened with no partitions: AddPartitions of nothing is a no-op,
    // and an unknown partition is refused.
    let dir = tempfile::tempdir().unwrap();
    let coordinator = reopen(dir.path(), config(60_000)).await;
    let who = coordinator.init_producer_id("app", 10_000, None).await.unwrap();
    let unknown = BTreeSet::from([TopicPartition::new("nope", 0)]);
    assert!(matches!(
        coordinator.add_partitions("app", who, unknown).await,
        Err(ServiceError::UnknownTopicOrPartition(_))
    ));
    let bumped = coordinator.init_producer_id("app", 10_000, Some(who)).await.unwrap();
    assert_eq!(bumped.producer_epoch.0, who.producer_epoch.0 + 1);
    drop(coordinator);
    let coordinator = reopen(dir.path(), config(60_000)).await;
    let record = coordinator.describe("app").await.unwrap();
    assert_eq!((record.current(), record.state), (bumped, TxnState::Empty));
    // The old identity is fenced after the restart too.
    assert_eq!(
        coordinator.end_txn("app", who, true).await,
        Err(ServiceError::Txn(CoordinatorError::ProducerFenced))
    );
    assert!(!coordinator.verify(bumped, &TopicPartition::new("nope", 0)).await);
    assert_ne!(coordinator.coordinator_epoch(), 0, "every start bumps the coordinator epoch");
}

#[tokio::test]
async fn t12_a_request_dropped_while_persisting_leaves_the_id_usable() {
    // Proves: a request whose future is dropped in the middle of its persist
    // (what tonic does when the client gives up: timeout, reset) counts as a
    // failed write. Before, its pending mark stayed and every later request
    // on the id — and its transaction timeout — was refused as a concurrent
    // transaction, forever. Found by the deterministic simulation.
    let dir = tempfile::tempdir().unwrap();
    let coordinator = reopen(dir.path(), config(60_000)).await;
    let mut who = coordinator.init_producer_id("app", 10_000, None).await.unwrap();
    // Polled once, a request runs up to its first wait: the flush of its
    // write (which may win the race and be done already: then try again).
    const CUT_ATTEMPTS_MAX: usize = 100;
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let mut cut_once = false;
    for _ in 0..CUT_ATTEMPTS_MAX {
        let mut call = Box::pin(coordinator.init_producer_id("app", 10_000, Some(who)));
        match call.as_mut().poll(&mut context) {
            std::task::Poll::Ready(answer) => who = answer.unwrap(),
            std::task::Poll::Pending => {
                drop(call);
                cut_once = true;
                break;
            }
        }
    }
    assert!(cut_once, "no request was ever cut in the middle of its write");
    let record = coordinator.describe("app").await.unwrap();
    assert_eq!(record.pending, None, "the dropped request's pending mark is gone");
    let next = coordinator.init_producer_id("app", 10_000, Some(who)).await;
    assert!(next.is_ok(), "the id refuses requests after a dropped one: {next:?}");
}
