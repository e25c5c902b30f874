//! Log compaction for compacted topics (`__consumer_offsets`, changelogs):
//! keep only the latest record of each key.
//!
//! The deciding is pure and comes first: [`KeyMapBuilder`] reads the whole
//! log in order and yields, for every key, the offset of its latest
//! *committed* record, plus the transactional batches that must not be
//! touched; [`plan_batch`] then decides what becomes of each batch of a
//! sealed segment. The I/O at the end of the file rewrites segments.
//!
//! Rules:
//! - A record is removed only when a later committed record has the same
//!   key. Records with a null key are kept; a tombstone (null value) is kept
//!   while it is the latest of its key.
//! - Nothing moves: records keep their offset deltas, batches keep their base
//!   offset, last offset delta, producer id, epoch and base sequence, so a
//!   replay of producer state sees the same offset ranges.
//! - A batch left with no records is dropped if it has no producer id, and
//!   kept empty (record count 0) if it has one: the producer's last sequence
//!   must stay in the log for its dedupe window to be rebuilt.
//! - Control batches (commit/abort markers) are kept unchanged.
//! - Transactions are settled from the log itself: a transactional batch
//!   belongs to the open transaction of its producer id until that
//!   producer's next marker. Only a COMMIT makes its keys count. Batches of
//!   aborted or still open transactions are kept unchanged and never shadow
//!   anything: otherwise an aborted offset commit in `__consumer_offsets`
//!   could remove the committed offset before it, and a read-committed
//!   reader would then see neither.
//!
//! A segment is rewritten into `<base>.log.cleaned`, fsync'd, and renamed
//! over `<base>.log`; see `Segment::install_cleaned` for why a crash at any
//! point leaves either the old or the new segment.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};

use bytes::Bytes;
use xo_proto::batch::header::store_crc;
use xo_proto::batch::{
    Attributes, BatchBuilder, BatchError, BatchHeader, BatchMeta, Compression, ControlType, Record,
    decode_batch, decode_control_record,
};
use xo_proto::{Offset, ProducerId};

use super::segment::{self, CLEANED_SUFFIX, LOG_EXT};
use super::{BATCH_BYTES_MAX_LIMIT, Log, StoredBatch};

/// Most bytes the key map may take (keys plus a per-entry estimate). A log
/// whose distinct keys need more is not compacted at all, with the reason
/// in the report, rather than compacted with a partial map (which would be
/// safe, but would hide that the bound is too low).
pub const KEY_MAP_BYTES_MAX: usize = 256 * 1024 * 1024;
/// What one map entry costs besides its key bytes (hash slot, `Bytes`
/// handle, offset), for counting against [`KEY_MAP_BYTES_MAX`].
const KEY_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Write buffer of a segment rewrite.
const REWRITE_BUFFER_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the key map would exceed {KEY_MAP_BYTES_MAX} bytes")]
pub struct KeyMapFull;

/// Key → offset of its latest committed record.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    latest: HashMap<Bytes, Offset>,
    bytes: usize,
}

impl KeyMap {
    pub fn latest(&self, key: &[u8]) -> Option<Offset> {
        self.latest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Notes that `key` has a committed record at `offset`. Keeps the larger
    /// offset, so the order in which transactions settle does not matter.
    fn note(&mut self, key: &[u8], offset: Offset, bytes_max: usize) -> Result<(), KeyMapFull> {
        if let Some(latest) = self.latest.get_mut(key) {
            *latest = (*latest).max(offset);
            return Ok(());
        }
        let cost = key.len() + KEY_ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > bytes_max {
            return Err(KeyMapFull);
        }
        self.bytes += cost;
        // A copy: a slice would pin the whole read buffer it came from.
        self.latest.insert(Bytes::copy_from_slice(key), offset);
        Ok(())
    }
}

/// The data batches and keys of a producer's transaction that has not
/// ended yet in the part of the log read so far.
#[derive(Debug, Default)]
struct OpenTransaction {
    batches: Vec<Offset>,
    keys: Vec<(Bytes, Offset)>,
}

/// Reads the log's batches in offset order and builds the [`KeyMap`].
#[derive(Debug)]
pub struct KeyMapBuilder {
    map: KeyMap,
    bytes_max: usize,
    /// Bytes of keys held in `open` (counted against the same bound).
    open_bytes: usize,
    open: HashMap<ProducerId, OpenTransaction>,
    /// Base offsets of transactional batches whose transaction aborted.
    aborted: HashSet<Offset>,
}

/// What compaction may not touch, and what decides the rest.
#[derive(Debug)]
pub struct KeyMapResult {
    pub map: KeyMap,
    /// Base offsets of transactional data batches that are aborted or whose
    /// transaction is still open: kept unchanged.
    pub unsettled: HashSet<Offset>,
}

impl Default for KeyMapBuilder {
    fn default() -> KeyMapBuilder {
        KeyMapBuilder::new(KEY_MAP_BYTES_MAX)
    }
}

impl KeyMapBuilder {
    pub fn new(bytes_max: usize) -> KeyMapBuilder {
        KeyMapBuilder {
            map: KeyMap::default(),
            bytes_max,
            open_bytes: 0,
            open: HashMap::new(),
            aborted: HashSet::new(),
        }
    }

