//! The on-disk log of one partition: an ordered list of segments, the last
//! of which is active (appended to), each a data file of RecordBatch v2
//! batches stored byte for byte as produced except for the assigned base
//! offset, with a sparse offset index and time index beside it.
//!
//! ```text
//!  <partition dir>/
//!    00000000000000000000.log        sealed: fsync'd with its indexes at roll
//!    00000000000000000000.index
//!    00000000000000000000.timeindex
//!    00000000000000052817.log        active: indexes in memory, rebuilt on open
//!    00000000000000052817.index      (empty until sealed)
//!    00000000000000052817.timeindex
//! ```
//!
//! Layout:
//! - [`index`]: the two sparse indexes, pure lookups and their file format.
//! - [`recovery`]: the pure decision of how much of a segment is a valid log.
//! - [`segment`]: one segment's files: append, seal, scan, read.
//! - [`retention`]: which old segments to delete (pure).
//! - [`compaction`]: which records a compacted topic keeps (pure), and the
//!   crash-safe rewrite of a segment.
//!
//! Obligations:
//! - [`Log::append`] does not fsync; durability is the caller's group
//!   commit ([`Log::active_file`] / [`Log::sync`]). A roll fsyncs the old
//!   segment before the new one exists, so fsyncing a segment's file once
//!   covers every append made to it, even after a roll moved on.
//! - Readers never see a partial batch: every read stops at the end of the
//!   last whole batch, and [`Log::open`] truncates a torn tail.
//! - Only the active segment is scanned on open, so recovery time does not
//!   grow with the size of the log.
//!
//! All I/O is synchronous (`std::fs`, `pread`); the caller runs it on a
//! blocking thread. Reads take `&self` and use positional reads only, so
//! they can run beside each other under an `RwLock`'s read side.

pub mod compaction;
pub mod index;
pub mod recovery;
pub mod retention;
pub mod segment;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use xo_proto::Offset;
use xo_proto::batch::header::{HEADER_LEN, LOG_OVERHEAD, framed_len};
use xo_proto::batch::{BatchHeader, decode_batch};

pub use compaction::CompactionReport;
use retention::{RetentionLimits, SegmentFacts};
use segment::{AppendFailure, FileKind, Segment, sync_dir};

/// Largest `segment_bytes_max`: batch positions in the offset index are
/// `u32`.
pub const SEGMENT_BYTES_MAX_LIMIT: u64 = u32::MAX as u64;
/// Largest `batch_bytes_max` a log accepts. Recovery treats any length
/// field above this as garbage, whatever the configuration says, so that
/// lowering `batch_bytes_max` later never makes recovery cut off batches
/// that were legitimately appended.
pub const BATCH_BYTES_MAX_LIMIT: usize = 256 * 1024 * 1024;
/// Largest `offset - segment base` an index can hold.
const RELATIVE_OFFSET_MAX: i64 = u32::MAX as i64;
/// Bytes one internal read takes when visiting every batch.
const VISIT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Settings of one partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll a new segment before the active one would pass this size.
    pub segment_bytes_max: u64,
    /// Roll a new segment once the active one is older than this.
    pub segment_ms_max: i64,
    /// Bytes of log between two index entries.
    pub index_interval_bytes: u32,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Keep only the latest record of each key (see [`Log::compact`]).
    pub compact: bool,
    /// Largest batch [`Log::append`] takes; at most [`BATCH_BYTES_MAX_LIMIT`].
    /// Set it from the server's produce limit.
    pub batch_bytes_max: usize,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes_max: 1024 * 1024 * 1024,
            segment_ms_max: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            retention_ms: None,
            retention_bytes: None,
            compact: false,
            batch_bytes_max: 8 * 1024 * 1024,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes_max < HEADER_LEN as u64
            || self.segment_bytes_max > SEGMENT_BYTES_MAX_LIMIT
        {
            return Err(format!(
                "segment_bytes_max {} must be between {HEADER_LEN} and {SEGMENT_BYTES_MAX_LIMIT}",
                self.segment_bytes_max
            ));
        }
        if self.segment_ms_max <= 0 {
            return Err(format!("segment_ms_max {} must be positive", self.segment_ms_max));
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be positive".to_owned());
        }
        if self.retention_ms.is_some_and(|ms| ms < 0) {
            return Err(format!("retention_ms {:?} must not be negative", self.retention_ms));
        }
        if self.batch_bytes_max < HEADER_LEN || self.batch_bytes_max > BATCH_BYTES_MAX_LIMIT {
            return Err(format!(
                "batch_bytes_max {} must be between {HEADER_LEN} and {BATCH_BYTES_MAX_LIMIT}",
                self.batch_bytes_max
            ));
        }
        Ok(())
    }
}

