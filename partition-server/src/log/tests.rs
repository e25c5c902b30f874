//! Tests of the whole log on real files: t10 append and read, t20 rolling,
//! t30 indexes and timestamps, t40 recovery, t50 retention, t60 compaction,
//! t90 a model-based property test.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use xo_proto::Offset;
use xo_proto::batch::{BatchBuilder, BatchHeader, BatchMeta, Compression, decode_batch};
use xo_proto::{ProducerEpoch, ProducerId, Sequence};

use super::segment::{self, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use super::testing::{TestBatch, test_batch};
use super::*;

fn small_config() -> LogConfig {
    LogConfig { index_interval_bytes: 256, ..LogConfig::default() }
}

fn open(dir: &Path, config: LogConfig) -> (Log, RecoveryReport) {
    Log::open(dir, config).expect("open log")
}

fn append(log: &mut Log, batch: &TestBatch) -> AppendInfo {
    let (bytes, header) = test_batch(batch);
    log.roll_if_needed(bytes.len(), 0).unwrap();
    log.append(&bytes, &header).unwrap()
}

fn append_at(log: &mut Log, batch: &TestBatch, now_ms: i64) -> (AppendInfo, Option<Offset>) {
    let (bytes, header) = test_batch(batch);
    let rolled = log.roll_if_needed(bytes.len(), now_ms).unwrap();
    (log.append(&bytes, &header).unwrap(), rolled)
}

fn all_batches(log: &Log) -> Vec<StoredBatch> {
    let mut out = Vec::new();
    log.for_each_batch(Offset::ZERO, |b| out.push(b.clone())).unwrap();
    out
}

fn ranges(batches: &[StoredBatch]) -> Vec<(i64, i64)> {
    batches.iter().map(|b| (b.header.base_offset.0, b.header.last_offset().0)).collect()
}

/// (key, value) of every record in the log, with its offset.
fn records(log: &Log) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap());
    let mut out = Vec::new();
    for batch in all_batches(log) {
        let decoded = decode_batch(&batch.bytes).unwrap();
        for r in &decoded.records {
            out.push((r.offset(&decoded.header).0, text(&r.key), text(&r.value)));
        }
    }
    out
}

fn active_log_path(log: &Log) -> PathBuf {
    let base = *log.segment_base_offsets().last().unwrap();
    segment::segment_path(log.dir(), base, LOG_EXT)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ---- t10: append and read ---------------------------------------------

#[test]
fn t10_append_assigns_offsets_and_stores_the_batch_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = open(dir.path(), small_config());
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(
        (log.next_offset(), log.log_start_offset(), log.segment_count()),
        (Offset(0), Offset(0), 1)
    );

    // Producers send base offset 0; the log assigns the real one.
    let first = append(&mut log, &TestBatch::values(3, 10));
    let second = append(&mut log, &TestBatch::values(2, 10).at(5000));
    assert_eq!((first.base_offset, first.last_offset), (Offset(0), Offset(2)));
    assert_eq!(
        (second.base_offset, second.last_offset, second.max_timestamp),
        (Offset(3), Offset(4), 5000)
    );
    assert_eq!(log.next_offset(), Offset(5));

    let batches = log.read(Offset(0), Offset(5), 1 << 20).unwrap();
    assert_eq!(ranges(&batches), vec![(0, 2), (3, 4)]);
    let (sent, _) = test_batch(&TestBatch::values(2, 10).at(5000));
    assert_eq!(batches[1].bytes[8..], sent[8..], "everything but the base offset is as produced");
    assert_eq!(BatchHeader::validate(&batches[1].bytes).unwrap().base_offset, Offset(3));
    assert_eq!(log.size_bytes(), (batches[0].bytes.len() + batches[1].bytes.len()) as u64);
    assert_eq!(fs::metadata(active_log_path(&log)).unwrap().len(), log.size_bytes());
}

#[test]
fn t11_read_bounds_max_bytes_upto_at_least_one_and_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), small_config());
    // Ten batches of 2 offsets each: batch i holds offsets 2i, 2i+1.
    for _ in 0..10 {
        append(&mut log, &TestBatch::values(2, 50));
    }
    let batch_len = log.read(Offset(0), Offset(20), 1).unwrap()[0].bytes.len();

    // max_bytes: whole batches only, as many as fit.
    assert_eq!(log.read(Offset(0), Offset(20), 3 * batch_len).unwrap().len(), 3);
    assert_eq!(log.read(Offset(0), Offset(20), 3 * batch_len + batch_len - 1).unwrap().len(), 3);
    // At least one batch, however small max_bytes.
    assert_eq!(ranges(&log.read(Offset(4), Offset(20), 0).unwrap()), vec![(4, 5)]);
    // From inside a batch: the whole batch.
    assert_eq!(ranges(&log.read(Offset(5), Offset(20), batch_len).unwrap()), vec![(4, 5)]);
    // upto: only batches whose base offset is below it.
    assert_eq!(
        ranges(&log.read(Offset(0), Offset(5), 1 << 20).unwrap()),
        vec![(0, 1), (2, 3), (4, 5)]
    );
    assert_eq!(ranges(&log.read(Offset(0), Offset(4), 1 << 20).unwrap()), vec![(0, 1), (2, 3)]);
    assert!(log.read(Offset(6), Offset(6), 1 << 20).unwrap().is_empty());
    // At the end: nothing, not an error. Past it or before the start: error.
    assert!(log.read(Offset(20), Offset(20), 1 << 20).unwrap().is_empty());
    assert!(matches!(
        log.read(Offset(21), Offset(30), 1 << 20),
        Err(ReadError::OutOfRange {
            requested: Offset(21),
            log_start_offset: Offset(0),
            next_offset: Offset(20)
        })
    ));
    assert!(matches!(log.read(Offset(-1), Offset(30), 1 << 20), Err(ReadError::OutOfRange { .. })));
}

