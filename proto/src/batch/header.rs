//! The fixed 61-byte batch header: reading it, checking a whole batch
//! without decoding its records, and patching the base offset. This is all
//! the partition server's produce path touches.

use super::BatchError;
use super::varint;
use crate::{Offset, ProducerEpoch, ProducerId, Sequence};

pub const HEADER_LEN: usize = 61;
pub const MAGIC: i8 = 2;
/// Bytes before `batch_length`'s count starts: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes to the end.
pub const CRC_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_bits(bits: u8) -> Result<Compression, BatchError> {
        Ok(match bits {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(BatchError::UnsupportedCompression(other)),
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// The batch attributes field (16 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Attributes(pub i16);

impl Attributes {
    const COMPRESSION_MASK: i16 = 0x07;
    const LOG_APPEND_TIME: i16 = 0x08;
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;

    pub fn new(compression: Compression, transactional: bool, control: bool) -> Attributes {
        let mut bits = compression.bits() as i16;
        if transactional {
            bits |= Self::TRANSACTIONAL;
        }
        if control {
            bits |= Self::CONTROL;
        }
        Attributes(bits)
    }

    pub fn compression_bits(self) -> u8 {
        (self.0 & Self::COMPRESSION_MASK) as u8
    }

    pub fn compression(self) -> Result<Compression, BatchError> {
        Compression::from_bits(self.compression_bits())
    }

    pub fn is_log_append_time(self) -> bool {
        self.0 & Self::LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL != 0
    }

    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }
}

/// Every field of the 61-byte header, read from a batch's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: Attributes,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
    pub record_count: i32,
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(buf[at..at + 2].try_into().unwrap())
}
fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}
fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}
fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().unwrap())
}

/// Total size of the batch that starts at `buf[0]`, read from its length
/// field, or `None` when fewer than 12 bytes are there or the length is
/// impossible. Used to walk a log file batch by batch.
pub fn framed_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let length = be_i32(buf, BATCH_LENGTH_AT);
    if (length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
        return None;
    }
    Some(LOG_OVERHEAD + length as usize)
}

/// CRC32C of the part of the batch the header's CRC covers.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_FROM..])
}

/// Overwrites the base offset of an encoded batch (the CRC stays valid).
pub fn set_base_offset(batch: &mut [u8], base_offset: Offset) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.0.to_be_bytes());
}

/// Recomputes and stores the CRC after the covered bytes changed.
pub fn store_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

