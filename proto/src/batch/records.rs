//! The records inside a batch: encoding them (the producer's
//! [`BatchBuilder`]) and decoding them ([`decode_batch`], for consumers and
//! tools; the partition server's hot path never decodes records).
//!
//! ```text
//! record (all varints zigzag):
//!   length            varint   bytes of the record after this field
//!   attributes        i8       unused, 0
//!   timestamp_delta   varlong  from the batch's base_timestamp
//!   offset_delta      varint   from the batch's base_offset
//!   key_length        varint   -1 = null key
//!   key               bytes
//!   value_length      varint   -1 = null value
//!   value             bytes
//!   header_count      varint
//!   per header:       key_length varint, key (UTF-8),
//!                     value_length varint (-1 = null), value
//! ```
//!
//! With compression, every record after the 61-byte header is compressed
//! as one block; `record_count` stays readable in the header.

use bytes::Bytes;

use super::header::{HEADER_LEN, LOG_OVERHEAD, MAGIC, store_crc};
use super::varint::{
    VARINT_LEN_MAX, VARLONG_LEN_MAX, get_varint, get_varlong, put_varlong, varlong_len,
};
use super::{Attributes, BatchError, BatchHeader, Compression, compression};
use crate::{Offset, ProducerEpoch, ProducerId, Sequence};

/// Largest whole batch the format can describe: `batch_length` is an i32
/// counting the bytes after the first 12.
pub const BATCH_LEN_MAX: usize = LOG_OVERHEAD + i32::MAX as usize;

/// Fewest bytes one record can take: a one-byte length, then attributes,
/// timestamp delta, offset delta, key length, value length and header count
/// of one byte each. Bounds how many records a batch can really hold, so a
/// hostile `record_count` cannot make the decoder reserve memory.
const RECORD_LEN_MIN: usize = 7;
/// Fewest bytes one record header can take: two one-byte lengths.
const RECORD_HEADER_LEN_MIN: usize = 2;

/// One record header: a UTF-8 key and an optional value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One decoded record. Its offset and timestamp are deltas from the batch
/// header's base; [`Record::offset`] and [`Record::timestamp`] resolve them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// The record's offset in the partition log.
    pub fn offset(&self, h: &BatchHeader) -> Offset {
        // Wrapping: a hostile header must not make a reader panic.
        Offset(h.base_offset.0.wrapping_add(self.offset_delta as i64))
    }

    /// The record's timestamp in milliseconds. Under log-append time the
    /// broker's time, stored as the batch's max timestamp, stands for every
    /// record, as in Kafka.
    pub fn timestamp(&self, h: &BatchHeader) -> i64 {
        if h.attributes.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(self.timestamp_delta)
        }
    }
}

/// Fields of a batch a producer chooses; the builder derives the rest
/// (count, last_offset_delta, max_timestamp, length, crc).
#[derive(Clone, Debug)]
pub struct BatchMeta {
    pub base_offset: Offset,
    pub partition_leader_epoch: i32,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
    pub transactional: bool,
    pub control: bool,
    pub compression: Compression,
    pub base_timestamp: i64,
}

impl BatchMeta {
    /// A batch from a plain (non-idempotent) producer: producer id, epoch
    /// and base sequence -1, no compression, base offset 0 (the partition
    /// assigns the real one) and partition leader epoch -1 (unknown), as
    /// Kafka's Java producer writes it.
    pub fn plain(base_timestamp: i64) -> BatchMeta {
        BatchMeta {
            base_offset: Offset::ZERO,
            partition_leader_epoch: -1,
            producer_id: ProducerId::NONE,
            producer_epoch: ProducerEpoch::NONE,
            base_sequence: Sequence::NONE,
            transactional: false,
            control: false,
            compression: Compression::None,
            base_timestamp,
        }
    }
}

/// Incremental encoder writing records straight into one buffer (the
/// client's hot path: no per-record allocation beyond the buffer growing).
///
/// The buffer starts with room for the header, which [`BatchBuilder::finish`]
/// fills in once the records are known; with compression, `finish`
/// compresses the records in one go.
pub struct BatchBuilder {
    meta: BatchMeta,
    /// Header placeholder, then the uncompressed records.
    buf: Vec<u8>,
    record_count: i32,
    /// Highest offset delta pushed so far.
    offset_delta_max: Option<i32>,
    /// Highest record timestamp pushed so far.
    timestamp_max: Option<i64>,
}

