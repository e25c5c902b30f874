//! Batching, as pure state: the records of one partition go into an open
//! batch encoded in place by [`BatchBuilder`] (one buffer per batch, no
//! allocation per record); the batch closes when the next record would
//! take it past `batch_bytes`, when it has waited `linger`, or when the
//! producer flushes. Closed batches queue in order until the in-flight
//! tracker lets them go.
//!
//! A batch is encoded with placeholder producer id, epoch and sequence;
//! [`stamp`] writes the real ones when the batch is first sent, because the
//! sequence is handed out only then (see `inflight`).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::Instant;
use xo_proto::batch::header::{self, BatchHeader};
use xo_proto::batch::{BatchBuilder, BatchMeta, Compression};
use xo_proto::{Offset, ProducerEpoch, ProducerId, Sequence};

use crate::error::Error;
use crate::types::RecordMetadata;

/// Upper bound on the framing bytes of one record besides its key, value
/// and headers: length, attributes, timestamp delta, offset delta, key
/// length, value length, header count (varints at their widest).
pub const RECORD_OVERHEAD_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Upper bound on the framing bytes of one record header besides its key
/// and value.
pub const RECORD_HEADER_OVERHEAD_MAX: usize = 5 + 5;

/// Where the producer id, epoch and base sequence sit in a RecordBatch v2
/// header (see `xo_proto::batch`); the CRC covers them, so [`stamp`]
/// recomputes it.
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;

/// A value set once and awaited by any number of tasks: the outcome of a
/// batch (shared by the futures of all its records), or the place a
/// waiting record got in a batch.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    value: OnceLock<T>,
    notify: Notify,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { value: OnceLock::new(), notify: Notify::new() }
    }
}

impl<T> Slot<T> {
    /// Sets the value; the first call wins (a second one is a bug: a batch
    /// resolves exactly once).
    pub fn complete(&self, value: T) {
        let first = self.value.set(value).is_ok();
        debug_assert!(first, "a slot completed twice");
        self.notify.notify_waiters();
    }

    #[cfg(test)]
    pub fn get(&self) -> Option<&T> {
        self.value.get()
    }

    /// Waits for the value.
    pub async fn wait(&self) -> &T {
        loop {
            // Registered before the check: a completion in between still
            // wakes us (notify_waiters reaches every `Notified` created
            // before it).
            let notified = self.notify.notified();
            if let Some(value) = self.value.get() {
                return value;
            }
            notified.await;
        }
    }
}

impl<T> Slot<Result<T, Error>> {
    /// Fails the slot with [`Error::ProducerStopped`] unless it is set: the
    /// safety net for `what` (a batch, a record) that a producer `task`
    /// held on its stack when it panicked or was cancelled.
    pub fn fail_unless_set(&self, task: &'static str, what: &str) {
        if self.value.get().is_some() {
            return;
        }
        let reason = format!("it dropped {what} before it was answered");
        if self.value.set(Err(Error::ProducerStopped { task, reason })).is_ok() {
            self.notify.notify_waiters();
        }
    }
}

/// The base offset of a batch, or why it failed.
pub(crate) type BatchCompletion = Slot<Result<Offset, Error>>;

/// A record's place in a batch, awaiting the batch's acknowledgement.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub completion: Arc<BatchCompletion>,
    pub offset_delta: i32,
    pub topic: Arc<str>,
    pub partition: u32,
    pub timestamp: i64,
}

