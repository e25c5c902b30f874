//! The order one consumer or one producer saw, against the log's order.
//!
//! Positions are dense indexes in the reconstructed log (offsets without the gaps
//! markers and aborted records leave), so "next" means "the next record anybody saw".
//!
//! - `nonmonotonic-poll` / `poll-skip`: one process's successive ok operations that
//!   poll a key: the first record of the later one must be the record right after the
//!   last record of the earlier one. Going back or repeating is nonmonotonic; jumping
//!   over records is a skip. Tracking of a key restarts after an assign or subscribe
//!   that drops it, any assign with `seek_to_beginning`, a crash, an info outcome (the
//!   client's position is unknown), a failed operation that polled it (whether the
//!   client rewinds to its committed position is the workload's choice), and a
//!   `rebalance` naming it. A rebalance is known only to have happened somewhere in
//!   its operation (a transaction's second poll may carry it out after the first
//!   returned records of the key), so it breaks tracking on both sides: the
//!   operation's first record of the key is compared with nothing before it, and its
//!   last record with nothing after it.
//! - `nonmonotonic-send`: one process's successive ok or info operations that send to a
//!   key: the first send of the later one must land after the last send of the earlier
//!   one (an operation is invoked only after the previous one completed).
//! - `int-poll-skip` / `int-nonmonotonic-poll`: inside one operation, successive
//!   records polled from a key must be adjacent in the log.
//! - `int-nonmonotonic-send`: inside one operation, successive sends to a key must land
//!   in order. (Skips between them are normal: other producers interleave.)

use std::collections::HashMap;

use crate::history::{F, Key, Offset, OpType, Val};

use super::model::{Log, Model, OpId};
use super::{Class, Findings};

pub(crate) fn check(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    polls_across_operations(model, findings);
    sends_across_operations(model, findings);
    within_operations(model, findings);
}

/// Dense index of a polled offset; every polled offset is in the log.
fn read_index(log: &Log, offset: Offset) -> usize {
    log.dense[&offset]
}

fn skipped(log: &Log, from: usize, to: usize) -> String {
    const SHOWN_MAX: usize = 5;
    let values: Vec<String> = (from + 1..to)
        .take(SHOWN_MAX)
        .map(|i| {
            let values: Vec<String> = log.values_at_index(i).iter().map(Val::to_string).collect();
            format!("{}@{}", values.join("|"), log.offsets[i])
        })
        .collect();
    let more = if to - from - 1 > SHOWN_MAX { ", ..." } else { "" };
    format!("{}{more}", values.join(", "))
}

fn polls_across_operations(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    // Process -> key -> (operation, offset) of the last record it polled there.
    let mut last: HashMap<u64, HashMap<&Key, (OpId, Offset)>> = HashMap::new();
    for (id, op) in model.ops.iter().enumerate() {
        let state = last.entry(op.process()).or_default();
        let outcome = op.outcome();
        match op.f() {
            F::Assign | F::Subscribe => {
                match outcome {
                    OpType::Ok if op.invoke.seek_to_beginning => state.clear(),
                    OpType::Ok => {
                        let keys = op.completion.unwrap_or(op.invoke).keys();
                        state.retain(|key, _| keys.contains(key));
                    }
                    OpType::Info => state.clear(),
                    OpType::Fail | OpType::Invoke => {}
                }
                continue;
            }
            F::Crash => {
                state.clear();
                continue;
            }
            f if f.has_mops() => {}
            _ => continue,
        }
        let rebalanced = &op.completion.unwrap_or(op.invoke).rebalance;
        for key in rebalanced {
            state.remove(key);
        }
        match outcome {
            OpType::Info => {
                state.clear();
                continue;
            }
            OpType::Fail => {
                for (key, _) in op.reads() {
                    state.remove(key);
                }
                continue;
            }
            OpType::Ok | OpType::Invoke => {}
        }
        for (key, records) in op.reads_by_key() {
            if rebalanced.contains(key) {
                continue;
            }
            let log = &model.logs[key];
            let first = records[0];
            let last_here = records.last().expect("non-empty").offset;
            if let Some(&(prev, prev_offset)) = state.get(key) {
                let i = read_index(log, prev_offset) as i64;
                let j = read_index(log, first.offset) as i64;
                if j - i < 1 {
                    findings.add(
                        Class::NonmonotonicPoll,
                        [prev, id],
                        format!(
                            "process {} polled {key} up to offset {prev_offset} in op {}, \
                             then op {} started back at offset {}",
                            op.process(),
                            model.index(prev),
                            model.index(id),
                            first.offset
                        ),
                    );
                } else if j - i > 1 {
                    findings.add(
                        Class::PollSkip,
                        [prev, id],
                        format!(
                            "process {} polled {key} up to offset {prev_offset} in op {}, \
                             then op {} started at offset {}, skipping {}",
                            op.process(),
                            model.index(prev),
                            model.index(id),
                            first.offset,
                            skipped(log, i as usize, j as usize)
                        ),
                    );
                }
            }
            state.insert(key, (id, last_here));
        }
    }
}

