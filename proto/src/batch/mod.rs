//! Kafka's RecordBatch v2 (magic 2), the one format of record data in xo:
//! producers encode it, partitions validate and store it byte for byte, and
//! consumers decode it.
//!
//! ```text
//!  offset  size  field
//!       0     8  base_offset             patched by the partition on append
//!       8     4  batch_length            bytes after this field
//!      12     4  partition_leader_epoch
//!      16     1  magic = 2
//!      17     4  crc                     CRC32C of bytes 21..end
//!      21     2  attributes              compression:3 timestamp_type:1
//!                                        transactional:1 control:1
//!      23     4  last_offset_delta
//!      27     8  base_timestamp
//!      35     8  max_timestamp
//!      43     8  producer_id
//!      51     2  producer_epoch
//!      53     4  base_sequence
//!      57     4  record_count
//!      61     …  records (varint-framed, possibly compressed)
//! ```
//!
//! Because the CRC starts at the attributes, a partition can assign offsets
//! by rewriting `base_offset` without touching the checksum.

pub mod compression;
pub mod control;
pub mod header;
pub mod records;
pub mod varint;

pub use control::{ControlRecord, ControlType, decode_control_record, encode_control_batch};
pub use header::{Attributes, BatchHeader, Compression};
pub use records::{
    BatchBuilder, BatchMeta, DecodedBatch, Record, RecordHeader, decode_batch, encode_batch,
};

/// Why a byte string is not an acceptable record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: {have} bytes, need at least {need}")]
    Truncated { have: usize, need: usize },
    #[error("batch length field says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported magic {0}: only RecordBatch v2 (magic 2) is accepted")]
    BadMagic(i8),
    #[error("CRC32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("record count mismatch: {0}")]
    RecordCountMismatch(String),
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
}
