//! The sequence and in-flight bookkeeping of one partition, as a pure
//! struct (no I/O, no clock of its own: callers pass `now`), so that every
//! rule below is unit tested without a server.
//!
//! The partition keeps, per producer, the last 5 batches it appended and
//! accepts a batch only if its first sequence follows the last one. The
//! producer must therefore:
//!
//! - number batches consecutively: [`InFlight::send_new`] hands out the
//!   base sequence when a batch is first sent, never earlier, so a batch
//!   that expires before it is sent leaves no gap;
//! - keep at most [`IN_FLIGHT_PER_PARTITION_MAX`] batches unresolved, so
//!   every batch whose answer was lost is still in the partition's dedupe
//!   window when it is resent, and is answered as a duplicate with its
//!   original offsets instead of being appended twice;
//! - resend a failed batch with its original bytes and sequence, and never
//!   let a later batch overtake it. gRPC calls are independent HTTP/2
//!   streams, so batch n+1 can reach the server before batch n and be
//!   refused with `OUT_OF_ORDER_SEQUENCE` (or `UNKNOWN_PRODUCER_ID`, for a
//!   producer's first batches). Once anything fails the partition enters
//!   *recovery*: nothing new is sent, and the unresolved batches are resent
//!   one at a time, oldest first, each only after the one before it was
//!   answered. A sequence error on a batch that was sent while an earlier
//!   one was unresolved is such a reordering and is retried; the same error
//!   on a batch sent with nothing before it unresolved is real (the
//!   partition lost our state) and is final (but see KIP-360 below).
//!
//! A batch that fails for good leaves a gap the partition will never fill:
//! the tracker is then *broken* — nothing more is retried, every later
//! batch fails, and the producer must start a new sequence (a new epoch:
//! an idempotent producer bumps its own; for a transactional one, the
//! application aborts, which bumps it at the coordinator). [`InFlight::restart_sequence`] starts
//! over at sequence 0 once no request is out.
//!
//! One final-looking refusal is not final for an idempotent,
//! non-transactional producer (`resequence_on_lost_state`, Kafka's KIP-360):
//! `UNKNOWN_PRODUCER_ID` on a batch sent with nothing before it unresolved,
//! and never possibly appended before, means the partition dropped the
//! producer's state (it was idle past the server's producer expiry) and
//! appended none of the unresolved batches. They wait, unsent, for a new
//! epoch; [`InFlight::restart_sequence`] then renumbers them from 0 and they
//! are resent in order.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use xo_proto::{Offset, Sequence};

use xo_proto::partition::ErrorCode as PartitionCode;

use crate::error::{Error, ProduceFailure};

/// Most unresolved (sent, not yet answered or awaiting a resend) batches
/// per partition: the partition server's dedupe window (Kafka's
/// `max.in.flight.requests.per.connection` with idempotence).
#[doc(alias = "MAX_IN_FLIGHT_PER_PARTITION")]
pub const IN_FLIGHT_PER_PARTITION_MAX: usize = 5;

/// Where an unresolved batch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// A request carrying it is out; its answer is awaited.
    Sent,
    /// It failed retriably and waits to be resent, not before `at`.
    Waiting { at: Instant },
}

#[derive(Debug)]
struct Slot<B> {
    base_sequence: Sequence,
    record_count: i32,
    /// When the batch was created: the delivery timeout counts from here.
    created: Instant,
    state: SlotState,
    /// Whether an earlier batch was unresolved when this attempt was sent,
    /// i.e. whether the server may have seen this attempt first.
    sent_behind: bool,
    /// An attempt failed without a refusal from the partition (the answer
    /// was lost): the batch may be in the log.
    maybe_appended: bool,
    /// Failed attempts so far (for the backoff).
    failures: u32,
    payload: B,
}

/// Timing rules of the tracker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InFlightConfig {
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub delivery_timeout: Duration,
    /// Keep the batches a partition refused because it lost the producer's
    /// state, to resend them under a new epoch (see the module doc): the
    /// idempotent, non-transactional producer. A transaction cannot
    /// survive the gap and aborts instead.
    pub resequence_on_lost_state: bool,
}

