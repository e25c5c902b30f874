//! Group membership, the pure part: who is in a group, its generation, and
//! each member's partitions. No I/O, no clock of its own (every event
//! carries `now_ms`), no randomness (a new member's id is handed in). Each
//! method is one event: it changes the state and returns the reply.
//!
//! The rebalance protocol is deliberately eager:
//!
//! ```text
//!   member joins / leaves / changes subscription / session expires
//!   / a subscribed topic's partition count changes
//!        │
//!        ▼
//!   generation += 1, assignment forgotten ──▶ first SyncGroup of the new
//!                                             generation computes it for
//!                                             the members present then
//! ```
//!
//! JoinGroup never waits for the other members: it answers at once with
//! the (possibly just bumped) generation. Members still on an older one
//! learn it from their next Heartbeat (REBALANCE_IN_PROGRESS), rejoin —
//! which, with nothing changed, bumps nothing and just hands them the
//! current generation — and sync. Until they do they are zombies: their
//! offset commits carry an old generation and are refused
//! (ILLEGAL_GENERATION), which is what fences them (KIP-447). The price of
//! not waiting is a short window in which a zombie and the new owner both
//! read a partition; only the new owner can commit, and under
//! read_committed the new owner starts from the last committed offsets,
//! waiting (UNSTABLE_OFFSET_COMMIT) while a transaction holds them.
//!
//! The assignment is computed once per generation, at its first SyncGroup,
//! over the members and topic metadata of that moment, and kept: every
//! member of a generation gets its share of the same computation.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{Assignment, Assignor, Subscriptions};
use super::error::GroupError;
use crate::txn_metadata::TopicPartition;

/// Most members one group may have.
pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;
/// Most topics one member may subscribe to.
pub const TOPICS_PER_MEMBER_MAX: usize = 1_000;
/// Shortest session timeout a member may ask for (short ones are for tests;
/// a member must heartbeat well within it).
pub const SESSION_TIMEOUT_MS_MIN: u32 = 100;
/// Longest session timeout (Kafka's `group.max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1_000;
/// The session timeout of a member that asks for none (0).
pub const SESSION_TIMEOUT_MS_DEFAULT: u32 = 10_000;
/// The generation of a group nobody has joined yet.
pub const GENERATION_NONE: i32 = 0;
/// The generation an unmanaged (assign-mode) consumer presents, with an
/// empty member id.
pub const GENERATION_UNMANAGED: i32 = -1;

/// Topic → partition count, as the coordinator's metadata says now.
pub type TopicCounts = BTreeMap<String, u32>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u32,
    /// Last request from the member (join, sync, heartbeat, commit).
    pub last_heard_ms: u64,
}

/// A JoinGroup, validated by [`JoinRequest::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty on a first join.
    pub member_id: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u32,
    pub assignor: Assignor,
}

