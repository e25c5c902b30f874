//! Deciding how much of a segment's bytes is a valid log — pure logic, no
//! I/O, so every torn or corrupt tail can be tested on plain byte slices.
//!
//! A segment is valid up to the first byte that does not begin a whole,
//! checksummed batch in the expected offset order; everything from there on
//! is a tail to truncate. A crash tears at most the last write, so in
//! practice the tail is a partial batch; a corrupt byte (CRC mismatch), a
//! garbage length or out-of-order offsets are handled the same way, because
//! serving data after a bad batch would mean guessing where the next one
//! starts.
//!
//! [`examine`] decides about the one batch at the start of a window and
//! tells the caller when it needs more bytes, so the I/O driver
//! (`Segment::open_active`) can read the file in bounded chunks instead of
//! loading a 1 GiB segment at once. [`valid_prefix`] runs the same decision
//! over a whole in-memory slice.

use xo_proto::Offset;
use xo_proto::batch::BatchHeader;
use xo_proto::batch::header::{HEADER_LEN, LOG_OVERHEAD, framed_len};

/// How the offsets of consecutive batches must relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// Each batch starts right after the previous one ends: the active
    /// segment, which compaction never touches.
    Contiguous,
    /// Each batch starts after the previous one ends, gaps allowed: a
    /// compacted segment, where batches that lost all records were dropped.
    Increasing,
}

/// What the next batch must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// Base offset of the segment: every batch's relative offset must fit
    /// the indexes' `u32`.
    pub segment_base: Offset,
    /// The offset right after the previous batch (the segment base for the
    /// first batch).
    pub next_offset: Offset,
    pub continuity: Continuity,
    /// Largest batch the log ever writes; a length field above it is
    /// garbage, and trusting it could make recovery allocate gigabytes.
    pub batch_bytes_max: usize,
}

/// Why the valid prefix ends where it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TailDefect {
    /// The file ends inside a batch (`have` of `need` bytes): a torn write.
    Torn { have: u64, need: u64 },
    /// The length field is impossible or above the bound.
    BadLength { length_field: i32 },
    /// The batch fails its header or CRC check.
    Invalid(String),
    /// The batch's offsets do not follow the previous batch's.
    OutOfOrder { expected: Offset, found: Offset },
}

impl std::fmt::Display for TailDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TailDefect::Torn { have, need } => {
                write!(f, "torn batch: {have} bytes left in the file, the batch needs {need}")
            }
            TailDefect::BadLength { length_field } => {
                write!(f, "impossible batch length field {length_field}")
            }
            TailDefect::Invalid(why) => write!(f, "invalid batch: {why}"),
            TailDefect::OutOfOrder { expected, found } => {
                write!(f, "batch at offset {found} where offset {expected} was expected")
            }
        }
    }
}

/// The decision about the bytes at one position of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A whole, valid batch of `len` bytes begins here; continue after it.
    Valid { header: BatchHeader, len: usize },
    /// The window is too short to decide, but the file holds enough: call
    /// again with a window of at least `len` bytes from the same position.
    NeedBytes { len: usize },
    /// The file ends exactly here, after whole batches.
    CleanEnd,
    /// The valid prefix ends here; truncate from this position.
    Defect(TailDefect),
}

/// Decides about the batch that would start at `window[0]`. `file_left` is
/// the number of bytes from this position to the end of the file
/// (`window.len() <= file_left`).
pub fn examine(window: &[u8], file_left: u64, expect: &Expectation) -> Verdict {
    assert!(
        window.len() as u64 <= file_left,
        "window {} past the file's end {file_left}",
        window.len()
    );
    if file_left == 0 {
        return Verdict::CleanEnd;
    }
    if file_left < LOG_OVERHEAD as u64 {
        return Verdict::Defect(TailDefect::Torn { have: file_left, need: LOG_OVERHEAD as u64 });
    }
    if window.len() < LOG_OVERHEAD {
        return Verdict::NeedBytes { len: LOG_OVERHEAD };
    }
    let length_field = i32::from_be_bytes(window[8..12].try_into().unwrap());
    let len = match framed_len(window) {
        Some(len) if len <= expect.batch_bytes_max => len,
        _ => return Verdict::Defect(TailDefect::BadLength { length_field }),
    };
    debug_assert!(len >= HEADER_LEN);
    if file_left < len as u64 {
        return Verdict::Defect(TailDefect::Torn { have: file_left, need: len as u64 });
    }
    if window.len() < len {
        return Verdict::NeedBytes { len };
    }
    let header = match BatchHeader::validate(&window[..len]) {
        Ok(header) => header,
        Err(e) => return Verdict::Defect(TailDefect::Invalid(e.to_string())),
    };
    if let Some(why) = implausible(&header) {
        return Verdict::Defect(TailDefect::Invalid(why));
    }
    let in_order = match expect.continuity {
        Continuity::Contiguous => header.base_offset == expect.next_offset,
        Continuity::Increasing => header.base_offset >= expect.next_offset,
    };
    if !in_order {
        return Verdict::Defect(TailDefect::OutOfOrder {
            expected: expect.next_offset,
            found: header.base_offset,
        });
    }
    if header.base_offset.0 - expect.segment_base.0 > i64::from(u32::MAX) {
        return Verdict::Defect(TailDefect::Invalid(format!(
            "base offset {} is too far past the segment base {} for its index",
            header.base_offset, expect.segment_base
        )));
    }
    Verdict::Valid { header, len }
}