impl InFlightConfig {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.retry_backoff.saturating_mul(factor).min(self.retry_backoff_max)
    }
}

/// The unresolved batches of one partition, oldest first, and the next
/// sequence to hand out. `B` is the batch itself (its bytes and whoever
/// waits for it); the tracker only hands it back when the batch resolves.
#[derive(Debug)]
pub(crate) struct InFlight<B> {
    config: InFlightConfig,
    slots: VecDeque<Slot<B>>,
    next_sequence: Sequence,
    recovering: bool,
    broken: bool,
    /// Set while a transaction aborts: failures are final from now on.
    retries_stopped: bool,
    /// The partition lost the producer's state: the refusal that said so.
    /// The unresolved batches wait, unsent, for a new sequence.
    lost_state: Option<Error>,
}

impl<B> InFlight<B> {
    pub fn new(config: InFlightConfig) -> Self {
        InFlight {
            config,
            slots: VecDeque::with_capacity(IN_FLIGHT_PER_PARTITION_MAX),
            next_sequence: Sequence(0),
            recovering: false,
            broken: false,
            retries_stopped: false,
            lost_state: None,
        }
    }

    /// Batches sent and not yet resolved.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A batch failed for good: the sequence has a gap.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The partition lost the producer's state: what is unresolved waits
    /// for [`InFlight::restart_sequence`] under a new epoch.
    pub fn lost_state(&self) -> bool {
        self.lost_state.is_some()
    }

    #[cfg(test)]
    pub fn is_recovering(&self) -> bool {
        self.recovering
    }

    pub fn next_sequence(&self) -> Sequence {
        self.next_sequence
    }

    /// Whether a request carrying one of these batches awaits its answer.
    pub fn has_request_out(&self) -> bool {
        self.slots.iter().any(|s| s.state == SlotState::Sent)
    }

    /// Whether a new batch may be sent now.
    pub fn can_send_new(&self) -> bool {
        !self.recovering
            && !self.broken
            && !self.retries_stopped
            && self.slots.len() < IN_FLIGHT_PER_PARTITION_MAX
    }

    /// Records that a new batch of `record_count` records is being sent and
    /// returns its base sequence, which the caller writes into the batch.
    pub fn send_new(&mut self, record_count: i32, created: Instant, payload: B) -> Sequence {
        assert!(self.can_send_new(), "send_new while the partition may not send");
        assert!(record_count > 0, "a batch holds at least one record");
        let base_sequence = self.next_sequence;
        if let Some(last) = self.slots.back() {
            // Contiguity: the partition accepts nothing else. The newest
            // unresolved batch ends where this one starts, or before it when
            // batches after it were acknowledged first (answers to
            // concurrent requests may arrive in any order).
            let end = last.base_sequence.plus(last.record_count);
            let gap =
                (i64::from(base_sequence.0) - i64::from(end.0)).rem_euclid(i64::from(i32::MAX) + 1);
            assert!(gap < i64::from(i32::MAX) / 2, "a new batch starts after every sent one");
        }
        self.next_sequence = base_sequence.plus(record_count);
        let sent_behind = !self.slots.is_empty();
        self.slots.push_back(Slot {
            base_sequence,
            record_count,
            created,
            state: SlotState::Sent,
            sent_behind,
            maybe_appended: false,
            failures: 0,
            payload,
        });
        debug_assert!(self.slots.len() <= IN_FLIGHT_PER_PARTITION_MAX);
        base_sequence
    }

    /// The batch to resend now, if any: during recovery, the oldest
    /// unresolved batch once nothing is in flight and its backoff passed.
    /// It is marked sent; send exactly the bytes it was first sent with.
    pub fn next_retry(&mut self, now: Instant) -> Option<(Sequence, &B)> {
        if !self.recovering || self.lost_state.is_some() || self.has_request_out() {
            return None;
        }
        let front = self.slots.front_mut()?;
        match front.state {
            SlotState::Waiting { at } if at <= now => {
                front.state = SlotState::Sent;
                // Nothing before it is unresolved: its answer is definitive.
                front.sent_behind = false;
                Some((front.base_sequence, &front.payload))
            }
            _ => None,
        }
    }

