//! The marker writer: takes the markers of one decided transaction (commit
//! or abort, under the transaction's own producer id and epoch) to every
//! partition of it, grouped into one WriteTxnMarkers request per partition
//! server, and retries with capped exponential backoff until every partition
//! has acknowledged. It never gives up: a transaction in PrepareCommit /
//! PrepareAbort must reach all its partitions or its LSOs stay held, and
//! retrying is safe because a partition answers a marker it already applied
//! with success and appends nothing.
//!
//! It does I/O only through [`MarkerSender`] (the partition servers' gRPC
//! client in production, a fake in tests) and learns where a partition lives
//! from a [`PartitionLocator`], asked again at every round so a partition
//! server that re-registered at another address is found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use xo_proto::{ProducerEpoch, ProducerId};

use crate::failpoints;
use crate::txn_metadata::{ProducerIdentity, TopicPartition};

/// First wait after a round in which some partition did not acknowledge.
pub const MARKER_BACKOFF_MS_MIN: u64 = 10;
/// Longest wait between two rounds: bounds how long a healed partition
/// server waits for its markers (and so how long its LSO stays held).
pub const MARKER_BACKOFF_MS_MAX: u64 = 2_000;
/// A partition server that does not answer within this is retried.
pub const MARKER_REQUEST_TIMEOUT_MS_MAX: u64 = 10_000;

/// The markers of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerSet {
    pub transactional_id: String,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub commit: bool,
    pub partitions: BTreeSet<TopicPartition>,
}

impl MarkerSet {
    pub fn txn(&self) -> ProducerIdentity {
        ProducerIdentity::new(self.producer_id, self.producer_epoch)
    }
}

/// Where a partition lives, as the cluster metadata says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Server {
        server_id: String,
        address: String,
    },
    /// The topic was deleted: there is no transaction left to end.
    TopicGone,
    /// Its server is not registered (yet): keep trying.
    Unplaced,
}

pub trait PartitionLocator: Send + Sync {
    fn locate(&self, partition: &TopicPartition) -> Placement;
}

/// One partition's answer to a marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkerAck {
    /// The marker is in the partition's log (now, or from an earlier try).
    Written,
    /// Not applied; the message says why. Retried.
    Retry(String),
}

/// Sends one WriteTxnMarkers request to a partition server.
#[tonic::async_trait]
pub trait MarkerSender: Send + Sync {
    /// `Err` when the server could not be reached or failed the request as
    /// a whole; otherwise one answer per partition it answered for.
    async fn send(
        &self,
        address: &str,
        coordinator_epoch: i32,
        markers: &MarkerSet,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, MarkerAck)>, String>;
}

/// What writing one transaction's markers took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarkerReport {
    /// Rounds of requests (1 when nothing failed).
    pub rounds: u32,
    pub requests: u32,
}

pub struct MarkerWriter<S> {
    sender: S,
    coordinator_epoch: i32,
    /// Partitions that acknowledged a marker, over all transactions: with
    /// no failure, exactly one per partition per transaction.
    acked: AtomicU64,
    requests: AtomicU64,
}