#[test]
fn t12_reads_cross_segments_and_every_offset_finds_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        LogConfig { segment_bytes_max: 2000, index_interval_bytes: 300, ..LogConfig::default() };
    let (mut log, _) = open(dir.path(), config.clone());
    let mut expected = Vec::new();
    for i in 0..60 {
        let info = append(&mut log, &TestBatch::values(1 + i % 4, 30 + 7 * (i % 5)));
        expected.push((info.base_offset.0, info.last_offset.0));
    }
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    let check = |log: &Log| {
        let end = log.next_offset();
        assert_eq!(ranges(&log.read(Offset(0), end, usize::MAX).unwrap()), expected);
        for offset in 0..end.0 {
            let first = log.read(Offset(offset), end, 0).unwrap();
            let (base, last) = (first[0].header.base_offset.0, first[0].header.last_offset().0);
            assert!(base <= offset && offset <= last, "offset {offset} read batch {base}..={last}");
        }
        assert_eq!(ranges(&all_batches(log)), expected);
    };
    check(&log);
    // After a reopen the sealed segments' indexes come from their files.
    let segments = log.segment_base_offsets();
    drop(log);
    let (log, report) = open(dir.path(), config);
    assert!(report.rebuilt_indexes.is_empty());
    assert_eq!(log.segment_base_offsets(), segments);
    check(&log);
}

#[test]
fn t13_append_refuses_a_batch_above_the_limit_and_leaves_the_log_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), LogConfig { batch_bytes_max: 200, ..small_config() });
    let (big, header) = test_batch(&TestBatch::values(1, 300));
    let err = log.append(&big, &header).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!((log.next_offset(), log.size_bytes()), (Offset(0), 0));
    append(&mut log, &TestBatch::values(1, 10));
    assert_eq!(log.next_offset(), Offset(1));
    assert!(LogConfig { segment_bytes_max: 1 << 40, ..LogConfig::default() }.validate().is_err());
    assert!(
        LogConfig { batch_bytes_max: BATCH_BYTES_MAX_LIMIT + 1, ..LogConfig::default() }
            .validate()
            .is_err()
    );
}

// ---- t20: rolling -------------------------------------------------------

#[test]
fn t20_rolls_by_size_before_the_limit_is_passed_never_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = test_batch(&TestBatch::values(1, 100));
    let len = bytes.len() as u64;
    let config = LogConfig { segment_bytes_max: 3 * len, ..small_config() };
    let (mut log, _) = open(dir.path(), config);
    // An empty segment takes a batch bigger than the limit rather than roll.
    assert_eq!(log.roll_if_needed(10 * len as usize, 0).unwrap(), None);
    for i in 0..3 {
        let (_, rolled) = append_at(&mut log, &TestBatch::values(1, 100), 0);
        assert_eq!(rolled, None, "batch {i} fits");
    }
    assert_eq!(log.size_bytes(), 3 * len);
    let (info, rolled) = append_at(&mut log, &TestBatch::values(1, 100), 0);
    assert_eq!(rolled, Some(Offset(3)));
    assert_eq!(info.base_offset, Offset(3));
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(3)]);
    // The sealed segment's files are all there and fsync'd.
    for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
        assert!(segment::segment_path(dir.path(), Offset(0), ext).exists());
        assert!(segment::segment_path(dir.path(), Offset(3), ext).exists());
    }
    let time_index =
        fs::read(segment::segment_path(dir.path(), Offset(0), TIME_INDEX_EXT)).unwrap();
    assert_eq!(time_index.len(), 12, "the sealed time index holds the segment's max timestamp");
    assert_eq!(i64::from_be_bytes(time_index[..8].try_into().unwrap()), 1000);
}

#[test]
fn t21_rolls_by_age_counted_from_the_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms_max: 1000, ..small_config() };
    let (mut log, _) = open(dir.path(), config.clone());
    // An empty segment does not age.
    assert_eq!(log.roll_if_needed(100, 0).unwrap(), None);
    let (_, rolled) = append_at(&mut log, &TestBatch::values(1, 10), 5000);
    assert_eq!(rolled, None);
    assert_eq!(
        append_at(&mut log, &TestBatch::values(1, 10), 6000).1,
        None,
        "exactly the limit is not older"
    );
    assert_eq!(append_at(&mut log, &TestBatch::values(1, 10), 6001).1, Some(Offset(2)));
    assert_eq!(append_at(&mut log, &TestBatch::values(1, 10), 6500).1, None);
    assert_eq!(append_at(&mut log, &TestBatch::values(1, 10), 7002).1, Some(Offset(4)));

    // After a restart the age counts from the first batch's timestamp (1000
    // in these batches) when that is in the past.
    drop(log);
    let (mut log, _) = open(dir.path(), config);
    assert_eq!(log.roll_if_needed(100, 1500).unwrap(), None);
    assert_eq!(log.roll_if_needed(100, 2001).unwrap(), Some(Offset(5)));
    append_at(&mut log, &TestBatch::values(1, 10), 2001);
    assert_eq!(log.next_offset(), Offset(6));
}

#[test]
fn t22_roll_then_sync_makes_the_old_segment_durable_and_active_file_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), LogConfig { segment_bytes_max: 500, ..small_config() });
    append(&mut log, &TestBatch::values(1, 300));
    let before = log.active_file();
    append(&mut log, &TestBatch::values(1, 300));
    let after = log.active_file();
    assert!(!Arc::ptr_eq(&before, &after), "the roll moved the active file");
    before.sync_data().unwrap();
    log.sync().unwrap();
    assert_eq!(log.segment_count(), 2);
}

// ---- t30: indexes and timestamps ----------------------------------------