/// What [`Log::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut off the end of the active segment.
    pub truncated_bytes: u64,
    /// Batches of the active segment checked (length, CRC, offsets).
    pub batches_scanned: u64,
    /// Why bytes were cut, if they were.
    pub reason: Option<String>,
    /// Left-over temporary and orphaned index files deleted.
    pub removed_files: Vec<PathBuf>,
    /// Sealed segments whose indexes were missing, damaged or suspect (an
    /// interrupted compaction) and were rebuilt from their log.
    pub rebuilt_indexes: Vec<Offset>,
}

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub max_timestamp: i64,
}

/// A whole batch as stored; `header.base_offset` is the assigned offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

/// Why a read returned no batches.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The caller answers OFFSET_OUT_OF_RANGE.
    #[error(
        "offset {requested} is out of range: the log holds offsets {log_start_offset}..{next_offset}"
    )]
    OutOfRange { requested: Offset, log_start_offset: Offset, next_offset: Offset },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What [`Log::apply_retention`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    /// Base offsets of the deleted segments, oldest first.
    pub deleted_base_offsets: Vec<Offset>,
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: Offset,
}

/// The segmented log of one partition. See the module documentation.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// In base-offset order, never empty; the last is the active segment,
    /// every other one is sealed.
    segments: Vec<Segment>,
    /// The log end offset: the offset the next appended batch gets.
    next_offset: Offset,
    /// Set when a failed append left bytes in the active file that could not
    /// be cut off. Appending after them would bury the next batches behind
    /// garbage that recovery stops at, so every later append is refused;
    /// reopening the log (which truncates the tail) is the way out.
    append_stuck: Option<String>,
}

