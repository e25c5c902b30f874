//! One segment of a partition's log: the data file `<base>.log` and its two
//! sparse indexes `<base>.index` and `<base>.timeindex` (see `index.rs`).
//! `<base>` is the base offset of the segment's first batch, 20 digits,
//! zero padded, so a directory listing sorts in offset order.
//!
//! A segment is *active* (the last one, appended to) or *sealed*. The
//! active segment's indexes live in memory only: recovery rebuilds them by
//! scanning the log anyway, so writing them on every append would buy
//! nothing, and a failed index write could never disagree with a
//! successful log write. Sealing writes both index files whole and fsyncs
//! them with the log; after that the segment is never scanned again at
//! startup.
//!
//! The data file is only ever written at `size`, the end of the last whole
//! batch; readers never look past `size`, so a reader cannot see a partial
//! batch, even while an append is in flight (the `Log` is behind an
//! `RwLock`, and `size` moves only after the write returned).

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use xo_proto::Offset;
use xo_proto::batch::BatchHeader;
use xo_proto::batch::header::HEADER_LEN;

use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use super::recovery::{Continuity, Expectation, TailDefect, Verdict, examine};

pub const LOG_EXT: &str = "log";
pub const INDEX_EXT: &str = "index";
pub const TIME_INDEX_EXT: &str = "timeindex";
/// Suffix of a file being written to replace another (compaction output,
/// rebuilt indexes). Renamed over the original once complete and fsync'd; a
/// leftover one is deleted on open and makes that segment's indexes suspect.
pub const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a file on its way out. Deleted on open.
pub const DELETED_SUFFIX: &str = "deleted";
/// Digits of the base offset in a segment's file names.
const BASE_DIGITS: usize = 20;

/// Bytes read at a time when scanning a segment (recovery, index rebuild).
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Calls of `write_vectored` one append may take before the environment is
/// declared broken. A regular file normally takes the whole write at once.
const WRITE_CALLS_MAX: usize = 1024;

/// What a file in a partition directory is, judged by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Log,
    Index,
    TimeIndex,
    /// `*.cleaned` or `*.deleted`: left over from an interrupted operation.
    Temp,
}

pub fn file_name(base: Offset, ext: &str) -> String {
    assert!(base.0 >= 0, "negative segment base offset {base}");
    format!("{:0width$}.{ext}", base.0, width = BASE_DIGITS)
}

/// `Some` for the names this module writes; `None` for any other file,
/// which the log leaves alone (the partition may keep other state there).
pub fn parse_file_name(name: &str) -> Option<(Offset, FileKind)> {
    let (digits, ext) = name.split_once('.')?;
    if digits.len() != BASE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = Offset(digits.parse::<i64>().ok()?);
    let kind = match ext {
        LOG_EXT => FileKind::Log,
        INDEX_EXT => FileKind::Index,
        TIME_INDEX_EXT => FileKind::TimeIndex,
        _ => {
            let (inner, suffix) = ext.rsplit_once('.')?;
            let ours = matches!(inner, LOG_EXT | INDEX_EXT | TIME_INDEX_EXT);
            if !ours || !(suffix == CLEANED_SUFFIX || suffix == DELETED_SUFFIX) {
                return None;
            }
            FileKind::Temp
        }
    };
    Some((base, kind))
}

pub fn segment_path(dir: &Path, base: Offset, ext: &str) -> PathBuf {
    dir.join(file_name(base, ext))
}

pub fn temp_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Writes `bytes` as the whole content of `path`, durably, replacing it
/// atomically: a crash leaves the old file or the new one, never a mix
/// (temp file, fsync, rename, fsync the directory). The crate's one way to
/// replace a file: sealed indexes here, and the partition's own files
/// (config, producer snapshots, aborted index, server id). The temp file is
/// `<path>.cleaned`; in a partition directory a leftover one next to a
/// segment file is deleted on open, any other is never read.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path, CLEANED_SUFFIX);
    {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temp, path)?;
    // `Path::parent` of a bare file name is the empty path: the current
    // directory.
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// An append that failed.
#[derive(Debug)]
pub enum AppendFailure {
    /// Nothing of the batch is left in the file; the segment is as before.
    Undone(io::Error),
    /// The write failed and the partial bytes could not be cut off: the
    /// file may hold garbage past `size`. Appending more would put batches
    /// after it, so the log must refuse further appends.
    Stuck(io::Error),
}

