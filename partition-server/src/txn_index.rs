//! The aborted-transaction index of a partition: for every transaction
//! that an ABORT marker ended here, the producer id, the transaction's first
//! offset and the marker's offset. A read_committed fetch drops every
//! transactional batch that falls inside one of these ranges for its
//! producer (a transactional batch belongs to exactly one transaction, so
//! filtering is per batch).
//!
//! On disk it is an append-only file of fixed-size entries, each with its
//! own CRC, so a torn tail loses only entries that recovery re-derives by
//! replaying the log after the producer snapshot:
//!
//! ```text
//! producer_id i64 | first_offset i64 | marker_offset i64 | crc32c u32
//! ```

use xo_proto::{Offset, ProducerId};

pub const ENTRY_LEN: usize = 8 + 8 + 8 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    pub marker_offset: Offset,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0..8].copy_from_slice(&self.producer_id.0.to_be_bytes());
        out[8..16].copy_from_slice(&self.first_offset.0.to_be_bytes());
        out[16..24].copy_from_slice(&self.marker_offset.0.to_be_bytes());
        let crc = crc32c::crc32c(&out[..24]);
        out[24..28].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<AbortedTxn> {
        let crc = u32::from_be_bytes(bytes[24..28].try_into().unwrap());
        if crc32c::crc32c(&bytes[..24]) != crc {
            return None;
        }
        let field = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let entry = AbortedTxn {
            producer_id: ProducerId(field(0)),
            first_offset: Offset(field(8)),
            marker_offset: Offset(field(16)),
        };
        (entry.first_offset < entry.marker_offset).then_some(entry)
    }
}

/// Aborted transactions in marker order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AbortedTxnIndex {
    entries: Vec<AbortedTxn>,
}

impl AbortedTxnIndex {
    pub fn new() -> AbortedTxnIndex {
        AbortedTxnIndex::default()
    }

    /// Reads entries from the file's bytes, stopping at the first torn or
    /// corrupt one (everything after it is re-derived from the log).
    pub fn decode_file(bytes: &[u8]) -> AbortedTxnIndex {
        let mut index = AbortedTxnIndex::new();
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            match AbortedTxn::decode(chunk) {
                Some(entry) if index.last_marker().is_none_or(|m| entry.marker_offset > m) => {
                    index.entries.push(entry)
                }
                _ => break,
            }
        }
        index
    }

    pub fn encode_file(&self) -> Vec<u8> {
        self.entries.iter().flat_map(|e| e.encode()).collect()
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    fn last_marker(&self) -> Option<Offset> {
        self.entries.last().map(|e| e.marker_offset)
    }

    pub fn push(&mut self, entry: AbortedTxn) {
        assert!(entry.first_offset < entry.marker_offset, "abort marker before its data");
        assert!(
            self.last_marker().is_none_or(|m| entry.marker_offset > m),
            "abort markers are indexed in log order"
        );
        self.entries.push(entry);
    }

    /// Forgets entries whose marker is at or after `offset` (recovery:
    /// replay from there re-adds them).
    pub fn truncate_from(&mut self, offset: Offset) {
        self.entries.retain(|e| e.marker_offset < offset);
    }

    /// Forgets transactions wholly below the log start (retention).
    pub fn drop_before(&mut self, log_start: Offset) {
        self.entries.retain(|e| e.marker_offset >= log_start);
    }

    /// Aborted transactions that may cover a batch at or after `from`:
    /// those whose marker is at or after it. The fetch path takes these once
    /// and then asks [`AbortedRanges::covers`] per batch.
    pub fn ranges_from(&self, from: Offset) -> AbortedRanges<'_> {
        let start = self.entries.partition_point(|e| e.marker_offset < from);
        AbortedRanges { entries: &self.entries[start..] }
    }
}

pub struct AbortedRanges<'a> {
    entries: &'a [AbortedTxn],
}

impl AbortedRanges<'_> {
    /// Whether a transactional batch of `producer_id` at `base_offset` was
    /// aborted.
    pub fn covers(&self, producer_id: ProducerId, base_offset: Offset) -> bool {
        self.entries.iter().any(|e| {
            e.producer_id == producer_id
                && e.first_offset <= base_offset
                && base_offset < e.marker_offset
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, marker: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: ProducerId(pid),
            first_offset: Offset(first),
            marker_offset: Offset(marker),
        }
    }

    #[test]
    fn covers_only_the_aborted_producers_batches_inside_the_range() {
        // Proves interleaved transactions of two producers are told apart.
        let mut index = AbortedTxnIndex::new();
        index.push(txn(1, 10, 20));
        let ranges = index.ranges_from(Offset(0));
        assert!(ranges.covers(ProducerId(1), Offset(10)));
        assert!(ranges.covers(ProducerId(1), Offset(19)));
        assert!(!ranges.covers(ProducerId(1), Offset(9)));
        assert!(!ranges.covers(ProducerId(1), Offset(21)), "next transaction of the producer");
        assert!(!ranges.covers(ProducerId(2), Offset(15)), "another producer inside the range");
        assert!(!index.ranges_from(Offset(21)).covers(ProducerId(1), Offset(15)));
    }

    #[test]
    fn file_round_trips_and_a_torn_tail_is_dropped() {
        // Proves the on-disk form survives and a partial entry is ignored.
        let mut index = AbortedTxnIndex::new();
        index.push(txn(1, 0, 5));
        index.push(txn(2, 3, 9));
        let bytes = index.encode_file();
        assert_eq!(AbortedTxnIndex::decode_file(&bytes), index);
        let torn = &bytes[..bytes.len() - 3];
        assert_eq!(AbortedTxnIndex::decode_file(torn).entries(), &index.entries()[..1]);
        let mut flipped = bytes.clone();
        flipped[ENTRY_LEN + 2] ^= 1;
        assert_eq!(AbortedTxnIndex::decode_file(&flipped).entries(), &index.entries()[..1]);
    }

    #[test]
    fn truncation_and_retention_drop_the_right_entries() {
        // Proves recovery truncation keeps markers before the cut and retention keeps those at/after log start.
        let mut index = AbortedTxnIndex::new();
        for (pid, first, marker) in [(1, 0, 4), (2, 5, 8), (1, 9, 12)] {
            index.push(txn(pid, first, marker));
        }
        let mut cut = index.clone();
        cut.truncate_from(Offset(8));
        assert_eq!(cut.entries(), &[txn(1, 0, 4)]);
        index.drop_before(Offset(6));
        assert_eq!(index.entries(), &[txn(2, 5, 8), txn(1, 9, 12)]);
    }
}