    /// When [`InFlight::next_retry`] will next have something to give.
    pub fn next_retry_at(&self) -> Option<Instant> {
        if !self.recovering || self.lost_state.is_some() || self.has_request_out() {
            return None;
        }
        match self.slots.front()?.state {
            SlotState::Waiting { at } => Some(at),
            SlotState::Sent => None,
        }
    }

    /// The answer for the batch with `base_sequence`. `resolve` is called
    /// for each batch that is now done, in sequence order: this one if it
    /// succeeded or failed for good, and every batch a final failure dooms.
    /// An answer for a batch not in flight (a stale duplicate) is ignored.
    pub fn on_answer(
        &mut self,
        base_sequence: Sequence,
        answer: Result<Offset, ProduceFailure>,
        now: Instant,
        mut resolve: impl FnMut(B, Result<Offset, Error>),
    ) {
        let Some(index) = self
            .slots
            .iter()
            .position(|s| s.base_sequence == base_sequence && s.state == SlotState::Sent)
        else {
            tracing::debug!(%base_sequence, "answer for a batch not in flight; ignored");
            return;
        };
        match answer {
            Ok(base_offset) => {
                let slot = self.slots.remove(index).expect("index is in range");
                resolve(slot.payload, Ok(base_offset));
                if let Some(cause) = self.lost_state.take() {
                    // Appended under the old sequence while an earlier batch
                    // waits to be resent: resending that one now would put
                    // it after this one. Give up on it, as without KIP-360.
                    self.break_sequence(cause, &mut resolve);
                }
            }
            Err(failure) => {
                let slot = &mut self.slots[index];
                let expired = now >= slot.created + self.config.delivery_timeout;
                let lost_state = self.config.resequence_on_lost_state
                    && !slot.sent_behind
                    && !slot.maybe_appended
                    && matches!(&failure, ProduceFailure::Sequence(e)
                        if e.partition_code() == Some(PartitionCode::UnknownProducerId));
                let retriable = match &failure {
                    ProduceFailure::Retry(_) => true,
                    ProduceFailure::Sequence(_) => slot.sent_behind || lost_state,
                    ProduceFailure::Terminal(_) => false,
                };
                if !matches!(failure.error(), Error::Partition { .. }) {
                    slot.maybe_appended = true;
                }
                if retriable && !expired && !self.broken && !self.retries_stopped {
                    slot.failures = slot.failures.saturating_add(1);
                    slot.state =
                        SlotState::Waiting { at: now + self.config.backoff(slot.failures) };
                    self.recovering = true;
                    if lost_state {
                        self.lost_state.get_or_insert_with(|| failure.into_error());
                    }
                } else {
                    let error = match failure {
                        ProduceFailure::Retry(e) if expired => {
                            tracing::warn!(error = %e, "batch expired while retrying");
                            Error::Timeout { what: "delivery", after: self.config.delivery_timeout }
                        }
                        f => f.into_error(),
                    };
                    let slot = self.slots.remove(index).expect("index is in range");
                    resolve(slot.payload, Err(error.clone()));
                    self.break_sequence(error, &mut resolve);
                }
            }
        }
        if self.slots.is_empty() {
            self.recovering = false;
        }
    }

    /// The sequence has a gap: nothing waiting will be resent. Batches still
    /// in flight resolve by their own answers (an acknowledgement still
    /// counts: that batch is in the log).
    fn break_sequence(&mut self, error: Error, resolve: &mut impl FnMut(B, Result<Offset, Error>)) {
        self.broken = true;
        self.lost_state = None;
        self.fail_waiting(error, resolve);
    }

    fn fail_waiting(&mut self, error: Error, resolve: &mut impl FnMut(B, Result<Offset, Error>)) {
        let mut kept = VecDeque::with_capacity(self.slots.len());
        for slot in self.slots.drain(..) {
            match slot.state {
                SlotState::Waiting { .. } => resolve(slot.payload, Err(error.clone())),
                SlotState::Sent => kept.push_back(slot),
            }
        }
        self.slots = kept;
    }