impl<S: MarkerSender> MarkerWriter<S> {
    pub fn new(sender: S, coordinator_epoch: i32) -> MarkerWriter<S> {
        MarkerWriter {
            sender,
            coordinator_epoch,
            acked: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub fn sender(&self) -> &S {
        &self.sender
    }

    /// (partition acknowledgements, WriteTxnMarkers requests) so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.acked.load(Ordering::Relaxed), self.requests.load(Ordering::Relaxed))
    }

    /// Returns once every partition of `markers` acknowledged (or its topic
    /// is gone). Retries forever otherwise: see the module doc.
    pub async fn write(&self, locator: &dyn PartitionLocator, markers: &MarkerSet) -> MarkerReport {
        assert!(!markers.partitions.is_empty(), "a marker set names its partitions");
        let mut pending = markers.partitions.clone();
        let mut report = MarkerReport::default();
        let mut acked_here = 0usize;
        let mut backoff_ms = MARKER_BACKOFF_MS_MIN;
        loop {
            report.rounds += 1;
            let mut by_server: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
            for partition in pending.clone() {
                match locator.locate(&partition) {
                    Placement::Server { address, .. } => {
                        by_server.entry(address).or_default().push(partition)
                    }
                    Placement::TopicGone => {
                        tracing::info!(%partition, "topic deleted: its marker is moot");
                        pending.remove(&partition);
                    }
                    Placement::Unplaced => {
                        tracing::warn!(%partition, "partition has no registered server yet")
                    }
                }
            }
            let mut in_flight: FuturesUnordered<_> = by_server
                .into_iter()
                .map(|(address, partitions)| async move {
                    let timeout = Duration::from_millis(MARKER_REQUEST_TIMEOUT_MS_MAX);
                    let sent =
                        self.sender.send(&address, self.coordinator_epoch, markers, &partitions);
                    let result = match tokio::time::timeout(timeout, sent).await {
                        Ok(result) => result,
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    };
                    (address, partitions, result)
                })
                .collect();
            while let Some((address, asked, result)) = in_flight.next().await {
                report.requests += 1;
                self.requests.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(answers) => {
                        for (partition, ack) in answers {
                            match ack {
                                // Only partitions this request asked for count.
                                MarkerAck::Written if asked.contains(&partition) => {
                                    if pending.remove(&partition) {
                                        acked_here += 1;
                                        self.acked.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                MarkerAck::Written => {}
                                MarkerAck::Retry(why) => tracing::warn!(
                                    %partition, %address, txn = %markers.txn(), %why,
                                    "marker not applied; will retry"
                                ),
                            }
                        }
                    }
                    Err(why) => tracing::warn!(
                        %address, txn = %markers.txn(), %why, "marker request failed; will retry"
                    ),
                }
                if acked_here > 0 && !pending.is_empty() {
                    failpoints::crash_at(failpoints::AFTER_SOME_MARKERS);
                }
            }
            if pending.is_empty() {
                assert!(acked_here <= markers.partitions.len());
                return report;
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(MARKER_BACKOFF_MS_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A sender whose servers fail a scripted number of times, then apply
    /// markers (and answer a repeated one with success, like a partition).
    #[derive(Default)]
    struct FakeSender {
        failures_left: Mutex<HashMap<String, u32>>,
        /// Partitions that answer `Retry` this many times.
        partition_refusals: Mutex<HashMap<TopicPartition, u32>>,
        applied: Mutex<Vec<(TopicPartition, i32, bool)>>,
        requests: Mutex<Vec<(String, Vec<TopicPartition>)>>,
    }

    #[tonic::async_trait]
    impl MarkerSender for FakeSender {
        async fn send(
            &self,
            address: &str,
            coordinator_epoch: i32,
            markers: &MarkerSet,
            partitions: &[TopicPartition],
        ) -> Result<Vec<(TopicPartition, MarkerAck)>, String> {
            self.requests.lock().unwrap().push((address.to_string(), partitions.to_vec()));
            if let Some(left) = self.failures_left.lock().unwrap().get_mut(address)
                && *left > 0
            {
                *left -= 1;
                return Err("connection refused".into());
            }
            let mut answers = Vec::new();
            for p in partitions {
                let mut refusals = self.partition_refusals.lock().unwrap();
                if let Some(left) = refusals.get_mut(p)
                    && *left > 0
                {
                    *left -= 1;
                    answers.push((p.clone(), MarkerAck::Retry("STORAGE_ERROR".into())));
                    continue;
                }
                self.applied.lock().unwrap().push((p.clone(), coordinator_epoch, markers.commit));
                answers.push((p.clone(), MarkerAck::Written));
            }
            Ok(answers)
        }
    }

    struct Map(HashMap<TopicPartition, Placement>);

    impl PartitionLocator for Map {
        fn locate(&self, partition: &TopicPartition) -> Placement {
            self.0.get(partition).cloned().unwrap_or(Placement::Unplaced)
        }
    }

    fn tp(topic: &str, p: u32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    fn on(server: &str) -> Placement {
        Placement::Server { server_id: server.into(), address: server.into() }
    }

    fn set(partitions: &[TopicPartition]) -> MarkerSet {
        MarkerSet {
            transactional_id: "app".into(),
            producer_id: ProducerId(7),
            producer_epoch: ProducerEpoch(3),
            commit: true,
            partitions: partitions.iter().cloned().collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn t10_one_request_per_server_when_nothing_fails() {
        // Proves: partitions are grouped per server (2 requests for 3
        // partitions on 2 servers), each marker carries the coordinator
        // epoch, and each partition is acknowledged exactly once.
        let locator = Map(HashMap::from([
            (tp("a", 0), on("s1")),
            (tp("a", 1), on("s2")),
            (tp("b", 0), on("s1")),
        ]));
        let writer = MarkerWriter::new(FakeSender::default(), 42);
        let report = writer.write(&locator, &set(&[tp("a", 0), tp("a", 1), tp("b", 0)])).await;
        assert_eq!(report, MarkerReport { rounds: 1, requests: 2 });
        let applied = writer.sender().applied.lock().unwrap().clone();
        assert_eq!(applied.len(), 3);
        assert!(applied.iter().all(|(_, epoch, commit)| *epoch == 42 && *commit));
        assert_eq!(writer.counters(), (3, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn t11_retries_with_backoff_until_every_partition_acked() {
        // Proves: an unreachable server is retried (with a growing wait)
        // until it answers; a partition answering an error is retried alone
        // while acknowledged ones are not asked again.
        let locator = Map(HashMap::from([(tp("a", 0), on("s1")), (tp("a", 1), on("s2"))]));
        let sender = FakeSender::default();
        sender.failures_left.lock().unwrap().insert("s2".into(), 4);
        sender.partition_refusals.lock().unwrap().insert(tp("a", 0), 2);
        let writer = MarkerWriter::new(sender, 1);
        let started = tokio::time::Instant::now();
        let report = writer.write(&locator, &set(&[tp("a", 0), tp("a", 1)])).await;
        assert_eq!(report.rounds, 5);
        // Waits of 10, 20, 40, 80 ms between the five rounds.
        assert_eq!(started.elapsed(), Duration::from_millis(150));
        let sender = writer.sender();
        let applied: Vec<_> = sender.applied.lock().unwrap().iter().map(|a| a.0.clone()).collect();
        assert_eq!(applied, vec![tp("a", 0), tp("a", 1)]);
        let requests = sender.requests.lock().unwrap();
        let asked_a0 = requests.iter().filter(|(_, ps)| ps.contains(&tp("a", 0))).count();
        assert_eq!(asked_a0, 3, "a-0 is not asked again once it acknowledged");
    }

    #[tokio::test(start_paused = true)]
    async fn t12_backoff_is_capped_and_deleted_topics_are_moot() {
        // Proves: the wait never exceeds MARKER_BACKOFF_MS_MAX, and a
        // partition whose topic is gone counts as done without a request.
        let locator =
            Map(HashMap::from([(tp("a", 0), on("s1")), (tp("gone", 0), Placement::TopicGone)]));
        let sender = FakeSender::default();
        sender.failures_left.lock().unwrap().insert("s1".into(), 12);
        let writer = MarkerWriter::new(sender, 1);
        let started = tokio::time::Instant::now();
        let report = writer.write(&locator, &set(&[tp("a", 0), tp("gone", 0)])).await;
        assert_eq!(report.rounds, 13);
        let uncapped: u64 = (0..12).map(|i| MARKER_BACKOFF_MS_MIN << i).sum();
        let capped: u64 =
            (0..12).map(|i| (MARKER_BACKOFF_MS_MIN << i).min(MARKER_BACKOFF_MS_MAX)).sum();
        assert!(capped < uncapped);
        assert_eq!(started.elapsed(), Duration::from_millis(capped));
        let requests = writer.sender().requests.lock().unwrap();
        assert!(requests.iter().all(|(_, ps)| ps == &vec![tp("a", 0)]));
    }
}
