//! Control batches: the commit and abort markers a transaction leaves in
//! each partition it wrote to. A marker is a batch with the transactional
//! and control flags, the producer's id and epoch, base sequence -1 (markers
//! are not part of the producer's sequence) and exactly one record, laid out
//! as in Kafka so a Kafka reader can skip or interpret it:
//!
//! ```text
//! key:   version i16 = 0, type i16 (0 abort, 1 commit)
//! value: version i16 = 0, coordinator_epoch i32
//! ```

use bytes::Bytes;

use super::records::{BatchBuilder, BatchMeta, decode_batch};
use super::{BatchError, Compression};
use crate::{Offset, ProducerEpoch, ProducerId, Sequence};

const CONTROL_KEY_VERSION: i16 = 0;
const CONTROL_VALUE_VERSION: i16 = 0;
const CONTROL_KEY_LEN: usize = 4;
const CONTROL_VALUE_LEN: usize = 6;

/// Which way a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    fn wire(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// The one record of a control batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    pub kind: ControlType,
    /// Epoch of the coordinator that wrote the marker, so a partition can
    /// refuse markers from a deposed coordinator.
    pub coordinator_epoch: i32,
}

/// Encodes a commit or abort marker for one producer's transaction.
pub fn encode_control_batch(
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    control: ControlRecord,
    timestamp: i64,
) -> Bytes {
    let meta = BatchMeta {
        base_offset: Offset::ZERO,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        base_sequence: Sequence::NONE,
        transactional: true,
        control: true,
        compression: Compression::None,
        base_timestamp: timestamp,
    };
    let mut key = [0u8; CONTROL_KEY_LEN];
    key[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&control.kind.wire().to_be_bytes());
    let mut value = [0u8; CONTROL_VALUE_LEN];
    value[..2].copy_from_slice(&CONTROL_VALUE_VERSION.to_be_bytes());
    value[2..].copy_from_slice(&control.coordinator_epoch.to_be_bytes());
    let mut builder = BatchBuilder::with_capacity(meta, 128);
    builder.push(timestamp, Some(&key), Some(&value), &[]);
    builder.finish().expect("an uncompressed one-record batch of a few bytes always encodes")
}

