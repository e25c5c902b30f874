//! One failing history per anomaly class, each flagged with exactly that class and the
//! operations that show it, plus valid histories that must pass untouched. A checker
//! that cannot fail proves nothing.
//!
//! Histories are built with [`HistoryBuilder`]: each call appends an invocation and its
//! completion and returns the completion's index, which is how anomalies name ops.

use crate::history::{F, HistoryBuilder, OpType, Val, output_value, poll, send, send_unacked};

use super::{CheckResult, Class, check};

fn checked(h: HistoryBuilder) -> CheckResult {
    check(&h.build()).expect("well-formed history")
}

/// Asserts that `class` is the only class found, with exactly these anomalies (each a
/// list of op indexes), and returns its explanations.
fn assert_only(result: &CheckResult, class: Class, ops: &[&[u64]]) -> Vec<String> {
    assert_eq!(
        result.classes_found(),
        vec![class],
        "expected only {}; got:\n{}",
        class.name(),
        result.summary()
    );
    let found: Vec<Vec<u64>> = result.of(class).iter().map(|a| a.ops.clone()).collect();
    let want: Vec<Vec<u64>> = ops.iter().map(|o| o.to_vec()).collect();
    assert_eq!(found, want, "{}", result.summary());
    assert!(!result.valid);
    result.of(class).iter().map(|a| a.explanation.clone()).collect()
}

fn assert_valid(result: &CheckResult) {
    assert!(result.valid, "expected valid; got:\n{}", result.summary());
    assert!(result.counts.values().all(|&n| n == 0));
    assert!(result.anomalies.is_empty());
}

// ---------------------------------------------------------------------------------
// t10: valid histories

// Proves a history with transactions, gaps left by markers, a failed and an unknown
// transaction that stayed invisible, faults and a read-back phase has no anomalies.
#[test]
fn t10_valid_history_passes() {
    let mut h = HistoryBuilder::new();
    h.nemesis("start-kill");
    let t1 = h.ok(0, F::Txn, &[send("t0/0", 0, 1), send("t0/0", 1, 2), send("t0/1", 0, 3)]);
    // Offset 2 of t0/0 is t1's commit marker.
    h.ok(1, F::Send, &[send("t0/0", 3, 4)]);
    h.fail(0, F::Txn, &[send_unacked("t0/0", 5)]);
    h.info(1, F::Txn, &[send_unacked("t0/1", 6)]);
    h.nemesis("stop-kill");
    h.assign(2, &["t0/0", "t0/1"], false);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 2)]), ("t0/1", &[(0, 3)])])]);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(3, 4)])])]);
    h.assign(3, &["t0/0", "t0/1"], true);
    h.ok(3, F::FinalPoll, &[poll(&[("t0/0", &[(0, 1), (1, 2), (3, 4)]), ("t0/1", &[(0, 3)])])]);
    let result = checked(h);
    assert_valid(&result);
    assert_eq!(result.counts.len(), Class::ALL.len());
    assert_eq!(result.stats.faults.len(), 1);
    assert_eq!(result.stats.faults[0].fault, "kill");
    assert!(result.stats.latency_ns.is_some());
    assert!(t1 > 0);
}

// Proves a write-write then write-read cycle, which Kafka's interleaved writes allow,
// is not reported as g1c: ww order by offset is not commit order.
#[test]
fn t11_ww_wr_cycle_is_legal() {
    let mut h = HistoryBuilder::new();
    let t0 = h.invoke(0, F::Txn, &[send("x/0", 0, 1), poll(&[("y/0", &[(0, 3)])])]);
    h.ok(1, F::Txn, &[send("x/0", 1, 2), send("y/0", 0, 3)]);
    h.complete(t0, OpType::Ok, &[send("x/0", 0, 1), poll(&[("y/0", &[(0, 3)])])]);
    h.ok(2, F::Poll, &[poll(&[("x/0", &[(0, 1), (1, 2)])])]);
    assert_valid(&checked(h));
}

// Proves an assign with seek_to_beginning, a crash and a rebalance each restart poll
// order tracking, so the re-reads after them are not nonmonotonic.
#[test]
fn t12_repositioning_restarts_poll_tracking() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1), send("t0/0", 1, 2)]);
    let whole = [poll(&[("t0/0", &[(0, 1), (1, 2)])])];
    h.ok(1, F::Poll, &whole);
    h.assign(1, &["t0/0"], true);
    h.ok(1, F::Poll, &whole);
    h.crash(1);
    h.ok(1, F::Poll, &whole);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(1, 2)])])]);
    h.rebalanced(&["t0/0"]);
    assert_valid(&checked(h));
}

