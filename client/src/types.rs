//! The small values the public API passes around.

use std::fmt;
use std::sync::Arc;

use xo_proto::Offset;

use crate::consumer::group::MemberSignal;

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.to_string(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where an acknowledged record landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Shared with every record of the same topic: no allocation per record.
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: Offset,
    /// The record's timestamp (milliseconds since the epoch) as sent.
    pub timestamp: i64,
}

/// A consumer's identity in its group, handed to
/// [`crate::TransactionalProducer::send_offsets_to_transaction`] so the
/// coordinator can refuse offsets from a consumer that is no longer in the
/// generation that owns the partitions (KIP-447 zombie fencing).
///
/// When the coordinator refuses the offsets because the group has moved on
/// (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID), the consumer the metadata came
/// from is told to rejoin at its next poll, as its own `commit` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    pub group_id: String,
    /// Empty for a consumer that assigned its partitions itself.
    pub member_id: String,
    /// -1 for a consumer that assigned its partitions itself.
    pub generation_id: i32,
    pub(crate) member: MemberLink,
}

impl ConsumerGroupMetadata {
    /// Metadata of a consumer outside group management (assign mode), or of
    /// a caller that tracks offsets itself.
    pub fn unmanaged(group_id: &str) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: group_id.to_string(),
            member_id: String::new(),
            generation_id: -1,
            member: MemberLink::default(),
        }
    }

    /// The group has moved on without this member: make its consumer
    /// rejoin at its next poll (nothing for unmanaged metadata).
    pub(crate) fn request_rejoin(&self) {
        if let Some(signal) = &self.member.0 {
            signal.request_rejoin();
        }
    }
}

/// The consumer a [`ConsumerGroupMetadata`] came from, to tell it to
/// rejoin. Not part of the identity: any two links compare equal.
#[derive(Clone, Default)]
pub(crate) struct MemberLink(pub(crate) Option<Arc<MemberSignal>>);

impl fmt::Debug for MemberLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "MemberLink(consumer)" } else { "MemberLink(none)" })
    }
}

impl PartialEq for MemberLink {
    fn eq(&self, _: &MemberLink) -> bool {
        true
    }
}

impl Eq for MemberLink {}