    /// From now on every failure is final and nothing waiting is resent
    /// (a transaction is being aborted): fails what waits with `error`.
    pub fn stop_retries(
        &mut self,
        error: Error,
        mut resolve: impl FnMut(B, Result<Offset, Error>),
    ) {
        self.retries_stopped = true;
        self.fail_waiting(error, &mut resolve);
        if self.slots.is_empty() {
            self.recovering = false;
        }
    }

    /// The sender stopped: no answer will come for any batch, sent or
    /// waiting. Resolves every one with `error` (a sent one may or may not
    /// be in the log) and breaks the sequence.
    pub fn abandon(&mut self, error: Error, mut resolve: impl FnMut(B, Result<Offset, Error>)) {
        self.broken = true;
        self.recovering = false;
        for slot in self.slots.drain(..) {
            resolve(slot.payload, Err(error.clone()));
        }
    }

    /// Starts a new sequence at 0 (a new producer id or epoch). Only when
    /// no request is out (an answer for the old sequence would otherwise be
    /// matched to a new batch), and nothing is unresolved unless the
    /// partition lost the producer's state: those batches, which it never
    /// appended, are renumbered from 0 in order, handed to `restamp` with
    /// their new base sequence, and resent one at a time.
    pub fn restart_sequence(&mut self, mut restamp: impl FnMut(&mut B, Sequence)) {
        assert!(!self.has_request_out(), "a new sequence while a request is out");
        assert!(
            self.slots.is_empty() || self.lost_state.is_some(),
            "a new sequence with batches unresolved under the old one"
        );
        let mut next = Sequence(0);
        for slot in &mut self.slots {
            slot.base_sequence = next;
            slot.sent_behind = false;
            restamp(&mut slot.payload, next);
            next = next.plus(slot.record_count);
        }
        self.next_sequence = next;
        self.recovering = !self.slots.is_empty();
        self.broken = false;
        self.retries_stopped = false;
        self.lost_state = None;
    }