impl BatchBuilder {
    pub fn new(meta: BatchMeta) -> Self {
        Self::with_capacity(meta, 0)
    }

    /// A builder whose buffer is reserved for `bytes` bytes (header included).
    pub fn with_capacity(meta: BatchMeta, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        BatchBuilder { meta, buf, record_count: 0, offset_delta_max: None, timestamp_max: None }
    }

    /// Appends a record whose offset delta is its index in the batch.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let offset_delta = self.record_count;
        let headers = headers.iter().map(|&(k, v)| (k.as_bytes(), v));
        self.put_record(
            timestamp.wrapping_sub(self.meta.base_timestamp),
            offset_delta,
            key,
            value,
            headers,
        );
        self.note_record(offset_delta, timestamp);
    }

    /// Appends `r` as it is, keeping its offset and timestamp deltas (needed
    /// to rewrite compacted batches whose offset deltas have gaps).
    pub fn push_record(&mut self, r: &Record) {
        let headers = r.headers.iter().map(|h| (h.key.as_bytes(), h.value.as_deref()));
        self.put_record(
            r.timestamp_delta,
            r.offset_delta,
            r.key.as_deref(),
            r.value.as_deref(),
            headers,
        );
        self.note_record(r.offset_delta, self.meta.base_timestamp.wrapping_add(r.timestamp_delta));
    }

    /// Encoded bytes so far, header included, before any compression.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// An upper bound on [`BatchBuilder::len`] after pushing one more record
    /// with a key and value of these lengths and no headers, for callers
    /// that keep batches under a size limit (before compression).
    pub fn estimated_size_after(&self, key_len: usize, value_len: usize) -> usize {
        let fields = 1 + VARLONG_LEN_MAX + 3 * VARINT_LEN_MAX + key_len + value_len + 1;
        self.buf.len() + VARINT_LEN_MAX + fields
    }

    /// Completes the batch: compresses the records if the meta asks for it
    /// and fills in count, last offset delta (the highest offset delta
    /// pushed, 0 for an empty batch), max timestamp (the base timestamp for
    /// an empty batch), length and CRC.
    pub fn finish(self) -> Result<Bytes, BatchError> {
        let last_offset_delta = self.offset_delta_max.unwrap_or(0);
        self.finish_inner(last_offset_delta)
    }

    /// [`BatchBuilder::finish`] with an explicit last offset delta, for
    /// rewriting a compacted batch whose last records were removed: the
    /// batch must still claim the offsets it had. It may not be below an
    /// offset delta that was pushed.
    pub fn finish_with_last_offset_delta(
        self,
        last_offset_delta: i32,
    ) -> Result<Bytes, BatchError> {
        if let Some(max) = self.offset_delta_max
            && last_offset_delta < max
        {
            return Err(BatchError::RecordCountMismatch(format!(
                "last offset delta {last_offset_delta} is below the offset delta {max} of a record"
            )));
        }
        self.finish_inner(last_offset_delta)
    }

    fn finish_inner(self, last_offset_delta: i32) -> Result<Bytes, BatchError> {
        let BatchBuilder { meta, mut buf, record_count, timestamp_max, .. } = self;
        // An empty batch (left by compaction) has nothing to compress and
        // stays 61 bytes, as Kafka writes it; decoding skips decompression.
        if meta.compression != Compression::None && record_count > 0 {
            let packed = compression::compress(meta.compression, &buf[HEADER_LEN..])?;
            buf.truncate(HEADER_LEN);
            buf.extend_from_slice(&packed);
        }
        if buf.len() > BATCH_LEN_MAX {
            return Err(BatchError::TooLarge { size: buf.len(), limit: BATCH_LEN_MAX });
        }
        let header = BatchHeader {
            base_offset: meta.base_offset,
            batch_length: (buf.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: meta.partition_leader_epoch,
            magic: MAGIC,
            crc: 0,
            attributes: Attributes::new(meta.compression, meta.transactional, meta.control),
            last_offset_delta,
            base_timestamp: meta.base_timestamp,
            max_timestamp: timestamp_max.unwrap_or(meta.base_timestamp),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            base_sequence: meta.base_sequence,
            record_count,
        };
        header.write(&mut buf);
        store_crc(&mut buf);
        // Read back what was written: the bytes must be a valid batch.
        debug_assert_eq!(
            BatchHeader::validate(&buf).map(|h| (h.record_count, h.last_offset_delta)),
            Ok((record_count, last_offset_delta))
        );
        Ok(Bytes::from(buf))
    }

    fn note_record(&mut self, offset_delta: i32, timestamp: i64) {
        self.record_count =
            self.record_count.checked_add(1).expect("fewer than 2^31 records fit in a batch");
        self.offset_delta_max =
            Some(self.offset_delta_max.map_or(offset_delta, |m| m.max(offset_delta)));
        self.timestamp_max = Some(self.timestamp_max.map_or(timestamp, |m| m.max(timestamp)));
    }

    /// Writes one record. Its length prefix comes first, so the body's size
    /// is computed from the field lengths before anything is written.
    fn put_record<'a>(
        &mut self,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + Clone,
    ) {
        let header_count = headers.clone().count() as i64;
        let headers_len: usize =
            headers.clone().map(|(k, v)| bytes_len(Some(k)) + bytes_len(v)).sum();
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varlong_len(offset_delta as i64)
            + bytes_len(key)
            + bytes_len(value)
            + varlong_len(header_count)
            + headers_len;
        let out = &mut self.buf;
        out.reserve(varlong_len(body_len as i64) + body_len);
        put_varlong(out, body_len as i64);
        let body_start = out.len();
        out.push(0); // record attributes: unused
        put_varlong(out, timestamp_delta);
        put_varlong(out, offset_delta as i64);
        put_bytes(out, key);
        put_bytes(out, value);
        put_varlong(out, header_count);
        for (k, v) in headers {
            put_bytes(out, Some(k));
            put_bytes(out, v);
        }
        assert_eq!(
            out.len() - body_start,
            body_len,
            "record length prefix disagrees with its body"
        );
    }
}

