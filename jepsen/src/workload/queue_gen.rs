//! What the `queue` workload's processes do next: a pure, seeded generator of the
//! operations of Jepsen's Kafka queue workload, ready for the client library to
//! execute. No I/O; the workload maps each planned operation onto a
//! `TransactionalProducer` and a read-committed `Consumer`.
//!
//! - A transaction is 1..=`txn_mops_max` micro-operations, each a send of the next
//!   value of a key or a poll; all sends make an `f` of `send`, all polls `poll`,
//!   a mix `txn`.
//! - A fraction `abort_probability` of transactions with sends is aborted on purpose
//!   (recorded as `fail`): their values must never be read.
//! - Now and then a process changes what its consumer reads: `assign` of a few keys
//!   or `subscribe` to topics, Jepsen's two consumer modes.
//! - Keys are `topic/partition` over `topics`; lower partitions are picked more often
//!   (a geometric spread), so some keys see contention while all see traffic.
//! - Values are unique per key and increase in the order planned.

use std::collections::HashMap;

use crate::history::{F, Key, Mop, Val};
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct QueueGenConfig {
    pub topics: Vec<String>,
    pub partitions: u32,
    /// Micro-operations per transaction, at most.
    pub txn_mops_max: usize,
    pub abort_probability: f64,
    /// Chance that the next operation re-assigns or re-subscribes the consumer.
    pub rebalance_probability: f64,
    /// Keys in one `assign`, at most.
    pub assign_keys_max: usize,
}

impl Default for QueueGenConfig {
    fn default() -> QueueGenConfig {
        QueueGenConfig {
            topics: vec!["t0".into(), "t1".into()],
            partitions: 4,
            txn_mops_max: 4,
            abort_probability: 0.1,
            rebalance_probability: 0.05,
            assign_keys_max: 4,
        }
    }
}

/// One operation to execute and record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A transaction (or a send-only / poll-only one, per `f`); `abort`: end it with
    /// an abort on purpose instead of a commit.
    Txn { f: F, mops: Vec<Mop>, abort: bool },
    /// Assign the consumer these keys (`seek_to_beginning` rewinds them).
    Assign { keys: Vec<Key>, seek_to_beginning: bool },
    /// Subscribe the consumer to these topics (the value recorded is their keys).
    Subscribe { topics: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct QueueGen {
    config: QueueGenConfig,
    rng: Rng,
    /// The last value planned per key.
    last_value: HashMap<Key, u64>,
}

impl QueueGen {
    pub fn new(config: QueueGenConfig, rng: Rng) -> QueueGen {
        assert!(!config.topics.is_empty() && config.partitions > 0, "keys to use");
        assert!(config.txn_mops_max >= 1 && config.assign_keys_max >= 1);
        QueueGen { config, rng, last_value: HashMap::new() }
    }

    /// Every key the generator may use.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        for topic in &self.config.topics {
            for p in 0..self.config.partitions {
                keys.push(Key::new(format!("{topic}/{p}")));
            }
        }
        keys
    }

    fn key(&mut self) -> Key {
        let topic = self.rng.pick(&self.config.topics).clone();
        // Geometric: partition p with probability ~ 2^-(p+1), the rest on the last.
        let mut p = 0;
        while p + 1 < self.config.partitions && self.rng.chance(0.5) {
            p += 1;
        }
        Key::new(format!("{topic}/{p}"))
    }

    pub fn next_op(&mut self) -> Planned {
        if self.rng.chance(self.config.rebalance_probability) {
            return if self.rng.chance(0.5) {
                let mut keys = self.keys();
                self.rng.shuffle(&mut keys);
                keys.truncate(1 + self.rng.index(self.config.assign_keys_max.min(keys.len())));
                keys.sort();
                Planned::Assign { keys, seek_to_beginning: false }
            } else {
                let mut topics = self.config.topics.clone();
                self.rng.shuffle(&mut topics);
                topics.truncate(1 + self.rng.index(topics.len()));
                topics.sort();
                Planned::Subscribe { topics }
            };
        }
        let length = 1 + self.rng.index(self.config.txn_mops_max);
        let mut mops = Vec::with_capacity(length);
        for _ in 0..length {
            if self.rng.chance(0.5) {
                let key = self.key();
                let value = self.last_value.entry(key.clone()).or_insert(0);
                *value += 1;
                mops.push(Mop::Send { key, value: Val(*value), offset: None });
            } else {
                mops.push(Mop::Poll { reads: Default::default() });
            }
        }
        let sends = mops.iter().filter(|m| matches!(m, Mop::Send { .. })).count();
        let f = match sends {
            0 => F::Poll,
            n if n == mops.len() => F::Send,
            _ => F::Txn,
        };
        let abort = sends > 0 && self.rng.chance(self.config.abort_probability);
        Planned::Txn { f, mops, abort }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn plan(seed: u64, n: usize) -> Vec<Planned> {
        let mut g = QueueGen::new(QueueGenConfig::default(), Rng::new(seed));
        (0..n).map(|_| g.next_op()).collect()
    }

    // Proves the plan is a function of the seed, transactions have 1..=4 micro-ops
    // with `f` matching their content, values are unique per key, some transactions
    // abort on purpose and both consumer modes appear.
    #[test]
    fn plans_are_seeded_well_formed_and_varied() {
        assert_eq!(plan(3, 500), plan(3, 500));
        assert_ne!(plan(3, 500), plan(4, 500));
        let mut seen: HashSet<(Key, Val)> = HashSet::new();
        let (mut aborts, mut txns, mut assigns, mut subscribes) = (0, 0, 0, 0);
        let mut fs = HashSet::new();
        for planned in plan(9, 5000) {
            match planned {
                Planned::Txn { f, mops, abort } => {
                    txns += 1;
                    assert!((1..=4).contains(&mops.len()));
                    let sends = mops.iter().filter(|m| matches!(m, Mop::Send { .. })).count();
                    let expected = match sends {
                        0 => F::Poll,
                        n if n == mops.len() => F::Send,
                        _ => F::Txn,
                    };
                    assert_eq!(f, expected);
                    assert!(!abort || sends > 0, "only writers abort on purpose");
                    aborts += usize::from(abort);
                    fs.insert(f);
                    for mop in mops {
                        if let Mop::Send { key, value, offset } = mop {
                            assert!(offset.is_none());
                            assert!(key.partition().unwrap() < 4);
                            assert!(seen.insert((key, value)), "values unique per key");
                        }
                    }
                }
                Planned::Assign { keys, .. } => {
                    assigns += 1;
                    assert!((1..=4).contains(&keys.len()));
                }
                Planned::Subscribe { topics } => {
                    subscribes += 1;
                    assert!(!topics.is_empty());
                }
            }
        }
        assert_eq!(fs.len(), 3, "send, poll and txn all planned");
        assert!(aborts > txns / 20 && aborts < txns / 5, "about 10% of writers abort: {aborts}");
        assert!(assigns > 0 && subscribes > 0);
    }
}
