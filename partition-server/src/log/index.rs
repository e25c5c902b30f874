//! The two sparse indexes of a segment, as pure data: lookups on an
//! in-memory `Vec`, and the byte encoding of the `.index` and `.timeindex`
//! files. No I/O happens here; `segment.rs` reads and writes the files.
//!
//! Both indexes name batches by their *base* offset relative to the
//! segment's base offset, so an entry always points at the first byte of a
//! batch and a reader can scan headers forward from it.
//!
//! ```text
//!  .index      entry = relative_offset: u32 BE | position: u32 BE      (8 bytes)
//!  .timeindex  entry = timestamp: i64 BE       | relative_offset: u32 BE (12 bytes)
//! ```
//!
//! Both are sparse: an entry is added only once `index_interval_bytes` of
//! log have been written since the previous one, so an index costs about
//! 8 / 4096 of its segment. Any subset of correct entries is still a
//! correct index (a lookup only gets a worse starting point), which is why
//! a sealed index that fails its sanity checks can simply be rebuilt.

/// Bytes of one `.index` entry.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes of one `.timeindex` entry.
pub const TIME_ENTRY_LEN: usize = 12;

/// Why an index file's bytes cannot be trusted. The caller rebuilds the
/// index from the segment's log when it sees one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index file of {len} bytes is not a whole number of {entry_len}-byte entries")]
    PartialEntry { len: usize, entry_len: usize },
    #[error("index entry {at} does not increase over the one before it")]
    NotIncreasing { at: usize },
    #[error("index entry {at} points at position {position}, past the segment's {size} bytes")]
    PastEnd { at: usize, position: u64, size: u64 },
}

/// "The batch whose base offset is `segment base + relative_offset` starts
/// at byte `position` of the segment's log."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Sparse map from offsets to file positions. Entries strictly increase in
/// both fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn new() -> OffsetIndex {
        OffsetIndex::default()
    }

    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    /// Adds an entry for a batch appended after every indexed one.
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index must grow: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// The last indexed batch whose base offset is at or before
    /// `relative_offset`. The batch holding `relative_offset` starts at or
    /// after its position. `None` means: scan from position 0.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The `.index` file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        debug_assert_eq!(out.len(), self.entries.len() * OFFSET_ENTRY_LEN);
        out
    }

    /// Reads a `.index` file's bytes, checking every invariant an index of a
    /// `segment_size`-byte log must hold.
    pub fn decode(bytes: &[u8], segment_size: u64) -> Result<OffsetIndex, IndexError> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_LEN) {
            return Err(IndexError::PartialEntry { len: bytes.len(), entry_len: OFFSET_ENTRY_LEN });
        }
        let mut entries = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_LEN);
        for (at, raw) in bytes.chunks_exact(OFFSET_ENTRY_LEN).enumerate() {
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes(raw[0..4].try_into().unwrap()),
                position: u32::from_be_bytes(raw[4..8].try_into().unwrap()),
            };
            if let Some(last) = entries.last() {
                let last: &OffsetEntry = last;
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return Err(IndexError::NotIncreasing { at });
                }
            }
            if u64::from(entry.position) >= segment_size {
                return Err(IndexError::PastEnd {
                    at,
                    position: entry.position.into(),
                    size: segment_size,
                });
            }
            entries.push(entry);
        }
        Ok(OffsetIndex { entries })
    }
}