/// Encoded size of a length-prefixed, nullable byte string.
fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Encodes `records` (keeping their deltas) into one batch.
pub fn encode_batch(meta: &BatchMeta, records: &[Record]) -> Result<Bytes, BatchError> {
    let records_len: usize = records
        .iter()
        .map(|r| {
            RECORD_LEN_MIN
                + VARLONG_LEN_MAX
                + r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + r.headers.len() * RECORD_HEADER_LEN_MIN
        })
        .sum();
    let mut builder = BatchBuilder::with_capacity(meta.clone(), HEADER_LEN + records_len);
    for record in records {
        builder.push_record(record);
    }
    builder.finish()
}

/// A batch's header and every one of its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
}

/// Validates (BatchHeader::validate: length + CRC), decompresses, decodes
/// every record. For uncompressed batches key/value are zero-copy slices of
/// `batch` (Bytes::slice); for compressed ones, slices of one decompressed
/// buffer.
pub fn decode_batch(batch: &Bytes) -> Result<DecodedBatch, BatchError> {
    let header = BatchHeader::validate(batch)?;
    let codec = header.attributes.compression()?;
    if header.record_count < 0 {
        return Err(BatchError::RecordCountMismatch(format!(
            "negative record count {}",
            header.record_count
        )));
    }
    let region = match codec {
        _ if batch.len() == HEADER_LEN => Bytes::new(),
        Compression::None => batch.slice(HEADER_LEN..),
        _ => Bytes::from(compression::decompress(codec, &batch[HEADER_LEN..])?),
    };
    let records = decode_records(&region, header.record_count)?;
    assert_eq!(records.len(), header.record_count as usize);
    Ok(DecodedBatch { header, records })
}