impl JoinRequest {
    pub fn new(
        member_id: &str,
        topics: &[String],
        session_timeout_ms: i32,
        assignor: &str,
    ) -> Result<JoinRequest, GroupError> {
        let invalid = |why: String| Err(GroupError::InvalidRequest(why));
        if topics.is_empty() || topics.len() > TOPICS_PER_MEMBER_MAX {
            return invalid(format!("a member subscribes to 1 to {TOPICS_PER_MEMBER_MAX} topics"));
        }
        if topics.iter().any(String::is_empty) {
            return invalid("empty topic name in the subscription".into());
        }
        let session_timeout_ms = match session_timeout_ms {
            0 => SESSION_TIMEOUT_MS_DEFAULT,
            ms if (SESSION_TIMEOUT_MS_MIN as i64..=SESSION_TIMEOUT_MS_MAX as i64)
                .contains(&i64::from(ms)) =>
            {
                ms as u32
            }
            ms => {
                return invalid(format!(
                    "session timeout {ms} ms is outside {SESSION_TIMEOUT_MS_MIN}..={SESSION_TIMEOUT_MS_MAX}"
                ));
            }
        };
        let Some(assignor) = Assignor::parse(assignor) else {
            return invalid(format!("unknown assignor {assignor:?}: use range or roundrobin"));
        };
        Ok(JoinRequest {
            member_id: member_id.to_string(),
            topics: topics.iter().cloned().collect(),
            session_timeout_ms,
            assignor,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub member_id: String,
    pub generation: i32,
    /// This join started a new generation.
    pub rebalanced: bool,
}

/// The assignment of one generation and the partition counts it was made
/// over (to notice when they change).
#[derive(Clone, Debug, PartialEq, Eq)]
struct GenerationAssignment {
    members: Assignment,
    over: TopicCounts,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    generation: i32,
    /// The group's assignor; chosen by its first member, reset when empty.
    assignor: Assignor,
    members: BTreeMap<String, Member>,
    /// `None` until the current generation's first SyncGroup.
    assignment: Option<GenerationAssignment>,
}

impl Membership {
    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn assignor(&self) -> Assignor {
        self.assignor
    }

    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// JoinGroup. A new member (empty id) gets `fresh_member_id()` and
    /// starts a new generation; a known member rejoining starts one only if
    /// its subscription or the assignor changed, and otherwise just learns
    /// the current generation.
    pub fn join(
        &mut self,
        request: JoinRequest,
        fresh_member_id: impl FnOnce() -> String,
        now_ms: u64,
    ) -> Result<Joined, GroupError> {
        let alone = match self.members.len() {
            0 => true,
            1 => self.members.contains_key(&request.member_id),
            _ => false,
        };
        if !alone && request.assignor != self.assignor {
            return Err(GroupError::InvalidRequest(format!(
                "the group uses the {} assignor, not {}",
                self.assignor.name(),
                request.assignor.name()
            )));
        }
        if request.member_id.is_empty() {
            if self.members.len() >= MEMBERS_PER_GROUP_MAX {
                return Err(GroupError::InvalidRequest(format!(
                    "the group already has {MEMBERS_PER_GROUP_MAX} members"
                )));
            }
            let member_id = fresh_member_id();
            assert!(!member_id.is_empty(), "a member id is never empty");
            assert!(!self.members.contains_key(&member_id), "member id {member_id} reused");
            let member = Member {
                topics: request.topics,
                session_timeout_ms: request.session_timeout_ms,
                last_heard_ms: now_ms,
            };
            self.members.insert(member_id.clone(), member);
            self.assignor = request.assignor;
            self.rebalance();
            return Ok(Joined { member_id, generation: self.generation, rebalanced: true });
        }
        let Some(member) = self.members.get_mut(&request.member_id) else {
            return Err(GroupError::UnknownMemberId(request.member_id));
        };
        member.last_heard_ms = now_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        let changed = member.topics != request.topics || self.assignor != request.assignor;
        member.topics = request.topics;
        self.assignor = request.assignor;
        if changed {
            self.rebalance();
        }
        Ok(Joined {
            member_id: request.member_id,
            generation: self.generation,
            rebalanced: changed,
        })
    }

    /// SyncGroup: the member's partitions in the current generation,
    /// computing the generation's assignment over `topics` if this is its
    /// first SyncGroup.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        topics: &TopicCounts,
        now_ms: u64,
    ) -> Result<Vec<TopicPartition>, GroupError> {
        self.touch(member_id, now_ms)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current: self.generation,
            });
        }
        let members = &self.members;
        let assignor = self.assignor;
        let assignment = self.assignment.get_or_insert_with(|| {
            let subscriptions: Subscriptions =
                members.iter().map(|(id, m)| (id.clone(), m.topics.clone())).collect();
            let over = subscribed_counts(members, topics);
            GenerationAssignment { members: assignor.assign(&subscriptions, &over), over }
        });
        Ok(assignment.members.get(member_id).cloned().unwrap_or_default())
    }

    /// Heartbeat: REBALANCE_IN_PROGRESS tells a member of an older
    /// generation to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        self.touch(member_id, now_ms)?;
        match generation.cmp(&self.generation) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => {
                Err(GroupError::RebalanceInProgress { current: self.generation })
            }
            std::cmp::Ordering::Greater => {
                Err(GroupError::IllegalGeneration { got: generation, current: self.generation })
            }
        }
    }

    /// LeaveGroup: the member's partitions go to the others at once.
    pub fn leave(&mut self, member_id: &str) -> Result<(), GroupError> {
        if self.members.remove(member_id).is_none() {
            return Err(GroupError::UnknownMemberId(member_id.to_string()));
        }
        self.rebalance();
        Ok(())
    }

    /// Evicts every member not heard from within its session timeout;
    /// returns their ids (a rebalance if any).
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let dead: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                now_ms.saturating_sub(m.last_heard_ms) > u64::from(m.session_timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            self.members.remove(id);
        }
        if !dead.is_empty() {
            self.rebalance();
        }
        dead
    }

    /// The topic metadata now: if a subscribed topic's partition count is
    /// not the one the current assignment was made over (created, deleted,
    /// grown), start a new generation. Returns whether it did.
    pub fn metadata_changed(&mut self, topics: &TopicCounts) -> bool {
        let Some(assignment) = &self.assignment else { return false };
        if self.members.is_empty() || subscribed_counts(&self.members, topics) == assignment.over {
            return false;
        }
        self.rebalance();
        true
    }

    /// May this (member id, generation) commit offsets for the group? An
    /// empty member id with generation -1 is a consumer outside group
    /// management (assign mode): allowed only while the group has no
    /// members, so it cannot overwrite a live group's offsets. A commit
    /// counts as a sign of life.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        if member_id.is_empty() && generation == GENERATION_UNMANAGED {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current: self.generation,
            });
        }
        self.touch(member_id, now_ms)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration {
                got: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now_ms: u64) -> Result<(), GroupError> {
        let member = self
            .members
            .get_mut(member_id)
            .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?;
        member.last_heard_ms = member.last_heard_ms.max(now_ms);
        Ok(())
    }

    fn rebalance(&mut self) {
        // Wrapping after 2^31 rebalances is harmless: a stale member is also
        // fenced by its member id, which is never reused.
        self.generation = self.generation.checked_add(1).unwrap_or(1);
        self.assignment = None;
        if self.members.is_empty() {
            self.assignor = Assignor::default();
        }
        assert!(self.generation > GENERATION_NONE);
    }
}