fn invalid_input(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

impl Log {
    /// Opens the log in `dir`, creating the directory and a first segment at
    /// offset 0 if there is none.
    ///
    /// Only the active (last) segment is scanned: sealed ones were fsync'd
    /// with their indexes at roll. A torn or corrupt tail of the active
    /// segment (by length field and CRC, and offsets that must follow on) is
    /// truncated, and its indexes are rebuilt. Left-over `*.cleaned` and
    /// `*.deleted` files and index files without a log are deleted; files
    /// with names this module does not write are left alone.
    pub fn open(dir: &Path, config: LogConfig) -> io::Result<(Log, RecoveryReport)> {
        config.validate().map_err(invalid_input)?;
        fs::create_dir_all(dir)?;
        let mut report = RecoveryReport::default();
        let mut logs = BTreeSet::new();
        let mut index_files = Vec::new();
        let mut suspect = BTreeSet::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            match segment::parse_file_name(&name) {
                Some((base, FileKind::Log)) => {
                    logs.insert(base);
                }
                Some((base, FileKind::Index | FileKind::TimeIndex)) => {
                    index_files.push((base, entry.path()))
                }
                Some((base, FileKind::Temp)) => {
                    // An interrupted compaction or index rebuild: whichever log
                    // survived is whole, but its indexes may not match it.
                    fs::remove_file(entry.path())?;
                    report.removed_files.push(entry.path());
                    suspect.insert(base);
                }
                None => {}
            }
        }
        for (base, path) in index_files {
            if !logs.contains(&base) {
                // Left by a deletion that removed the log and then crashed.
                fs::remove_file(&path)?;
                report.removed_files.push(path);
            }
        }
        if logs.is_empty() {
            Segment::create(dir, Offset::ZERO, config.index_interval_bytes)?;
            logs.insert(Offset::ZERO);
        }
        // Creations and deletions above become durable before anything is
        // written on top of them.
        sync_dir(dir)?;

        let active_base = *logs.last().expect("at least one segment");
        let mut segments = Vec::with_capacity(logs.len());
        for &base in logs.range(..active_base) {
            let (segment, rebuilt) = Segment::open_sealed(
                dir,
                base,
                config.index_interval_bytes,
                BATCH_BYTES_MAX_LIMIT,
                suspect.contains(&base),
            )?;
            if rebuilt {
                report.rebuilt_indexes.push(base);
            }
            segments.push(segment);
        }
        let (active, scan) = Segment::open_active(
            dir,
            active_base,
            config.index_interval_bytes,
            BATCH_BYTES_MAX_LIMIT,
        )?;
        report.truncated_bytes = scan.file_len - scan.valid_len;
        report.batches_scanned = scan.batches;
        report.reason = scan.defect.map(|d| d.to_string());
        if report.truncated_bytes > 0 {
            tracing::warn!(
                dir = %dir.display(),
                segment = %active_base,
                truncated_bytes = report.truncated_bytes,
                reason = report.reason.as_deref().unwrap_or(""),
                "truncated the log's tail"
            );
        }
        segments.push(active);
        let log = Log {
            dir: dir.to_owned(),
            config,
            segments,
            next_offset: scan.next_offset,
            append_stuck: None,
        };
        log.check_invariants();
        Ok((log, report))
    }

    fn check_invariants(&self) {
        assert!(!self.segments.is_empty());
        assert!(self.segments.windows(2).all(|w| w[0].base_offset() < w[1].base_offset()));
        let (active, sealed) = self.segments.split_last().unwrap();
        assert!(sealed.iter().all(Segment::is_sealed), "only the last segment may be active");
        assert!(!active.is_sealed());
        assert!(self.next_offset >= active.base_offset());
        assert!(active.size() > 0 || self.next_offset == active.base_offset());
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The log end offset: the base offset the next appended batch gets.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    /// The first offset the log can still serve (the first segment's base).
    pub fn log_start_offset(&self) -> Offset {
        self.segments[0].base_offset()
    }

    /// Bytes of all segments' logs (indexes not counted).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.iter().map(Segment::base_offset).collect()
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    /// Rolls a new segment if appending `incoming_len` bytes now would pass
    /// a limit: the size limit, the age limit, or the range of offsets the
    /// indexes can address. An empty active segment never rolls (the new
    /// one would have the same base offset). Returns the new segment's base
    /// offset. The old segment and its indexes are fsync'd, and the new
    /// segment's file made durable in the directory, before this returns.
    ///
    /// A segment's age counts from the first call that found it empty,
    /// which is the moment before its first append. After a restart it
    /// counts from the first batch's timestamp, or from now if that is
    /// later (producers' clocks are not to be trusted to be in the past).
    pub fn roll_if_needed(
        &mut self,
        incoming_len: usize,
        now_ms: i64,
    ) -> io::Result<Option<Offset>> {
        self.refuse_if_stuck()?;
        let next_offset = self.next_offset;
        let config = self.config.clone();
        let active = self.active_mut();
        if active.is_empty() {
            active.set_roll_anchor_ms(now_ms);
            return Ok(None);
        }
        let anchor_ms = match active.roll_anchor_ms() {
            Some(anchor) => anchor,
            None => {
                let anchor = active
                    .first_timestamp()
                    .filter(|&ts| ts >= 0)
                    .map_or(now_ms, |ts| ts.min(now_ms));
                active.set_roll_anchor_ms(anchor);
                anchor
            }
        };
        let too_big = active.size().saturating_add(incoming_len as u64) > config.segment_bytes_max;
        let too_old = now_ms.saturating_sub(anchor_ms) > config.segment_ms_max;
        let offsets_exhausted = next_offset.0 - active.base_offset().0 > RELATIVE_OFFSET_MAX;
        if !(too_big || too_old || offsets_exhausted) {
            return Ok(None);
        }
        self.roll(now_ms).map(Some)
    }

    fn roll(&mut self, now_ms: i64) -> io::Result<Offset> {
        let base = self.next_offset;
        assert!(base > self.active().base_offset(), "roll of an empty segment");
        self.active_mut().seal()?;
        let created = Segment::create(&self.dir, base, self.config.index_interval_bytes)
            .and_then(|segment| sync_dir(&self.dir).map(|()| segment));
        let mut segment = match created {
            Ok(segment) => segment,
            Err(e) => {
                // Keep appending to the old segment; a file that may have been
                // created is empty, and an empty last segment is harmless.
                let _ = fs::remove_file(segment::segment_path(&self.dir, base, segment::LOG_EXT));
                self.active_mut().unseal();
                return Err(e);
            }
        };
        segment.set_roll_anchor_ms(now_ms);
        self.segments.push(segment);
        self.check_invariants();
        tracing::debug!(dir = %self.dir.display(), base = %base, "rolled a new segment");
        Ok(base)
    }

    fn refuse_if_stuck(&self) -> io::Result<()> {
        match &self.append_stuck {
            Some(why) => {
                Err(io::Error::other(format!("log {} refuses appends: {why}", self.dir.display())))
            }
            None => Ok(()),
        }
    }

    /// Appends one already validated batch at [`Log::next_offset`]: writes
    /// the assigned 8-byte base offset followed by `batch[8..]` in one
    /// vectored write, indexes it, and advances the log end by
    /// `last_offset_delta + 1`. Does not fsync. Call
    /// [`Log::roll_if_needed`] first.
    ///
    /// On an error nothing was appended (or, if the partial write could not
    /// be undone, the log refuses every further append until reopened).
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> io::Result<AppendInfo> {
        self.refuse_if_stuck()?;
        assert_eq!(batch.len(), header.total_len(), "batch and its header disagree on the length");
        assert!(
            header.last_offset_delta >= 0,
            "negative last offset delta {}",
            header.last_offset_delta
        );
        assert!(batch.len() >= HEADER_LEN);
        debug_assert!(
            BatchHeader::validate(batch)
                .is_ok_and(|h| BatchHeader { base_offset: header.base_offset, ..h } == *header),
            "append of a batch that does not validate or does not match its header"
        );
        if batch.len() > self.config.batch_bytes_max {
            return Err(invalid_input(format!(
                "batch of {} bytes exceeds the log's limit of {}",
                batch.len(),
                self.config.batch_bytes_max
            )));
        }
        let base_offset = self.next_offset;
        let active = self.active();
        if base_offset.0 - active.base_offset().0 > RELATIVE_OFFSET_MAX
            || active.size() > SEGMENT_BYTES_MAX_LIMIT
        {
            return Err(invalid_input(format!(
                "segment {} is full (offset {base_offset}, {} bytes): roll_if_needed must run before append",
                active.base_offset(),
                active.size()
            )));
        }
        match self.active_mut().append(base_offset, batch, header) {
            Ok(_position) => {}
            Err(AppendFailure::Undone(e)) => return Err(e),
            Err(AppendFailure::Stuck(e)) => {
                self.append_stuck = Some(e.to_string());
                return Err(e);
            }
        }
        let last_offset = base_offset.plus(header.last_offset_delta.into());
        self.next_offset = last_offset.next();
        Ok(AppendInfo { base_offset, last_offset, max_timestamp: header.max_timestamp })
    }

    /// The active segment's file, so a group-commit task can fsync it
    /// without holding the log's lock. Fsyncing it covers every append made
    /// before the call, even if a roll happens meanwhile (a roll fsyncs the
    /// old segment itself). Only fsync it: its file cursor is the log's
    /// append position.
    pub fn active_file(&self) -> Arc<File> {
        Arc::clone(self.active().file())
    }

    /// fdatasyncs the active segment.
    pub fn sync(&self) -> io::Result<()> {
        self.active().file().sync_data()
    }

    fn check_range(&self, from: Offset) -> Result<(), ReadError> {
        if from < self.log_start_offset() || from > self.next_offset {
            return Err(ReadError::OutOfRange {
                requested: from,
                log_start_offset: self.log_start_offset(),
                next_offset: self.next_offset,
            });
        }
        Ok(())
    }

    /// Index of the segment that would hold `offset`.
    fn segment_for(&self, offset: Offset) -> usize {
        self.segments.partition_point(|s| s.base_offset() <= offset).saturating_sub(1)
    }

    /// Whole batches holding offsets >= `from` whose base offset is below
    /// `upto`, in order. Stops before the batch that would take the total
    /// past `max_bytes`, but returns at least one batch if any qualifies.
    /// `from` may point into a batch (the whole batch is returned) or into
    /// a gap left by compaction (the next batch is). `from` equal to the log
    /// end gives no batches; below the log start or past the end is
    /// [`ReadError::OutOfRange`].
    pub fn read(
        &self,
        from: Offset,
        upto: Offset,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, ReadError> {
        self.check_range(from)?;
        let mut batches = Vec::new();
        let mut total = 0usize;
        let mut expect_after = from;
        for segment in &self.segments[self.segment_for(from)..] {
            let Some((mut position, first)) = segment.find_batch(from)? else { continue };
            if first.base_offset >= upto {
                break;
            }
            // One read for as many whole batches as fit the budget; the first
            // batch of the answer is taken whole whatever its size.
            let budget = max_bytes.saturating_sub(total);
            if !batches.is_empty() && budget < first.total_len() {
                break;
            }
            let left_in_segment = segment.size() - position;
            let chunk_len = (budget as u64).min(left_in_segment).max(first.total_len() as u64);
            let chunk = segment.read_bytes(position, chunk_len as usize)?;
            let mut at = 0usize;
            // Each batch is at least HEADER_LEN bytes long.
            for _ in 0..=chunk.len() / HEADER_LEN {
                let rest = &chunk[at..];
                if rest.len() < LOG_OVERHEAD {
                    break; // the budget ends here
                }
                let corrupt = |what: String| {
                    segment::corrupt(format!(
                        "segment {}: batch at {position}: {what}",
                        segment.base_offset()
                    ))
                };
                let len =
                    framed_len(rest).ok_or_else(|| corrupt("impossible length".to_owned()))?;
                if len > rest.len() {
                    break; // past the budget (the segment's end is always a batch end)
                }
                let header =
                    BatchHeader::parse(&rest[..len]).map_err(|e| corrupt(e.to_string()))?;
                if header.base_offset >= upto {
                    return Ok(batches);
                }
                let in_order = header.last_offset() >= expect_after
                    && (batches.is_empty() || header.base_offset >= expect_after);
                if !in_order {
                    return Err(ReadError::Io(segment::corrupt(format!(
                        "segment {}: batch at {position} (offsets {}..={}) is out of order after offset {expect_after}",
                        segment.base_offset(),
                        header.base_offset,
                        header.last_offset()
                    ))));
                }
                if !batches.is_empty() && total + len > max_bytes {
                    return Ok(batches);
                }
                total += len;
                expect_after = header.next_offset();
                batches.push(StoredBatch { header, bytes: chunk.slice(at..at + len) });
                at += len;
                position += len as u64;
            }
            if position < segment.size() {
                break; // the budget ran out inside this segment
            }
        }
        Ok(batches)
    }

    /// The first offset whose record timestamp is >= `timestamp`, found via
    /// the time index and then a scan; `None` if no record is that late.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> io::Result<Option<Offset>> {
        for segment in &self.segments {
            if segment.timestamp_max() < timestamp {
                continue; // nothing in this segment is late enough
            }
            let start = match segment.time_index().lookup_before(timestamp) {
                // Every batch up to the entry's is too early; start at the
                // indexed batch at or before it.
                Some(entry) => segment
                    .offset_index()
                    .lookup(entry.relative_offset)
                    .map_or(0, |e| e.position.into()),
                None => 0,
            };
            let mut position = start;
            // Ends: every round moves past one batch of the segment.
            while let Some((at, header)) =
                segment.scan_headers(position, |h| h.max_timestamp >= timestamp)?
            {
                let bytes = segment.read_bytes(at, header.total_len())?;
                if let Some(offset) = first_offset_at_or_after(&bytes, &header, timestamp) {
                    return Ok(Some(offset));
                }
                // An emptied batch: keep looking after it.
                position = at + header.total_len() as u64;
            }
        }
        Ok(None)
    }

    /// Calls `visit` with every batch holding offsets >= `from`, in order, to
    /// the end of the log (for rebuilding producer state from a snapshot
    /// offset). `from` below the log start starts at the log start; at or
    /// past the end visits nothing.
    pub fn for_each_batch(
        &self,
        from: Offset,
        mut visit: impl FnMut(&StoredBatch),
    ) -> io::Result<()> {
        self.try_for_each_batch(from, |batch| {
            visit(batch);
            Ok(())
        })
    }

    /// [`Log::for_each_batch`] with a visitor that can fail (and so stop).
    fn try_for_each_batch(
        &self,
        from: Offset,
        mut visit: impl FnMut(&StoredBatch) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut from = from.max(self.log_start_offset());
        // Each round moves `from` past at least one batch.
        let rounds_max = self.next_offset.0.saturating_sub(from.0).max(0) as u64 + 1;
        for _ in 0..rounds_max {
            if from >= self.next_offset {
                return Ok(());
            }
            let batches = match self.read(from, self.next_offset, VISIT_CHUNK_BYTES) {
                Ok(batches) => batches,
                Err(ReadError::Io(e)) => return Err(e),
                Err(e @ ReadError::OutOfRange { .. }) => unreachable!("{e}"),
            };
            let Some(last) = batches.last() else { return Ok(()) };
            let after = last.header.next_offset();
            assert!(after > from, "a visit round must make progress");
            for batch in &batches {
                visit(batch)?;
            }
            from = after;
        }
        Ok(())
    }

    /// Deletes whole sealed segments, oldest first: those whose largest
    /// timestamp is more than `retention_ms` before `now_ms`, and those that
    /// keep the log above `retention_bytes`. Never the active segment. Moves
    /// the log start offset to the first remaining segment's base.
    pub fn apply_retention(&mut self, now_ms: i64) -> io::Result<RetentionReport> {
        let limits = RetentionLimits {
            retention_ms: self.config.retention_ms,
            retention_bytes: self.config.retention_bytes,
        };
        let mut facts = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            facts.push(SegmentFacts {
                base_offset: segment.base_offset(),
                size_bytes: segment.size(),
                timestamp_ms: segment.retention_timestamp()?,
            });
        }
        let count = retention::segments_to_delete(&facts, now_ms, limits);
        let mut report = RetentionReport::default();
        // Oldest first, one at a time: a failure leaves a shorter prefix
        // deleted, never a hole in the middle of the log.
        for _ in 0..count {
            assert!(self.segments.len() > 1, "retention never takes the active segment");
            let segment = self.segments.remove(0);
            let (base, size) = (segment.base_offset(), segment.size());
            segment.delete_files()?;
            report.segments_deleted += 1;
            report.deleted_base_offsets.push(base);
            report.bytes_deleted += size;
        }
        report.log_start_offset = self.log_start_offset();
        self.check_invariants();
        if count > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments = count,
                bytes = report.bytes_deleted,
                log_start_offset = %report.log_start_offset,
                "retention deleted segments"
            );
        }
        Ok(report)
    }

    /// Removes the whole partition directory.
    pub fn delete_all(self) -> io::Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)
    }
}

/// The first record of `batch` with a timestamp >= `timestamp`. A batch
/// whose records cannot be decoded answers with its base offset (the batch
/// claims such a record by its max timestamp, and a reader of that offset
/// gets the whole batch anyway).
fn first_offset_at_or_after(batch: &Bytes, header: &BatchHeader, timestamp: i64) -> Option<Offset> {
    match decode_batch(batch) {
        Ok(decoded) => decoded
            .records
            .iter()
            .find(|r| r.timestamp(header) >= timestamp)
            .map(|r| r.offset(header)),
        Err(_) => (header.record_count > 0).then_some(header.base_offset),
    }
}

#[cfg(test)]
mod tests;