    /// Every unresolved batch, oldest first.
    pub fn payloads(&self) -> impl Iterator<Item = &B> {
        self.slots.iter().map(|s| &s.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_proto::partition::ErrorCode;

    fn config() -> InFlightConfig {
        InFlightConfig {
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(80),
            delivery_timeout: Duration::from_secs(60),
            resequence_on_lost_state: false,
        }
    }

    fn code(code: ErrorCode) -> Error {
        Error::Partition { topic: "t".into(), partition: 0, code, message: String::new() }
    }

    fn transport() -> ProduceFailure {
        ProduceFailure::Retry(Error::Transport { addr: "x".into(), message: "reset".into() })
    }

    fn out_of_order() -> ProduceFailure {
        ProduceFailure::Sequence(code(ErrorCode::OutOfOrderSequence))
    }

    type Done = Vec<(u32, Result<Offset, String>)>;

    fn answer(
        f: &mut InFlight<u32>,
        seq: i32,
        a: Result<Offset, ProduceFailure>,
        now: Instant,
        done: &mut Done,
    ) {
        f.on_answer(Sequence(seq), a, now, |b, r| done.push((b, r.map_err(|e| e.to_string()))));
    }

    #[test]
    fn t10_sequences_are_contiguous_and_bounded_by_the_window() {
        // Proves: base sequences follow the record counts, and at most 5
        // batches are ever unresolved.
        let now = Instant::now();
        let mut f = InFlight::new(config());
        let mut bases = Vec::new();
        for (i, count) in [3, 1, 4, 1, 5].into_iter().enumerate() {
            assert!(f.can_send_new());
            bases.push(f.send_new(count, now, i as u32).0);
        }
        assert_eq!(bases, vec![0, 3, 4, 8, 9]);
        assert_eq!(f.len(), IN_FLIGHT_PER_PARTITION_MAX);
        assert!(!f.can_send_new(), "the sixth batch must wait");
        let mut done = Vec::new();
        answer(&mut f, 0, Ok(Offset(100)), now, &mut done);
        assert!(f.can_send_new());
        assert_eq!(f.send_new(2, now, 5), Sequence(14));
        assert_eq!(f.next_sequence(), Sequence(16));
        assert_eq!(done, vec![(0, Ok(Offset(100)))]);
    }

    #[test]
    fn t11_a_failed_batch_is_resent_alone_and_in_order_with_its_sequence() {
        // Proves: batch 0 fails retriably while 1..4 are in flight; 1 and 2
        // are refused OUT_OF_ORDER (they overtook it), 3 and 4 too. Nothing
        // new is sent; the resends go one at a time, oldest first, each with
        // its original sequence, and only after the previous one answered.
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        for i in 0..5 {
            f.send_new(2, t0, i);
        }
        let mut done = Vec::new();
        answer(&mut f, 0, Err(transport()), t0, &mut done);
        assert!(f.is_recovering() && !f.can_send_new());
        // Others still in flight: no resend yet.
        let t1 = t0 + Duration::from_secs(1);
        assert!(f.next_retry(t1).is_none());
        for seq in [2, 4, 6, 8] {
            answer(&mut f, seq, Err(out_of_order()), t0, &mut done);
        }
        assert!(done.is_empty(), "reordering is not a failure: {done:?}");
        let mut resent = Vec::new();
        for (expected_seq, ack) in [(0, 10), (2, 12), (4, 14), (6, 16), (8, 18)] {
            let (seq, &batch) = f.next_retry(t1).expect("a resend is due");
            assert_eq!(seq, Sequence(expected_seq));
            resent.push(batch);
            assert!(f.next_retry(t1).is_none(), "one resend at a time");
            assert!(!f.can_send_new());
            answer(&mut f, expected_seq, Ok(Offset(ack)), t1, &mut done);
        }
        assert_eq!(resent, vec![0, 1, 2, 3, 4]);
        let acked: Vec<_> = done.iter().map(|(b, r)| (*b, r.clone().unwrap().0)).collect();
        assert_eq!(acked, vec![(0, 10), (1, 12), (2, 14), (3, 16), (4, 18)]);
        assert!(!f.is_recovering() && f.can_send_new());
        assert_eq!(f.send_new(1, t1, 5), Sequence(10), "the sequence went on, no reuse");
    }

    #[test]
    fn t12_later_batches_may_succeed_while_an_earlier_one_waits() {
        // Proves: batch 0's answer was lost but it was appended; batch 1
        // succeeds; the resend of 0 is answered as a duplicate. Both resolve
        // once, with their own offsets.
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        f.send_new(1, t0, 1);
        let mut done = Vec::new();
        answer(&mut f, 0, Err(transport()), t0, &mut done);
        answer(&mut f, 1, Ok(Offset(8)), t0, &mut done);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(f.next_retry(later).map(|(s, b)| (s, *b)), Some((Sequence(0), 0)));
        answer(&mut f, 0, Ok(Offset(7)), later, &mut done);
        assert_eq!(done, vec![(1, Ok(Offset(8))), (0, Ok(Offset(7)))]);
        assert!(f.is_empty() && f.can_send_new());
    }

    #[test]
    fn t19_acknowledgements_out_of_order_do_not_break_the_next_send() {
        // Proves: answers to concurrent produce calls may come back in any
        // order; with batch 0 still in flight and 1 and 2 acknowledged, the
        // next batch continues the sequence after 2 (this used to trip the
        // contiguity assertion, killing the sender under load).
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        for i in 0..3 {
            f.send_new(1, t0, i);
        }
        let mut done = Vec::new();
        answer(&mut f, 2, Ok(Offset(12)), t0, &mut done);
        answer(&mut f, 1, Ok(Offset(11)), t0, &mut done);
        assert!(f.can_send_new());
        assert_eq!(f.send_new(1, t0, 3), Sequence(3));
        answer(&mut f, 0, Ok(Offset(10)), t0, &mut done);
        answer(&mut f, 3, Ok(Offset(13)), t0, &mut done);
        assert_eq!(done.len(), 4);
        assert!(f.is_empty());
    }

    #[test]
    fn t13_a_sequence_error_at_the_head_is_final_and_breaks_the_sequence() {
        // Proves: OUT_OF_ORDER on a batch sent with nothing unresolved
        // before it is not a reordering: it fails, the batches waiting
        // behind it fail, and nothing new may be sent until a reset.
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        f.send_new(1, t0, 1);
        f.send_new(1, t0, 2);
        let mut done = Vec::new();
        answer(&mut f, 2, Err(out_of_order()), t0, &mut done); // overtook: waits
        answer(&mut f, 0, Err(out_of_order()), t0, &mut done); // real
        assert!(f.is_broken() && !f.can_send_new());
        let failed: Vec<u32> = done.iter().map(|(b, _)| *b).collect();
        assert_eq!(failed, vec![0, 2], "the head, then the waiting batch");
        // Batch 1 is still in flight; its error is final now.
        answer(&mut f, 1, Err(transport()), t0, &mut done);
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|(_, r)| r.is_err()));
        assert!(f.is_empty());
        f.restart_sequence(|_, _| {});
        assert!(f.can_send_new());
        assert_eq!(f.send_new(1, t0, 9), Sequence(0));
    }