// Proves a subscribed consumer's rebalance breaks poll order tracking of exactly the
// keys it moved, as Jepsen's checker treats a reassignment: t0/0, revoked and assigned
// back, is re-read from the group's position (here the beginning) without an anomaly,
// while going back on t0/1, which the rebalance left alone, is still nonmonotonic.
#[test]
fn t14_rebalance_breaks_only_the_keys_it_moved() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1), send("t0/0", 1, 2)]);
    h.ok(0, F::Send, &[send("t0/1", 0, 1), send("t0/1", 1, 2)]);
    let both = [poll(&[("t0/0", &[(0, 1), (1, 2)]), ("t0/1", &[(0, 1), (1, 2)])])];
    let first = h.ok(1, F::Poll, &both);
    let again = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)]), ("t0/1", &[(1, 2)])])]);
    h.rebalanced(&["t0/0"]);
    let why = assert_only(&checked(h), Class::NonmonotonicPoll, &[&[first, again]]);
    assert!(why[0].contains("t0/1"), "{why:?}");
}

// Proves the shape of a false positive seen in a real run (queue/kill/seed 1) passes:
// a subscribed consumer's transaction polled t0/3 at offset 2, and its next poll
// rejoined the group and got t0/3 back, recorded as a rebalance of that operation;
// the next operation read t0/3 again from the beginning. The rebalance came after
// the operation's read of t0/3, so tracking breaks after it too.
#[test]
fn t15_rebalance_after_the_reads_of_its_operation() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/3", 0, 1), send("t0/3", 2, 3)]);
    h.ok(1, F::Poll, &[poll(&[("t0/3", &[(0, 1)])])]);
    h.ok(1, F::Txn, &[poll(&[("t0/3", &[(2, 3)])]), poll(&[])]);
    h.rebalanced(&["t0/3"]);
    h.ok(1, F::Txn, &[poll(&[("t0/3", &[(0, 1), (2, 3)])])]);
    assert_valid(&checked(h));
}

// Proves a failed transaction's polls end order tracking of their keys: the consumer
// may rewind to its committed position or keep going, and neither is an anomaly.
#[test]
fn t13_failed_poll_ends_tracking() {
    let mut h = HistoryBuilder::new();
    for v in 1..=3 {
        h.ok(0, F::Send, &[send("t0/0", v - 1, v)]);
    }
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    h.fail(1, F::Txn, &[poll(&[("t0/0", &[(1, 2)])])]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(1, 2)])])]); // rewound
    h.fail(1, F::Txn, &[poll(&[("t0/0", &[(2, 3)])])]);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    h.fail(2, F::Txn, &[poll(&[("t0/0", &[(1, 2)])])]);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(2, 3)])])]); // kept going
    assert_valid(&checked(h));
}

// ---------------------------------------------------------------------------------
// t20: the log disagrees with itself

// Proves a value at two offsets of one key is flagged duplicate, naming its writer and
// the reader that saw both copies.
#[test]
fn t20_duplicate() {
    let mut h = HistoryBuilder::new();
    let w = h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    let r = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 1)])])]);
    let why = assert_only(&checked(h), Class::Duplicate, &[&[w, r]]);
    assert!(why[0].contains("offsets: 0, 1"), "{why:?}");
}

// Proves two sends acknowledged at one offset, each seen by a reader, are flagged
// inconsistent-offsets with all four operations.
#[test]
fn t21_inconsistent_offsets() {
    let mut h = HistoryBuilder::new();
    let w1 = h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    let w2 = h.ok(1, F::Send, &[send("t0/0", 0, 2)]);
    let r1 = h.ok(2, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    let r2 = h.ok(3, F::Poll, &[poll(&[("t0/0", &[(0, 2)])])]);
    let why = assert_only(&checked(h), Class::InconsistentOffsets, &[&[w1, w2, r1, r2]]);
    assert!(why[0].contains("offset 0 holds different values {1, 2}"), "{why:?}");
}

// ---------------------------------------------------------------------------------
// t30: what readers saw against what committed

// Proves a poll returning a failed transaction's write is flagged aborted-read (G1a).
#[test]
fn t30_aborted_read() {
    let mut h = HistoryBuilder::new();
    let w = h.fail(0, F::Txn, &[send_unacked("t0/0", 1)]);
    let r = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    assert_only(&checked(h), Class::AbortedRead, &[&[w, r]]);
}

// Proves a poll returning a value nobody sent is flagged phantom-read.
#[test]
fn t31_phantom_read() {
    let mut h = HistoryBuilder::new();
    let r = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 99)])])]);
    assert_only(&checked(h), Class::PhantomRead, &[&[r]]);
}

// Proves a transaction polling its own uncommitted write is flagged precommitted-read.
#[test]
fn t32_precommitted_read_of_own_value() {
    let mut h = HistoryBuilder::new();
    let t = h.ok(0, F::Txn, &[send("t0/0", 0, 1), poll(&[("t0/0", &[(0, 1)])])]);
    assert_only(&checked(h), Class::PrecommittedRead, &[&[t]]);
}

