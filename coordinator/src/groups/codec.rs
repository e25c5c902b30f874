//! The records the coordinator keeps in `__consumer_offsets`: one record per
//! committed (group, topic, partition), its key naming that triple and its
//! value the offset. The topic is compacted, so the latest record of each
//! key is what survives; a null value (a tombstone) deletes the key.
//!
//! Both are small big-endian binary forms, each starting with a version so
//! other record kinds (group metadata, say) can share the topic later;
//! readers skip versions they do not know.
//!
//! ```text
//! key, version 1                       value, version 1
//!   u16  version = 1                     u16  version = 1
//!   u16  group length  + group UTF-8     i64  offset (next to consume)
//!   u16  topic length  + topic UTF-8     i64  commit time (ms since epoch)
//!   u32  partition                       u16  metadata length + UTF-8
//! ```
//!
//! One OffsetCommit / TxnOffsetCommit is written as one record batch of
//! these records, in request order: record `i` lands at `base_offset + i`.

use bytes::Bytes;
use xo_proto::batch::{BatchBuilder, BatchError, BatchMeta};

use crate::txn_metadata::TopicPartition;

pub const KEY_VERSION_OFFSET_COMMIT: u16 = 1;
pub const VALUE_VERSION_OFFSET_COMMIT: u16 = 1;
/// Longest group id (fits the key's u16 length).
pub const GROUP_ID_LEN_MAX: usize = 255;
/// Longest metadata string of one committed offset (Kafka's
/// `offset.metadata.max.bytes` is 4096; a smaller one keeps a full
/// commit well inside one batch).
pub const OFFSET_METADATA_LEN_MAX: usize = 1_024;
/// Most partitions one commit may carry: with the longest group, topic and
/// metadata a commit stays under 2 MB, far below a partition server's batch
/// limit.
pub const OFFSETS_PER_COMMIT_MAX: usize = 1_000;

/// What a committed offset holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group consumes in the partition.
    pub offset: i64,
    pub metadata: String,
    pub commit_time_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record truncated")]
    Truncated,
    #[error("{0} bytes after the end of the record")]
    TrailingBytes(usize),
    #[error("unknown record version {0}")]
    UnknownVersion(u16),
    #[error("a string is not UTF-8")]
    NotUtf8,
}

pub fn encode_key(group_id: &str, tp: &TopicPartition) -> Vec<u8> {
    assert!(group_id.len() <= GROUP_ID_LEN_MAX, "group id checked before encoding");
    let mut out = Vec::with_capacity(2 + 2 + group_id.len() + 2 + tp.topic.len() + 4);
    out.extend_from_slice(&KEY_VERSION_OFFSET_COMMIT.to_be_bytes());
    put_str(&mut out, group_id);
    put_str(&mut out, &tp.topic);
    out.extend_from_slice(&tp.partition.to_be_bytes());
    out
}

pub fn decode_key(bytes: &[u8]) -> Result<(String, TopicPartition), CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u16()?;
    if version != KEY_VERSION_OFFSET_COMMIT {
        return Err(CodecError::UnknownVersion(version));
    }
    let group = r.str()?;
    let topic = r.str()?;
    let partition = r.u32()?;
    r.end()?;
    Ok((group, TopicPartition::new(topic, partition)))
}

pub fn encode_value(value: &OffsetValue) -> Vec<u8> {
    assert!(value.metadata.len() <= OFFSET_METADATA_LEN_MAX, "metadata checked before encoding");
    let mut out = Vec::with_capacity(2 + 8 + 8 + 2 + value.metadata.len());
    out.extend_from_slice(&VALUE_VERSION_OFFSET_COMMIT.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&(value.commit_time_ms as i64).to_be_bytes());
    put_str(&mut out, &value.metadata);
    out
}

pub fn decode_value(bytes: &[u8]) -> Result<OffsetValue, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u16()?;
    if version != VALUE_VERSION_OFFSET_COMMIT {
        return Err(CodecError::UnknownVersion(version));
    }
    let offset = r.i64()?;
    let commit_time_ms = r.i64()?.max(0) as u64;
    let metadata = r.str()?;
    r.end()?;
    Ok(OffsetValue { offset, metadata, commit_time_ms })
}

