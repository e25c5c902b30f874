//! Test helpers: real RecordBatch v2 bytes built by hand (uncompressed),
//! so the log's tests do not depend on the record codec's builder.

use bytes::Bytes;
use xo_proto::batch::header::{HEADER_LEN, store_crc};
use xo_proto::batch::varint::put_varlong;
use xo_proto::batch::{Attributes, BatchHeader, Compression};

/// One record: key, value, timestamp delta from the batch's base timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
}

#[derive(Clone, Debug)]
pub struct TestBatch {
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
    pub records: Vec<TestRecord>,
    /// Defaults to the last record's offset delta.
    pub last_offset_delta: Option<i32>,
}

impl TestBatch {
    /// `count` records with null keys and `value_len`-byte values, all at
    /// timestamp 1000.
    pub fn values(count: usize, value_len: usize) -> TestBatch {
        let records = (0..count)
            .map(|i| TestRecord {
                key: None,
                value: Some(vec![b'a' + (i % 26) as u8; value_len]),
                timestamp_delta: 0,
                offset_delta: i as i32,
            })
            .collect();
        TestBatch::of(records)
    }

    /// Records with the given keys and values (`None` = null).
    pub fn keyed(pairs: &[(Option<&str>, Option<&str>)]) -> TestBatch {
        let records = pairs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| TestRecord {
                key: k.map(|k| k.as_bytes().to_vec()),
                value: v.map(|v| v.as_bytes().to_vec()),
                timestamp_delta: 0,
                offset_delta: i as i32,
            })
            .collect();
        TestBatch::of(records)
    }

    fn of(records: Vec<TestRecord>) -> TestBatch {
        TestBatch {
            base_offset: 0,
            base_timestamp: 1000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            records,
            last_offset_delta: None,
        }
    }

    pub fn base(mut self, base_offset: i64) -> TestBatch {
        self.base_offset = base_offset;
        self
    }

    pub fn at(mut self, base_timestamp: i64) -> TestBatch {
        self.base_timestamp = base_timestamp;
        self
    }

    /// Spreads the records' timestamps: record i at base + i * step.
    pub fn ts_step(mut self, step: i64) -> TestBatch {
        for (i, r) in self.records.iter_mut().enumerate() {
            r.timestamp_delta = i as i64 * step;
        }
        self
    }

    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> TestBatch {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self) -> TestBatch {
        self.transactional = true;
        self
    }

    /// A commit (`commit = true`) or abort marker of the producer.
    pub fn marker(producer_id: i64, epoch: i16, commit: bool) -> TestBatch {
        let key = [0u8, 0, 0, u8::from(commit)].to_vec();
        let value = [0u8, 0, 0, 0, 0, 0].to_vec();
        let mut batch = TestBatch::of(vec![TestRecord {
            key: Some(key),
            value: Some(value),
            timestamp_delta: 0,
            offset_delta: 0,
        }]);
        batch.producer_id = producer_id;
        batch.producer_epoch = epoch;
        batch.transactional = true;
        batch.control = true;
        batch
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &Option<Vec<u8>>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Encodes the batch: uncompressed, valid CRC.
pub fn encode_test_batch(batch: &TestBatch) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    for r in &batch.records {
        let mut body = vec![0u8]; // record attributes
        put_varlong(&mut body, r.timestamp_delta);
        put_varlong(&mut body, i64::from(r.offset_delta));
        put_bytes(&mut body, &r.key);
        put_bytes(&mut body, &r.value);
        put_varlong(&mut body, 0); // no headers
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    let last_offset_delta = batch
        .last_offset_delta
        .unwrap_or_else(|| batch.records.last().map_or(0, |r| r.offset_delta));
    let max_timestamp = batch
        .records
        .iter()
        .map(|r| batch.base_timestamp + r.timestamp_delta)
        .max()
        .unwrap_or(batch.base_timestamp);
    let attributes = Attributes::new(Compression::None, batch.transactional, batch.control);
    let len = out.len();
    let put = |out: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut out, 0, &batch.base_offset.to_be_bytes());
    put(&mut out, 8, &((len - 12) as i32).to_be_bytes());
    put(&mut out, 12, &0i32.to_be_bytes());
    out[16] = 2;
    put(&mut out, 21, &attributes.0.to_be_bytes());
    put(&mut out, 23, &last_offset_delta.to_be_bytes());
    put(&mut out, 27, &batch.base_timestamp.to_be_bytes());
    put(&mut out, 35, &max_timestamp.to_be_bytes());
    put(&mut out, 43, &batch.producer_id.to_be_bytes());
    put(&mut out, 51, &batch.producer_epoch.to_be_bytes());
    put(&mut out, 53, &batch.base_sequence.to_be_bytes());
    put(&mut out, 57, &(batch.records.len() as i32).to_be_bytes());
    store_crc(&mut out);
    let header = BatchHeader::validate(&out).expect("test batch is valid");
    assert_eq!(header.record_count as usize, batch.records.len());
    out
}

/// Encodes the batch and parses its header, ready for `Log::append`.
pub fn test_batch(batch: &TestBatch) -> (Bytes, BatchHeader) {
    let bytes = encode_test_batch(batch);
    let header = BatchHeader::parse(&bytes).unwrap();
    (Bytes::from(bytes), header)
}