// Proves a transaction polling a key past the offset of its own write there is flagged
// precommitted-read: its open write holds the last stable offset below that point.
#[test]
fn t33_precommitted_read_past_own_write() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    h.ok(2, F::Send, &[send("t0/0", 2, 3)]);
    let t = h.ok(1, F::Txn, &[send("t0/0", 1, 2), poll(&[("t0/0", &[(2, 3)])])]);
    h.ok(3, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 2), (2, 3)])])]);
    let why = assert_only(&checked(h), Class::PrecommittedRead, &[&[t]]);
    assert!(why[0].contains("past its own uncommitted write"), "{why:?}");
}

// Proves an acknowledged write below the highest offset a poll read, that no poll
// returned, is flagged lost-write (and not also unseen).
#[test]
fn t34_lost_write() {
    let mut h = HistoryBuilder::new();
    let w1 = h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    h.ok(0, F::Send, &[send("t0/0", 1, 2)]);
    let r = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(1, 2)])])]);
    let why = assert_only(&checked(h), Class::LostWrite, &[&[w1, r]]);
    assert!(why[0].contains("value 1 at offset 0"), "{why:?}");
}

// Proves a committed write absent from the final polls is flagged unseen even though
// an earlier poll saw it: it vanished after being read.
#[test]
fn t35_unseen_by_final_polls() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    let w2 = h.ok(0, F::Send, &[send("t0/0", 1, 2)]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 2)])])]);
    h.assign(2, &["t0/0"], true);
    h.ok(2, F::FinalPoll, &[poll(&[("t0/0", &[(0, 1)])])]);
    assert_only(&checked(h), Class::Unseen, &[&[w2]]);
}

// Proves that without a read-back phase an acknowledged write no poll ever returned is
// flagged unseen.
#[test]
fn t36_unseen_without_final_polls() {
    let mut h = HistoryBuilder::new();
    let w = h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
    assert_only(&checked(h), Class::Unseen, &[&[w]]);
}

// Proves a reader whose polls covered the offsets of all of a committed transaction's
// writes but saw only one is flagged torn-transaction. A torn read is necessarily also
// a skip on the key of the missing write, so int-poll-skip is reported beside it.
#[test]
fn t37_torn_transaction_seen_by_one_reader() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/1", 0, 10)]);
    let t = h.ok(1, F::Txn, &[send("t0/0", 0, 1), send("t0/1", 1, 2)]);
    h.ok(0, F::Send, &[send("t0/1", 2, 11)]);
    let r = h.ok(2, F::Poll, &[poll(&[("t0/0", &[(0, 1)]), ("t0/1", &[(0, 10), (2, 11)])])]);
    h.ok(3, F::Poll, &[poll(&[("t0/0", &[(0, 1)]), ("t0/1", &[(0, 10), (1, 2), (2, 11)])])]);
    let result = checked(h);
    assert_eq!(
        result.classes_found(),
        vec![Class::TornTransaction, Class::IntPollSkip],
        "{}",
        result.summary()
    );
    let torn: Vec<_> = result.of(Class::TornTransaction).iter().map(|a| a.ops.clone()).collect();
    assert_eq!(torn, vec![vec![t, r]]);
    let skip: Vec<_> = result.of(Class::IntPollSkip).iter().map(|a| a.ops.clone()).collect();
    assert_eq!(skip, vec![vec![r]]);
}

// ---------------------------------------------------------------------------------
// t40: outcome-unknown transactions are all or nothing

// Proves an info transaction whose writes were all seen passes.
#[test]
fn t40_info_txn_fully_visible_passes() {
    let mut h = HistoryBuilder::new();
    h.info(0, F::Txn, &[send_unacked("t0/0", 1), send_unacked("t0/1", 2)]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)]), ("t0/1", &[(0, 2)])])]);
    assert_valid(&checked(h));
}

// Proves an info transaction none of whose writes was ever seen passes, even when
// later polls and the final polls read past where they would have been.
#[test]
fn t41_info_txn_fully_invisible_passes() {
    let mut h = HistoryBuilder::new();
    h.info(0, F::Txn, &[send_unacked("t0/0", 1), send_unacked("t0/1", 2)]);
    h.ok(1, F::Txn, &[send("t0/0", 1, 3), send("t0/1", 1, 4)]);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(1, 3)]), ("t0/1", &[(1, 4)])])]);
    h.assign(3, &["t0/0", "t0/1"], true);
    h.ok(3, F::FinalPoll, &[poll(&[("t0/0", &[(1, 3)]), ("t0/1", &[(1, 4)])])]);
    assert_valid(&checked(h));
}

// Proves an info transaction with one write seen and another never seen, on a key
// polled after it completed, is flagged torn-transaction (and not lost or unseen).
#[test]
fn t42_info_txn_partially_visible_is_torn() {
    let mut h = HistoryBuilder::new();
    let t = h.info(0, F::Txn, &[send_unacked("t0/0", 1), send_unacked("t0/1", 2)]);
    h.ok(3, F::Send, &[send("t0/1", 1, 5)]);
    let r = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    h.ok(2, F::Poll, &[poll(&[("t0/1", &[(1, 5)])])]);
    let why = assert_only(&checked(h), Class::TornTransaction, &[&[t, r]]);
    assert!(why[0].contains("partly visible"), "{why:?}");
}