/// Header fields the CRC cannot vouch for (it does not cover the base
/// offset) or that no writer of this log produces.
fn implausible(header: &BatchHeader) -> Option<String> {
    if header.base_offset.0 < 0 {
        return Some(format!("negative base offset {}", header.base_offset));
    }
    if header.last_offset_delta < 0 {
        return Some(format!("negative last offset delta {}", header.last_offset_delta));
    }
    if header.base_offset.0.checked_add(i64::from(header.last_offset_delta) + 1).is_none() {
        return Some("offsets overflow".to_owned());
    }
    // Compaction may leave fewer records than offsets, never more.
    if header.record_count < 0
        || i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1
    {
        return Some(format!(
            "record count {} does not fit last offset delta {}",
            header.record_count, header.last_offset_delta
        ));
    }
    None
}

/// One batch of a valid prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    pub position: u64,
    pub len: usize,
    pub header: BatchHeader,
}

/// The valid prefix of a whole segment held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// Bytes of whole valid batches; truncate the file to this length.
    pub len: u64,
    pub batches: Vec<ScannedBatch>,
    /// Offset right after the last valid batch (the segment base if none).
    pub next_offset: Offset,
    /// Why the prefix stops short of the end, if it does.
    pub defect: Option<TailDefect>,
}

/// Runs [`examine`] over `bytes`, batch after batch, from the segment's
/// base offset.
pub fn valid_prefix(
    bytes: &[u8],
    segment_base: Offset,
    continuity: Continuity,
    batch_bytes_max: usize,
) -> Prefix {
    let mut expect =
        Expectation { segment_base, next_offset: segment_base, continuity, batch_bytes_max };
    let mut position = 0usize;
    let mut batches = Vec::new();
    // Every valid batch is at least HEADER_LEN bytes, which bounds the loop.
    let batches_max = bytes.len() / HEADER_LEN;
    for _ in 0..=batches_max {
        let window = &bytes[position..];
        match examine(window, window.len() as u64, &expect) {
            Verdict::Valid { header, len } => {
                batches.push(ScannedBatch { position: position as u64, len, header });
                expect.next_offset = header.next_offset();
                position += len;
            }
            Verdict::CleanEnd => {
                return Prefix {
                    len: position as u64,
                    batches,
                    next_offset: expect.next_offset,
                    defect: None,
                };
            }
            Verdict::Defect(defect) => {
                return Prefix {
                    len: position as u64,
                    batches,
                    next_offset: expect.next_offset,
                    defect: Some(defect),
                };
            }
            Verdict::NeedBytes { .. } => unreachable!("the window is the whole rest of the file"),
        }
    }
    unreachable!("more batches than {batches_max} in {} bytes", bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::{TestBatch, encode_test_batch};

    const BATCH_BYTES_MAX: usize = 1 << 20;

    /// Three batches of 2, 1 and 3 records at offsets 0, 2, 3.
    fn three_batches() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut base = 0;
        for count in [2usize, 1, 3] {
            let batch = encode_test_batch(&TestBatch::values(count, 20).base(base));
            base += count as i64;
            bytes.extend_from_slice(&batch);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    #[test]
    fn whole_batches_are_all_valid() {
        let (bytes, ends) = three_batches();
        let prefix = valid_prefix(&bytes, Offset(0), Continuity::Contiguous, BATCH_BYTES_MAX);
        assert_eq!(prefix.len, bytes.len() as u64);
        assert_eq!(prefix.defect, None);
        assert_eq!(prefix.next_offset, Offset(6));
        let positions: Vec<u64> = prefix.batches.iter().map(|b| b.position).collect();
        assert_eq!(positions, vec![0, ends[0] as u64, ends[1] as u64]);
        assert_eq!(
            valid_prefix(&[], Offset(7), Continuity::Contiguous, BATCH_BYTES_MAX).next_offset,
            Offset(7)
        );
    }

    #[test]
    fn a_torn_last_batch_is_cut_at_every_length() {
        let (bytes, ends) = three_batches();
        for cut in ends[1] + 1..ends[2] {
            let prefix =
                valid_prefix(&bytes[..cut], Offset(0), Continuity::Contiguous, BATCH_BYTES_MAX);
            assert_eq!(prefix.len, ends[1] as u64, "cut at {cut}");
            assert_eq!(prefix.next_offset, Offset(3));
            assert_eq!(prefix.batches.len(), 2);
            assert!(
                matches!(prefix.defect, Some(TailDefect::Torn { .. })),
                "cut at {cut}: {:?}",
                prefix.defect
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_last_batch_cuts_it() {
        let (bytes, ends) = three_batches();
        // The base offset (bytes 0..8) is not covered by the CRC, but a
        // changed one breaks contiguity; a changed length breaks the framing.
        // The partition leader epoch (bytes 12..16) is covered by nothing,
        // in Kafka's format too, and xo does not use it.
        for at in (ends[1]..ends[2]).filter(|at| !(ends[1] + 12..ends[1] + 16).contains(at)) {
            let mut broken = bytes.clone();
            broken[at] ^= 0x40;
            let prefix = valid_prefix(&broken, Offset(0), Continuity::Contiguous, BATCH_BYTES_MAX);
            assert_eq!(prefix.len, ends[1] as u64, "flip at {at}: {:?}", prefix.defect);
            assert!(prefix.defect.is_some());
        }
    }

    #[test]
    fn garbage_and_zeros_after_valid_data_are_cut() {
        let (bytes, ends) = three_batches();
        for tail in [vec![0u8; 4096], vec![0xffu8; 100], b"not a batch at all, just text".to_vec()]
        {
            let mut with_tail = bytes.clone();
            with_tail.extend_from_slice(&tail);
            let prefix =
                valid_prefix(&with_tail, Offset(0), Continuity::Contiguous, BATCH_BYTES_MAX);
            assert_eq!(prefix.len, ends[2] as u64);
            assert_eq!(prefix.next_offset, Offset(6));
            assert!(prefix.defect.is_some());
        }
    }

    #[test]
    fn offsets_must_follow_on() {
        let first = encode_test_batch(&TestBatch::values(2, 10).base(100));
        let gap = encode_test_batch(&TestBatch::values(1, 10).base(105));
        let bytes = [first.clone(), gap].concat();
        let contiguous = valid_prefix(&bytes, Offset(100), Continuity::Contiguous, BATCH_BYTES_MAX);
        assert_eq!(contiguous.len, first.len() as u64);
        assert_eq!(
            contiguous.defect,
            Some(TailDefect::OutOfOrder { expected: Offset(102), found: Offset(105) })
        );
        // A compacted segment may have gaps, but never goes backwards.
        let increasing = valid_prefix(&bytes, Offset(100), Continuity::Increasing, BATCH_BYTES_MAX);
        assert_eq!(increasing.len, bytes.len() as u64);
        assert_eq!(increasing.next_offset, Offset(106));
        let backwards = [first.clone(), first.clone()].concat();
        let prefix = valid_prefix(&backwards, Offset(100), Continuity::Increasing, BATCH_BYTES_MAX);
        assert_eq!(prefix.len, first.len() as u64);
        // The first batch must start at the segment's base.
        let prefix = valid_prefix(&first, Offset(99), Continuity::Contiguous, BATCH_BYTES_MAX);
        assert_eq!(prefix.len, 0);
    }

    #[test]
    fn a_length_above_the_bound_is_garbage_not_a_reason_to_allocate() {
        let batch = encode_test_batch(&TestBatch::values(1, 10));
        let prefix = valid_prefix(&batch, Offset(0), Continuity::Contiguous, batch.len() - 1);
        assert_eq!(prefix.len, 0);
        assert!(matches!(prefix.defect, Some(TailDefect::BadLength { .. })));
    }

    #[test]
    fn examine_asks_for_more_bytes_only_when_the_file_has_them() {
        let batch = encode_test_batch(&TestBatch::values(3, 10));
        let expect = Expectation {
            segment_base: Offset(0),
            next_offset: Offset(0),
            continuity: Continuity::Contiguous,
            batch_bytes_max: BATCH_BYTES_MAX,
        };
        let file_left = batch.len() as u64;
        assert_eq!(
            examine(&batch[..5], file_left, &expect),
            Verdict::NeedBytes { len: LOG_OVERHEAD }
        );
        assert_eq!(
            examine(&batch[..20], file_left, &expect),
            Verdict::NeedBytes { len: batch.len() }
        );
        assert!(
            matches!(examine(&batch, file_left, &expect), Verdict::Valid { len, .. } if len == batch.len())
        );
        assert!(matches!(
            examine(&batch[..20], 20, &expect),
            Verdict::Defect(TailDefect::Torn { have: 20, .. })
        ));
        assert_eq!(examine(&[], 0, &expect), Verdict::CleanEnd);
    }
}