    #[test]
    fn t14_terminal_errors_and_expiry_are_not_retried() {
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        let mut done = Vec::new();
        answer(
            &mut f,
            0,
            Err(ProduceFailure::Terminal(code(ErrorCode::MessageTooLarge))),
            t0,
            &mut done,
        );
        assert_eq!(done.len(), 1);
        assert!(f.is_broken());

        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        let mut done = Vec::new();
        let late = t0 + config().delivery_timeout;
        answer(&mut f, 0, Err(transport()), late, &mut done);
        assert!(matches!(&done[..], [(0, Err(e))] if e.contains("delivery")), "{done:?}");
    }

    fn unknown_producer() -> ProduceFailure {
        ProduceFailure::Sequence(code(ErrorCode::UnknownProducerId))
    }

    fn kip_360() -> InFlightConfig {
        InFlightConfig { resequence_on_lost_state: true, ..config() }
    }

    /// Batch 0 acknowledged; batches 1 and 2 (seq 1, 2) sent together.
    fn acked_then_two_out(t0: Instant, done: &mut Done) -> InFlight<u32> {
        let mut f = InFlight::new(kip_360());
        f.send_new(1, t0, 0);
        answer(&mut f, 0, Ok(Offset(0)), t0, done);
        f.send_new(1, t0, 1);
        f.send_new(1, t0, 2);
        f
    }

    #[test]
    fn t20_a_partition_that_lost_the_producer_keeps_its_batches_for_a_new_sequence() {
        // Proves: UNKNOWN_PRODUCER_ID on the head batch fails nothing; the
        // batches wait unsent (no retry under the old sequence, nothing
        // new), then are renumbered from 0 in order and resent one at a time.
        let t0 = Instant::now();
        let mut done = Vec::new();
        let mut f = acked_then_two_out(t0, &mut done);
        answer(&mut f, 1, Err(unknown_producer()), t0, &mut done);
        answer(&mut f, 2, Err(unknown_producer()), t0, &mut done);
        assert_eq!(done.len(), 1, "only the acknowledgement: {done:?}");
        assert!(f.lost_state() && !f.can_send_new());
        let later = t0 + Duration::from_secs(1);
        assert!(f.next_retry(later).is_none(), "nothing goes under the old sequence");
        let mut restamped = Vec::new();
        f.restart_sequence(|batch, seq| restamped.push((*batch, seq.0)));
        assert_eq!(restamped, [(1, 0), (2, 1)]);
        assert!(!f.lost_state());
        assert_eq!(f.next_retry(later).map(|(seq, b)| (seq.0, *b)), Some((0, 1)));
        assert!(f.next_retry(later).is_none(), "one at a time");
        answer(&mut f, 0, Ok(Offset(10)), later, &mut done);
        assert_eq!(f.next_retry(later).map(|(seq, b)| (seq.0, *b)), Some((1, 2)));
        answer(&mut f, 1, Ok(Offset(11)), later, &mut done);
        assert_eq!(done[1..], [(1, Ok(Offset(10))), (2, Ok(Offset(11)))]);
        assert!(f.can_send_new());
        assert_eq!(f.send_new(1, later, 3).0, 2, "new batches follow the renumbered ones");
    }