/// Decodes exactly `count` records that must fill `region` to its end.
fn decode_records(region: &Bytes, count: i32) -> Result<Vec<Record>, BatchError> {
    let count = count as usize;
    let mut records = Vec::with_capacity(count.min(region.len() / RECORD_LEN_MIN));
    let mut pos = 0usize;
    for index in 0..count {
        if pos >= region.len() {
            return Err(BatchError::RecordCountMismatch(format!(
                "header says {count} records, bytes hold {index}"
            )));
        }
        let length = get_varint(region, &mut pos)?;
        let body_end = usize::try_from(length)
            .ok()
            .and_then(|len| pos.checked_add(len))
            .filter(|&end| end <= region.len())
            .ok_or(BatchError::Malformed("record length negative or past the end of the batch"))?;
        records.push(decode_record(region, pos, body_end)?);
        pos = body_end;
    }
    if pos != region.len() {
        return Err(BatchError::RecordCountMismatch(format!(
            "{} bytes left after the {count} records the header announces",
            region.len() - pos
        )));
    }
    Ok(records)
}

/// Decodes the record body `region[start..end]`, which it must fill exactly.
fn decode_record(region: &Bytes, start: usize, end: usize) -> Result<Record, BatchError> {
    // Every read below sees only this record's bytes.
    let body = &region[..end];
    let mut pos = start;
    if pos >= end {
        return Err(BatchError::Malformed("empty record"));
    }
    pos += 1; // attributes: unused by magic 2
    let timestamp_delta = get_varlong(body, &mut pos)?;
    let offset_delta = get_varint(body, &mut pos)?;
    let key = get_nullable_bytes(region, end, &mut pos)?;
    let value = get_nullable_bytes(region, end, &mut pos)?;
    let header_count = get_varint(body, &mut pos)?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| BatchError::Malformed("negative record header count"))?;
    let mut headers = Vec::with_capacity(header_count.min((end - pos) / RECORD_HEADER_LEN_MIN));
    for _ in 0..header_count {
        let key = get_nullable_bytes(region, end, &mut pos)?
            .ok_or(BatchError::Malformed("record header with a null key"))?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| BatchError::Malformed("record header key is not UTF-8"))?;
        let value = get_nullable_bytes(region, end, &mut pos)?;
        headers.push(RecordHeader { key, value });
    }
    if pos != end {
        return Err(BatchError::Malformed("record length does not match its fields"));
    }
    Ok(Record { offset_delta, timestamp_delta, key, value, headers })
}