/// Reads the marker of a control batch (validating it like any batch).
/// Fails for a batch that is not a control batch, holds other than one
/// record, or carries a control type other than commit or abort.
pub fn decode_control_record(batch: &Bytes) -> Result<ControlRecord, BatchError> {
    let decoded = decode_batch(batch)?;
    if !decoded.header.is_control() {
        return Err(BatchError::Malformed("not a control batch"));
    }
    let [record] = decoded.records.as_slice() else {
        return Err(BatchError::RecordCountMismatch(format!(
            "a control batch holds one record, this one {}",
            decoded.records.len()
        )));
    };
    let key = record.key.as_deref().ok_or(BatchError::Malformed("control record without a key"))?;
    let value =
        record.value.as_deref().ok_or(BatchError::Malformed("control record without a value"))?;
    // Later versions may append fields; the leading ones keep their meaning.
    if key.len() < CONTROL_KEY_LEN || value.len() < CONTROL_VALUE_LEN {
        return Err(BatchError::Malformed("control record key or value too short"));
    }
    let key_version = i16::from_be_bytes([key[0], key[1]]);
    let value_version = i16::from_be_bytes([value[0], value[1]]);
    if key_version < 0 || value_version < 0 {
        return Err(BatchError::Malformed("negative control record version"));
    }
    let kind = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return Err(BatchError::Malformed("control record is neither commit nor abort")),
    };
    let coordinator_epoch = i32::from_be_bytes(value[2..6].try_into().expect("four bytes"));
    Ok(ControlRecord { kind, coordinator_epoch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchHeader;
    use crate::batch::header::store_crc;
    use proptest::prelude::*;

    #[test]
    fn commit_marker_has_kafkas_layout() {
        let control = ControlRecord { kind: ControlType::Commit, coordinator_epoch: 7 };
        let batch =
            encode_control_batch(ProducerId(42), ProducerEpoch(3), control, 1_764_000_000_000);
        let decoded = decode_batch(&batch).unwrap();
        let h = decoded.header;
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (ProducerId(42), ProducerEpoch(3), Sequence::NONE)
        );
        assert_eq!((h.record_count, h.last_offset_delta), (1, 0));
        assert_eq!(h.max_timestamp, 1_764_000_000_000);
        let record = &decoded.records[0];
        assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(record.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
        assert_eq!(decode_control_record(&batch), Ok(control));
    }

    #[test]
    fn a_data_batch_is_not_a_control_batch() {
        let mut b = BatchBuilder::new(BatchMeta::plain(0));
        b.push(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 7]), &[]);
        let batch = b.finish().unwrap();
        assert_eq!(
            decode_control_record(&batch),
            Err(BatchError::Malformed("not a control batch"))
        );
    }

    #[test]
    fn unknown_control_types_and_short_records_are_errors() {
        let mut meta = BatchMeta::plain(0);
        meta.control = true;
        meta.transactional = true;
        let batch_with = |key: &[u8], value: &[u8]| {
            let mut b = BatchBuilder::new(meta.clone());
            b.push(0, Some(key), Some(value), &[]);
            b.finish().unwrap()
        };
        // Type 2 is KRaft's leader-change record, not a transaction marker.
        assert!(decode_control_record(&batch_with(&[0, 0, 0, 2], &[0, 0, 0, 0, 0, 1])).is_err());
        assert!(decode_control_record(&batch_with(&[0, 0, 0], &[0, 0, 0, 0, 0, 1])).is_err());
        assert!(decode_control_record(&batch_with(&[0, 0, 0, 1], &[0, 0, 0, 0, 1])).is_err());
        // A later value version with extra fields still reads.
        let newer = decode_control_record(&batch_with(&[0, 0, 0, 0], &[0, 1, 0, 0, 0, 5, 9, 9]));
        assert_eq!(newer, Ok(ControlRecord { kind: ControlType::Abort, coordinator_epoch: 5 }));
        // Two records.
        let mut b = BatchBuilder::new(meta.clone());
        b.push(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 1]), &[]);
        b.push(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 1]), &[]);
        assert!(matches!(
            decode_control_record(&b.finish().unwrap()),
            Err(BatchError::RecordCountMismatch(_))
        ));
    }

    #[test]
    fn control_batch_survives_offset_assignment() {
        let control = ControlRecord { kind: ControlType::Abort, coordinator_epoch: 1 };
        let mut bytes = encode_control_batch(ProducerId(1), ProducerEpoch(0), control, 5).to_vec();
        crate::batch::header::set_base_offset(&mut bytes, Offset(900));
        let bytes = Bytes::from(bytes);
        assert_eq!(BatchHeader::validate(&bytes).unwrap().base_offset, Offset(900));
        assert_eq!(decode_control_record(&bytes), Ok(control));
        // And a flipped bit in the record is caught.
        let mut bad = bytes.to_vec();
        // The last byte is the header count; the one before ends the epoch.
        let epoch_low = bad.len() - 2;
        bad[epoch_low] ^= 1;
        assert!(decode_control_record(&Bytes::from(bad.clone())).is_err());
        // Even with the CRC fixed up, the parser only reads what is there.
        store_crc(&mut bad);
        assert_eq!(decode_control_record(&Bytes::from(bad)).map(|c| c.coordinator_epoch), Ok(0));
    }

    proptest! {
        #[test]
        fn control_batches_round_trip(
            pid in 0..i64::MAX,
            epoch in 0..i16::MAX,
            commit in any::<bool>(),
            coordinator_epoch in any::<i32>(),
            timestamp in any::<i64>(),
        ) {
            let kind = if commit { ControlType::Commit } else { ControlType::Abort };
            let control = ControlRecord { kind, coordinator_epoch };
            let batch = encode_control_batch(ProducerId(pid), ProducerEpoch(epoch), control, timestamp);
            prop_assert_eq!(decode_control_record(&batch), Ok(control));
            let h = BatchHeader::validate(&batch).unwrap();
            prop_assert_eq!((h.producer_id, h.producer_epoch), (ProducerId(pid), ProducerEpoch(epoch)));
            prop_assert!(h.is_control() && h.is_transactional());
        }
    }
}