#[test]
fn t30_the_offset_index_is_sparse_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        LogConfig { segment_bytes_max: 100_000, index_interval_bytes: 1000, ..small_config() };
    let (mut log, _) = open(dir.path(), config);
    let (one, _) = test_batch(&TestBatch::values(1, 100));
    for _ in 0..100 {
        append(&mut log, &TestBatch::values(1, 100));
    }
    let total = 100 * one.len();
    let entries = log.active().offset_index().len();
    // One entry per interval (the first batch needs none: position 0).
    assert!(
        entries >= total / 1000 - 1 && entries <= total / 1000 + 1,
        "{entries} entries for {total} bytes"
    );
}

#[test]
fn t31_offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes_max: 1500, index_interval_bytes: 200, ..small_config() };
    let (mut log, _) = open(dir.path(), config.clone());
    // Batch i: 3 records at timestamps 1000 + 100 i + {0, 10, 20}.
    for i in 0..30 {
        append(&mut log, &TestBatch::values(3, 40).at(1000 + 100 * i).ts_step(10));
    }
    assert!(log.segment_count() > 2);
    let check = |log: &Log| {
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(Offset(0)));
        assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some(Offset(0)));
        assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some(Offset(1)));
        assert_eq!(log.offset_for_timestamp(1020).unwrap(), Some(Offset(2)));
        assert_eq!(log.offset_for_timestamp(1021).unwrap(), Some(Offset(3)));
        for i in 0..30i64 {
            assert_eq!(log.offset_for_timestamp(1000 + 100 * i).unwrap(), Some(Offset(3 * i)));
            assert_eq!(
                log.offset_for_timestamp(1000 + 100 * i + 15).unwrap(),
                Some(Offset(3 * i + 2))
            );
        }
        assert_eq!(log.offset_for_timestamp(1000 + 100 * 29 + 20).unwrap(), Some(Offset(89)));
        assert_eq!(log.offset_for_timestamp(1000 + 100 * 29 + 21).unwrap(), None);
    };
    check(&log);
    drop(log);
    let (log, _) = open(dir.path(), config);
    check(&log);
}

#[test]
fn t32_offset_for_timestamp_with_timestamps_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), small_config());
    for ts in [5000, 3000, 7000, 6000, 9000] {
        append(&mut log, &TestBatch::values(1, 10).at(ts));
    }
    // The first offset whose timestamp is late enough, not the closest one.
    assert_eq!(log.offset_for_timestamp(4000).unwrap(), Some(Offset(0)));
    assert_eq!(log.offset_for_timestamp(5500).unwrap(), Some(Offset(2)));
    assert_eq!(log.offset_for_timestamp(6500).unwrap(), Some(Offset(2)));
    assert_eq!(log.offset_for_timestamp(8000).unwrap(), Some(Offset(4)));
}

// ---- t40: recovery --------------------------------------------------------

/// Writes two sealed segments and an active one of five batches; returns
/// the end position of each batch of the active segment, and its base.
fn write_for_recovery(dir: &Path) -> (Vec<u64>, Offset, LogConfig) {
    let config =
        LogConfig { segment_bytes_max: 1000, index_interval_bytes: 150, ..LogConfig::default() };
    let (mut log, _) = open(dir, config.clone());
    for i in 0..12 {
        append(&mut log, &TestBatch::values(1 + i % 3, 60));
    }
    // A fresh segment, so the active one holds exactly the next 5 batches.
    roll(&mut log);
    let base = *log.segment_base_offsets().last().unwrap();
    let mut ends = Vec::new();
    for i in 0..5 {
        let (b, h) = test_batch(&TestBatch::values(2 + i % 2, 40 + i));
        log.append(&b, &h).unwrap();
        ends.push(log.active().size());
    }
    assert!(log.segment_count() >= 3);
    log.sync().unwrap();
    (ends, base, config)
}

#[test]
fn t40_a_torn_last_batch_is_truncated_at_every_byte_position() {
    let original = tempfile::tempdir().unwrap();
    let (ends, base, config) = write_for_recovery(original.path());
    let (log, _) = open(original.path(), config.clone());
    let all = ranges(&all_batches(&log));
    let next_after_four =
        log.read(base, log.next_offset(), usize::MAX).unwrap()[3].header.next_offset();
    drop(log);
    let keep = all.len() - 1;
    let active = segment::segment_path(original.path(), base, LOG_EXT);
    assert_eq!(fs::metadata(&active).unwrap().len(), ends[4]);

    for cut in ends[3]..ends[4] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let path = segment::segment_path(dir.path(), base, LOG_EXT);
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();

        let (mut log, report) = open(dir.path(), config.clone());
        assert_eq!(report.truncated_bytes, cut - ends[3], "cut at {cut}");
        assert_eq!(report.batches_scanned, 4);
        assert_eq!(report.reason.is_some(), cut > ends[3]);
        assert_eq!(log.next_offset(), next_after_four, "cut at {cut}");
        assert_eq!(ranges(&all_batches(&log)), all[..keep], "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), ends[3]);

        // The log goes on as if the torn batch had never been written.
        let info = append(&mut log, &TestBatch::values(2, 5));
        assert_eq!(info.base_offset, next_after_four);
        drop(log);
        let (log, report) = open(dir.path(), config.clone());
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(log.next_offset(), next_after_four.plus(2));
        assert_eq!(all_batches(&log).len(), keep + 1);
    }
}