impl Delivery {
    pub async fn wait(self) -> Result<RecordMetadata, Error> {
        match self.completion.wait().await {
            Ok(base_offset) => Ok(RecordMetadata {
                topic: self.topic,
                partition: self.partition,
                offset: base_offset.plus(self.offset_delta as i64),
                timestamp: self.timestamp,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

/// How batches are built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchConfig {
    pub batch_bytes: usize,
    pub linger: Duration,
    pub compression: Compression,
    /// Batches carry a producer id and sequence (stamped when sent).
    pub idempotent: bool,
    pub transactional: bool,
}

/// A record to append, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordRef<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl RecordRef<'_> {
    /// An upper bound on the record's encoded size.
    pub fn size_estimate(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| RECORD_HEADER_OVERHEAD_MAX + k.len() + v.map_or(0, |v| v.len()))
            .sum();
        RECORD_OVERHEAD_MAX
            + self.key.map_or(0, |k| k.len())
            + self.value.map_or(0, |v| v.len())
            + headers
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    completion: Arc<BatchCompletion>,
    reserved: usize,
}

/// A closed batch: encoded, waiting to be sent or in flight.
#[derive(Debug)]
pub(crate) struct ReadyBatch {
    /// The encoded batch; stamped with producer id, epoch and sequence
    /// once first sent, and resent as is.
    pub bytes: Bytes,
    pub record_count: i32,
    pub created: Instant,
    pub completion: Arc<BatchCompletion>,
    /// Buffer bytes held for this batch, released when it resolves.
    pub reserved: usize,
}

impl Drop for ReadyBatch {
    /// Every batch resolves before it is dropped, except one that a
    /// producer task held on its stack when it panicked or was cancelled:
    /// fail its records then, rather than leave their futures waiting
    /// for an answer that will never come.
    fn drop(&mut self) {
        self.completion.fail_unless_set("background", "a batch");
    }
}

/// What [`PartitionQueue::append`] did.
#[derive(Debug)]
pub(crate) struct Appended {
    pub completion: Arc<BatchCompletion>,
    pub offset_delta: i32,
    /// A batch is ready to send now (it filled up).
    pub batch_closed: bool,
}

/// The open batch and the closed, unsent batches of one partition.
#[derive(Default)]
pub(crate) struct PartitionQueue {
    open: Option<OpenBatch>,
    ready: VecDeque<ReadyBatch>,
}

impl PartitionQueue {
    /// Buffer bytes a record of `size` needs reserved before it is
    /// appended: none if it fits the open batch, else a whole new batch
    /// (or the record's size, if larger).
    pub fn reservation_for(&self, size: usize, config: &BatchConfig) -> usize {
        match &self.open {
            Some(open) if open.builder.len() + size <= config.batch_bytes => 0,
            _ => (header::HEADER_LEN + size).max(config.batch_bytes),
        }
    }

    /// Appends a record. `reserved` must be what
    /// [`PartitionQueue::reservation_for`] asked for.
    pub fn append(
        &mut self,
        record: &RecordRef<'_>,
        reserved: usize,
        config: &BatchConfig,
        now: Instant,
    ) -> Appended {
        let size = record.size_estimate();
        let mut batch_closed = false;
        if reserved > 0 {
            if self.open.is_some() {
                self.close_open();
                batch_closed = true;
            }
            let meta = BatchMeta {
                // Placeholders until the batch is sent: see `stamp`.
                producer_id: if config.idempotent { ProducerId(0) } else { ProducerId::NONE },
                producer_epoch: if config.idempotent {
                    ProducerEpoch(0)
                } else {
                    ProducerEpoch::NONE
                },
                base_sequence: if config.idempotent { Sequence(0) } else { Sequence::NONE },
                transactional: config.transactional,
                compression: config.compression,
                ..BatchMeta::plain(record.timestamp)
            };
            let capacity = config.batch_bytes.max(header::HEADER_LEN + size);
            self.open = Some(OpenBatch {
                builder: BatchBuilder::with_capacity(meta, capacity),
                created: now,
                completion: Arc::new(Slot::default()),
                reserved,
            });
        }
        let open = self.open.as_mut().expect("an open batch: reserved > 0 opened one");
        debug_assert!(open.builder.len() + size <= open.reserved.max(config.batch_bytes));
        let offset_delta = open.builder.record_count();
        open.builder.push(record.timestamp, record.key, record.value, record.headers);
        let completion = open.completion.clone();
        // Full: no further record of the smallest size would fit.
        if open.builder.len() + RECORD_OVERHEAD_MAX > config.batch_bytes {
            self.close_open();
            batch_closed = true;
        }
        Appended { completion, offset_delta, batch_closed }
    }

    /// Closes the open batch, if any, so it can be sent.
    pub fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            let record_count = open.builder.record_count();
            assert!(record_count > 0, "an open batch holds at least one record");
            // Only a batch past 2 GiB fails to encode; ours are below
            // BATCH_BYTES_MAX.
            let bytes = open.builder.finish().expect("a batch within the size bounds encodes");
            self.ready.push_back(ReadyBatch {
                bytes,
                record_count,
                created: open.created,
                completion: open.completion,
                reserved: open.reserved,
            });
        }
    }

    /// Closes the open batch if it has waited `linger`; returns whether
    /// anything is ready to send.
    pub fn close_if_lingered(&mut self, now: Instant, linger: Duration) -> bool {
        if self.open.as_ref().is_some_and(|open| now >= open.created + linger) {
            self.close_open();
        }
        !self.ready.is_empty()
    }

    /// When the open batch's linger ends.
    pub fn linger_deadline(&self, linger: Duration) -> Option<Instant> {
        self.open.as_ref().map(|open| open.created + linger)
    }

    pub fn front_ready(&self) -> Option<&ReadyBatch> {
        self.ready.front()
    }

    pub fn pop_ready(&mut self) -> Option<ReadyBatch> {
        self.ready.pop_front()
    }

    #[cfg(test)]
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.ready.is_empty()
    }