// Proves the same partial visibility is torn when the read-back phase is what misses
// the second write.
#[test]
fn t43_info_txn_partially_visible_in_final_polls_is_torn() {
    let mut h = HistoryBuilder::new();
    let t = h.info(0, F::Txn, &[send_unacked("t0/0", 1), send_unacked("t0/1", 2)]);
    h.ok(3, F::Send, &[send("t0/1", 1, 5)]);
    h.assign(1, &["t0/0", "t0/1"], true);
    let r = h.ok(1, F::FinalPoll, &[poll(&[("t0/0", &[(0, 1)]), ("t0/1", &[(1, 5)])])]);
    assert_only(&checked(h), Class::TornTransaction, &[&[t, r]]);
}

// ---------------------------------------------------------------------------------
// t50: order seen by one consumer or producer

// Proves a consumer whose next poll starts back at a record it already polled is
// flagged nonmonotonic-poll, naming both polls.
#[test]
fn t50_nonmonotonic_poll() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1), send("t0/0", 1, 2)]);
    h.assign(1, &["t0/0"], false);
    let p1 = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 2)])])]);
    let p2 = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(1, 2)])])]);
    assert_only(&checked(h), Class::NonmonotonicPoll, &[&[p1, p2]]);
}

// Proves a consumer whose next poll jumps over a record that exists is flagged
// poll-skip, naming both polls and the skipped record.
#[test]
fn t51_poll_skip() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1), send("t0/0", 1, 2), send("t0/0", 2, 3)]);
    let p1 = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 1)])])]);
    let p2 = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(2, 3)])])]);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 2), (2, 3)])])]);
    let why = assert_only(&checked(h), Class::PollSkip, &[&[p1, p2]]);
    assert!(why[0].contains("skipping 2@1"), "{why:?}");
}

// Proves a producer whose later send landed before its earlier one is flagged
// nonmonotonic-send.
#[test]
fn t52_nonmonotonic_send() {
    let mut h = HistoryBuilder::new();
    let s1 = h.ok(0, F::Send, &[send("t0/0", 1, 1)]);
    let s2 = h.ok(0, F::Send, &[send("t0/0", 0, 2)]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 2), (1, 1)])])]);
    assert_only(&checked(h), Class::NonmonotonicSend, &[&[s1, s2]]);
}

// Proves one operation's polls jumping over an existing record are flagged
// int-poll-skip. (The records come from separate sends: were they one transaction,
// the skip would also tear it.)
#[test]
fn t53_int_poll_skip() {
    let mut h = HistoryBuilder::new();
    for v in 1..=3 {
        h.ok(0, F::Send, &[send("t0/0", v - 1, v)]);
    }
    let p = h.ok(1, F::Txn, &[poll(&[("t0/0", &[(0, 1)])]), poll(&[("t0/0", &[(2, 3)])])]);
    h.ok(2, F::Poll, &[poll(&[("t0/0", &[(0, 1), (1, 2), (2, 3)])])]);
    assert_only(&checked(h), Class::IntPollSkip, &[&[p]]);
}

// Proves one operation's polls going backwards are flagged int-nonmonotonic-poll.
#[test]
fn t54_int_nonmonotonic_poll() {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("t0/0", 0, 1), send("t0/0", 1, 2)]);
    let p = h.ok(1, F::Poll, &[poll(&[("t0/0", &[(1, 2), (0, 1)])])]);
    assert_only(&checked(h), Class::IntNonmonotonicPoll, &[&[p]]);
}

// Proves one transaction's two sends to a key landing in reverse order are flagged
// int-nonmonotonic-send.
#[test]
fn t55_int_nonmonotonic_send() {
    let mut h = HistoryBuilder::new();
    let t = h.ok(0, F::Txn, &[send("t0/0", 1, 1), send("t0/0", 0, 2)]);
    h.ok(1, F::Poll, &[poll(&[("t0/0", &[(0, 2), (1, 1)])])]);
    assert_only(&checked(h), Class::IntNonmonotonicSend, &[&[t]]);
}

// ---------------------------------------------------------------------------------
// t60: cycles

// Proves two committed transactions that each polled the other's write are flagged
// g1c: each must have committed before the other.
#[test]
fn t60_g1c_wr_cycle() {
    let mut h = HistoryBuilder::new();
    let mops1 = [send("x/0", 0, 1), poll(&[("y/0", &[(0, 2)])])];
    let mops2 = [send("y/0", 0, 2), poll(&[("x/0", &[(0, 1)])])];
    let p1 = h.invoke(0, F::Txn, &mops1);
    let p2 = h.invoke(1, F::Txn, &mops2);
    let t1 = h.complete(p1, OpType::Ok, &mops1);
    let t2 = h.complete(p2, OpType::Ok, &mops2);
    let why = assert_only(&checked(h), Class::G1c, &[&[t1, t2]]);
    assert!(why[0].contains("polled y/0 up to offset 0"), "{why:?}");
}