#[test]
fn t41_a_corrupt_byte_in_the_last_batch_is_caught_by_the_crc() {
    let original = tempfile::tempdir().unwrap();
    let (ends, base, config) = write_for_recovery(original.path());
    // Every byte the CRC covers, from the attributes to the end.
    for at in (ends[3] + 21..ends[4]).step_by(3) {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let path = segment::segment_path(dir.path(), base, LOG_EXT);
        let mut bytes = fs::read(&path).unwrap();
        bytes[at as usize] ^= 0x01;
        fs::write(&path, &bytes).unwrap();

        let (log, report) = open(dir.path(), config.clone());
        assert_eq!(report.truncated_bytes, ends[4] - ends[3], "flip at {at}");
        assert!(report.reason.as_deref().unwrap().contains("CRC"), "{:?}", report.reason);
        assert_eq!(log.active().size(), ends[3]);
    }
}

#[test]
fn t42_garbage_after_valid_data_is_cut_and_valid_data_stays() {
    let original = tempfile::tempdir().unwrap();
    let (ends, base, config) = write_for_recovery(original.path());
    for garbage in [
        vec![0u8; 10_000],
        vec![0xab; 7],
        b"\x00\x00\x00\x00\x00\x00\x00\x09\x7f\xff\xff\xff".to_vec(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let path = segment::segment_path(dir.path(), base, LOG_EXT);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, &garbage).unwrap();
        drop(file);
        let (log, report) = open(dir.path(), config.clone());
        assert_eq!(report.truncated_bytes, garbage.len() as u64);
        assert_eq!(report.batches_scanned, 5);
        assert_eq!(log.active().size(), ends[4]);
    }
}

#[test]
fn t43_reopen_after_clean_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (ends, _, config) = write_for_recovery(dir.path());
    let (log, report) = open(dir.path(), config.clone());
    assert_eq!(report.truncated_bytes, 0);
    assert!(report.removed_files.is_empty() && report.rebuilt_indexes.is_empty());
    let before: Vec<StoredBatch> = all_batches(&log);
    let state = (log.next_offset(), log.segment_base_offsets(), log.size_bytes());
    assert_eq!(log.active().size(), ends[4]);
    drop(log);
    let (log, report) = open(dir.path(), config);
    assert_eq!(report.batches_scanned, 5, "only the active segment is scanned");
    assert_eq!((log.next_offset(), log.segment_base_offsets(), log.size_bytes()), state);
    assert_eq!(all_batches(&log), before);
}

#[test]
fn t44_leftover_temp_files_and_orphan_indexes_are_removed_foreign_files_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, config) = write_for_recovery(dir.path());
    let cleaned = dir.path().join("00000000000000000000.log.cleaned");
    let deleted = dir.path().join("00000000000000000000.log.deleted");
    let orphan = segment::segment_path(dir.path(), Offset(999_999), INDEX_EXT);
    let foreign = dir.path().join("00000000000000000012.snapshot");
    for path in [&cleaned, &deleted, &orphan, &foreign] {
        fs::write(path, b"junk").unwrap();
    }
    let (log, report) = open(dir.path(), config);
    for path in [&cleaned, &deleted, &orphan] {
        assert!(!path.exists(), "{} is left", path.display());
        assert!(report.removed_files.contains(path));
    }
    assert!(foreign.exists(), "files the log does not own are left alone");
    // A leftover .cleaned makes the segment's indexes suspect: rebuilt.
    assert_eq!(report.rebuilt_indexes, vec![Offset(0)]);
    assert_eq!(log.log_start_offset(), Offset(0));
}

#[test]
fn t45_damaged_or_missing_sealed_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, config) = write_for_recovery(dir.path());
    let (log, _) = open(dir.path(), config.clone());
    let before = all_batches(&log);
    let bases = log.segment_base_offsets();
    drop(log);
    let index0 = segment::segment_path(dir.path(), bases[0], INDEX_EXT);
    let original_index0 = fs::read(&index0).unwrap();
    assert!(!original_index0.is_empty());
    fs::write(&index0, &original_index0[..original_index0.len() - 3]).unwrap();
    fs::remove_file(segment::segment_path(dir.path(), bases[1], TIME_INDEX_EXT)).unwrap();

    let (log, report) = open(dir.path(), config.clone());
    assert_eq!(report.rebuilt_indexes, vec![bases[0], bases[1]]);
    assert_eq!(fs::read(&index0).unwrap(), original_index0, "the rebuild gives the same index");
    assert_eq!(all_batches(&log), before);
    drop(log);
    let (_, report) = open(dir.path(), config);
    assert!(report.rebuilt_indexes.is_empty());
}

#[test]
fn t46_a_sealed_segment_that_is_corrupt_is_an_error_not_a_silent_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, config) = write_for_recovery(dir.path());
    let path = segment::segment_path(dir.path(), Offset(0), LOG_EXT);
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len();
    bytes[len - 5] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    // Its indexes still look right, so open succeeds without scanning it...
    let (log, _) = open(dir.path(), config.clone());
    drop(log);
    // ...but once they must be rebuilt, the damage is found and reported.
    fs::remove_file(segment::segment_path(dir.path(), Offset(0), INDEX_EXT)).unwrap();
    let err = Log::open(dir.path(), config).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("corrupt"), "{err}");
}

// ---- t50: retention -------------------------------------------------------

/// Five segments of two batches; batch i has timestamp 1000 * (i + 1).
fn write_for_retention(dir: &Path, config: LogConfig) -> (Log, u64) {
    let (probe, _) = test_batch(&TestBatch::values(1, 100));
    let len = probe.len() as u64;
    let config = LogConfig { segment_bytes_max: 2 * len, ..config };
    let (mut log, _) = open(dir, config);
    for i in 0..10 {
        append(&mut log, &TestBatch::values(1, 100).at(1000 * (i + 1)));
    }
    assert_eq!(log.segment_count(), 5);
    (log, 2 * len)
}