    /// A data batch and its records' keys with their offsets.
    pub fn observe_data<'a>(
        &mut self,
        header: &BatchHeader,
        keys: impl IntoIterator<Item = (Option<&'a [u8]>, Offset)>,
    ) -> Result<(), KeyMapFull> {
        assert!(!header.is_control());
        if !header.is_transactional() {
            for (key, offset) in keys {
                if let Some(key) = key {
                    self.map.note(key, offset, self.bytes_max.saturating_sub(self.open_bytes))?;
                }
            }
            return Ok(());
        }
        let txn = self.open.entry(header.producer_id).or_default();
        txn.batches.push(header.base_offset);
        for (key, offset) in keys {
            if let Some(key) = key {
                let cost = key.len() + KEY_ENTRY_OVERHEAD_BYTES;
                if self.map.bytes + self.open_bytes + cost > self.bytes_max {
                    return Err(KeyMapFull);
                }
                self.open_bytes += cost;
                txn.keys.push((Bytes::copy_from_slice(key), offset));
            }
        }
        Ok(())
    }

    /// A data batch whose records cannot be read. It is kept unchanged, and
    /// its keys, unknown, shadow nothing; if it is transactional it still
    /// belongs to its producer's transaction.
    pub fn observe_unreadable(&mut self, header: &BatchHeader) {
        if header.is_transactional() && !header.is_control() {
            self.open.entry(header.producer_id).or_default().batches.push(header.base_offset);
        }
    }

    /// A control batch: ends its producer's open transaction. `kind` is
    /// `None` when the marker cannot be read, which is treated as an abort
    /// (keeping data is always safe; removing it is not).
    pub fn observe_marker(
        &mut self,
        header: &BatchHeader,
        kind: Option<ControlType>,
    ) -> Result<(), KeyMapFull> {
        assert!(header.is_control());
        let Some(txn) = self.open.remove(&header.producer_id) else { return Ok(()) };
        let cost: usize = txn.keys.iter().map(|(k, _)| k.len() + KEY_ENTRY_OVERHEAD_BYTES).sum();
        self.open_bytes -= cost;
        match kind {
            Some(ControlType::Commit) => {
                for (key, offset) in &txn.keys {
                    self.map.note(key, *offset, self.bytes_max.saturating_sub(self.open_bytes))?;
                }
            }
            Some(ControlType::Abort) | None => self.aborted.extend(txn.batches),
        }
        Ok(())
    }

    pub fn finish(self) -> KeyMapResult {
        let mut unsettled = self.aborted;
        for txn in self.open.into_values() {
            unsettled.extend(txn.batches);
        }
        KeyMapResult { map: self.map, unsettled }
    }
}

/// What becomes of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchAction {
    /// Copied byte for byte.
    Keep,
    /// Left out of the rewritten segment.
    Drop,
    /// Rewritten with no records, keeping its offsets and producer fields.
    KeepEmpty,
    /// Rewritten with only these records (indexes into the batch's records).
    Rewrite { keep: Vec<usize> },
}

/// Decides about one batch of a sealed segment, given its records' keys and
/// offsets (`records` is empty for a control batch).
pub fn plan_batch(
    header: &BatchHeader,
    records: &[(Option<&[u8]>, Offset)],
    keys: &KeyMapResult,
) -> BatchAction {
    if header.is_control() || keys.unsettled.contains(&header.base_offset) {
        return BatchAction::Keep;
    }
    let keep: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, (key, offset))| match key {
            None => true,
            Some(key) => keys.map.latest(key).is_none_or(|latest| latest <= *offset),
        })
        .map(|(i, _)| i)
        .collect();
    if keep.len() == records.len() {
        BatchAction::Keep
    } else if !keep.is_empty() {
        BatchAction::Rewrite { keep }
    } else if header.producer_id.is_none() {
        BatchAction::Drop
    } else {
        BatchAction::KeepEmpty
    }
}