/// One batch holding a record per offset, in order; `meta` says whose it
/// is (plain, or a transaction's producer id and epoch).
pub fn offsets_batch(
    meta: BatchMeta,
    group_id: &str,
    offsets: &[(TopicPartition, OffsetValue)],
) -> Result<Bytes, BatchError> {
    assert!(!offsets.is_empty() && offsets.len() <= OFFSETS_PER_COMMIT_MAX);
    let timestamp = meta.base_timestamp;
    let mut builder = BatchBuilder::new(meta);
    for (tp, value) in offsets {
        builder.push(timestamp, Some(&encode_key(group_id, tp)), Some(&encode_value(value)), &[]);
    }
    builder.finish()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("strings in offset records are bounded");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(CodecError::Truncated)?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn str(&mut self) -> Result<String, CodecError> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::NotUtf8)
    }

    fn end(&self) -> Result<(), CodecError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            n => Err(CodecError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use xo_proto::batch::decode_batch;
    use xo_proto::{Offset, ProducerEpoch, ProducerId, Sequence};

    use super::*;

    fn value(offset: i64, metadata: &str) -> OffsetValue {
        OffsetValue { offset, metadata: metadata.into(), commit_time_ms: 1_700_000_000_123 }
    }

    #[test]
    fn t10_key_and_value_round_trip() {
        // Proves: what is encoded decodes to the same fields, for empty,
        // non-ASCII and longest strings and extreme numbers.
        let long_group = "g".repeat(GROUP_ID_LEN_MAX);
        let long_meta = "m".repeat(OFFSET_METADATA_LEN_MAX);
        for (group, topic, partition) in
            [("g", "t", 0u32), ("", "", u32::MAX), ("gruppé", "tópico", 7), (&long_group, "x", 1)]
        {
            let tp = TopicPartition::new(topic, partition);
            assert_eq!(decode_key(&encode_key(group, &tp)), Ok((group.to_string(), tp)));
        }
        for v in [value(0, ""), value(i64::MAX, "ünï"), value(-1, &long_meta)] {
            assert_eq!(decode_value(&encode_value(&v)), Ok(v));
        }
    }

    #[test]
    fn t11_the_bytes_are_the_documented_layout() {
        // Proves: the format is the one in the module doc, byte for byte
        // (records already in logs must stay readable).
        let key = encode_key("ab", &TopicPartition::new("t", 258));
        assert_eq!(key, [0, 1, 0, 2, b'a', b'b', 0, 1, b't', 0, 0, 1, 2]);
        let v = OffsetValue { offset: 5, metadata: "m".into(), commit_time_ms: 1 };
        assert_eq!(
            encode_value(&v),
            [0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b'm']
        );
    }

    #[test]
    fn t12_damaged_records_are_refused() {
        // Proves: truncation, trailing bytes, unknown versions and bad UTF-8
        // are errors, never a panic or a wrong value.
        let key = encode_key("g", &TopicPartition::new("t", 1));
        for cut in 0..key.len() {
            assert_eq!(decode_key(&key[..cut]), Err(CodecError::Truncated));
        }
        let mut longer = key.clone();
        longer.push(0);
        assert_eq!(decode_key(&longer), Err(CodecError::TrailingBytes(1)));
        let mut future = key.clone();
        future[1] = 9;
        assert_eq!(decode_key(&future), Err(CodecError::UnknownVersion(9)));
        let mut bad = key;
        bad[4] = 0xff;
        assert_eq!(decode_key(&bad), Err(CodecError::NotUtf8));
        let v = encode_value(&value(3, "x"));
        assert_eq!(decode_value(&v[..v.len() - 1]), Err(CodecError::Truncated));
    }

    #[test]
    fn t13_a_commit_is_one_batch_with_a_record_per_offset() {
        // Proves: the batch carries the producer fields it was given (a
        // transactional one: producer id and epoch, no sequence) and its
        // records decode back to the offsets in order.
        let offsets = vec![
            (TopicPartition::new("a", 0), value(10, "")),
            (TopicPartition::new("b", 3), value(20, "meta")),
        ];
        let meta = BatchMeta {
            producer_id: ProducerId(42),
            producer_epoch: ProducerEpoch(3),
            base_sequence: Sequence::NONE,
            transactional: true,
            ..BatchMeta::plain(1_000)
        };
        let batch = decode_batch(&offsets_batch(meta, "g", &offsets).unwrap()).unwrap();
        assert!(batch.header.is_transactional() && !batch.header.is_sequenced());
        assert_eq!(batch.header.producer_id, ProducerId(42));
        let decoded: Vec<(Offset, String, TopicPartition, OffsetValue)> = batch
            .records
            .iter()
            .map(|r| {
                let (group, tp) = decode_key(r.key.as_deref().unwrap()).unwrap();
                (
                    r.offset(&batch.header),
                    group,
                    tp,
                    decode_value(r.value.as_deref().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(decoded.len(), 2);
        for (i, (offset, group, tp, v)) in decoded.into_iter().enumerate() {
            assert_eq!((offset, group.as_str()), (Offset(i as i64), "g"));
            assert_eq!((tp, v), offsets[i].clone());
        }
    }
}