#[test]
fn t50_retention_by_age_deletes_old_sealed_segments_and_moves_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, segment_len) =
        write_for_retention(dir.path(), LogConfig { retention_ms: Some(5000), ..small_config() });
    // Segment k holds timestamps 2000k+1000, 2000k+2000.
    let report = log.apply_retention(6000).unwrap();
    assert_eq!(report.segments_deleted, 0, "segment 0 (max 2000) is exactly 4000 old");
    let report = log.apply_retention(9001).unwrap();
    assert_eq!(report.deleted_base_offsets, vec![Offset(0), Offset(2)]);
    assert_eq!(report.bytes_deleted, 2 * segment_len);
    assert_eq!(report.log_start_offset, Offset(4));
    assert_eq!(log.log_start_offset(), Offset(4));
    assert!(!segment::segment_path(dir.path(), Offset(0), LOG_EXT).exists());
    assert!(!segment::segment_path(dir.path(), Offset(2), INDEX_EXT).exists());
    assert!(matches!(log.read(Offset(3), Offset(10), 1 << 20), Err(ReadError::OutOfRange { .. })));
    assert_eq!(log.read(Offset(4), Offset(10), 1 << 20).unwrap()[0].header.base_offset, Offset(4));

    // Far in the future everything sealed goes, never the active segment.
    let report = log.apply_retention(1_000_000).unwrap();
    assert_eq!(report.segments_deleted, 2);
    assert_eq!(log.segment_base_offsets(), vec![Offset(8)]);
    assert_eq!((log.log_start_offset(), log.next_offset()), (Offset(8), Offset(10)));
    let config = log.config().clone();
    drop(log);
    let (log, _) = open(dir.path(), config);
    assert_eq!((log.log_start_offset(), log.next_offset()), (Offset(8), Offset(10)));
}

#[test]
fn t51_retention_by_size_deletes_oldest_while_too_big() {
    let dir = tempfile::tempdir().unwrap();
    let (probe, _) = test_batch(&TestBatch::values(1, 100));
    let retention = 3 * 2 * probe.len() as u64; // three segments' worth
    let (mut log, _) = write_for_retention(
        dir.path(),
        LogConfig { retention_bytes: Some(retention), ..small_config() },
    );
    let report = log.apply_retention(0).unwrap();
    assert_eq!(report.deleted_base_offsets, vec![Offset(0), Offset(2)]);
    assert_eq!(log.size_bytes(), retention);
    assert_eq!(log.apply_retention(0).unwrap().segments_deleted, 0);
    // A limit of zero leaves the active segment.
    log.config.retention_bytes = Some(0);
    log.apply_retention(0).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), Offset(8));
    // for_each_batch from before the start begins at the start.
    assert_eq!(ranges(&all_batches(&log)), vec![(8, 8), (9, 9)]);
}

#[test]
fn t52_delete_all_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let (mut log, _) = open(&path, small_config());
    append(&mut log, &TestBatch::values(1, 10));
    log.delete_all().unwrap();
    assert!(!path.exists());
}

// ---- t60: compaction -------------------------------------------------------

fn compact_config() -> LogConfig {
    LogConfig { compact: true, index_interval_bytes: 100, ..LogConfig::default() }
}

fn roll(log: &mut Log) {
    let next = log.next_offset();
    assert_eq!(log.roll(0).unwrap(), next);
}

fn keyed(pairs: &[(Option<&str>, Option<&str>)]) -> TestBatch {
    TestBatch::keyed(pairs)
}

#[test]
fn t60_compaction_keeps_the_latest_of_each_key_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), compact_config());
    append(
        &mut log,
        &keyed(&[(Some("a"), Some("a1")), (Some("b"), Some("b1")), (None, Some("n1"))]),
    ); // 0..=2
    append(&mut log, &keyed(&[(Some("a"), Some("a2")), (Some("c"), Some("c1"))])); // 3..=4
    append(&mut log, &keyed(&[(Some("b"), None)])); // 5: tombstone, latest of b
    roll(&mut log);
    append(&mut log, &keyed(&[(Some("c"), Some("c2"))])); // 6 in the active segment
    append(&mut log, &keyed(&[(Some("d"), Some("d1"))])); // 7
    let before_end = log.next_offset();

    let report = log.compact().unwrap();
    assert_eq!(report.segments_cleaned, 1);
    assert_eq!(report.records_removed, 3, "a1, b1 and c1 (c2 in the active segment counts)");
    assert_eq!(report.keys, 4);
    assert_eq!(
        records(&log),
        vec![
            (2, None, Some("n1".into())),
            (3, Some("a".into()), Some("a2".into())),
            (5, Some("b".into()), None),
            (6, Some("c".into()), Some("c2".into())),
            (7, Some("d".into()), Some("d1".into())),
        ]
    );
    // Batches keep their offset ranges.
    assert_eq!(ranges(&all_batches(&log)), vec![(0, 2), (3, 4), (5, 5), (6, 6), (7, 7)]);
    assert_eq!(log.next_offset(), before_end);
    // Idempotent.
    let again = log.compact().unwrap();
    assert_eq!((again.segments_cleaned, again.records_removed), (0, 0));
    // And it all survives a reopen, with indexes that match.
    let expected = records(&log);
    drop(log);
    let (log, report) = open(dir.path(), compact_config());
    assert!(report.rebuilt_indexes.is_empty());
    assert_eq!(records(&log), expected);
}

