//! Server-side partition assignors: pure functions from the members'
//! subscriptions and the subscribed topics' partition counts to each
//! member's partitions. The coordinator runs them itself (clients do not
//! send assignments), so every member of a generation gets its share from
//! one computation and no two members can disagree about who owns what.
//!
//! - `range` (the default): per topic, the members subscribed to it in
//!   member-id order take contiguous runs; the first `partitions % members`
//!   take one more. Co-partitioned topics land on the same member.
//! - `roundrobin`: every subscribed partition in (topic, partition) order is
//!   dealt to the members in member-id order, skipping members not
//!   subscribed to its topic. With equal subscriptions, counts differ by at
//!   most one over all topics.
//!
//! Both are deterministic: the same input always gives the same output.

use std::collections::{BTreeMap, BTreeSet};

use crate::txn_metadata::TopicPartition;

/// Which assignor a group uses (JoinGroup's `assignor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Assignor {
    #[default]
    Range,
    RoundRobin,
}

/// Member id → the topics it subscribes to.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;
/// Member id → its partitions, sorted.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

impl Assignor {
    /// The wire name; empty means the default.
    pub fn parse(name: &str) -> Option<Assignor> {
        match name {
            "" => Some(Assignor::default()),
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// Every member of `subscriptions` gets an entry (possibly empty). Only
    /// topics present in `partitions` are assigned: a subscribed topic that
    /// does not exist has nothing to hand out.
    pub fn assign(
        self,
        subscriptions: &Subscriptions,
        partitions: &BTreeMap<String, u32>,
    ) -> Assignment {
        let mut out: Assignment =
            subscriptions.keys().map(|member| (member.clone(), Vec::new())).collect();
        match self {
            Assignor::Range => range(subscriptions, partitions, &mut out),
            Assignor::RoundRobin => round_robin(subscriptions, partitions, &mut out),
        }
        for assigned in out.values_mut() {
            assigned.sort();
        }
        debug_assert_eq!(
            out.values().map(Vec::len).sum::<usize>(),
            subscribed_partitions(subscriptions, partitions).count(),
            "every subscribed partition is assigned exactly once"
        );
        out
    }
}

/// The partitions of topics at least one member subscribes to, in
/// (topic, partition) order.
fn subscribed_partitions<'a>(
    subscriptions: &'a Subscriptions,
    partitions: &'a BTreeMap<String, u32>,
) -> impl Iterator<Item = TopicPartition> + 'a {
    partitions
        .iter()
        .filter(|(topic, _)| subscriptions.values().any(|topics| topics.contains(*topic)))
        .flat_map(|(topic, count)| (0..*count).map(|p| TopicPartition::new(topic.clone(), p)))
}

fn range(subscriptions: &Subscriptions, partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    for (topic, &count) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let share = count / members.len() as u32;
        let extra = count % members.len() as u32;
        let mut next = 0;
        for (i, member) in members.into_iter().enumerate() {
            let take = share + u32::from((i as u32) < extra);
            let assigned = out.get_mut(member).expect("every member has an entry");
            assigned.extend((next..next + take).map(|p| TopicPartition::new(topic.clone(), p)));
            next += take;
        }
        assert_eq!(next, count, "range hands out every partition of {topic}");
    }
}