/// Reads a varint length (-1 = null) and that many bytes, ending by `end`.
fn get_nullable_bytes(
    region: &Bytes,
    end: usize,
    pos: &mut usize,
) -> Result<Option<Bytes>, BatchError> {
    let length = get_varint(&region[..end], pos)?;
    if length == -1 {
        return Ok(None);
    }
    let stop = usize::try_from(length)
        .ok()
        .and_then(|len| pos.checked_add(len))
        .filter(|&stop| stop <= end)
        .ok_or(BatchError::Malformed("field length negative or past the end of its record"))?;
    let bytes = region.slice(*pos..stop);
    *pos = stop;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // t10: the kafka-python test vectors.

    fn unhex(hex: &str) -> Vec<u8> {
        assert!(hex.len().is_multiple_of(2), "odd hex length");
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    fn vectors() -> Vec<serde_json::Value> {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/record-batches-v2.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["vectors"].as_array().unwrap().clone()
    }

    fn json_bytes(v: &serde_json::Value) -> Option<Bytes> {
        v.as_str().map(|s| Bytes::copy_from_slice(s.as_bytes()))
    }

    fn json_compression(name: &str) -> Compression {
        match name {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => panic!("unknown compression {other}"),
        }
    }

    #[test]
    fn t10_kafka_python_vectors_decode_field_for_field() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 4);
        for v in &vectors {
            let name = v["name"].as_str().unwrap();
            let batch = Bytes::from(unhex(v["hex"].as_str().unwrap()));
            let decoded = decode_batch(&batch).unwrap_or_else(|e| panic!("{name}: {e}"));
            let h = &decoded.header;
            assert_eq!(h.base_offset, Offset(v["base_offset"].as_i64().unwrap()), "{name}");
            assert_eq!(h.producer_id, ProducerId(v["producer_id"].as_i64().unwrap()), "{name}");
            assert_eq!(
                h.producer_epoch,
                ProducerEpoch(v["producer_epoch"].as_i64().unwrap() as i16),
                "{name}"
            );
            assert_eq!(
                h.base_sequence,
                Sequence(v["base_sequence"].as_i64().unwrap() as i32),
                "{name}"
            );
            assert_eq!(h.is_transactional(), v["is_transactional"].as_bool().unwrap(), "{name}");
            assert!(!h.is_control(), "{name}");
            assert_eq!(
                h.attributes.compression(),
                Ok(json_compression(v["compression"].as_str().unwrap()))
            );
            let expected = v["records"].as_array().unwrap();
            assert_eq!(decoded.records.len(), expected.len(), "{name}");
            assert_eq!(h.record_count as usize, expected.len(), "{name}");
            for (r, e) in decoded.records.iter().zip(expected) {
                assert_eq!(r.offset(h), Offset(e["offset"].as_i64().unwrap()), "{name}");
                assert_eq!(r.timestamp(h), e["timestamp"].as_i64().unwrap(), "{name}");
                assert_eq!(r.key, json_bytes(&e["key"]), "{name}");
                assert_eq!(r.value, json_bytes(&e["value"]), "{name}");
                let headers: Vec<RecordHeader> = e["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|kv| RecordHeader {
                        key: kv[0].as_str().unwrap().to_owned(),
                        value: json_bytes(&kv[1]),
                    })
                    .collect();
                assert_eq!(r.headers, headers, "{name}");
            }
            // Producers validate what they send; these batches are valid produce requests.
            BatchHeader::validate_for_append(&batch, usize::MAX)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let gzip = vectors.iter().find(|v| v["compression"] == "gzip").unwrap();
        assert_eq!(gzip["records"].as_array().unwrap().len(), 10);
    }

    #[test]
    fn t11_kafka_python_vectors_reencode_byte_identical_from_their_fields() {
        for v in &vectors() {
            let name = v["name"].as_str().unwrap();
            let compression = json_compression(v["compression"].as_str().unwrap());
            let records = v["records"].as_array().unwrap();
            let meta = BatchMeta {
                base_offset: Offset(v["base_offset"].as_i64().unwrap()),
                // kafka-python writes 0 here (Java writes -1); the vectors hold 0.
                partition_leader_epoch: 0,
                producer_id: ProducerId(v["producer_id"].as_i64().unwrap()),
                producer_epoch: ProducerEpoch(v["producer_epoch"].as_i64().unwrap() as i16),
                base_sequence: Sequence(v["base_sequence"].as_i64().unwrap() as i32),
                transactional: v["is_transactional"].as_bool().unwrap(),
                control: false,
                compression,
                // Kafka clients take the first record's timestamp as the base.
                base_timestamp: records[0]["timestamp"].as_i64().unwrap(),
            };
            let mut builder = BatchBuilder::new(meta);
            for r in records {
                let headers: Vec<(&str, Option<&[u8]>)> = r["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|kv| (kv[0].as_str().unwrap(), kv[1].as_str().map(str::as_bytes)))
                    .collect();
                builder.push(
                    r["timestamp"].as_i64().unwrap(),
                    r["key"].as_str().map(str::as_bytes),
                    r["value"].as_str().map(str::as_bytes),
                    &headers,
                );
            }
            let ours = builder.finish().unwrap();
            let theirs = Bytes::from(unhex(v["hex"].as_str().unwrap()));
            if compression == Compression::None {
                assert_eq!(ours, theirs, "{name}: re-encoded bytes differ");
            } else {
                // Compressed bytes depend on the compressor; the contents may not.
                let (a, b) = (decode_batch(&ours).unwrap(), decode_batch(&theirs).unwrap());
                assert_eq!(a.records, b.records, "{name}");
                assert_eq!(a.header.max_timestamp, b.header.max_timestamp, "{name}");
                assert_eq!(a.header.last_offset_delta, b.header.last_offset_delta, "{name}");
            }
        }
    }

    #[test]
    fn t12_uncompressed_decode_slices_the_batch_without_copying() {
        let v = &vectors()[0];
        let batch = Bytes::from(unhex(v["hex"].as_str().unwrap()));
        let decoded = decode_batch(&batch).unwrap();
        let key = decoded.records[0].key.as_ref().unwrap();
        let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
        assert!(range.contains(&(key.as_ptr() as usize)), "key points into the batch");
    }

    // t20: builder details.

    #[test]
    fn t20_builder_derives_count_deltas_and_max_timestamp() {
        let mut b = BatchBuilder::new(BatchMeta::plain(1000));
        assert!(b.is_empty());
        assert_eq!(b.len(), HEADER_LEN);
        b.push(1005, Some(b"a"), None, &[]);
        b.push(990, None, Some(b"v"), &[("h", None)]);
        let (before, bound) = (b.len(), b.estimated_size_after(3, 4));
        b.push(1003, Some(b"abc"), Some(b"defg"), &[]);
        assert!(before + 7 + 3 + 4 <= b.len() && b.len() <= bound, "{before} {} {bound}", b.len());
        assert_eq!(b.record_count(), 3);
        let batch = b.finish().unwrap();
        let d = decode_batch(&batch).unwrap();
        assert_eq!((d.header.record_count, d.header.last_offset_delta), (3, 2));
        assert_eq!((d.header.base_timestamp, d.header.max_timestamp), (1000, 1005));
        assert_eq!(d.records[1].timestamp(&d.header), 990);
        assert_eq!(d.header.partition_leader_epoch, -1);
        assert!(!d.header.is_idempotent());
        BatchHeader::validate_for_append(&batch, usize::MAX).unwrap();
    }

    #[test]
    fn t21_compacted_batch_keeps_gapped_deltas_and_its_last_offset_delta() {
        let record = |offset_delta| Record {
            offset_delta,
            timestamp_delta: offset_delta as i64,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![],
        };
        let mut b = BatchBuilder::new(BatchMeta::plain(0));
        b.push_record(&record(1));
        b.push_record(&record(4));
        let batch = b.finish_with_last_offset_delta(9).unwrap();
        let d = decode_batch(&batch).unwrap();
        assert_eq!(d.header.last_offset_delta, 9);
        assert_eq!(d.records, vec![record(1), record(4)]);

        let mut b = BatchBuilder::new(BatchMeta::plain(0));
        b.push_record(&record(4));
        assert!(b.finish_with_last_offset_delta(3).is_err());
    }

    #[test]
    fn t22_empty_batch_encodes_and_decodes() {
        for compression in [Compression::None, Compression::Gzip] {
            let mut meta = BatchMeta::plain(77);
            meta.compression = compression;
            let batch = BatchBuilder::new(meta).finish().unwrap();
            assert_eq!(batch.len(), HEADER_LEN);
            let d = decode_batch(&batch).unwrap();
            assert_eq!((d.header.record_count, d.header.max_timestamp), (0, 77));
            assert_eq!(d.header.attributes.compression(), Ok(compression));
            assert!(d.records.is_empty());
            // A produce request must carry records.
            assert!(BatchHeader::validate_for_append(&batch, usize::MAX).is_err());
        }
    }

    #[test]
    fn t23_log_append_time_gives_every_record_the_max_timestamp() {
        let mut b = BatchBuilder::new(BatchMeta::plain(10));
        b.push(10, None, None, &[]);
        b.push(12, None, None, &[]);
        let mut bytes = b.finish().unwrap().to_vec();
        bytes[22] |= 0x08; // attributes low byte: timestamp type = log append time
        bytes[35..43].copy_from_slice(&555i64.to_be_bytes());
        store_crc(&mut bytes);
        let d = decode_batch(&Bytes::from(bytes)).unwrap();
        assert!(d.records.iter().all(|r| r.timestamp(&d.header) == 555));
    }

    // t30: malformed inputs.

    /// A batch around `records` with a correct length and CRC, so decoding
    /// gets past the header checks and into the record parser.
    fn framed(records: &[u8], record_count: i32, compression: Compression) -> Bytes {
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(records);
        let header = BatchHeader {
            base_offset: Offset(0),
            batch_length: (buf.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: 0,
            magic: MAGIC,
            crc: 0,
            attributes: Attributes::new(compression, false, false),
            last_offset_delta: record_count.saturating_sub(1),
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: ProducerId::NONE,
            producer_epoch: ProducerEpoch::NONE,
            base_sequence: Sequence::NONE,
            record_count,
        };
        header.write(&mut buf);
        store_crc(&mut buf);
        Bytes::from(buf)
    }

    #[test]
    fn t30_hostile_lengths_and_counts_are_errors() {
        let one = {
            let mut b = BatchBuilder::new(BatchMeta::plain(0));
            b.push(0, Some(b"key"), Some(b"value"), &[("h", Some(b"x"))]);
            b.finish().unwrap()[HEADER_LEN..].to_vec()
        };
        assert!(decode_batch(&framed(&one, 1, Compression::None)).is_ok());
        // A record count far above what the bytes hold.
        assert!(matches!(
            decode_batch(&framed(&one, i32::MAX, Compression::None)),
            Err(BatchError::RecordCountMismatch(_))
        ));
        assert!(decode_batch(&framed(&one, -1, Compression::None)).is_err());
        assert!(matches!(
            decode_batch(&framed(&one, 0, Compression::None)),
            Err(BatchError::RecordCountMismatch(_))
        ));
        // Record length past the end, and negative.
        let mut long = one.clone();
        long[0] = 0x7e; // zigzag 63
        assert!(matches!(
            decode_batch(&framed(&long, 1, Compression::None)),
            Err(BatchError::Malformed(_))
        ));
        let mut negative = one.clone();
        negative[0] = 0x03; // zigzag -2
        assert!(matches!(
            decode_batch(&framed(&negative, 1, Compression::None)),
            Err(BatchError::Malformed(_))
        ));
        // Key length past its record ([len, attr, ts, off, key_len, ...]).
        let mut key = one.clone();
        key[4] = 0x7e;
        assert!(matches!(
            decode_batch(&framed(&key, 1, Compression::None)),
            Err(BatchError::Malformed(_))
        ));
        key[4] = 0x03; // -2: neither null nor a length
        assert!(matches!(
            decode_batch(&framed(&key, 1, Compression::None)),
            Err(BatchError::Malformed(_))
        ));
        // A huge header count.
        let mut headers = vec![12u8, 0, 0, 0, 1, 1];
        put_varlong(&mut headers, i32::MAX as i64);
        headers[0] = (headers.len() as u8 - 1) << 1;
        assert!(matches!(
            decode_batch(&framed(&headers, 1, Compression::None)),
            Err(BatchError::Malformed(_))
        ));
        // Compressed garbage.
        assert!(decode_batch(&framed(&one, 1, Compression::Gzip)).is_err());
        // An unknown codec.
        let mut bytes = framed(&one, 1, Compression::None).to_vec();
        bytes[22] |= 0x07;
        store_crc(&mut bytes);
        assert_eq!(decode_batch(&Bytes::from(bytes)), Err(BatchError::UnsupportedCompression(7)));
    }

    // t40: properties.

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
    }

    fn arb_header() -> impl Strategy<Value = RecordHeader> {
        ("[a-z\u{e9}\u{4e2d}]{0,8}", arb_bytes())
            .prop_map(|(key, value)| RecordHeader { key, value })
    }

    /// Records with offset deltas 0, 1, 2, … as a producer writes them.
    fn arb_records() -> impl Strategy<Value = Vec<Record>> {
        proptest::collection::vec(
            (any::<i64>(), arb_bytes(), arb_bytes(), proptest::collection::vec(arb_header(), 0..3)),
            1..12,
        )
        .prop_map(|fields| {
            fields
                .into_iter()
                .enumerate()
                .map(|(i, (timestamp_delta, key, value, headers))| Record {
                    offset_delta: i as i32,
                    timestamp_delta,
                    key,
                    value,
                    headers,
                })
                .collect()
        })
    }

    fn arb_meta() -> impl Strategy<Value = BatchMeta> {
        (
            any::<i64>(),
            any::<i32>(),
            proptest::option::of((0..i64::MAX, any::<i16>(), 0..i32::MAX)),
            any::<bool>(),
            any::<i64>(),
        )
            .prop_flat_map(
                |(base_offset, ple, producer, transactional, base_timestamp)| {
                    proptest::sample::select(vec![
                        Compression::None,
                        Compression::Gzip,
                        Compression::Snappy,
                        Compression::Lz4,
                        Compression::Zstd,
                    ])
                    .prop_map(move |compression| {
                        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
                        // A transactional batch always has a producer id.
                        let transactional = transactional && producer.is_some();
                        BatchMeta {
                            base_offset: Offset(base_offset),
                            partition_leader_epoch: ple,
                            producer_id: ProducerId(pid),
                            producer_epoch: ProducerEpoch(epoch),
                            base_sequence: Sequence(seq),
                            transactional,
                            control: false,
                            compression,
                            base_timestamp,
                        }
                    })
                },
            )
    }

    proptest! {
        #[test]
        fn t40_encode_then_decode_gives_the_records_back(meta in arb_meta(), records in arb_records()) {
            let batch = encode_batch(&meta, &records).unwrap();
            let decoded = decode_batch(&batch).unwrap();
            prop_assert_eq!(&decoded.records, &records);
            let h = decoded.header;
            prop_assert_eq!(h.base_offset, meta.base_offset);
            prop_assert_eq!(h.partition_leader_epoch, meta.partition_leader_epoch);
            prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (meta.producer_id, meta.producer_epoch, meta.base_sequence));
            prop_assert_eq!(h.attributes, Attributes::new(meta.compression, meta.transactional, false));
            prop_assert_eq!(h.record_count as usize, records.len());
            prop_assert_eq!(h.last_offset_delta as usize, records.len() - 1);
            let max = records.iter().map(|r| meta.base_timestamp.wrapping_add(r.timestamp_delta)).max().unwrap();
            prop_assert_eq!(h.max_timestamp, max);
        }

        #[test]
        fn t41_builder_output_passes_validate_for_append(meta in arb_meta(), records in arb_records()) {
            let batch = encode_batch(&meta, &records).unwrap();
            prop_assert!(BatchHeader::validate_for_append(&batch, batch.len()).is_ok());
        }

        #[test]
        fn t42_push_and_push_record_write_the_same_bytes(meta in arb_meta(), records in arb_records()) {
            let mut b = BatchBuilder::new(meta.clone());
            for r in &records {
                let headers: Vec<(&str, Option<&[u8]>)> = r.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())).collect();
                b.push(meta.base_timestamp.wrapping_add(r.timestamp_delta), r.key.as_deref(), r.value.as_deref(), &headers);
            }
            let pushed = b.finish().unwrap();
            if meta.compression == Compression::None {
                prop_assert_eq!(pushed, encode_batch(&meta, &records).unwrap());
            } else {
                prop_assert_eq!(decode_batch(&pushed).unwrap().records, records);
            }
        }

        #[test]
        fn t43_any_flipped_byte_from_the_attributes_on_is_caught_by_the_crc(
            meta in arb_meta(),
            records in arb_records(),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = encode_batch(&meta, &records).unwrap().to_vec();
            let i = 21 + at.index(bytes.len() - 21);
            bytes[i] ^= flip;
            let crc_caught = matches!(BatchHeader::validate(&bytes), Err(BatchError::CrcMismatch { .. }));
            prop_assert!(crc_caught);
            prop_assert!(decode_batch(&Bytes::from(bytes)).is_err());
        }

        #[test]
        fn t44_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(&Bytes::from(bytes));
        }

        #[test]
        fn t45_random_records_behind_a_valid_header_never_panic(
            records in proptest::collection::vec(any::<u8>(), 0..300),
            count in prop_oneof![0..20i32, any::<i32>()],
            pick in 0usize..5,
        ) {
            let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
            let _ = decode_batch(&framed(&records, count, codecs[pick]));
        }

        #[test]
        fn t46_mutated_valid_records_never_panic(
            records in arb_records(),
            at in any::<proptest::sample::Index>(),
            value in any::<u8>(),
        ) {
            // Corrupt the record bytes, then fix the CRC so the parser sees them.
            let batch = encode_batch(&BatchMeta::plain(0), &records).unwrap();
            let mut body = batch[HEADER_LEN..].to_vec();
            let i = at.index(body.len());
            body[i] = value;
            let _ = decode_batch(&framed(&body, records.len() as i32, Compression::None));
        }
    }
}