/// Encodes `header`'s batch again with only `records`, keeping every header
/// field but the length, count, CRC and (if no record is left) compression.
pub fn rebuild_batch(header: &BatchHeader, records: &[Record]) -> Result<Bytes, BatchError> {
    let original_compression = header.attributes.compression()?;
    // An empty batch has nothing to compress, and some codecs cannot
    // represent nothing; store it plain.
    let compression = if records.is_empty() { Compression::None } else { original_compression };
    let meta = BatchMeta {
        base_offset: header.base_offset,
        partition_leader_epoch: header.partition_leader_epoch,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        transactional: header.is_transactional(),
        control: header.is_control(),
        compression,
        base_timestamp: header.base_timestamp,
    };
    let mut builder = BatchBuilder::new(meta);
    for record in records {
        builder.push_record(record);
    }
    let built = builder.finish_with_last_offset_delta(header.last_offset_delta)?;
    // Keep the timestamp type bit and the max timestamp as they were (the
    // builder knows neither); both are covered by the CRC, so recompute it.
    let mut bytes = built.to_vec();
    let attributes = Attributes((header.attributes.0 & !0x07) | i16::from(compression.bits()));
    bytes[21..23].copy_from_slice(&attributes.0.to_be_bytes());
    bytes[35..43].copy_from_slice(&header.max_timestamp.to_be_bytes());
    store_crc(&mut bytes);
    Ok(Bytes::from(bytes))
}

/// What [`Log::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Sealed segments looked at (rewritten or found clean).
    pub segments_examined: usize,
    pub records_removed: u64,
    /// Batches left out entirely.
    pub batches_dropped: u64,
    /// Batches kept with no records (idempotent producers' batches).
    pub batches_emptied: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Distinct keys with a committed record in the whole log.
    pub keys: usize,
    /// Why nothing was done, if nothing was.
    pub skipped: Option<String>,
}

/// One segment rewritten into its `.cleaned` file, waiting to be installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanedSegment {
    pub base_offset: Offset,
    /// Size of the log the rewrite was made from; installing checks that
    /// the segment is still that one.
    pub size_before: u64,
    pub size_after: u64,
}

/// The result of [`Log::prepare_compaction`], for [`Log::install_compaction`].
#[derive(Debug, Default)]
pub struct CompactionPlan {
    pub cleaned: Vec<CleanedSegment>,
    pub report: CompactionReport,
}

/// Keys and offsets of a decoded batch's records.
fn record_keys<'a>(header: &BatchHeader, records: &'a [Record]) -> Vec<(Option<&'a [u8]>, Offset)> {
    records.iter().map(|r| (r.key.as_deref(), r.offset(header))).collect()
}

impl Log {
    /// Compacts the sealed segments (see the module documentation). Does
    /// nothing for a log not configured with `compact`.
    ///
    /// The work is [`Log::prepare_compaction`] (reads the log and writes the
    /// `.cleaned` files, `&self`) then [`Log::install_compaction`] (renames,
    /// `&mut self`); a caller may run the first under a read lock and take
    /// the write lock only for the second. At most one compaction of a log
    /// may run at a time.
    pub fn compact(&mut self) -> io::Result<CompactionReport> {
        let plan = self.prepare_compaction()?;
        self.install_compaction(plan)
    }

    /// Builds the key map over the whole log and writes a `.cleaned` rewrite
    /// of every sealed segment that loses anything.
    pub fn prepare_compaction(&self) -> io::Result<CompactionPlan> {
        let mut plan = CompactionPlan::default();
        if !self.config.compact {
            plan.report.skipped = Some("the log is not configured for compaction".to_owned());
            return Ok(plan);
        }
        if self.segments.len() < 2 {
            plan.report.skipped = Some("no sealed segment".to_owned());
            return Ok(plan);
        }
        let keys = match self.build_key_map()? {
            Ok(keys) => keys,
            Err(KeyMapFull) => {
                plan.report.skipped = Some(KeyMapFull.to_string());
                return Ok(plan);
            }
        };
        plan.report.keys = keys.map.len();
        let sealed = &self.segments[..self.segments.len() - 1];
        for segment in sealed {
            plan.report.segments_examined += 1;
            if let Some(cleaned) = self.rewrite_segment(segment, &keys, &mut plan.report)? {
                plan.cleaned.push(cleaned);
            }
        }
        Ok(plan)
    }

