//! Consumer group membership: JoinGroup and SyncGroup (run from `poll`, so
//! a rebalance happens only between two polls, never while the application
//! is still working on records of the old assignment), and a heartbeat task
//! that tells `poll` when the member must rejoin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use xo_proto::coordinator::{
    self as pb, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};

use crate::cluster::Cluster;
use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// Most JoinGroup/SyncGroup rounds of one rejoin before giving up (each
/// round ends in a rebalance started by another member).
pub const JOIN_ROUNDS_MAX: usize = 100;

/// What the heartbeat task learnt.
const MEMBER_OK: u8 = 0;
/// The group is rebalancing (or our generation is old): rejoin.
const MEMBER_REJOIN: u8 = 1;
/// The coordinator forgot us (session expired): rejoin as a new member.
const MEMBER_UNKNOWN: u8 = 2;

/// Shared between the heartbeat task and the consumer.
pub(crate) struct MemberSignal {
    state: AtomicU8,
    pub changed: Notify,
}

impl MemberSignal {
    fn set(&self, state: u8) {
        self.state.fetch_max(state, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// The member must rejoin (someone learnt its generation is over).
    pub(crate) fn request_rejoin(&self) {
        self.set(MEMBER_REJOIN);
    }
}

/// The consumer's membership in its group.
pub(crate) struct Membership {
    pub group_id: String,
    pub topics: Vec<String>,
    pub member_id: String,
    /// -1 until joined.
    pub generation_id: i32,
    pub signal: Arc<MemberSignal>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl Membership {
    pub fn new(group_id: &str, topics: Vec<String>) -> Membership {
        Membership {
            group_id: group_id.to_string(),
            topics,
            member_id: String::new(),
            generation_id: -1,
            // Not joined yet: the first poll joins.
            signal: Arc::new(MemberSignal {
                state: AtomicU8::new(MEMBER_REJOIN),
                changed: Notify::new(),
            }),
            heartbeat: None,
        }
    }

    pub fn needs_rejoin(&self) -> bool {
        self.signal.state.load(Ordering::Acquire) != MEMBER_OK
    }

    /// Marks the member as having to rejoin (a commit learnt that the
    /// generation is over).
    pub fn request_rejoin(&self) {
        self.signal.request_rejoin();
    }

    /// Stops heartbeating; the generation is over for us.
    pub fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// JoinGroup then SyncGroup until both succeed in the same generation;
    /// returns the partitions assigned to this member.
    pub async fn join(
        &mut self,
        cluster: &Arc<Cluster>,
        config: &ConsumerConfig,
        deadline: Instant,
    ) -> Result<Vec<TopicPartition>> {
        self.stop_heartbeat();
        if self.signal.state.load(Ordering::Acquire) == MEMBER_UNKNOWN {
            self.member_id.clear();
        }
        self.signal.state.store(MEMBER_OK, Ordering::Release);
        for _ in 0..JOIN_ROUNDS_MAX {
            let request = JoinGroupRequest {
                group_id: self.group_id.clone(),
                member_id: self.member_id.clone(),
                topics: self.topics.clone(),
                session_timeout_ms: config.session_timeout.as_millis() as i32,
                assignor: config.assignor.clone(),
            };
            let joined = cluster
                .retry("JoinGroup", deadline, || {
                    let request = request.clone();
                    async move {
                        let r = cluster
                            .coordinator_once(|mut c| async move { c.join_group(request).await })
                            .await?;
                        match Error::from_coordinator(r.error, r.error_message.clone()) {
                            None => Ok(r),
                            Some(e) => Err(e),
                        }
                    }
                })
                .await;
            let joined = match joined {
                Ok(r) => r,
                Err(e) if e.coordinator_code() == Some(pb::ErrorCode::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Err(e) if e.coordinator_code() == Some(pb::ErrorCode::RebalanceInProgress) => {
                    tokio::time::sleep(cluster.config.retry_backoff).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.member_id = joined.member_id;
            self.generation_id = joined.generation_id;
            let request = SyncGroupRequest {
                group_id: self.group_id.clone(),
                member_id: self.member_id.clone(),
                generation_id: self.generation_id,
            };
            let synced = cluster
                .retry("SyncGroup", deadline, || {
                    let request = request.clone();
                    async move {
                        let r = cluster
                            .coordinator_once(|mut c| async move { c.sync_group(request).await })
                            .await?;
                        match Error::from_coordinator(r.error, r.error_message.clone()) {
                            None => Ok(r),
                            Some(e) => Err(e),
                        }
                    }
                })
                .await;
            match synced {
                Ok(r) => {
                    let mut assignment: Vec<TopicPartition> = r
                        .assignment
                        .into_iter()
                        .map(|tp| TopicPartition { topic: tp.topic, partition: tp.partition })
                        .collect();
                    assignment.sort();
                    assignment.dedup();
                    tracing::info!(group = %self.group_id, member = %self.member_id,
                        generation = self.generation_id, partitions = assignment.len(), "joined group");
                    self.start_heartbeat(cluster.clone(), config);
                    return Ok(assignment);
                }
                Err(e) => match e.coordinator_code() {
                    Some(pb::ErrorCode::UnknownMemberId) => self.member_id.clear(),
                    Some(pb::ErrorCode::RebalanceInProgress | pb::ErrorCode::IllegalGeneration) => {
                    }
                    _ => return Err(e),
                },
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(Error::Timeout {
            what: "joining the consumer group",
            after: config.client.operation_timeout,
        })
    }

    fn start_heartbeat(&mut self, cluster: Arc<Cluster>, config: &ConsumerConfig) {
        let request = HeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            generation_id: self.generation_id,
        };
        let interval = config.heartbeat_interval;
        let signal = self.signal.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let request = request.clone();
                let answer = cluster
                    .coordinator_once(|mut c| async move { c.heartbeat(request).await })
                    .await;
                let error = match answer {
                    Ok(r) => Error::from_coordinator(r.error, r.error_message),
                    Err(e) => Some(e),
                };
                match error.as_ref().and_then(Error::coordinator_code) {
                    None => {
                        if let Some(e) = error {
                            tracing::debug!(error = %e, "heartbeat failed; retrying");
                        }
                    }
                    Some(pb::ErrorCode::UnknownMemberId) => return signal.set(MEMBER_UNKNOWN),
                    Some(pb::ErrorCode::RebalanceInProgress | pb::ErrorCode::IllegalGeneration) => {
                        return signal.set(MEMBER_REJOIN);
                    }
                    Some(_) => {
                        tracing::debug!(error = ?error, "heartbeat refused; retrying");
                    }
                }
            }
        }));
    }

    /// Leaves the group (best effort) so its partitions move at once.
    pub async fn leave(&mut self, cluster: &Cluster) {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return;
        }
        let request = LeaveGroupRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
        };
        if let Err(e) =
            cluster.coordinator_once(|mut c| async move { c.leave_group(request).await }).await
        {
            tracing::debug!(error = %e, "LeaveGroup failed");
        }
        self.member_id.clear();
        self.generation_id = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConsumerGroupMetadata, MemberLink};

    #[test]
    fn t10_a_refusal_seen_through_group_metadata_makes_the_member_rejoin() {
        // Proves: the metadata a consumer hands to send_offsets_to_transaction
        // reaches that consumer's member: a rejoin requested through it is
        // seen by the next poll; unmanaged metadata requests nothing.
        let membership = Membership::new("g", vec!["t".into()]);
        membership.signal.state.store(MEMBER_OK, Ordering::Release);
        assert!(!membership.needs_rejoin());
        ConsumerGroupMetadata::unmanaged("g").request_rejoin();
        assert!(!membership.needs_rejoin());
        let metadata = ConsumerGroupMetadata {
            member: MemberLink(Some(membership.signal.clone())),
            ..ConsumerGroupMetadata::unmanaged("g")
        };
        metadata.request_rejoin();
        assert!(membership.needs_rejoin());
    }
}