/// "No batch at or before relative offset `relative_offset` holds a record
/// with a timestamp above `timestamp`", where `timestamp` is the running
/// maximum of batch max-timestamps through that batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// Sparse map from timestamps to offsets. Entries strictly increase in both
/// fields. Once the segment is sealed its last entry holds the segment's
/// largest timestamp (the seal adds it if the sparse entries missed it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn new() -> TimeIndex {
        TimeIndex::default()
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Largest indexed timestamp.
    pub fn timestamp_max(&self) -> Option<i64> {
        self.entries.last().map(|e| e.timestamp)
    }

    /// Adds an entry; only timestamps above every indexed one carry
    /// information, so the caller checks [`TimeIndex::would_grow`] first.
    pub fn push(&mut self, entry: TimeEntry) {
        assert!(entry.timestamp >= 0, "time index holds real timestamps only: {entry:?}");
        if let Some(last) = self.entries.last() {
            assert!(
                entry.timestamp > last.timestamp && entry.relative_offset > last.relative_offset,
                "time index must grow: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// Whether an entry for `timestamp` would add information.
    pub fn would_grow(&self, timestamp: i64) -> bool {
        timestamp >= 0 && self.timestamp_max().is_none_or(|max| timestamp > max)
    }

    /// The last entry whose timestamp is below `timestamp`: every batch up
    /// to and including the one it names holds only earlier records, so a
    /// search for the first record at or after `timestamp` may start there.
    /// `None` means: scan from the segment's start.
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let after = self.entries.partition_point(|e| e.timestamp < timestamp);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The `.timeindex` file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for e in &self.entries {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        debug_assert_eq!(out.len(), self.entries.len() * TIME_ENTRY_LEN);
        out
    }

    /// Reads a `.timeindex` file's bytes, checking its invariants.
    pub fn decode(bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
            return Err(IndexError::PartialEntry { len: bytes.len(), entry_len: TIME_ENTRY_LEN });
        }
        let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_LEN);
        for (at, raw) in bytes.chunks_exact(TIME_ENTRY_LEN).enumerate() {
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(raw[0..8].try_into().unwrap()),
                relative_offset: u32::from_be_bytes(raw[8..12].try_into().unwrap()),
            };
            let grows = entries.last().is_none_or(|l| {
                entry.timestamp > l.timestamp && entry.relative_offset > l.relative_offset
            });
            if entry.timestamp < 0 || !grows {
                return Err(IndexError::NotIncreasing { at });
            }
            entries.push(entry);
        }
        Ok(TimeIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(pairs: &[(u32, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::new();
        for &(relative_offset, position) in pairs {
            index.push(OffsetEntry { relative_offset, position });
        }
        index
    }

    #[test]
    fn offset_lookup_exact_between_before_first_and_after_last() {
        let index = offset_index(&[(10, 4100), (25, 8300), (40, 12500)]);
        let at = |rel| index.lookup(rel).map(|e| (e.relative_offset, e.position));
        // Before the first entry: scan from the segment's start.
        assert_eq!(at(0), None);
        assert_eq!(at(9), None);
        // Exact hits.
        assert_eq!(at(10), Some((10, 4100)));
        assert_eq!(at(25), Some((25, 8300)));
        assert_eq!(at(40), Some((40, 12500)));
        // Between entries: the one before.
        assert_eq!(at(11), Some((10, 4100)));
        assert_eq!(at(24), Some((10, 4100)));
        assert_eq!(at(39), Some((25, 8300)));
        // After the last.
        assert_eq!(at(41), Some((40, 12500)));
        assert_eq!(at(u32::MAX), Some((40, 12500)));
        // Empty index.
        assert_eq!(OffsetIndex::new().lookup(5), None);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_bad_files() {
        let index = offset_index(&[(0, 0), (7, 5000), (9, 9000)]);
        let bytes = index.encode();
        assert_eq!(bytes.len(), 3 * OFFSET_ENTRY_LEN);
        assert_eq!(OffsetIndex::decode(&bytes, 10_000).unwrap(), index);
        assert_eq!(OffsetIndex::decode(&[], 0).unwrap(), OffsetIndex::new());

        assert!(matches!(
            OffsetIndex::decode(&bytes[..bytes.len() - 1], 10_000),
            Err(IndexError::PartialEntry { .. })
        ));
        assert!(matches!(
            OffsetIndex::decode(&bytes, 9000),
            Err(IndexError::PastEnd { at: 2, .. })
        ));
        let mut swapped = bytes[8..16].to_vec();
        swapped.extend_from_slice(&bytes[0..8]);
        assert!(matches!(
            OffsetIndex::decode(&swapped, 10_000),
            Err(IndexError::NotIncreasing { at: 1 })
        ));
    }

    #[test]
    #[should_panic(expected = "offset index must grow")]
    fn offset_index_push_rejects_going_backwards() {
        offset_index(&[(5, 100), (5, 200)]);
    }

    #[test]
    fn time_lookup_finds_last_entry_strictly_before() {
        let mut index = TimeIndex::new();
        for &(timestamp, relative_offset) in &[(1000, 0), (2000, 10), (3000, 20)] {
            assert!(index.would_grow(timestamp));
            index.push(TimeEntry { timestamp, relative_offset });
        }
        assert!(!index.would_grow(3000));
        assert!(!index.would_grow(-1));
        let at = |ts| index.lookup_before(ts).map(|e| e.relative_offset);
        assert_eq!(at(500), None);
        assert_eq!(at(1000), None, "an entry equal to the target may hold the answer");
        assert_eq!(at(1001), Some(0));
        assert_eq!(at(2000), Some(0));
        assert_eq!(at(2500), Some(10));
        assert_eq!(at(i64::MAX), Some(20));
        assert_eq!(index.timestamp_max(), Some(3000));
    }

    #[test]
    fn time_index_round_trips_and_rejects_bad_files() {
        let mut index = TimeIndex::new();
        index.push(TimeEntry { timestamp: 5, relative_offset: 1 });
        index.push(TimeEntry { timestamp: 9, relative_offset: 4 });
        let bytes = index.encode();
        assert_eq!(TimeIndex::decode(&bytes).unwrap(), index);
        assert!(matches!(TimeIndex::decode(&bytes[..13]), Err(IndexError::PartialEntry { .. })));
        let mut backwards = bytes[12..].to_vec();
        backwards.extend_from_slice(&bytes[..12]);
        assert!(matches!(TimeIndex::decode(&backwards), Err(IndexError::NotIncreasing { at: 1 })));
        let negative = [(-5i64).to_be_bytes().as_slice(), &0u32.to_be_bytes()].concat();
        assert!(matches!(TimeIndex::decode(&negative), Err(IndexError::NotIncreasing { at: 0 })));
    }
}