    fn build_key_map(&self) -> io::Result<Result<KeyMapResult, KeyMapFull>> {
        let mut builder = KeyMapBuilder::default();
        let mut full = false;
        self.try_for_each_batch(self.log_start_offset(), |batch: &StoredBatch| {
            if full {
                return Ok(());
            }
            let header = &batch.header;
            let noted = if header.is_control() {
                let kind = decode_control_record(&batch.bytes).ok().map(|c| c.kind);
                builder.observe_marker(header, kind)
            } else {
                match decode_batch(&batch.bytes) {
                    Ok(decoded) => builder.observe_data(header, record_keys(header, &decoded.records)),
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), offset = %header.base_offset, error = %e,
                            "compaction keeps a batch it cannot decode");
                        builder.observe_unreadable(header);
                        Ok(())
                    }
                }
            };
            full = noted.is_err();
            Ok(())
        })?;
        Ok(if full { Err(KeyMapFull) } else { Ok(builder.finish()) })
    }

    /// Writes the compacted form of `segment` to `<base>.log.cleaned`, or
    /// nothing if every batch stays as it is.
    fn rewrite_segment(
        &self,
        segment: &segment::Segment,
        keys: &KeyMapResult,
        report: &mut CompactionReport,
    ) -> io::Result<Option<CleanedSegment>> {
        let cleaned_path = segment::temp_path(&segment.path(LOG_EXT), CLEANED_SUFFIX);
        let mut out: Option<BufWriter<fs::File>> = None;
        let mut written = 0u64;
        let mut position = 0u64;
        let (mut records_removed, mut dropped, mut emptied) = (0u64, 0u64, 0u64);
        let batches_max = segment.size() / xo_proto::batch::header::HEADER_LEN as u64 + 1;
        for _ in 0..batches_max {
            if position >= segment.size() {
                break;
            }
            let header = segment.read_header(position)?;
            let bytes = segment.read_bytes(position, header.total_len())?;
            // Everything before the first change is copied once a change is
            // found, so segments that stay clean are never rewritten.
            let (action, decoded) = if header.is_control() {
                (BatchAction::Keep, None)
            } else {
                match decode_batch(&bytes) {
                    Ok(decoded) => {
                        let action =
                            plan_batch(&header, &record_keys(&header, &decoded.records), keys);
                        (action, Some(decoded))
                    }
                    Err(_) => (BatchAction::Keep, None),
                }
            };
            // `None`: the batch is left out. `changed`: the output differs.
            let (replacement, changed) = match &action {
                BatchAction::Keep => (Some(bytes.clone()), false),
                BatchAction::Drop => (None, true),
                BatchAction::KeepEmpty | BatchAction::Rewrite { .. } => {
                    let decoded = decoded.as_ref().expect("only decoded batches are rewritten");
                    let kept: Vec<Record> = match &action {
                        BatchAction::Rewrite { keep } => {
                            keep.iter().map(|&i| decoded.records[i].clone()).collect()
                        }
                        _ => Vec::new(),
                    };
                    match rebuild_batch(&header, &kept) {
                        Ok(rebuilt) => {
                            check_rebuilt(&header, &kept, &rebuilt);
                            (Some(rebuilt), true)
                        }
                        // E.g. a codec that can decode but not encode: keeping
                        // the batch as it was is always correct.
                        Err(e) => {
                            tracing::warn!(offset = %header.base_offset, error = %e, "compaction keeps a batch it cannot re-encode");
                            (Some(bytes.clone()), false)
                        }
                    }
                }
            };
            if changed {
                let removed = header.record_count as u64
                    - replacement
                        .as_ref()
                        .map_or(0, |b| BatchHeader::parse(b).map_or(0, |h| h.record_count as u64));
                records_removed += removed;
                match &action {
                    BatchAction::Drop => dropped += 1,
                    BatchAction::KeepEmpty => emptied += 1,
                    _ => {}
                }
                if out.is_none() {
                    let file = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&cleaned_path)?;
                    let mut writer = BufWriter::with_capacity(REWRITE_BUFFER_BYTES, file);
                    // Copy the unchanged batches before this one, a chunk at a
                    // time (the prefix may be most of a 1 GiB segment).
                    let mut copied = 0u64;
                    while copied < position {
                        let len = (position - copied).min(REWRITE_BUFFER_BYTES as u64);
                        writer.write_all(&segment.read_bytes(copied, len as usize)?)?;
                        copied += len;
                    }
                    written = position;
                    out = Some(writer);
                }
            }
            if let (Some(writer), Some(batch)) = (out.as_mut(), replacement.as_ref()) {
                writer.write_all(batch)?;
                written += batch.len() as u64;
            }
            position += header.total_len() as u64;
        }
        if position != segment.size() {
            return Err(segment::corrupt(format!(
                "segment {} has batches past its end",
                segment.base_offset()
            )));
        }
        let Some(writer) = out else { return Ok(None) };
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        assert_eq!(file.metadata()?.len(), written);
        report.records_removed += records_removed;
        report.batches_dropped += dropped;
        report.batches_emptied += emptied;
        Ok(Some(CleanedSegment {
            base_offset: segment.base_offset(),
            size_before: segment.size(),
            size_after: written,
        }))
    }

    /// Renames the prepared `.cleaned` files over their segments.
    pub fn install_compaction(&mut self, plan: CompactionPlan) -> io::Result<CompactionReport> {
        let mut report = plan.report;
        for cleaned in plan.cleaned {
            let active_base = self.active().base_offset();
            let found = self.segments.iter().position(|s| s.base_offset() == cleaned.base_offset);
            let still_same = found.filter(|&i| {
                let segment = &self.segments[i];
                segment.is_sealed()
                    && segment.base_offset() < active_base
                    && segment.size() == cleaned.size_before
            });
            let Some(i) = still_same else {
                // Deleted by retention (or otherwise changed) meanwhile.
                let path = segment::temp_path(
                    &segment::segment_path(&self.dir, cleaned.base_offset, LOG_EXT),
                    CLEANED_SUFFIX,
                );
                fs::remove_file(path)?;
                continue;
            };
            let installed = self.segments[i].install_cleaned(BATCH_BYTES_MAX_LIMIT)?;
            assert_eq!(installed.size(), cleaned.size_after);
            self.segments[i] = installed;
            report.segments_cleaned += 1;
            report.bytes_before += cleaned.size_before;
            report.bytes_after += cleaned.size_after;
        }
        if report.segments_cleaned > 0 {
            tracing::info!(dir = %self.dir.display(), ?report, "compacted");
        }
        Ok(report)
    }
}