#[test]
fn t61_emptied_batches_are_dropped_without_producer_and_kept_empty_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), compact_config());
    append(&mut log, &keyed(&[(Some("a"), Some("1")), (Some("b"), Some("1"))])); // 0..=1 plain
    append(&mut log, &keyed(&[(Some("a"), Some("2")), (Some("b"), Some("2"))]).producer(42, 3, 17)); // 2..=3
    append(&mut log, &keyed(&[(Some("x"), Some("1"))])); // 4
    roll(&mut log);
    append(&mut log, &keyed(&[(Some("a"), Some("3")), (Some("b"), Some("3"))])); // 5..=6
    log.compact().unwrap();

    let batches = all_batches(&log);
    assert_eq!(ranges(&batches), vec![(2, 3), (4, 4), (5, 6)], "the plain emptied batch is gone");
    let empty = &batches[0].header;
    assert_eq!(empty.record_count, 0);
    assert_eq!(
        (empty.producer_id, empty.producer_epoch, empty.base_sequence, empty.last_offset_delta),
        (ProducerId(42), ProducerEpoch(3), Sequence(17), 1),
        "the producer's sequence range stays for producer state replay"
    );
    assert_eq!(empty.last_sequence(), Sequence(18));
    // Reading from the gap gives the next batch; reading into the empty
    // batch gives it.
    assert_eq!(ranges(&log.read(Offset(0), Offset(7), 0).unwrap()), vec![(2, 3)]);
    assert_eq!(ranges(&log.read(Offset(3), Offset(7), 0).unwrap()), vec![(2, 3)]);
    assert_eq!(
        log.offset_for_timestamp(0).unwrap(),
        Some(Offset(4)),
        "the empty batch has no record"
    );
    drop(log);
    let (log, _) = open(dir.path(), compact_config());
    assert_eq!(ranges(&all_batches(&log)), vec![(2, 3), (4, 4), (5, 6)]);
    assert_eq!(log.log_start_offset(), Offset(0));
}

#[test]
fn t62_markers_are_kept_and_aborted_or_open_transactions_shadow_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), compact_config());
    append(&mut log, &keyed(&[(Some("k"), Some("committed-0"))])); // 0
    append(&mut log, &keyed(&[(Some("j"), Some("committed-1"))])); // 1
    append(&mut log, &keyed(&[(Some("k"), Some("aborted"))]).producer(7, 0, 0).transactional()); // 2
    append(&mut log, &TestBatch::marker(7, 0, false)); // 3: abort
    append(
        &mut log,
        &keyed(&[(Some("j"), Some("txn-committed"))]).producer(8, 0, 0).transactional(),
    ); // 4
    append(&mut log, &TestBatch::marker(8, 0, true)); // 5: commit
    roll(&mut log);
    append(&mut log, &keyed(&[(Some("k"), Some("open"))]).producer(9, 0, 0).transactional()); // 6
    log.compact().unwrap();
    assert_eq!(
        records(&log),
        vec![
            (0, Some("k".into()), Some("committed-0".into())),
            (2, Some("k".into()), Some("aborted".into())),
            (
                3,
                Some(String::from_utf8(vec![0, 0, 0, 0]).unwrap()),
                Some(String::from_utf8(vec![0; 6]).unwrap())
            ),
            (4, Some("j".into()), Some("txn-committed".into())),
            (
                5,
                Some(String::from_utf8(vec![0, 0, 0, 1]).unwrap()),
                Some(String::from_utf8(vec![0; 6]).unwrap())
            ),
            (6, Some("k".into()), Some("open".into())),
        ]
    );
}

#[test]
fn t63_compressed_batches_are_rewritten_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), compact_config());
    let meta = BatchMeta { compression: Compression::Gzip, ..BatchMeta::plain(7000) };
    let mut builder = BatchBuilder::new(meta);
    for (k, v) in [("a", "1"), ("b", "1"), ("c", "1")] {
        builder.push(7000, Some(k.as_bytes()), Some(v.as_bytes()), &[("h", Some(b"v".as_slice()))]);
    }
    let batch = builder.finish().unwrap();
    let header = BatchHeader::validate_for_append(&batch, 1 << 20).unwrap();
    log.roll_if_needed(batch.len(), 0).unwrap();
    log.append(&batch, &header).unwrap();
    append(&mut log, &keyed(&[(Some("b"), Some("2"))]));
    roll(&mut log);
    log.compact().unwrap();
    let batches = all_batches(&log);
    assert_eq!(batches[0].header.attributes.compression().unwrap(), Compression::Gzip);
    assert_eq!(batches[0].header.record_count, 2);
    assert_eq!(batches[0].header.max_timestamp, 7000);
    let decoded = decode_batch(&batches[0].bytes).unwrap();
    assert_eq!(decoded.records[1].headers[0].key, "h", "record headers survive");
    assert_eq!(
        records(&log).into_iter().map(|(o, k, _)| (o, k.unwrap())).collect::<Vec<_>>(),
        vec![(0, "a".into()), (2, "c".into()), (3, "b".into())]
    );
}

#[test]
fn t64_a_crash_anywhere_in_a_rewrite_leaves_the_old_or_the_new_segment() {
    let build = |dir: &Path| {
        let (mut log, _) = open(dir, compact_config());
        for i in 0..20 {
            let v = format!("v{i}");
            append(
                &mut log,
                &keyed(&[(Some(["a", "b", "c"][i % 3]), Some(v.as_str())), (None, Some("n"))]),
            );
        }
        roll(&mut log);
        append(&mut log, &keyed(&[(Some("a"), Some("last"))]));
        log
    };
    let reference = tempfile::tempdir().unwrap();
    let mut log = build(reference.path());
    let old_records = records(&log);
    log.compact().unwrap();
    let new_records = records(&log);
    assert_ne!(old_records, new_records);
    let new_files: Vec<(String, Vec<u8>)> = [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT]
        .iter()
        .map(|ext| {
            (
                segment::file_name(Offset(0), ext),
                fs::read(segment::segment_path(reference.path(), Offset(0), ext)).unwrap(),
            )
        })
        .collect();

    // Crash before the rename: the old log and a complete .cleaned file.
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path());
    let plan = log.prepare_compaction().unwrap();
    assert_eq!(plan.cleaned.len(), 1);
    drop(log);
    let (log, report) = open(dir.path(), compact_config());
    assert_eq!(report.removed_files.len(), 1);
    assert_eq!(records(&log), old_records);

    // Crash after the log's rename, before the indexes': the new log with
    // the old indexes and leftover .cleaned indexes.
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path()));
    let (name, bytes) = &new_files[0];
    fs::write(dir.path().join(name), bytes).unwrap();
    for (name, bytes) in &new_files[1..] {
        fs::write(dir.path().join(format!("{name}.cleaned")), bytes).unwrap();
    }
    let (log, report) = open(dir.path(), compact_config());
    assert_eq!(report.rebuilt_indexes, vec![Offset(0)]);
    assert_eq!(records(&log), new_records);
    for offset in 0..log.next_offset().0 {
        let first = log.read(Offset(offset), log.next_offset(), 0).unwrap();
        assert!(first[0].header.last_offset().0 >= offset);
    }
    for (name, bytes) in &new_files[1..] {
        assert_eq!(&fs::read(dir.path().join(name)).unwrap(), bytes, "rebuilt {name} matches");
    }
}