// Proves a cycle closed by reading past a write (ww followed by wr) is flagged g1c:
// polling offset 1 means the writer at offset 0 had already committed.
#[test]
fn t61_g1c_through_read_past() {
    let mut h = HistoryBuilder::new();
    let mops1 = [send("x/0", 0, 1), poll(&[("y/0", &[(0, 2)])])];
    let mops2 = [send("y/0", 0, 2), poll(&[("x/0", &[(1, 3)])])];
    let p1 = h.invoke(0, F::Txn, &mops1);
    let p2 = h.invoke(1, F::Txn, &mops2);
    h.ok(2, F::Send, &[send("x/0", 1, 3)]);
    let t1 = h.complete(p1, OpType::Ok, &mops1);
    let t2 = h.complete(p2, OpType::Ok, &mops2);
    h.ok(3, F::Poll, &[poll(&[("x/0", &[(0, 1), (1, 3)])])]);
    assert_only(&checked(h), Class::G1c, &[&[t1, t2]]);
}

// ---------------------------------------------------------------------------------
// t70: consume-transform-produce pipeline

/// The value transform attempt `attempt` writes for input `input`.
fn out(input: u64, attempt: u64) -> u64 {
    output_value(Val(input), attempt).0
}

/// Input in/0 holds 1@0 and 2@1; the pipeline's final polls read `outputs`.
fn pipeline_history(
    transforms: impl FnOnce(&mut HistoryBuilder) -> Vec<u64>,
    outputs: &[(&str, &[(u64, u64)])],
) -> (CheckResult, Vec<u64>) {
    let mut h = HistoryBuilder::new();
    h.ok(0, F::Send, &[send("in/0", 0, 1), send("in/0", 1, 2)]);
    let ops = transforms(&mut h);
    let mut keys: Vec<&str> = vec!["in/0"];
    keys.extend(outputs.iter().map(|(k, _)| *k));
    h.assign(9, &keys, true);
    let mut reads: Vec<(&str, &[(u64, u64)])> = vec![("in/0", &[(0, 1), (1, 2)])];
    reads.extend_from_slice(outputs);
    h.ok(9, F::FinalPoll, &[poll(&reads)]);
    (checked(h), ops)
}

/// Process 1's attempt 1 transforms both inputs into out/0 offsets 0 and 1, committed.
fn both_inputs_committed(h: &mut HistoryBuilder) -> u64 {
    h.ok(
        1,
        F::Transform,
        &[
            poll(&[("in/0", &[(0, 1), (1, 2)])]),
            send("out/0", 0, out(1, 1)),
            send("out/0", 1, out(2, 1)),
        ],
    )
}

// Proves a pipeline where a failed transform's output stayed invisible and a retry
// produced each input once passes.
#[test]
fn t70_pipeline_exactly_once_passes() {
    let (result, _) = pipeline_history(
        |h| {
            h.fail(
                1,
                F::Transform,
                &[poll(&[("in/0", &[(0, 1)])]), send_unacked("out/0", out(1, 1))],
            );
            h.ok(
                2,
                F::Transform,
                &[
                    poll(&[("in/0", &[(0, 1), (1, 2)])]),
                    send("out/0", 1, out(1, 2)),
                    send("out/0", 2, out(2, 2)),
                ],
            );
            vec![]
        },
        &[("out/0", &[(1, out(1, 2)), (2, out(2, 2))])],
    );
    assert_valid(&result);
}

// Proves the shape of a false positive seen in a real run passes: a worker crashed
// (info) after sending its outputs for inputs 1 and 2; another worker had already
// transformed and committed input 1, and nobody committed past input 2 before the run
// ended. The committed attempt's record of input 1 is not the crashed attempt's, so
// the crashed one is not taken for committed (which made input 2 look consumed and
// lost, and the crashed transaction look torn).
#[test]
fn t74_crashed_attempt_beside_a_committed_one_passes() {
    let (result, _) = pipeline_history(
        |h| {
            h.ok(1, F::Transform, &[poll(&[("in/0", &[(0, 1)])]), send("out/0", 0, out(1, 1))]);
            h.info(
                2,
                F::Transform,
                &[
                    poll(&[("in/0", &[(0, 1), (1, 2)])]),
                    send_unacked("out/0", out(1, 2)),
                    send_unacked("out/1", out(2, 2)),
                ],
            );
            vec![]
        },
        &[("out/0", &[(0, out(1, 1))]), ("out/1", &[])],
    );
    assert_valid(&result);
}

// Proves an input processed by two committed transforms, into two output records, is
// flagged pipeline-exactly-once.
#[test]
fn t71_pipeline_duplicate_output() {
    let (result, ops) = pipeline_history(
        |h| {
            let a = both_inputs_committed(h);
            let b =
                h.ok(2, F::Transform, &[poll(&[("in/0", &[(0, 1)])]), send("out/1", 0, out(1, 2))]);
            vec![a, b]
        },
        &[("out/0", &[(0, out(1, 1)), (1, out(2, 1))]), ("out/1", &[(0, out(1, 2))])],
    );
    // The final poll returned both copies, so it is named too.
    let final_poll = result.stats.records as u64 - 1;
    let why = assert_only(&result, Class::PipelineExactlyOnce, &[&[ops[0], ops[1], final_poll]]);
    assert!(why[0].contains("input value 1 is in 2 output records"), "{why:?}");
    assert!(why[0].contains("(attempt 1)") && why[0].contains("(attempt 2)"), "{why:?}");
}