/// Reads a rewritten batch back before it goes to disk: valid, same
/// offsets and producer fields, exactly the kept records.
fn check_rebuilt(original: &BatchHeader, kept: &[Record], rebuilt: &Bytes) {
    let decoded = decode_batch(rebuilt).expect("a rebuilt batch decodes");
    let h = decoded.header;
    assert_eq!(
        (h.base_offset, h.last_offset_delta, h.producer_id, h.producer_epoch, h.base_sequence),
        (
            original.base_offset,
            original.last_offset_delta,
            original.producer_id,
            original.producer_epoch,
            original.base_sequence
        ),
        "a rebuilt batch keeps its offsets and producer fields"
    );
    assert_eq!(h.is_transactional(), original.is_transactional());
    assert_eq!(h.max_timestamp, original.max_timestamp);
    assert_eq!(decoded.records, kept, "a rebuilt batch holds exactly the kept records");
    assert!(rebuilt.len() <= BATCH_BYTES_MAX_LIMIT);
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_proto::batch::{Attributes, Compression};
    use xo_proto::{ProducerEpoch, Sequence};

    fn header(base: i64, producer_id: i64, transactional: bool, control: bool) -> BatchHeader {
        BatchHeader {
            base_offset: Offset(base),
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: Attributes::new(Compression::None, transactional, control),
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: ProducerId(producer_id),
            producer_epoch: ProducerEpoch(if producer_id < 0 { -1 } else { 0 }),
            base_sequence: Sequence(if producer_id < 0 { -1 } else { 0 }),
            record_count: 1,
        }
    }

    /// Keys and offsets; "" stands for a null key.
    fn keys<'a>(list: &[(&'a str, i64)]) -> Vec<(Option<&'a [u8]>, Offset)> {
        list.iter().map(|&(k, o)| ((!k.is_empty()).then_some(k.as_bytes()), Offset(o))).collect()
    }

    #[test]
    fn the_map_keeps_the_latest_offset_of_each_key() {
        let mut b = KeyMapBuilder::default();
        b.observe_data(&header(0, -1, false, false), keys(&[("a", 0), ("b", 1), ("", 2)])).unwrap();
        b.observe_data(&header(3, -1, false, false), keys(&[("a", 3)])).unwrap();
        let result = b.finish();
        assert_eq!(result.map.latest(b"a"), Some(Offset(3)));
        assert_eq!(result.map.latest(b"b"), Some(Offset(1)));
        assert_eq!(result.map.len(), 2, "null keys are not in the map");
        assert!(result.unsettled.is_empty());
    }

    #[test]
    fn only_committed_transactions_shadow_earlier_records() {
        let mut b = KeyMapBuilder::default();
        b.observe_data(&header(0, -1, false, false), keys(&[("k", 0), ("j", 1)])).unwrap();
        // Producer 7 writes k, aborts; producer 8 writes j, commits;
        // producer 9 writes k and has not ended.
        b.observe_data(&header(2, 7, true, false), keys(&[("k", 2)])).unwrap();
        b.observe_data(&header(3, 8, true, false), keys(&[("j", 3)])).unwrap();
        b.observe_marker(&header(4, 7, true, true), Some(ControlType::Abort)).unwrap();
        b.observe_marker(&header(5, 8, true, true), Some(ControlType::Commit)).unwrap();
        b.observe_data(&header(6, 9, true, false), keys(&[("k", 6)])).unwrap();
        let result = b.finish();
        assert_eq!(
            result.map.latest(b"k"),
            Some(Offset(0)),
            "aborted and open writes shadow nothing"
        );
        assert_eq!(result.map.latest(b"j"), Some(Offset(3)));
        assert_eq!(result.unsettled, HashSet::from([Offset(2), Offset(6)]));
    }

    #[test]
    fn an_unreadable_marker_counts_as_an_abort() {
        let mut b = KeyMapBuilder::default();
        b.observe_data(&header(0, 7, true, false), keys(&[("k", 0)])).unwrap();
        b.observe_marker(&header(1, 7, true, true), None).unwrap();
        let result = b.finish();
        assert_eq!(result.map.latest(b"k"), None);
        assert!(result.unsettled.contains(&Offset(0)));
    }

    #[test]
    fn the_map_is_bounded() {
        let mut b = KeyMapBuilder::new(3 * (KEY_ENTRY_OVERHEAD_BYTES + 1));
        b.observe_data(
            &header(0, -1, false, false),
            keys(&[("a", 0), ("b", 1), ("c", 2), ("a", 3)]),
        )
        .unwrap();
        assert_eq!(
            b.observe_data(&header(4, -1, false, false), keys(&[("d", 4)])),
            Err(KeyMapFull)
        );
    }

    #[test]
    fn plan_keeps_latest_null_keys_and_markers_and_empties_idempotent_batches() {
        let mut b = KeyMapBuilder::default();
        b.observe_data(&header(0, -1, false, false), keys(&[("a", 0), ("", 1), ("b", 2)])).unwrap();
        b.observe_data(&header(3, 5, false, false), keys(&[("a", 3), ("b", 4)])).unwrap();
        b.observe_data(&header(5, -1, false, false), keys(&[("a", 5), ("b", 6)])).unwrap();
        let result = b.finish();
        // Batch 0: a and b superseded, the null key stays.
        assert_eq!(
            plan_batch(
                &header(0, -1, false, false),
                &keys(&[("a", 0), ("", 1), ("b", 2)]),
                &result
            ),
            BatchAction::Rewrite { keep: vec![1] }
        );
        // Batch 3 (producer 5): everything superseded, kept empty.
        assert_eq!(
            plan_batch(&header(3, 5, false, false), &keys(&[("a", 3), ("b", 4)]), &result),
            BatchAction::KeepEmpty
        );
        // The same without a producer: dropped.
        assert_eq!(
            plan_batch(&header(3, -1, false, false), &keys(&[("a", 3), ("b", 4)]), &result),
            BatchAction::Drop
        );
        // The latest batch stays whole.
        assert_eq!(
            plan_batch(&header(5, -1, false, false), &keys(&[("a", 5), ("b", 6)]), &result),
            BatchAction::Keep
        );
        // Markers and unsettled transactional batches stay whole.
        assert_eq!(plan_batch(&header(9, 5, true, true), &[], &result), BatchAction::Keep);
        let mut unsettled = result;
        unsettled.unsettled.insert(Offset(0));
        assert_eq!(
            plan_batch(
                &header(0, -1, true, false),
                &keys(&[("a", 0), ("", 1), ("b", 2)]),
                &unsettled
            ),
            BatchAction::Keep
        );
        // An already emptied batch stays as it is: compaction is idempotent.
        assert_eq!(plan_batch(&header(3, 5, false, false), &[], &unsettled), BatchAction::Keep);
    }
}
