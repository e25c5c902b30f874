//! Fetched batches → records, as a pure function. A fetch returns whole
//! batches, the first of which may start before the offset asked for (the
//! partition serves the batch containing it): records below that offset
//! were delivered already and are skipped. Control batches (commit/abort
//! markers) are never given to the application.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use xo_proto::Offset;
use xo_proto::batch::{BatchError, BatchHeader, RecordHeader, decode_batch};

/// One record as the application sees it. Key, value and header values
/// are slices of the fetched batch (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: Offset,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Decodes `batches` (in offset order) and appends their records at or
/// after `from` to `out`. Returns the offset after the last record seen
/// (including skipped and control ones), if any batch was there.
pub(crate) fn decode_records(
    topic: &Arc<str>,
    partition: u32,
    batches: &[Bytes],
    from: Offset,
    out: &mut VecDeque<ConsumerRecord>,
) -> Result<Option<Offset>, BatchError> {
    let mut end = None;
    let mut last = out.back().map(|r| r.offset);
    for bytes in batches {
        // Cheap checks first: a batch wholly below `from` or a marker needs
        // no record decoding.
        let header = BatchHeader::validate(bytes)?;
        end = Some(header.next_offset());
        if header.is_control() || header.next_offset() <= from {
            continue;
        }
        let batch = decode_batch(bytes)?;
        for record in batch.records {
            let offset = record.offset(&batch.header);
            if offset < from {
                continue;
            }
            // Offsets only grow within a partition: anything else is a
            // corrupt answer, not something to hand on.
            if last.is_some_and(|l| offset <= l) {
                return Err(BatchError::Malformed("record offsets do not increase"));
            }
            last = Some(offset);
            let timestamp = record.timestamp(&batch.header);
            out.push_back(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset,
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp,
            });
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_proto::batch::{
        BatchBuilder, BatchMeta, ControlRecord, ControlType, encode_control_batch,
    };
    use xo_proto::{ProducerEpoch, ProducerId};

    /// A batch at `base` with one record per value.
    fn batch(base: i64, values: &[&str]) -> Bytes {
        let mut meta = BatchMeta::plain(1_000);
        meta.base_offset = Offset(base);
        let mut b = BatchBuilder::new(meta);
        for (i, v) in values.iter().enumerate() {
            b.push(1_000 + i as i64, Some(b"k"), Some(v.as_bytes()), &[("h", Some(b"x"))]);
        }
        b.finish().unwrap()
    }

    fn decode(batches: &[Bytes], from: i64) -> (Vec<(i64, String)>, Option<Offset>) {
        let topic: Arc<str> = Arc::from("t");
        let mut out = VecDeque::new();
        let end = decode_records(&topic, 3, batches, Offset(from), &mut out).unwrap();
        let got = out
            .iter()
            .map(|r| (r.offset.0, String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()))
            .collect();
        (got, end)
    }

    #[test]
    fn t10_records_below_the_fetch_offset_are_skipped() {
        // Proves: fetching from 12 inside a batch starting at 10 returns
        // 12.. only, and the next offset is after the last batch.
        let batches = [batch(10, &["a", "b", "c", "d"]), batch(14, &["e"])];
        let (got, end) = decode(&batches, 12);
        assert_eq!(got, vec![(12, "c".into()), (13, "d".into()), (14, "e".into())]);
        assert_eq!(end, Some(Offset(15)));
    }

    #[test]
    fn t11_a_batch_wholly_below_the_offset_gives_nothing() {
        let (got, end) = decode(&[batch(0, &["a", "b"])], 2);
        assert!(got.is_empty());
        assert_eq!(end, Some(Offset(2)));
        let (got, end) = decode(&[], 5);
        assert!(got.is_empty() && end.is_none());
    }

    #[test]
    fn t12_control_batches_are_never_delivered() {
        let mut marker = encode_control_batch(
            ProducerId(1),
            ProducerEpoch(0),
            ControlRecord { kind: ControlType::Commit, coordinator_epoch: 0 },
            5,
        )
        .to_vec();
        xo_proto::batch::header::set_base_offset(&mut marker, Offset(2));
        let batches = [batch(0, &["a", "b"]), Bytes::from(marker), batch(3, &["c"])];
        let (got, end) = decode(&batches, 0);
        assert_eq!(got, vec![(0, "a".into()), (1, "b".into()), (3, "c".into())]);
        assert_eq!(end, Some(Offset(4)));
    }

    #[test]
    fn t13_fields_come_through() {
        let topic: Arc<str> = Arc::from("t");
        let mut out = VecDeque::new();
        decode_records(&topic, 3, &[batch(7, &["v"])], Offset(0), &mut out).unwrap();
        let r = &out[0];
        assert_eq!((&*r.topic, r.partition, r.offset), ("t", 3, Offset(7)));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.timestamp, 1_000);
        assert_eq!(
            r.headers,
            vec![RecordHeader { key: "h".into(), value: Some(Bytes::from_static(b"x")) }]
        );
    }

    #[test]
    fn t14_corrupt_or_reordered_answers_are_errors() {
        let topic: Arc<str> = Arc::from("t");
        let mut out = VecDeque::new();
        let mut bad = batch(0, &["a"]).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_records(&topic, 0, &[Bytes::from(bad)], Offset(0), &mut out).is_err());
        let backwards = [batch(5, &["a"]), batch(3, &["b"])];
        assert!(decode_records(&topic, 0, &backwards, Offset(0), &mut out).is_err());
    }
}