    /// Every batch not yet sent, open ones closed first (to fail them).
    pub fn take_all(&mut self) -> VecDeque<ReadyBatch> {
        self.close_open();
        std::mem::take(&mut self.ready)
    }

    /// The completions of every unsent batch (for flush).
    pub fn completions(&self) -> impl Iterator<Item = &Arc<BatchCompletion>> {
        self.open.iter().map(|o| &o.completion).chain(self.ready.iter().map(|r| &r.completion))
    }

    /// Closed batches whose delivery timeout passed before they were sent:
    /// they never got a sequence, so dropping them leaves no gap.
    pub fn take_expired(&mut self, now: Instant, timeout: Duration) -> Vec<ReadyBatch> {
        let mut expired = Vec::new();
        while self.ready.front().is_some_and(|b| now >= b.created + timeout) {
            expired.extend(self.ready.pop_front());
        }
        expired
    }
}

/// Writes the producer id, epoch and base sequence into an encoded batch
/// and recomputes its CRC. Done once, when the batch is first sent.
pub(crate) fn stamp(
    bytes: Bytes,
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    base_sequence: Sequence,
) -> Bytes {
    // A freshly built batch is not shared, so this takes the buffer over
    // without copying.
    let mut buf = bytes.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    buf[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.0.to_be_bytes());
    buf[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&epoch.0.to_be_bytes());
    buf[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.0.to_be_bytes());
    header::store_crc(&mut buf);
    let bytes = buf.freeze();
    // Read back what was written.
    debug_assert!(BatchHeader::validate(&bytes).is_ok_and(|h| h.producer_id == producer_id
        && h.producer_epoch == epoch
        && h.base_sequence == base_sequence));
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_proto::batch::decode_batch;

    fn config(batch_bytes: usize) -> BatchConfig {
        BatchConfig {
            batch_bytes,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            idempotent: true,
            transactional: false,
        }
    }

    fn record(value: &[u8]) -> RecordRef<'_> {
        RecordRef { timestamp: 1_000, key: None, value: Some(value), headers: &[] }
    }

    fn push(q: &mut PartitionQueue, c: &BatchConfig, value: &[u8], now: Instant) -> Appended {
        let r = record(value);
        let reserved = q.reservation_for(r.size_estimate(), c);
        q.append(&r, reserved, c, now)
    }

    #[test]
    fn t09_a_batch_dropped_unanswered_fails_its_records() {
        // Proves: a batch a stopped task dropped resolves as fatal instead
        // of leaving its records' futures waiting; a resolved one keeps
        // its outcome.
        let c = config(1024);
        let mut q = PartitionQueue::default();
        let dropped = push(&mut q, &c, b"x", Instant::now()).completion;
        q.close_open();
        drop(q.pop_ready());
        let e = dropped.get().unwrap().as_ref().unwrap_err();
        assert!(e.is_fatal() && e.to_string().contains("dropped a batch"), "{e}");
        let answered = push(&mut q, &c, b"y", Instant::now()).completion;
        q.close_open();
        let batch = q.pop_ready().unwrap();
        batch.completion.complete(Ok(Offset(3)));
        drop(batch);
        assert!(matches!(answered.get(), Some(Ok(Offset(3)))));
    }

    #[test]
    fn t10_records_fill_a_batch_up_to_batch_bytes() {
        // Proves: records share one batch until the next would not fit;
        // batches close in order and decode to the records appended.
        let c = config(1024);
        let now = Instant::now();
        let mut q = PartitionQueue::default();
        let value = [7u8; 100];
        let mut deltas = Vec::new();
        for _ in 0..20 {
            deltas.push(push(&mut q, &c, &value, now).offset_delta);
        }
        let mut batches = Vec::new();
        q.close_open();
        while let Some(b) = q.pop_ready() {
            assert!(b.bytes.len() <= c.batch_bytes, "{}", b.bytes.len());
            batches.push(b);
        }
        assert!(batches.len() >= 2, "20 × 100 bytes do not fit 1 KiB");
        let total: i32 = batches.iter().map(|b| b.record_count).sum();
        assert_eq!(total, 20);
        // Offset deltas restart at 0 in every batch.
        assert_eq!(deltas.iter().filter(|&&d| d == 0).count(), batches.len());
        for b in &batches {
            let d = decode_batch(&b.bytes).unwrap();
            assert_eq!(d.records.len() as i32, b.record_count);
            assert!(d.records.iter().all(|r| r.value.as_deref() == Some(&value[..])));
        }
    }

    #[test]
    fn t11_a_batch_waits_for_its_linger() {
        let c = config(16 * 1024);
        let t0 = Instant::now();
        let mut q = PartitionQueue::default();
        push(&mut q, &c, b"a", t0);
        push(&mut q, &c, b"b", t0 + Duration::from_millis(3));
        assert_eq!(
            q.linger_deadline(c.linger),
            Some(t0 + c.linger),
            "counted from the first record"
        );
        assert!(!q.close_if_lingered(t0 + Duration::from_millis(4), c.linger));
        assert!(q.front_ready().is_none());
        assert!(q.close_if_lingered(t0 + c.linger, c.linger));
        assert_eq!(q.front_ready().unwrap().record_count, 2);
        assert!(!q.has_open());
        assert_eq!(q.linger_deadline(c.linger), None);
    }

    #[test]
    fn t12_a_record_larger_than_batch_bytes_goes_alone() {
        let c = config(256);
        let now = Instant::now();
        let mut q = PartitionQueue::default();
        push(&mut q, &c, b"small", now);
        let big = vec![1u8; 1000];
        let r = record(&big);
        let reserved = q.reservation_for(r.size_estimate(), &c);
        assert!(reserved >= 1000, "the big record reserves its own size");
        let a = q.append(&r, reserved, &c, now);
        assert!(a.batch_closed);
        assert_eq!(a.offset_delta, 0);
        q.close_open();
        let counts: Vec<i32> =
            std::iter::from_fn(|| q.pop_ready()).map(|b| b.record_count).collect();
        assert_eq!(counts, vec![1, 1]);
    }

    #[test]
    fn t13_reservation_is_needed_only_for_a_new_batch() {
        let c = config(1024);
        let now = Instant::now();
        let mut q = PartitionQueue::default();
        assert_eq!(q.reservation_for(50, &c), 1024);
        push(&mut q, &c, &[0u8; 10], now);
        assert_eq!(q.reservation_for(50, &c), 0);
        assert_eq!(q.reservation_for(2000, &c), header::HEADER_LEN + 2000);
    }

    #[test]
    fn t14_stamp_writes_identity_and_a_valid_crc() {
        // Proves: the stamped batch validates (CRC) and carries exactly the
        // producer id, epoch and sequence given; records are untouched.
        let c = BatchConfig { transactional: true, ..config(1024) };
        let now = Instant::now();
        let mut q = PartitionQueue::default();
        push(&mut q, &c, b"x", now);
        push(&mut q, &c, b"y", now);
        q.close_open();
        let mut b = q.pop_ready().unwrap();
        let stamped =
            stamp(std::mem::take(&mut b.bytes), ProducerId(77), ProducerEpoch(3), Sequence(41));
        let d = decode_batch(&stamped).unwrap();
        assert_eq!(d.header.producer_id, ProducerId(77));
        assert_eq!(d.header.producer_epoch, ProducerEpoch(3));
        assert_eq!(d.header.base_sequence, Sequence(41));
        assert_eq!(d.header.last_sequence(), Sequence(42));
        assert!(d.header.is_transactional());
        assert!(BatchHeader::validate_for_append(&stamped, 1 << 20).is_ok());
        assert_eq!(d.records[1].value.as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn t15_plain_batches_carry_no_producer() {
        let c = BatchConfig { idempotent: false, ..config(1024) };
        let mut q = PartitionQueue::default();
        push(&mut q, &c, b"x", Instant::now());
        q.close_open();
        let d = decode_batch(&q.pop_ready().unwrap().bytes).unwrap();
        assert!(!d.header.is_idempotent());
        assert_eq!(d.header.base_sequence, Sequence::NONE);
    }

    #[test]
    fn t16_unsent_batches_expire_in_order() {
        let c = config(64);
        let t0 = Instant::now();
        let mut q = PartitionQueue::default();
        push(&mut q, &c, &[0u8; 30], t0);
        push(&mut q, &c, &[0u8; 30], t0 + Duration::from_secs(5));
        q.close_open();
        let timeout = Duration::from_secs(10);
        assert!(q.take_expired(t0 + Duration::from_secs(9), timeout).is_empty());
        assert_eq!(q.take_expired(t0 + Duration::from_secs(10), timeout).len(), 1);
        assert!(q.front_ready().is_some());
    }

    #[tokio::test]
    async fn t17_completion_wakes_every_waiter_once() {
        let c: Arc<BatchCompletion> = Arc::new(Slot::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.wait().await.clone().unwrap() })
            })
            .collect();
        tokio::task::yield_now().await;
        c.complete(Ok(Offset(9)));
        for w in waiters {
            assert_eq!(w.await.unwrap(), Offset(9));
        }
        assert_eq!(c.wait().await.as_ref().unwrap(), &Offset(9));
    }
}