/// The partition counts of the topics some member subscribes to (unknown
/// topics absent).
fn subscribed_counts(members: &BTreeMap<String, Member>, topics: &TopicCounts) -> TopicCounts {
    let subscribed: BTreeSet<&String> = members.values().flat_map(|m| m.topics.iter()).collect();
    subscribed.into_iter().filter_map(|t| topics.get(t).map(|count| (t.clone(), *count))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION_MS: i32 = 1_000;

    fn join_request(member_id: &str, topics: &[&str]) -> JoinRequest {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        JoinRequest::new(member_id, &topics, SESSION_MS, "range").unwrap()
    }

    fn counts() -> TopicCounts {
        TopicCounts::from([("in".to_string(), 4), ("other".to_string(), 2)])
    }

    /// A group with members "a" and "b" (joined in that order at time 0),
    /// both synced at generation 2.
    fn two_members() -> Membership {
        let mut g = Membership::default();
        g.join(join_request("", &["in"]), || "a".into(), 0).unwrap();
        g.join(join_request("", &["in"]), || "b".into(), 0).unwrap();
        assert_eq!(g.generation(), 2);
        g.join(join_request("a", &["in"]), || unreachable!(), 0).unwrap();
        g
    }

    #[test]
    fn t10_first_join_gets_a_member_id_and_generation_one() {
        // Proves: a new member is given the id handed in, the group's first
        // generation is 1, and SyncGroup hands it every partition.
        let mut g = Membership::default();
        assert_eq!(g.generation(), GENERATION_NONE);
        let joined = g.join(join_request("", &["in"]), || "m-1".into(), 5).unwrap();
        assert_eq!(joined, Joined { member_id: "m-1".into(), generation: 1, rebalanced: true });
        let assigned = g.sync("m-1", 1, &counts(), 6).unwrap();
        assert_eq!(assigned, (0..4).map(|p| TopicPartition::new("in", p)).collect::<Vec<_>>());
        assert_eq!(g.heartbeat("m-1", 1, 7), Ok(()));
    }

    #[test]
    fn t11_every_membership_change_bumps_the_generation() {
        // Proves: a second member, a changed subscription, a leave and a
        // session expiry each start a new generation; a rejoin that changes
        // nothing does not.
        let mut g = two_members();
        let rejoin = g.join(join_request("b", &["in"]), || unreachable!(), 0).unwrap();
        assert_eq!((rejoin.generation, rejoin.rebalanced), (2, false));
        let changed = g.join(join_request("b", &["in", "other"]), || unreachable!(), 0).unwrap();
        assert_eq!((changed.generation, changed.rebalanced), (3, true));
        g.leave("b").unwrap();
        assert_eq!(g.generation(), 4);
        g.join(join_request("", &["in"]), || "c".into(), 10).unwrap();
        assert_eq!(g.generation(), 5);
        assert_eq!(g.expire(500), Vec::<String>::new(), "nobody is late yet");
        assert_eq!(g.generation(), 5);
        // "a" was last heard at 0, "c" at 10: at 1_005 only "a" is late.
        assert_eq!(g.expire(1_005), vec!["a".to_string()]);
        assert_eq!(g.generation(), 6);
        assert_eq!(g.members().keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn t12_old_generation_is_told_to_rejoin_then_rejoins() {
        // Proves: when "b" joins, "a" (still on generation 1) hears
        // REBALANCE_IN_PROGRESS from Heartbeat and ILLEGAL_GENERATION from
        // SyncGroup and commits; rejoining gives it generation 2 without a
        // further bump, and then everything works again.
        let mut g = Membership::default();
        g.join(join_request("", &["in"]), || "a".into(), 0).unwrap();
        g.sync("a", 1, &counts(), 0).unwrap();
        g.join(join_request("", &["in"]), || "b".into(), 0).unwrap();
        assert_eq!(g.heartbeat("a", 1, 1), Err(GroupError::RebalanceInProgress { current: 2 }));
        assert_eq!(
            g.sync("a", 1, &counts(), 1),
            Err(GroupError::IllegalGeneration { got: 1, current: 2 })
        );
        assert_eq!(
            g.check_commit("a", 1, 1),
            Err(GroupError::IllegalGeneration { got: 1, current: 2 })
        );
        let rejoined = g.join(join_request("a", &["in"]), || unreachable!(), 2).unwrap();
        assert_eq!((rejoined.generation, rejoined.rebalanced), (2, false));
        assert_eq!(g.heartbeat("a", 2, 3), Ok(()));
        assert_eq!(g.check_commit("a", 2, 3), Ok(()));
        assert_eq!(
            g.heartbeat("a", 9, 3),
            Err(GroupError::IllegalGeneration { got: 9, current: 2 }),
            "a generation from the future is not a rebalance"
        );
    }

    #[test]
    fn t13_a_generation_splits_the_partitions_between_its_members() {
        // Proves: the members of one generation get disjoint shares that
        // cover every partition, from one computation (made at the first
        // SyncGroup and kept, even if the metadata given later differs).
        let mut g = two_members();
        let a = g.sync("a", 2, &counts(), 0).unwrap();
        let later = TopicCounts::from([("in".to_string(), 40)]);
        let b = g.sync("b", 2, &later, 0).unwrap();
        assert_eq!(a.len() + b.len(), 4);
        let mut all: Vec<TopicPartition> = a.iter().chain(&b).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4, "disjoint: {a:?} {b:?}");
        assert_eq!(a, vec![TopicPartition::new("in", 0), TopicPartition::new("in", 1)]);
    }

    #[test]
    fn t14_unknown_members_and_leaving() {
        // Proves: requests from a member the group does not know (never
        // joined, left, or evicted) answer UNKNOWN_MEMBER_ID, so the client
        // rejoins as a new member; leaving twice is unknown the second time.
        let mut g = two_members();
        let unknown = |id: &str| GroupError::UnknownMemberId(id.to_string());
        assert_eq!(g.heartbeat("zz", 2, 0), Err(unknown("zz")));
        assert_eq!(g.sync("zz", 2, &counts(), 0), Err(unknown("zz")));
        assert_eq!(g.check_commit("zz", 2, 0), Err(unknown("zz")));
        assert_eq!(g.join(join_request("zz", &["in"]), || unreachable!(), 0), Err(unknown("zz")));
        g.leave("a").unwrap();
        assert_eq!(g.leave("a"), Err(unknown("a")));
        assert_eq!(g.heartbeat("a", 3, 0), Err(unknown("a")));
        assert_eq!(g.expire(10_000), vec!["b".to_string()]);
        assert!(g.is_empty());
        assert_eq!(g.heartbeat("b", 4, 10_000), Err(unknown("b")));
    }

    #[test]
    fn t15_heartbeats_and_commits_keep_a_member_alive() {
        // Proves: the session timeout counts from the member's last request
        // of any kind.
        let mut g = two_members();
        for now in (0..5_000).step_by(400) {
            g.heartbeat("a", 2, now).unwrap();
            if now < 2_000 {
                g.check_commit("b", 2, now).unwrap();
            }
        }
        assert_eq!(g.expire(4_801), vec!["b".to_string()], "b last heard at 1_600");
        assert_eq!(g.members().keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn t16_unmanaged_commits_only_while_the_group_is_empty() {
        // Proves: an assign-mode commit (no member id, generation -1) is
        // accepted for a group without members and refused while members
        // own its partitions.
        let mut g = Membership::default();
        assert_eq!(g.check_commit("", GENERATION_UNMANAGED, 0), Ok(()));
        let mut g2 = two_members();
        assert_eq!(
            g2.check_commit("", GENERATION_UNMANAGED, 0),
            Err(GroupError::IllegalGeneration { got: -1, current: 2 })
        );
        assert_eq!(g2.check_commit("", 2, 0), Err(GroupError::UnknownMemberId(String::new())));
        g.join(join_request("", &["in"]), || "x".into(), 0).unwrap();
        g.leave("x").unwrap();
        assert_eq!(g.check_commit("", GENERATION_UNMANAGED, 0), Ok(()), "empty again");
    }

    #[test]
    fn t17_metadata_change_rebalances() {
        // Proves: a subscribed topic that grows, or appears, starts a new
        // generation once the current one has an assignment; unrelated
        // topics do not.
        let mut g = two_members();
        assert!(!g.metadata_changed(&counts()), "no assignment yet: nothing to redo");
        g.sync("a", 2, &counts(), 0).unwrap();
        let mut now = counts();
        now.insert("unrelated".into(), 3);
        assert!(!g.metadata_changed(&now));
        now.insert("in".into(), 6);
        assert!(g.metadata_changed(&now));
        assert_eq!(g.generation(), 3);
        let b = g.sync("b", 3, &now, 0).unwrap();
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn t18_join_requests_are_validated() {
        // Proves: bad subscriptions, session timeouts and assignors are
        // refused; the assignor must agree with the group's; the member
        // bound holds.
        let topics = vec!["in".to_string()];
        assert!(JoinRequest::new("", &[], 1_000, "range").is_err());
        assert!(JoinRequest::new("", &[String::new()], 1_000, "range").is_err());
        assert!(JoinRequest::new("", &topics, 10, "range").is_err());
        assert!(JoinRequest::new("", &topics, -5, "range").is_err());
        assert!(JoinRequest::new("", &topics, 1_000, "sticky").is_err());
        assert_eq!(
            JoinRequest::new("", &topics, 0, "").unwrap().session_timeout_ms,
            SESSION_TIMEOUT_MS_DEFAULT
        );
        let mut g = two_members();
        let rr = JoinRequest::new("", &topics, 1_000, "roundrobin").unwrap();
        assert!(matches!(g.join(rr.clone(), || "c".into(), 0), Err(GroupError::InvalidRequest(_))));
        let mut alone = Membership::default();
        alone.join(join_request("", &["in"]), || "solo".into(), 0).unwrap();
        let switch = JoinRequest { member_id: "solo".into(), ..rr };
        assert!(alone.join(switch, || unreachable!(), 0).unwrap().rebalanced);
        assert_eq!(alone.assignor(), Assignor::RoundRobin);
        let mut full = Membership::default();
        for i in 0..MEMBERS_PER_GROUP_MAX {
            full.join(join_request("", &["in"]), || format!("m{i}"), 0).unwrap();
        }
        assert!(matches!(
            full.join(join_request("", &["in"]), || "one-too-many".into(), 0),
            Err(GroupError::InvalidRequest(_))
        ));
    }
}