#[test]
fn t65_compaction_does_nothing_for_a_log_that_is_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), small_config());
    append(&mut log, &keyed(&[(Some("a"), Some("1"))]));
    append(&mut log, &keyed(&[(Some("a"), Some("2"))]));
    roll(&mut log);
    let report = log.compact().unwrap();
    assert!(report.skipped.is_some());
    assert_eq!(records(&log).len(), 2);
}

#[test]
fn t66_retention_meanwhile_makes_install_skip_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), LogConfig { retention_bytes: Some(0), ..compact_config() });
    append(&mut log, &keyed(&[(Some("a"), Some("1"))]));
    append(&mut log, &keyed(&[(Some("a"), Some("2"))]));
    roll(&mut log);
    append(&mut log, &keyed(&[(Some("a"), Some("3"))]));
    let plan = log.prepare_compaction().unwrap();
    assert_eq!(plan.cleaned.len(), 1);
    log.apply_retention(0).unwrap();
    let report = log.install_compaction(plan).unwrap();
    assert_eq!(report.segments_cleaned, 0);
    assert!(
        fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".cleaned"))
    );
    assert_eq!(records(&log), vec![(2, Some("a".into()), Some("3".into()))]);
}

// ---- t90: model-based property test --------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    pub enum Op {
        /// A batch of `records` records of `value_len` bytes, appended at
        /// `advance_ms` after the previous operation.
        Append { records: usize, value_len: usize, advance_ms: i64 },
        /// Close and reopen.
        Reopen,
        /// Crash: drop the log, cut `cut` bytes (clamped to the last
        /// batch) off the active segment's end, reopen.
        TornCrash { cut: usize },
        /// Read from a random offset with a random budget.
        Read { at_permille: u16, max_bytes: usize },
        /// Size retention down to `keep_bytes`.
        Retain { keep_bytes: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (1usize..5, 0usize..200, 0i64..400)
                .prop_map(|(records, value_len, advance_ms)| Op::Append { records, value_len, advance_ms }),
            1 => Just(Op::Reopen),
            1 => (1usize..400).prop_map(|cut| Op::TornCrash { cut }),
            3 => (0u16..1000, 0usize..2000).prop_map(|(at_permille, max_bytes)| Op::Read { at_permille, max_bytes }),
            1 => (0u64..8000).prop_map(|keep_bytes| Op::Retain { keep_bytes }),
        ]
    }

    /// What the log must hold.
    #[derive(Default)]
    struct Model {
        /// Every batch: (base, last, bytes as appended).
        batches: Vec<(i64, i64, Bytes)>,
        next: i64,
    }

    fn check(log: &Log, model: &Model) {
        assert_eq!(log.next_offset(), Offset(model.next));
        let stored = all_batches(log);
        assert_eq!(stored.len(), model.batches.len());
        for (s, m) in stored.iter().zip(&model.batches) {
            assert_eq!((s.header.base_offset.0, s.header.last_offset().0), (m.0, m.1));
            assert_eq!(s.bytes[8..], m.2[8..]);
        }
        assert_eq!(log.size_bytes(), model.batches.iter().map(|m| m.2.len() as u64).sum::<u64>());
        if let Some(first) = model.batches.first() {
            assert!(log.log_start_offset().0 <= first.0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn t90_log_matches_a_model_under_appends_rolls_reopens_crashes_and_retention(
            ops in proptest::collection::vec(op(), 1..80)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                segment_bytes_max: 1200,
                segment_ms_max: 2000,
                index_interval_bytes: 200,
                ..LogConfig::default()
            };
            let (mut log, _) = open(dir.path(), config.clone());
            let mut model = Model::default();
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Append { records, value_len, advance_ms } => {
                        now += advance_ms;
                        let (bytes, header) = test_batch(&TestBatch::values(records, value_len).at(now));
                        log.roll_if_needed(bytes.len(), now).unwrap();
                        let info = log.append(&bytes, &header).unwrap();
                        prop_assert_eq!(info.base_offset, Offset(model.next));
                        model.next = info.last_offset.0 + 1;
                        model.batches.push((info.base_offset.0, info.last_offset.0, bytes));
                    }
                    Op::Reopen => {
                        drop(log);
                        let (reopened, report) = open(dir.path(), config.clone());
                        prop_assert_eq!(report.truncated_bytes, 0);
                        log = reopened;
                    }
                    Op::TornCrash { cut } => {
                        let path = active_log_path(&log);
                        let active_size = log.active().size();
                        drop(log);
                        // Only the last batch can be torn, and only if it is in
                        // the active segment.
                        let last_in_active =
                            model.batches.last().map(|m| m.2.len() as u64).filter(|&len| len <= active_size);
                        if let Some(len) = last_in_active {
                            let cut = (cut as u64).min(len);
                            OpenOptions::new().write(true).open(&path).unwrap().set_len(active_size - cut).unwrap();
                            model.next = model.batches.pop().unwrap().0;
                        }
                        let (reopened, report) = open(dir.path(), config.clone());
                        prop_assert_eq!(report.truncated_bytes, last_in_active.map_or(0, |len| len - (cut as u64).min(len)));
                        log = reopened;
                    }
                    Op::Read { at_permille, max_bytes } => {
                        let (start, next) = (log.log_start_offset().0, log.next_offset().0);
                        let from = start + (next - start) * i64::from(at_permille) / 1000;
                        let got = log.read(Offset(from), Offset(next), max_bytes).unwrap();
                        let expected: Vec<&(i64, i64, Bytes)> = model.batches.iter().filter(|m| m.1 >= from).collect();
                        if expected.is_empty() {
                            prop_assert!(got.is_empty());
                        } else {
                            prop_assert!(!got.is_empty());
                            let total: usize = got.iter().map(|b| b.bytes.len()).sum();
                            prop_assert!(got.len() == 1 || total <= max_bytes);
                            for (g, m) in got.iter().zip(&expected) {
                                prop_assert_eq!(g.header.base_offset.0, m.0);
                            }
                            // As many as fit.
                            if let Some(next_batch) = expected.get(got.len()) {
                                prop_assert!(total + next_batch.2.len() > max_bytes);
                            }
                        }
                        if start > 0 {
                            let below = log.read(Offset(start - 1), Offset(next), 0);
                            prop_assert!(matches!(below, Err(ReadError::OutOfRange { .. })), "read below the start");
                        }
                    }
                    Op::Retain { keep_bytes } => {
                        log.config.retention_bytes = Some(keep_bytes);
                        let before = log.size_bytes();
                        let report = log.apply_retention(now).unwrap();
                        log.config.retention_bytes = None;
                        prop_assert_eq!(log.size_bytes(), before - report.bytes_deleted);
                        prop_assert!(log.segment_count() >= 1);
                        // Deleted until small enough, or only the active segment is left.
                        prop_assert!(log.size_bytes() <= keep_bytes || log.segment_count() == 1
                            || report.segments_deleted == 0 && before <= keep_bytes);
                        let start = log.log_start_offset().0;
                        model.batches.retain(|m| m.0 >= start);
                    }
                }
                check(&log, &model);
            }
        }
    }
}