fn sends_across_operations(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    // Process -> key -> (operation, dense index) of the last placed send there.
    let mut last: HashMap<u64, HashMap<&Key, (OpId, usize)>> = HashMap::new();
    for (id, op) in model.ops.iter().enumerate() {
        if !matches!(op.outcome(), OpType::Ok | OpType::Info) {
            continue;
        }
        let state = last.entry(op.process()).or_default();
        // Key -> (first, last) placed send of this operation.
        let mut here: HashMap<&Key, (usize, usize)> = HashMap::new();
        for (key, value, acked) in op.sends() {
            let Some(index) = model.logs.get(key).and_then(|l| l.send_index(value, acked)) else {
                continue;
            };
            here.entry(key).and_modify(|(_, last)| *last = index).or_insert((index, index));
        }
        let mut keys: Vec<_> = here.into_iter().collect();
        keys.sort();
        for (key, (first, last_here)) in keys {
            if let Some(&(prev, prev_index)) = state.get(key)
                && first <= prev_index
            {
                let log = &model.logs[key];
                findings.add(
                    Class::NonmonotonicSend,
                    [prev, id],
                    format!(
                        "process {} sent to {key} at offset {} in op {}, then op {} sent at offset {}",
                        op.process(),
                        log.offsets[prev_index],
                        model.index(prev),
                        model.index(id),
                        log.offsets[first]
                    ),
                );
            }
            state.insert(key, (id, last_here));
        }
    }
}

fn within_operations(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    for (id, op) in model.ops.iter().enumerate() {
        let rebalanced = &op.completion.unwrap_or(op.invoke).rebalance;
        if op.outcome() == OpType::Ok {
            for (key, records) in op.reads_by_key() {
                if rebalanced.contains(key) {
                    continue;
                }
                let log = &model.logs[key];
                for pair in records.windows(2) {
                    let i = read_index(log, pair[0].offset) as i64;
                    let j = read_index(log, pair[1].offset) as i64;
                    if j - i < 1 {
                        findings.add(
                            Class::IntNonmonotonicPoll,
                            [id],
                            format!(
                                "op {} polled {key} offset {} then offset {}",
                                model.index(id),
                                pair[0].offset,
                                pair[1].offset
                            ),
                        );
                    } else if j - i > 1 {
                        findings.add(
                            Class::IntPollSkip,
                            [id],
                            format!(
                                "op {} polled {key} offset {} then offset {}, skipping {}",
                                model.index(id),
                                pair[0].offset,
                                pair[1].offset,
                                skipped(log, i as usize, j as usize)
                            ),
                        );
                    }
                }
            }
        }
        if matches!(op.outcome(), OpType::Ok | OpType::Info) {
            let mut last: HashMap<&Key, (Val, usize)> = HashMap::new();
            for (key, value, acked) in op.sends() {
                let Some(log) = model.logs.get(key) else {
                    continue;
                };
                let Some(index) = log.send_index(value, acked) else {
                    continue;
                };
                if let Some(&(prev_value, prev_index)) = last.get(key)
                    && index <= prev_index
                {
                    findings.add(
                        Class::IntNonmonotonicSend,
                        [id],
                        format!(
                            "op {} sent {key} value {prev_value} then {value}, \
                             but they landed at offsets {} then {}",
                            model.index(id),
                            log.offsets[prev_index],
                            log.offsets[index]
                        ),
                    );
                }
                last.insert(key, (value, index));
            }
        }
    }
}