// Proves a crashed (info) attempt whose output surfaced beside a committed attempt's
// is a duplicate: seeing its own record makes the crashed attempt committed.
#[test]
fn t75_pipeline_duplicate_from_unknown_attempt() {
    let (result, ops) = pipeline_history(
        |h| {
            let a = both_inputs_committed(h);
            let b = h.info(
                2,
                F::Transform,
                &[poll(&[("in/0", &[(1, 2)])]), send_unacked("out/0", out(2, 2))],
            );
            vec![a, b]
        },
        &[("out/0", &[(0, out(1, 1)), (1, out(2, 1)), (3, out(2, 2))])],
    );
    let final_poll = result.stats.records as u64 - 1;
    let why = assert_only(&result, Class::PipelineExactlyOnce, &[&[ops[0], ops[1], final_poll]]);
    assert!(why[0].contains("input value 2 is in 2 output records"), "{why:?}");
}

// Proves an input a committed transform consumed but never produced is flagged.
#[test]
fn t72_pipeline_consumed_without_output() {
    let (result, ops) = pipeline_history(
        |h| {
            vec![h.ok(
                1,
                F::Transform,
                &[poll(&[("in/0", &[(0, 1), (1, 2)])]), send("out/0", 0, out(1, 1))],
            )]
        },
        &[("out/0", &[(0, out(1, 1))])],
    );
    let why = assert_only(&result, Class::PipelineExactlyOnce, &[&[ops[0]]]);
    assert!(why[0].contains("input value 2"), "{why:?}");
}

// Proves an input below the committed consumed position that no transform processed
// (the group skipped it) is flagged.
#[test]
fn t73_pipeline_skipped_input() {
    let (result, ops) = pipeline_history(
        |h| {
            vec![h.ok(
                1,
                F::Transform,
                &[poll(&[("in/0", &[(1, 2)])]), send("out/0", 0, out(2, 1))],
            )]
        },
        &[("out/0", &[(0, out(2, 1))])],
    );
    let why = assert_only(&result, Class::PipelineExactlyOnce, &[&[ops[0]]]);
    assert!(why[0].contains("input value 1 (in/0@0)"), "{why:?}");
}

// ---------------------------------------------------------------------------------
// t80: results

// Proves the results carry every class with a count, fault windows pairing start and
// stop, and nearest-rank latency percentiles of ok operations only.
#[test]
fn t80_results_shape() {
    let mut h = HistoryBuilder::new();
    h.nemesis("start-partition");
    for v in 0..100 {
        h.ok(0, F::Send, &[send("t0/0", v, v)]);
    }
    h.nemesis("stop-partition");
    h.nemesis("start-kill");
    h.fail(1, F::Send, &[send_unacked("t0/1", 7)]);
    let reads: Vec<(u64, u64)> = (0..100).map(|v| (v, v)).collect();
    h.ok(2, F::Poll, &[poll(&[("t0/0", &reads)])]);
    let result = checked(h);
    assert_valid(&result);
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["anomaly_counts"].as_object().unwrap().len(), Class::ALL.len());
    assert_eq!(json["anomaly_counts"]["g1c"], 0);
    assert_eq!(json["ops"], 102);
    let faults = json["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0]["fault"], "partition");
    assert!(faults[0]["end_index"].is_u64());
    assert!(faults[1]["end_index"].is_null(), "kill never stopped");
    // The builder's clock makes every operation take exactly 1 ms.
    let latency = result.stats.latency_ns.as_ref().unwrap();
    assert_eq!(latency.count, 101);
    assert_eq!((latency.p50, latency.p99, latency.max), (1_000_000, 1_000_000, 1_000_000));
}

// ---------------------------------------------------------------------------------
// t90: histories of a simulated correct log, and mutations of them

mod simulated {
    use std::collections::{BTreeMap, HashMap};

    use crate::history::{
        F, History, HistoryBuilder, Mop, OpType, OpValue, Pending, poll, send, send_unacked,
    };

    use super::super::{Class, check};