impl BatchHeader {
    /// Reads the header from the first 61 bytes. Checks only that they are
    /// there and that the magic is 2; see [`BatchHeader::validate`] for a
    /// whole-batch check.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated { have: buf.len(), need: HEADER_LEN });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: Offset(be_i64(buf, BASE_OFFSET_AT)),
            batch_length: be_i32(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_AT),
            magic,
            crc: be_u32(buf, CRC_AT),
            attributes: Attributes(be_i16(buf, ATTRIBUTES_AT)),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: ProducerId(be_i64(buf, PRODUCER_ID_AT)),
            producer_epoch: ProducerEpoch(be_i16(buf, PRODUCER_EPOCH_AT)),
            base_sequence: Sequence(be_i32(buf, BASE_SEQUENCE_AT)),
            record_count: be_i32(buf, RECORD_COUNT_AT),
        })
    }

    /// Checks a whole stored batch: header present, magic 2, the length
    /// field matching `batch.len()`, and the CRC. This is what recovery runs
    /// on every batch of a log tail, and what a reader may trust afterwards.
    pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse(batch)?;
        let declared = header.total_len();
        if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || declared != batch.len() {
            return Err(BatchError::LengthMismatch { declared, actual: batch.len() });
        }
        let computed = compute_crc(batch);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        Ok(header)
    }

    /// Everything [`BatchHeader::validate`] checks, plus what a producer's
    /// batch must satisfy before it is appended: at least one record, the
    /// last offset delta equal to count - 1, a known compression codec, and,
    /// for uncompressed batches, records whose framing adds up to exactly the
    /// batch with offset deltas 0, 1, 2, …. Reads a few varints a record and
    /// allocates nothing.
    pub fn validate_for_append(batch: &[u8], size_limit: usize) -> Result<BatchHeader, BatchError> {
        if batch.len() > size_limit {
            return Err(BatchError::TooLarge { size: batch.len(), limit: size_limit });
        }
        let header = BatchHeader::validate(batch)?;
        let compression = header.attributes.compression()?;
        if header.record_count <= 0 {
            return Err(BatchError::RecordCountMismatch(format!(
                "a produced batch needs at least one record, header says {}",
                header.record_count
            )));
        }
        if header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::RecordCountMismatch(format!(
                "last offset delta {} does not match record count {}",
                header.last_offset_delta, header.record_count
            )));
        }
        // A sequence needs a producer id. A producer id without a sequence is
        // allowed only in a transactional batch: offset commits the
        // coordinator writes on a producer's behalf, fenced by epoch and
        // needing no dedupe (the latest offset simply wins).
        if header.producer_id.is_none() && header.base_sequence.0 >= 0 {
            return Err(BatchError::Malformed("a batch with a sequence needs a producer id"));
        }
        if header.producer_id.is_none() && header.is_transactional() {
            return Err(BatchError::Malformed("a transactional batch needs a producer id"));
        }
        if !header.producer_id.is_none() && header.base_sequence.0 < 0 && !header.is_transactional()
        {
            return Err(BatchError::Malformed(
                "an idempotent batch needs a base sequence (only transactional batches may omit it)",
            ));
        }
        if compression == Compression::None {
            walk_uncompressed_records(&batch[HEADER_LEN..], header.record_count)?;
        }
        Ok(header)
    }

    /// Size of the whole batch in bytes.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(self.last_offset_delta as i64)
    }

    /// Offset right after this batch.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().next()
    }

    /// Sequence of the batch's last record (wrapping at `i32::MAX`).
    pub fn last_sequence(&self) -> Sequence {
        self.base_sequence.plus(self.last_offset_delta)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes.is_transactional()
    }

    pub fn is_control(&self) -> bool {
        self.attributes.is_control()
    }

    pub fn is_idempotent(&self) -> bool {
        !self.producer_id.is_none()
    }

    /// Whether the batch carries sequence numbers (and so takes part in
    /// dedupe). Transactional offset commits carry a producer id without one.
    pub fn is_sequenced(&self) -> bool {
        self.is_idempotent() && self.base_sequence.0 >= 0
    }

    /// Writes every field into the first 61 bytes of `buf`, the inverse of
    /// [`BatchHeader::parse`]. The CRC is written as given; a batch builder
    /// calls [`store_crc`] once the records are in place.
    pub(crate) fn write(&self, buf: &mut [u8]) {
        assert!(buf.len() >= HEADER_LEN, "no room for a batch header");
        buf[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&self.base_offset.0.to_be_bytes());
        buf[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&self.batch_length.to_be_bytes());
        buf[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        buf[MAGIC_AT] = self.magic as u8;
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&self.crc.to_be_bytes());
        buf[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&self.attributes.0.to_be_bytes());
        buf[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        buf[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        buf[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        buf[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&self.producer_id.0.to_be_bytes());
        buf[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&self.producer_epoch.0.to_be_bytes());
        buf[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
            .copy_from_slice(&self.base_sequence.0.to_be_bytes());
        buf[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&self.record_count.to_be_bytes());
    }
}

/// Checks that `records` holds exactly `count` varint-framed records whose
/// offset deltas run 0, 1, 2, ….
fn walk_uncompressed_records(records: &[u8], count: i32) -> Result<(), BatchError> {
    let mut pos = 0usize;
    for index in 0..count {
        if pos >= records.len() {
            return Err(BatchError::RecordCountMismatch(format!(
                "header says {count} records, bytes hold {index}"
            )));
        }
        let length = varint::get_varint(records, &mut pos)?;
        if length < 0 {
            return Err(BatchError::Malformed("negative record length"));
        }
        let body_start = pos;
        let body_end = body_start
            .checked_add(length as usize)
            .filter(|&end| end <= records.len())
            .ok_or(BatchError::Malformed("record runs past the end of the batch"))?;
        let body = &records[body_start..body_end];
        let mut at = 1usize; // the record's attributes byte
        if body.is_empty() {
            return Err(BatchError::Malformed("empty record"));
        }
        varint::get_varlong(body, &mut at)?; // timestamp delta
        let offset_delta = varint::get_varint(body, &mut at)?;
        if offset_delta != index {
            return Err(BatchError::RecordCountMismatch(format!(
                "record {index} has offset delta {offset_delta}"
            )));
        }
        pos = body_end;
    }
    if pos != records.len() {
        return Err(BatchError::RecordCountMismatch(format!(
            "{} bytes left after the {count} records the header announces",
            records.len() - pos
        )));
    }
    Ok(())
}