fn round_robin(
    subscriptions: &Subscriptions,
    partitions: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    let members: Vec<(&String, &BTreeSet<String>)> = subscriptions.iter().collect();
    let mut cursor = 0;
    for tp in subscribed_partitions(subscriptions, partitions) {
        // Some member subscribes to the topic (that is how it was listed),
        // so this finds one within a full turn.
        let turn = (0..members.len())
            .map(|step| (cursor + step) % members.len())
            .find(|&i| members[i].1.contains(&tp.topic))
            .expect("a subscribed partition has a subscriber");
        out.get_mut(members[turn].0).expect("every member has an entry").push(tp);
        cursor = turn + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> Subscriptions {
        members
            .iter()
            .map(|(m, topics)| (m.to_string(), topics.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn names(assigned: &[TopicPartition]) -> Vec<String> {
        assigned.iter().map(|tp| format!("{}{}", tp.topic, tp.partition)).collect()
    }

    /// Every subscribed partition exactly once, and only to a subscriber.
    fn check_exactly_once(s: &Subscriptions, p: &BTreeMap<String, u32>, a: &Assignment) {
        assert_eq!(a.keys().collect::<Vec<_>>(), s.keys().collect::<Vec<_>>());
        let mut seen = BTreeSet::new();
        for (member, assigned) in a {
            for tp in assigned {
                assert!(
                    s[member].contains(&tp.topic),
                    "{member} got {tp} it does not subscribe to"
                );
                assert!(seen.insert(tp.clone()), "{tp} assigned twice");
            }
        }
        let expected: BTreeSet<TopicPartition> = subscribed_partitions(s, p).collect();
        assert_eq!(seen, expected, "every subscribed partition is assigned");
    }

    #[test]
    fn t10_range_gives_contiguous_runs_per_topic() {
        // Proves: Kafka's documented range example — two members, two
        // topics of three partitions: the first member takes two of each.
        let s = subs(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]);
        let p = counts(&[("t0", 3), ("t1", 3)]);
        let a = Assignor::Range.assign(&s, &p);
        check_exactly_once(&s, &p, &a);
        assert_eq!(names(&a["c0"]), ["t00", "t01", "t10", "t11"]);
        assert_eq!(names(&a["c1"]), ["t02", "t12"]);
    }

    #[test]
    fn t11_roundrobin_deals_partitions_in_turn() {
        // Proves: the same input dealt round-robin is balanced over all
        // topics (3 and 3), as in Kafka's documented example.
        let s = subs(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]);
        let p = counts(&[("t0", 3), ("t1", 3)]);
        let a = Assignor::RoundRobin.assign(&s, &p);
        check_exactly_once(&s, &p, &a);
        assert_eq!(names(&a["c0"]), ["t00", "t02", "t11"]);
        assert_eq!(names(&a["c1"]), ["t01", "t10", "t12"]);
    }

    #[test]
    fn t12_both_assign_every_partition_once_and_balance_equal_subscriptions() {
        // Proves: over many shapes, each assignor hands out every partition
        // exactly once; with equal subscriptions, range is balanced within
        // each topic and roundrobin over all topics (max - min <= 1).
        for members in 1..=7usize {
            for (t0, t1) in [(1u32, 0u32), (3, 5), (8, 8), (16, 1), (0, 2), (13, 29)] {
                let topics: Vec<&str> = vec!["a", "b"];
                let member_names: Vec<String> = (0..members).map(|m| format!("m{m:02}")).collect();
                let s: Subscriptions = member_names
                    .iter()
                    .map(|m| (m.clone(), topics.iter().map(|t| t.to_string()).collect()))
                    .collect();
                let p = counts(&[("a", t0), ("b", t1)]);
                for assignor in [Assignor::Range, Assignor::RoundRobin] {
                    let a = assignor.assign(&s, &p);
                    check_exactly_once(&s, &p, &a);
                    let spread = |sizes: Vec<usize>| {
                        sizes.iter().max().unwrap() - sizes.iter().min().unwrap()
                    };
                    match assignor {
                        Assignor::Range => {
                            for topic in ["a", "b"] {
                                let per: Vec<usize> = a
                                    .values()
                                    .map(|v| v.iter().filter(|tp| tp.topic == topic).count())
                                    .collect();
                                assert!(spread(per) <= 1, "range unbalanced on {topic}: {a:?}");
                            }
                        }
                        Assignor::RoundRobin => {
                            let per: Vec<usize> = a.values().map(Vec::len).collect();
                            assert!(spread(per) <= 1, "roundrobin unbalanced: {a:?}");
                        }
                    }
                    assert_eq!(a, assignor.assign(&s, &p), "deterministic");
                }
            }
        }
    }

    #[test]
    fn t13_unsubscribed_and_unknown_topics() {
        // Proves: a member gets nothing of a topic it does not subscribe to
        // (but still has an entry); a subscribed topic that does not exist
        // assigns nothing; a topic nobody subscribes to is ignored.
        let s = subs(&[("a", &["x"]), ("b", &["x", "y"]), ("c", &["missing"])]);
        let p = counts(&[("x", 4), ("y", 2), ("other", 9)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let a = assignor.assign(&s, &p);
            check_exactly_once(&s, &p, &a);
            assert!(a["c"].is_empty());
            assert!(a["a"].iter().all(|tp| tp.topic == "x"));
            assert_eq!(a["b"].iter().filter(|tp| tp.topic == "y").count(), 2);
        }
    }

    #[test]
    fn t14_names_parse() {
        // Proves: the wire names round-trip and empty means range.
        assert_eq!(Assignor::parse(""), Some(Assignor::Range));
        for a in [Assignor::Range, Assignor::RoundRobin] {
            assert_eq!(Assignor::parse(a.name()), Some(a));
        }
        assert_eq!(Assignor::parse("sticky"), None);
    }
}