mod compaction_model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// One batch: records of (key index or none, value or tombstone), whether
    /// it has a producer id, and whether a roll comes before it.
    type BatchSpec = (Vec<(Option<u8>, bool)>, bool, bool);

    fn batch_spec() -> impl Strategy<Value = BatchSpec> {
        (
            proptest::collection::vec(
                (proptest::option::weighted(0.9, 0u8..6), proptest::bool::weighted(0.85)),
                1..5,
            ),
            proptest::bool::ANY,
            proptest::bool::weighted(0.2),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn t91_compaction_keeps_exactly_the_latest_of_each_key_and_every_offset_range(
            specs in proptest::collection::vec(batch_spec(), 1..40)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = open(dir.path(), compact_config());
            let mut sequence = 0;
            for (i, (records, idempotent, roll_before)) in specs.iter().enumerate() {
                if *roll_before && log.active().size() > 0 {
                    roll(&mut log);
                }
                let keys: Vec<Option<String>> = records.iter().map(|(k, _)| k.map(|k| format!("k{k}"))).collect();
                let values: Vec<Option<String>> =
                    records.iter().enumerate().map(|(j, (_, live))| live.then(|| format!("v{i}.{j}"))).collect();
                let pairs: Vec<(Option<&str>, Option<&str>)> =
                    keys.iter().zip(&values).map(|(k, v)| (k.as_deref(), v.as_deref())).collect();
                let mut batch = keyed(&pairs);
                if *idempotent {
                    batch = batch.producer(1, 0, sequence);
                    sequence += records.len() as i32;
                }
                append(&mut log, &batch);
            }
            let before = records(&log);
            let before_batches = all_batches(&log);
            let active_base = log.active().base_offset().0;
            let mut latest: HashMap<String, i64> = HashMap::new();
            for (offset, key, _) in &before {
                if let Some(key) = key {
                    latest.insert(key.clone(), *offset);
                }
            }
            log.compact().unwrap();
            let after = records(&log);
            // Exactly: the null-key records, the latest of each key, and
            // everything in the active segment.
            let expected: Vec<_> = before
                .iter()
                .filter(|(offset, key, _)| {
                    *offset >= active_base || key.as_ref().is_none_or(|k| latest[k] == *offset)
                })
                .cloned()
                .collect();
            prop_assert_eq!(&after, &expected);
            // Batches keep their ranges; only plain emptied ones disappear.
            let after_batches = all_batches(&log);
            let mut kept = after_batches.iter().peekable();
            for b in &before_batches {
                match kept.peek() {
                    Some(a) if a.header.base_offset == b.header.base_offset => {
                        prop_assert_eq!(a.header.last_offset_delta, b.header.last_offset_delta);
                        prop_assert_eq!(a.header.producer_id, b.header.producer_id);
                        prop_assert_eq!(a.header.base_sequence, b.header.base_sequence);
                        kept.next();
                    }
                    _ => prop_assert!(b.header.producer_id.is_none(), "a batch with a producer id was dropped"),
                }
            }
            prop_assert!(kept.next().is_none());
            // Idempotent, and durable.
            let again = log.compact().unwrap();
            prop_assert_eq!(again.records_removed, 0);
            prop_assert_eq!(again.segments_cleaned, 0);
            drop(log);
            let (log, report) = open(dir.path(), compact_config());
            prop_assert!(report.rebuilt_indexes.is_empty());
            prop_assert_eq!(records(&log), expected);
        }
    }
}