    #[test]
    fn t21_lost_state_is_final_where_kip_360_does_not_apply() {
        // Proves: the old rule (final, sequence broken) still holds for a
        // transactional producer, for a batch whose answer was lost once
        // (it may be in the log from before the partition forgot us), and
        // when a batch behind the refused one was appended (resending the
        // refused one would reorder them).
        let t0 = Instant::now();
        let mut done = Vec::new();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        answer(&mut f, 0, Err(unknown_producer()), t0, &mut done);
        assert!(f.is_broken() && !f.lost_state(), "transactional");

        let mut f = InFlight::new(kip_360());
        f.send_new(1, t0, 1);
        answer(&mut f, 0, Err(transport()), t0, &mut done);
        let later = t0 + Duration::from_secs(1);
        assert!(f.next_retry(later).is_some());
        answer(&mut f, 0, Err(unknown_producer()), later, &mut done);
        assert!(f.is_broken() && !f.lost_state(), "maybe appended");

        let mut f = acked_then_two_out(t0, &mut done);
        done.clear();
        answer(&mut f, 1, Err(unknown_producer()), t0, &mut done);
        answer(&mut f, 2, Ok(Offset(5)), t0, &mut done);
        assert!(f.is_broken() && !f.lost_state(), "appended behind");
        assert!(matches!(&done[..], [(2, Ok(_)), (1, Err(e))] if e.contains("UnknownProducerId")));
    }

    #[test]
    fn t15_backoff_grows_and_is_honoured() {
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        let mut done = Vec::new();
        let mut now = t0;
        let mut pauses = Vec::new();
        for _ in 0..5 {
            answer(&mut f, 0, Err(transport()), now, &mut done);
            let at = f.next_retry_at().unwrap();
            pauses.push(at - now);
            assert!(f.next_retry(at - Duration::from_millis(1)).is_none());
            now = at;
            assert!(f.next_retry(now).is_some());
        }
        assert_eq!(
            pauses,
            [10, 20, 40, 80, 80].map(Duration::from_millis).to_vec(),
            "exponential, capped"
        );
        assert!(done.is_empty());
    }

    #[test]
    fn t16_stop_retries_fails_waiting_batches_and_later_failures() {
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        f.send_new(1, t0, 1);
        let mut done = Vec::new();
        answer(&mut f, 0, Err(transport()), t0, &mut done);
        f.stop_retries(Error::TransactionAborted, |b, r| {
            done.push((b, r.map_err(|e| e.to_string())))
        });
        assert_eq!(done.len(), 1);
        assert!(!f.can_send_new());
        answer(&mut f, 1, Err(transport()), t0, &mut done);
        assert_eq!(done.len(), 2);
        assert!(f.is_empty());
        f.restart_sequence(|_, _| {});
        assert!(f.can_send_new());
    }

    #[test]
    fn t17_stale_answers_are_ignored() {
        let t0 = Instant::now();
        let mut f = InFlight::new(config());
        f.send_new(1, t0, 0);
        let mut done = Vec::new();
        answer(&mut f, 0, Err(transport()), t0, &mut done);
        // A second answer for the same attempt (it is waiting, not sent).
        answer(&mut f, 0, Ok(Offset(1)), t0, &mut done);
        answer(&mut f, 42, Ok(Offset(1)), t0, &mut done);
        assert!(done.is_empty());
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn t18_sequences_wrap_at_i32_max() {
        let t0 = Instant::now();
        let mut f: InFlight<u32> = InFlight::new(config());
        f.next_sequence = Sequence(i32::MAX - 1);
        assert_eq!(f.send_new(2, t0, 0), Sequence(i32::MAX - 1));
        assert_eq!(f.send_new(1, t0, 1), Sequence(0));
    }
}