/// What scanning a segment's file found.
#[derive(Debug)]
pub struct ScanOutcome {
    /// Bytes of whole valid batches from the start.
    pub valid_len: u64,
    pub file_len: u64,
    pub batches: u64,
    pub next_offset: Offset,
    pub first_timestamp: Option<i64>,
    pub defect: Option<TailDefect>,
}

#[derive(Debug)]
pub struct Segment {
    base_offset: Offset,
    dir: PathBuf,
    file: Arc<File>,
    /// End of the last whole batch. Nothing is ever read past it, and the
    /// active segment's file cursor always sits here.
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    index_interval_bytes: u64,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    /// Running maximum of batch max-timestamps; -1 while there is none.
    timestamp_max: i64,
    /// Base offset of the last batch. Known for the active segment (needed
    /// to seal it); `None` for a sealed segment opened from disk.
    last_batch_base: Option<Offset>,
    /// Max timestamp of the first batch, when the segment was scanned.
    first_timestamp: Option<i64>,
    sealed: bool,
    /// When the segment's age for rolling started (see `Log::roll_if_needed`).
    roll_anchor_ms: Option<i64>,
}

impl Segment {
    /// Creates the files of a new, empty active segment.
    pub fn create(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u32,
    ) -> io::Result<Segment> {
        // create_new: a log file is never clobbered, whatever the bug.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(segment_path(dir, base_offset, LOG_EXT))?;
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            OpenOptions::new().write(true).create(true).truncate(true).open(segment_path(
                dir,
                base_offset,
                ext,
            ))?;
        }
        Ok(Segment::new(dir, base_offset, file, index_interval_bytes, false))
    }

    fn new(
        dir: &Path,
        base_offset: Offset,
        file: File,
        index_interval_bytes: u32,
        sealed: bool,
    ) -> Segment {
        assert!(index_interval_bytes > 0);
        Segment {
            base_offset,
            dir: dir.to_owned(),
            file: Arc::new(file),
            size: 0,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            index_interval_bytes: index_interval_bytes.into(),
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            timestamp_max: -1,
            last_batch_base: None,
            first_timestamp: None,
            sealed,
            roll_anchor_ms: None,
        }
    }

    /// Opens the last segment after a restart: scans it, truncates any torn
    /// or corrupt tail, and rebuilds its indexes in memory.
    pub fn open_active(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
    ) -> io::Result<(Segment, ScanOutcome)> {
        let file = OpenOptions::new().read(true).write(true).open(segment_path(
            dir,
            base_offset,
            LOG_EXT,
        ))?;
        let mut segment = Segment::new(dir, base_offset, file, index_interval_bytes, false);
        let outcome = segment.scan_and_index(Continuity::Contiguous, batch_bytes_max)?;
        assert_eq!(segment.size, outcome.valid_len);
        if outcome.valid_len < outcome.file_len {
            // Cut the tail before anything else can land after it.
            segment.file.set_len(outcome.valid_len)?;
            segment.file.sync_all()?;
        }
        let end = (&*segment.file).seek(SeekFrom::Start(outcome.valid_len))?;
        assert_eq!(end, outcome.valid_len);
        segment.first_timestamp = outcome.first_timestamp;
        // Stale index files of the active segment would mislead nobody (they
        // are rewritten at seal), but empty ones say so plainly.
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            let index = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(segment.path(ext))?;
            index.set_len(0)?;
        }
        Ok((segment, outcome))
    }

    /// Opens a sealed segment from its index files, without scanning the
    /// log. Indexes that fail their checks (or `indexes_suspect`, after an
    /// interrupted rewrite) are rebuilt from the log. Returns whether they
    /// were.
    pub fn open_sealed(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
        indexes_suspect: bool,
    ) -> io::Result<(Segment, bool)> {
        let file = OpenOptions::new().read(true).open(segment_path(dir, base_offset, LOG_EXT))?;
        let file_len = file.metadata()?.len();
        let mut segment = Segment::new(dir, base_offset, file, index_interval_bytes, true);
        segment.size = file_len;
        if !indexes_suspect {
            match segment.load_indexes() {
                Ok(()) => return Ok((segment, false)),
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData
                        || e.kind() == io::ErrorKind::NotFound =>
                {
                    tracing::warn!(segment = %segment.path(LOG_EXT).display(), error = %e, "rebuilding indexes");
                }
                Err(e) => return Err(e),
            }
        }
        segment.rebuild_sealed_indexes(batch_bytes_max)?;
        Ok((segment, true))
    }

    fn load_indexes(&mut self) -> io::Result<()> {
        let offset_bytes = fs::read(self.path(INDEX_EXT))?;
        let time_bytes = fs::read(self.path(TIME_INDEX_EXT))?;
        let offset_index = OffsetIndex::decode(&offset_bytes, self.size)
            .map_err(|e| corrupt(format!("offset index: {e}")))?;
        let time_index =
            TimeIndex::decode(&time_bytes).map_err(|e| corrupt(format!("time index: {e}")))?;
        // The last offset entry must name a batch that is really there, which
        // catches an index that belongs to an older version of the file.
        if let Some(last) = offset_index.last() {
            let header = self.read_header(last.position.into())?;
            let expected = self.base_offset.plus(last.relative_offset.into());
            if header.base_offset != expected {
                return Err(corrupt(format!(
                    "offset index names offset {expected} at {}, the log has {}",
                    last.position, header.base_offset
                )));
            }
        }
        self.timestamp_max = time_index.timestamp_max().unwrap_or(-1);
        self.offset_index = offset_index;
        self.time_index = time_index;
        Ok(())
    }

    /// Scans a sealed segment and writes its indexes anew. A sealed segment
    /// was fsync'd whole, so any defect in it is corruption that truncation
    /// cannot repair without losing acknowledged data from the middle of the
    /// log: that is an error for the operator, not something to paper over.
    fn rebuild_sealed_indexes(&mut self, batch_bytes_max: usize) -> io::Result<()> {
        let file_len = self.size;
        // Index from scratch, as if the segment were being written again.
        self.size = 0;
        self.sealed = false;
        self.offset_index = OffsetIndex::new();
        self.time_index = TimeIndex::new();
        self.timestamp_max = -1;
        let outcome = self.scan_and_index(Continuity::Increasing, batch_bytes_max)?;
        if let Some(defect) = &outcome.defect {
            return Err(corrupt(format!(
                "sealed segment {} is corrupt at byte {} of {file_len}: {defect}",
                self.path(LOG_EXT).display(),
                outcome.valid_len
            )));
        }
        assert_eq!(self.size, file_len);
        self.seal_indexes_in_memory();
        self.sealed = true;
        write_atomically(&self.path(INDEX_EXT), &self.offset_index.encode())?;
        write_atomically(&self.path(TIME_INDEX_EXT), &self.time_index.encode())?;
        Ok(())
    }

    /// Reads the file from the start in bounded chunks, indexing every valid
    /// batch, and stops at the end of the valid prefix.
    fn scan_and_index(
        &mut self,
        continuity: Continuity,
        batch_bytes_max: usize,
    ) -> io::Result<ScanOutcome> {
        assert_eq!(self.size, 0, "scan starts on an empty in-memory segment");
        let file_len = self.file.metadata()?.len();
        let mut expect = Expectation {
            segment_base: self.base_offset,
            next_offset: self.base_offset,
            continuity,
            batch_bytes_max,
        };
        // `buf` holds the file's bytes from `buf_at`.
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_at = 0u64;
        let mut position = 0u64;
        let mut batches = 0u64;
        let mut first_timestamp = None;
        // Each step either consumes a batch (>= HEADER_LEN bytes) or reads
        // enough for the next step to decide: at most two steps a batch.
        let steps_max = 2 * (file_len / HEADER_LEN as u64 + 2);
        let mut defect = None;
        let mut clean = false;
        for _ in 0..steps_max {
            let in_buf = (position - buf_at) as usize;
            let window = buf.get(in_buf..).unwrap_or(&[]);
            match examine(window, file_len - position, &expect) {
                Verdict::Valid { header, len } => {
                    assert!(batches > 0 || header.base_offset >= self.base_offset);
                    first_timestamp.get_or_insert(header.max_timestamp);
                    self.index_batch(position, &header, len);
                    position += len as u64;
                    expect.next_offset = header.next_offset();
                    batches += 1;
                }
                Verdict::NeedBytes { len } => {
                    let want = len.max(SCAN_CHUNK_BYTES).min((file_len - position) as usize);
                    assert!(want >= len, "examine asked for bytes the file does not have");
                    buf.resize(want, 0);
                    self.file.read_exact_at(&mut buf, position)?;
                    buf_at = position;
                }
                Verdict::CleanEnd => {
                    clean = true;
                    break;
                }
                Verdict::Defect(d) => {
                    defect = Some(d);
                    break;
                }
            }
        }
        assert!(
            clean || defect.is_some(),
            "scan of {file_len} bytes did not finish in {steps_max} steps"
        );
        assert_eq!(self.size, position);
        Ok(ScanOutcome {
            valid_len: position,
            file_len,
            batches,
            next_offset: expect.next_offset,
            first_timestamp,
            defect,
        })
    }

    /// Accounts for a batch just written (or found by a scan) at `position`;
    /// `header.base_offset` is the batch's assigned base offset.
    fn index_batch(&mut self, position: u64, header: &BatchHeader, len: usize) {
        assert!(!self.sealed, "indexing a batch into a sealed segment");
        assert_eq!(position, self.size, "batches are indexed in file order");
        assert_eq!(header.total_len(), len);
        let relative = self.relative_offset(header.base_offset);
        let position_u32 = u32::try_from(position).expect("segment positions fit the index's u32");
        if self.bytes_since_offset_entry >= self.index_interval_bytes {
            self.offset_index
                .push(OffsetEntry { relative_offset: relative, position: position_u32 });
            self.bytes_since_offset_entry = 0;
        }
        let timestamp_max = self.timestamp_max.max(header.max_timestamp);
        if self.time_index.would_grow(timestamp_max)
            && (self.time_index.is_empty()
                || self.bytes_since_time_entry >= self.index_interval_bytes)
        {
            self.time_index.push(TimeEntry { timestamp: timestamp_max, relative_offset: relative });
            self.bytes_since_time_entry = 0;
        }
        self.timestamp_max = timestamp_max;
        self.bytes_since_offset_entry += len as u64;
        self.bytes_since_time_entry += len as u64;
        self.size += len as u64;
        self.last_batch_base = Some(header.base_offset);
    }

    /// The index's relative offset of `offset`, which must belong to this
    /// segment's range.
    fn relative_offset(&self, offset: Offset) -> u32 {
        let relative = offset.0 - self.base_offset.0;
        u32::try_from(relative).unwrap_or_else(|_| {
            panic!(
                "offset {offset} does not fit segment {} (relative {relative})",
                self.base_offset
            )
        })
    }

    /// Gives the time index its final entry, so that its last entry is the
    /// segment's largest timestamp.
    fn seal_indexes_in_memory(&mut self) {
        assert!(!self.sealed);
        if self.time_index.would_grow(self.timestamp_max) {
            let last = self.last_batch_base.expect("a segment with a timestamp has a batch");
            let relative = self.relative_offset(last);
            self.time_index
                .push(TimeEntry { timestamp: self.timestamp_max, relative_offset: relative });
        }
        debug_assert!(
            self.timestamp_max < 0 || self.time_index.timestamp_max() == Some(self.timestamp_max)
        );
    }

    /// Appends one batch at the end: the 8-byte assigned base offset, then
    /// `batch[8..]`, in one vectored write (no copy of the payload).
    pub fn append(
        &mut self,
        base_offset: Offset,
        batch: &[u8],
        header: &BatchHeader,
    ) -> Result<u64, AppendFailure> {
        assert!(!self.sealed, "append to sealed segment {}", self.base_offset);
        assert_eq!(batch.len(), header.total_len(), "header and batch disagree on the length");
        let position = self.size;
        debug_assert_eq!(
            (&*self.file).stream_position().ok(),
            Some(position),
            "file cursor is off the end"
        );
        let base_bytes = base_offset.0.to_be_bytes();
        let mut slices = [IoSlice::new(&base_bytes), IoSlice::new(&batch[8..])];
        if let Err(e) = write_all_vectored(&self.file, &mut slices) {
            // Cut off whatever part of the batch reached the file, so the next
            // append starts at `size` again.
            let undo = self
                .file
                .set_len(position)
                .and_then(|()| (&*self.file).seek(SeekFrom::Start(position)));
            return Err(match undo {
                Ok(_) => AppendFailure::Undone(e),
                Err(undo_error) => AppendFailure::Stuck(io::Error::new(
                    e.kind(),
                    format!("{e}; cutting the partial batch off failed too: {undo_error}"),
                )),
            });
        }
        let mut assigned = *header;
        assigned.base_offset = base_offset;
        self.index_batch(position, &assigned, batch.len());
        Ok(position)
    }

    /// Makes the segment immutable: writes both index files whole and
    /// fsyncs them with the log. After this returns, the segment survives a
    /// crash without being scanned.
    pub fn seal(&mut self) -> io::Result<()> {
        assert!(!self.sealed, "segment {} sealed twice", self.base_offset);
        self.seal_indexes_in_memory();
        self.file.sync_data()?;
        // In place, not via rename: a crash before the next segment's file
        // exists leaves this one the last, and the last is always rescanned.
        for (ext, bytes) in
            [(INDEX_EXT, self.offset_index.encode()), (TIME_INDEX_EXT, self.time_index.encode())]
        {
            let mut file =
                OpenOptions::new().write(true).create(true).truncate(true).open(self.path(ext))?;
            file.write_all(&bytes)?;
            file.sync_data()?;
        }
        self.sealed = true;
        Ok(())
    }

    /// Undoes [`Segment::seal`] in memory after the next segment could not
    /// be created, so the segment stays the active one. Its index files are
    /// simply rewritten at the next seal.
    pub fn unseal(&mut self) {
        assert!(self.sealed, "unseal of segment {} that is not sealed", self.base_offset);
        self.sealed = false;
    }

    /// The header of the batch at `position`, checked to lie within `size`.
    pub fn read_header(&self, position: u64) -> io::Result<BatchHeader> {
        if position + HEADER_LEN as u64 > self.size {
            return Err(corrupt(format!(
                "segment {}: no room for a batch header at {position} of {}",
                self.base_offset, self.size
            )));
        }
        let mut buf = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut buf, position)?;
        let header = BatchHeader::parse(&buf).map_err(|e| {
            corrupt(format!("segment {}: batch at {position}: {e}", self.base_offset))
        })?;
        let end = position + header.total_len() as u64;
        if header.batch_length < (HEADER_LEN - 12) as i32 || end > self.size {
            return Err(corrupt(format!(
                "segment {}: batch at {position} of length {} runs past the segment's {} bytes",
                self.base_offset,
                header.total_len(),
                self.size
            )));
        }
        Ok(header)
    }

    /// The first batch holding an offset >= `target`, found from the offset
    /// index by scanning headers forward: its position and header.
    pub fn find_batch(&self, target: Offset) -> io::Result<Option<(u64, BatchHeader)>> {
        let relative = (target.0 - self.base_offset.0).clamp(0, u32::MAX.into()) as u32;
        let position = self.offset_index.lookup(relative).map_or(0, |e| u64::from(e.position));
        self.scan_headers(position, |header| header.last_offset() >= target)
    }

    /// Walks batch headers from `position` (a batch start) to the end and
    /// returns the first for which `stop` holds.
    pub fn scan_headers(
        &self,
        mut position: u64,
        mut stop: impl FnMut(&BatchHeader) -> bool,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        let steps_max = self.size / HEADER_LEN as u64 + 1;
        for _ in 0..steps_max {
            if position >= self.size {
                return Ok(None);
            }
            let header = self.read_header(position)?;
            if stop(&header) {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
        Err(corrupt(format!("segment {}: more batches than its size allows", self.base_offset)))
    }

    /// `len` bytes from `position`, which must lie within `size`.
    pub fn read_bytes(&self, position: u64, len: usize) -> io::Result<Bytes> {
        assert!(
            position + len as u64 <= self.size,
            "read past the end of segment {}",
            self.base_offset
        );
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, position)?;
        Ok(Bytes::from(buf))
    }

    pub fn path(&self, ext: &str) -> PathBuf {
        segment_path(&self.dir, self.base_offset, ext)
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// Largest batch max-timestamp in the segment, -1 if no batch has one.
    pub fn timestamp_max(&self) -> i64 {
        self.timestamp_max
    }

    /// The age that retention judges the segment by: its largest timestamp,
    /// or, when no batch carries one, the time the file was last written.
    pub fn retention_timestamp(&self) -> io::Result<i64> {
        if self.timestamp_max >= 0 {
            return Ok(self.timestamp_max);
        }
        let modified = self.file.metadata()?.modified()?;
        Ok(modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
    }

    pub fn first_timestamp(&self) -> Option<i64> {
        self.first_timestamp
    }

    pub fn roll_anchor_ms(&self) -> Option<i64> {
        self.roll_anchor_ms
    }

    pub fn set_roll_anchor_ms(&mut self, now_ms: i64) {
        self.roll_anchor_ms = Some(now_ms);
    }

    /// Removes the segment's files, the log first: once it is gone the
    /// segment is gone, and index files without a log are deleted on open.
    pub fn delete_files(self) -> io::Result<()> {
        let dir = self.dir.clone();
        let paths = [self.path(LOG_EXT), self.path(INDEX_EXT), self.path(TIME_INDEX_EXT)];
        drop(self);
        for path in &paths {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        sync_dir(&dir)
    }

    /// Replaces this sealed segment's files with a rewritten log (already
    /// written and fsync'd at `<base>.log.cleaned`), then writes its indexes.
    ///
    /// The rename of the log is the commit point. The index files are
    /// written to `.cleaned` names first and renamed after; if a crash
    /// leaves any `.cleaned` file, the next open deletes it and rebuilds this
    /// segment's indexes from whichever log survived.
    ///
    /// `self` stays valid whatever happens: its file handle keeps reading
    /// the old log's inode even after the rename replaced the name.
    pub fn install_cleaned(&self, batch_bytes_max: usize) -> io::Result<Segment> {
        assert!(self.sealed, "only sealed segments are compacted");
        let dir = self.dir.clone();
        let base = self.base_offset;
        let interval = self.index_interval_bytes as u32;
        let log_path = self.path(LOG_EXT);
        let cleaned_path = temp_path(&log_path, CLEANED_SUFFIX);

        // Index the new log before touching the old one.
        let file = OpenOptions::new().read(true).open(&cleaned_path)?;
        let mut cleaned = Segment::new(&dir, base, file, interval, false);
        let outcome = cleaned.scan_and_index(Continuity::Increasing, batch_bytes_max)?;
        if let Some(defect) = outcome.defect {
            return Err(corrupt(format!("compacted segment {base} fails its own check: {defect}")));
        }
        cleaned.seal_indexes_in_memory();
        cleaned.sealed = true;
        let index_path = self.path(INDEX_EXT);
        let time_index_path = self.path(TIME_INDEX_EXT);
        let index_temp = temp_path(&index_path, CLEANED_SUFFIX);
        let time_index_temp = temp_path(&time_index_path, CLEANED_SUFFIX);
        for (path, bytes) in [
            (&index_temp, cleaned.offset_index.encode()),
            (&time_index_temp, cleaned.time_index.encode()),
        ] {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        // The commit point.
        fs::rename(&cleaned_path, &log_path)?;
        sync_dir(&dir)?;
        fs::rename(&index_temp, &index_path)?;
        fs::rename(&time_index_temp, &time_index_path)?;
        sync_dir(&dir)?;
        Ok(cleaned)
    }
}

/// Writes every byte of `slices`, looping over short writes.
fn write_all_vectored(file: &File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut writer = file;
    for _ in 0..WRITE_CALLS_MAX {
        if slices.is_empty() {
            return Ok(());
        }
        match writer.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "the log file took no bytes"));
            }
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if slices.is_empty() {
        return Ok(());
    }
    Err(io::Error::other(format!("append needed more than {WRITE_CALLS_MAX} write calls")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_offset_and_parse_back() {
        assert_eq!(file_name(Offset(0), LOG_EXT), "00000000000000000000.log");
        assert_eq!(file_name(Offset(1234), INDEX_EXT), "00000000000000001234.index");
        assert_eq!(
            parse_file_name("00000000000000001234.index"),
            Some((Offset(1234), FileKind::Index))
        );
        assert_eq!(
            parse_file_name("00000000000000001234.timeindex"),
            Some((Offset(1234), FileKind::TimeIndex))
        );
        assert_eq!(parse_file_name("00000000000000000007.log"), Some((Offset(7), FileKind::Log)));
        assert_eq!(
            parse_file_name("00000000000000000007.log.cleaned"),
            Some((Offset(7), FileKind::Temp))
        );
        assert_eq!(
            parse_file_name("00000000000000000007.index.cleaned"),
            Some((Offset(7), FileKind::Temp))
        );
        assert_eq!(
            parse_file_name("00000000000000000007.log.deleted"),
            Some((Offset(7), FileKind::Temp))
        );
        // Not ours: left alone.
        assert_eq!(parse_file_name("producer-state.snapshot"), None);
        assert_eq!(parse_file_name("7.log"), None);
        assert_eq!(parse_file_name("00000000000000000007.txt"), None);
        assert_eq!(parse_file_name("00000000000000000007.txt.cleaned"), None);
        let mut names = [
            file_name(Offset(100), LOG_EXT),
            file_name(Offset(99), LOG_EXT),
            file_name(Offset(5), LOG_EXT),
        ];
        names.sort();
        assert_eq!(names[0], file_name(Offset(5), LOG_EXT));
        assert_eq!(names[2], file_name(Offset(100), LOG_EXT));
    }
}