    const KEYS: [&str; 3] = ["t0/0", "t0/1", "t1/0"];
    const PRODUCERS: u64 = 4;
    const CONSUMERS: [u64; 2] = [10, 11];
    const FINAL_READER: u64 = 20;
    const STEPS: usize = 400;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Pending,
        Committed,
        Aborted,
        Marker,
    }

    struct Entry {
        value: u64,
        txn: usize,
        state: State,
    }

    struct Open {
        pending: Pending,
        txn: usize,
        polls: Vec<Mop>,
        sends: Vec<(&'static str, u64, u64)>,
    }

    /// A partition that behaves as xo must: offsets in append order, a marker per
    /// partition per resolved transaction, read-committed polls stopping at the LSO.
    struct Sim {
        rng: Rng,
        h: HistoryBuilder,
        logs: BTreeMap<&'static str, Vec<Entry>>,
        positions: HashMap<(u64, &'static str), usize>,
        open: Vec<Open>,
        txns: usize,
        value_next: u64,
    }

    impl Sim {
        fn new(seed: u64) -> Sim {
            let mut h = HistoryBuilder::new();
            for p in (0..PRODUCERS).chain(CONSUMERS) {
                h.assign(p, &KEYS, false);
            }
            Sim {
                rng: Rng(seed | 1),
                h,
                logs: KEYS.iter().map(|k| (*k, Vec::new())).collect(),
                positions: HashMap::new(),
                open: Vec::new(),
                txns: 0,
                value_next: 1,
            }
        }

        /// Up to `max` committed records of `key` from `process`'s position.
        fn read(&mut self, process: u64, key: &'static str, max: usize) -> Vec<(u64, u64)> {
            let log = &self.logs[key];
            let lso = log.iter().position(|e| e.state == State::Pending).unwrap_or(log.len());
            let position = self.positions.entry((process, key)).or_insert(0);
            let mut records = Vec::new();
            while *position < lso && records.len() < max {
                let entry = &log[*position];
                if entry.state == State::Committed {
                    records.push((*position as u64, entry.value));
                }
                *position += 1;
            }
            records
        }

        fn poll_mop(&mut self, process: u64) -> Mop {
            let keys = 1 + self.rng.below(KEYS.len() as u64) as usize;
            let first = self.rng.below(KEYS.len() as u64) as usize;
            let mut reads: Vec<(&str, Vec<(u64, u64)>)> = Vec::new();
            for i in 0..keys {
                let key = KEYS[(first + i) % KEYS.len()];
                let max = 1 + self.rng.below(4) as usize;
                reads.push((key, self.read(process, key, max)));
            }
            let borrowed: Vec<(&str, &[(u64, u64)])> =
                reads.iter().map(|(k, r)| (*k, r.as_slice())).collect();
            poll(&borrowed)
        }

        fn begin(&mut self) {
            let busy: Vec<u64> = self.open.iter().map(|o| o.pending_process()).collect();
            let Some(process) = (0..PRODUCERS).find(|p| !busy.contains(p)) else {
                return;
            };
            let txn = self.txns;
            self.txns += 1;
            let polls = if self.rng.below(3) == 0 { vec![self.poll_mop(process)] } else { vec![] };
            let mut sends = Vec::new();
            for _ in 0..1 + self.rng.below(3) {
                let key = KEYS[self.rng.below(KEYS.len() as u64) as usize];
                let log = self.logs.get_mut(key).unwrap();
                let value = self.value_next;
                self.value_next += 1;
                sends.push((key, log.len() as u64, value));
                log.push(Entry { value, txn, state: State::Pending });
            }
            let mut mops = polls.clone();
            mops.extend(sends.iter().map(|&(k, o, v)| send(k, o, v)));
            let pending = self.h.invoke(process, F::Txn, &mops);
            self.open.push(Open { pending, txn, polls, sends });
        }

        fn resolve(&mut self, index: usize, kind: OpType, commit: bool) {
            let open = self.open.remove(index);
            let state = if commit { State::Committed } else { State::Aborted };
            let mut touched: Vec<&str> = open.sends.iter().map(|s| s.0).collect();
            touched.sort();
            touched.dedup();
            for key in touched {
                let log = self.logs.get_mut(key).unwrap();
                for entry in log.iter_mut().filter(|e| e.txn == open.txn) {
                    entry.state = state;
                }
                log.push(Entry { value: 0, txn: open.txn, state: State::Marker });
            }
            let mut mops = open.polls.clone();
            mops.extend(open.sends.iter().map(|&(k, o, v)| {
                if kind == OpType::Ok { send(k, o, v) } else { send_unacked(k, v) }
            }));
            self.h.complete(open.pending, kind, &mops);
        }

        fn step(&mut self) {
            match self.rng.below(10) {
                0..=3 => self.begin(),
                4..=6 if !self.open.is_empty() => {
                    let index = self.rng.below(self.open.len() as u64) as usize;
                    let (kind, commit) = match self.rng.below(20) {
                        0..=14 => (OpType::Ok, true),
                        15..=17 => (OpType::Fail, false),
                        18 => (OpType::Info, true),
                        _ => (OpType::Info, false),
                    };
                    self.resolve(index, kind, commit);
                }
                7..=9 => {
                    let process = CONSUMERS[self.rng.below(2) as usize];
                    let mop = self.poll_mop(process);
                    self.h.ok(process, F::Poll, &[mop]);
                }
                _ => {}
            }
        }

        fn run(mut self, steps: usize) -> History {
            self.h.nemesis("start-kill");
            for step in 0..steps {
                if step == steps / 2 {
                    self.h.nemesis("stop-kill");
                }
                self.step();
            }
            while !self.open.is_empty() {
                self.resolve(0, OpType::Ok, true);
            }
            self.h.assign(FINAL_READER, &KEYS, true);
            let mut reads = Vec::new();
            for key in KEYS {
                reads.push((key, self.read(FINAL_READER, key, usize::MAX)));
            }
            let borrowed: Vec<(&str, &[(u64, u64)])> =
                reads.iter().map(|(k, r)| (*k, r.as_slice())).collect();
            self.h.ok(FINAL_READER, F::FinalPoll, &[poll(&borrowed)]);
            self.h.build()
        }
    }

    impl Open {
        fn pending_process(&self) -> u64 {
            self.pending.process()
        }
    }

    fn history(seed: u64) -> History {
        Sim::new(seed).run(STEPS)
    }

    // Proves the checker stays fast on a long history (run by hand, in release:
    // cargo test -p xo-jepsen --release t94 -- --ignored --nocapture).
    #[test]
    #[ignore]
    fn t94_long_history_is_checked_quickly() {
        let history = Sim::new(7).run(200_000);
        let started = std::time::Instant::now();
        let result = check(&history).unwrap();
        println!("{} records checked in {:?}", history.ops.len(), started.elapsed());
        assert!(result.valid, "{}", result.summary());
    }

    // Proves histories of a correct read-committed log with interleaved transactions,
    // aborts, unknown outcomes and markers pass with zero anomalies, across seeds.
    #[test]
    fn t90_simulated_correct_histories_pass() {
        for seed in 1..=40 {
            let history = history(seed);
            let result = check(&history).unwrap();
            assert!(result.valid, "seed {seed}:\n{}", result.summary());
            assert!(result.stats.ok > 50, "seed {seed} exercised little");
        }
    }

    /// The first ok txn whose writes some ok poll (not the final one) returned.
    fn read_txn(history: &History) -> usize {
        let final_index = history.ops.len() - 1;
        let read: std::collections::HashSet<(String, u64)> = history.ops[..final_index]
            .iter()
            .filter(|op| op.kind == OpType::Ok)
            .flat_map(|op| op.mops().iter())
            .filter_map(|m| match m {
                Mop::Poll { reads } => Some(reads),
                _ => None,
            })
            .flat_map(|reads| {
                reads.iter().flat_map(|(k, rs)| rs.iter().map(|r| (k.0.clone(), r.value.0)))
            })
            .collect();
        history
            .ops
            .iter()
            .position(|op| {
                op.kind == OpType::Ok
                    && op.f == F::Txn
                    && op.mops().iter().any(|m| {
                        matches!(m, Mop::Send { key, value, .. } if read.contains(&(key.0.clone(), value.0)))
                    })
            })
            .expect("some transaction was read")
    }

    // Proves turning a committed transaction whose writes were read into a failed one
    // is caught as aborted-read.
    #[test]
    fn t91_mutation_commit_to_fail_is_caught() {
        for seed in 1..=10 {
            let mut history = history(seed);
            let i = read_txn(&history);
            history.ops[i].kind = OpType::Fail;
            let result = check(&history).unwrap();
            assert!(result.count(Class::AbortedRead) > 0, "seed {seed}:\n{}", result.summary());
        }
    }

    // Proves dropping one record from the final polls is caught: the write vanished.
    #[test]
    fn t92_mutation_drop_from_final_poll_is_caught() {
        for seed in 1..=10 {
            let mut history = history(seed);
            let last = history.ops.len() - 1;
            let OpValue::Mops(mops) = &mut history.ops[last].value else { unreachable!() };
            let Mop::Poll { reads } = &mut mops[0] else { unreachable!() };
            let records = reads.values_mut().find(|r| r.len() > 2).expect("a long key");
            records.remove(1);
            let result = check(&history).unwrap();
            assert!(!result.valid, "seed {seed}");
            assert!(result.count(Class::IntPollSkip) > 0, "seed {seed}:\n{}", result.summary());
        }
    }

    // Proves copying one polled record's value onto the next is caught twice over: the
    // value now sits at two offsets, and the second offset holds two values.
    #[test]
    fn t93_mutation_rewrite_polled_value_is_caught() {
        for seed in 1..=10 {
            let mut history = history(seed);
            let last = history.ops.len() - 1;
            let OpValue::Mops(mops) = &mut history.ops[last].value else { unreachable!() };
            let Mop::Poll { reads } = &mut mops[0] else { unreachable!() };
            let records = reads.values_mut().find(|r| r.len() > 2).expect("a long key");
            let stolen = records[0].value;
            records[1].value = stolen;
            let result = check(&history).unwrap();
            assert!(result.count(Class::Duplicate) > 0, "seed {seed}:\n{}", result.summary());
            assert!(result.count(Class::InconsistentOffsets) > 0, "seed {seed}");
        }
    }
}
