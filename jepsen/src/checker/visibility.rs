//! What readers saw, against what was committed.
//!
//! - `aborted-read` (G1a): an ok poll returned a value whose transaction failed. A
//!   failed transaction was aborted; read-committed consumers never return its records.
//! - `phantom-read`: a poll returned a value no operation ever sent.
//! - `precommitted-read`: a transaction polled its own write, or polled a key past the
//!   offset of its own write there. Its write holds the last stable offset at or below
//!   that offset until it commits, so neither can happen under read-committed.
//! - `lost-write`: per key, take the highest position any ok poll read; a value of a
//!   committed writer (ok, or info with some write seen) that sits wholly below it in
//!   the log but that no ok poll returned was lost. One anomaly per value.
//! - `unseen`: a committed write that the read-back phase never returned (with no
//!   `final-poll`s in the history: an ok write no ok poll returned), not already
//!   reported as lost or torn. One anomaly per value.
//! - `torn-transaction`: a committed transaction whose writes were not all-or-nothing:
//!   (a) one reader's polls covered the offsets of all its writes (each lies between
//!   the first and last offset that reader polled on the key) yet it saw only some; or
//!   (b) an info transaction, which must be all-or-nothing, partly seen: some writes
//!   polled, another on a key the read-back phase (or, without one, a poll invoked after
//!   it completed) read but never returned.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::history::{Key, Offset, OpType, Val};

use super::model::{Model, OpId};
use super::{Class, Findings};

pub(crate) fn check(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    aborted_and_phantom_reads(model, findings);
    precommitted_reads(model, findings);
    torn_by_reader(model, findings);
    let torn = torn_info(model, findings);
    let lost = lost_writes(model, findings);
    unseen(model, findings, &lost, &torn);
}

/// " (and N more)", or nothing when N is 0.
fn more(n: usize) -> String {
    if n == 0 { String::new() } else { format!(" (and {n} more)") }
}

fn aborted_and_phantom_reads(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    for (reader, op) in model.ops.iter().enumerate() {
        if op.completion.is_none() {
            continue;
        }
        // Aborted writer -> values of it read; grouped so one reader and one writer make
        // one anomaly.
        let mut aborted: BTreeMap<OpId, Vec<(&Key, Offset, Val)>> = BTreeMap::new();
        let mut phantoms: Vec<(&Key, Offset, Val)> = Vec::new();
        for (key, record) in op.reads() {
            match model.writer_of.get(&(key, record.value)) {
                None => phantoms.push((key, record.offset, record.value)),
                Some(&writer)
                    if op.outcome() == OpType::Ok
                        && model.ops[writer].outcome() == OpType::Fail =>
                {
                    aborted.entry(writer).or_default().push((key, record.offset, record.value));
                }
                Some(_) => {}
            }
        }
        for (writer, values) in aborted {
            let (key, offset, value) = values[0];
            findings.add(
                Class::AbortedRead,
                [writer, reader],
                format!(
                    "op {} polled {key} offset {offset} value {value}{} sent by op {}, which failed",
                    model.index(reader),
                    more(values.len() - 1),
                    model.index(writer)
                ),
            );
        }
        if let Some(&(key, offset, value)) = phantoms.first() {
            findings.add(
                Class::PhantomRead,
                [reader],
                format!(
                    "op {} polled {key} offset {offset} value {value}{} that no operation sent",
                    model.index(reader),
                    more(phantoms.len() - 1)
                ),
            );
        }
    }
}

fn precommitted_reads(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    for (id, op) in model.ops.iter().enumerate() {
        let mut own: HashMap<&Key, Vec<(Val, Option<Offset>)>> = HashMap::new();
        for (key, value, offset) in op.sends() {
            own.entry(key).or_default().push((value, offset));
        }
        if own.is_empty() {
            continue;
        }
        let evidence = op.reads().find_map(|(key, record)| {
            let sends = own.get(key)?;
            if sends.iter().any(|(v, _)| *v == record.value) {
                return Some(format!(
                    "op {} polled its own write {key} value {} at offset {} before committing",
                    model.index(id),
                    record.value,
                    record.offset
                ));
            }
            let (value, offset) = sends
                .iter()
                .filter_map(|(v, o)| Some((*v, (*o)?)))
                .find(|(_, o)| *o <= record.offset)?;
            Some(format!(
                "op {} polled {key} up to offset {}, past its own uncommitted write of {value} at offset {offset}",
                model.index(id),
                record.offset
            ))
        });
        if let Some(explanation) = evidence {
            findings.add(Class::PrecommittedRead, [id], explanation);
        }
    }
}

/// Returns the (key, value) pairs reported lost, so `unseen` does not repeat them.
fn lost_writes<'h>(model: &Model<'h>, findings: &mut Findings<'_, '_>) -> HashSet<(&'h Key, Val)> {
    let mut lost = HashSet::new();
    for (key, log) in &model.logs {
        // The highest first position of any value an ok poll returned, and its reader.
        let mut bound: Option<(usize, Val)> = None;
        for value in log.offsets_of.keys() {
            if model.was_read(key, *value) {
                let index = log.first_index(*value).expect("values in the log have offsets");
                if bound.is_none_or(|(b, _)| index > b) {
                    bound = Some((index, *value));
                }
            }
        }
        let Some((bound, value_max)) = bound else {
            continue;
        };
        let reader_max = model.readers_of[&(*key, value_max)][0];
        for index in 0..=bound {
            for value in log.values_at_index(index) {
                // Each value once, at its last position; later positions lie above bound.
                if log.last_index(*value) != Some(index) || model.was_read(key, *value) {
                    continue;
                }
                let Some(&writer) = model.writer_of.get(&(*key, *value)) else {
                    continue;
                };
                if !model.committed[writer] {
                    continue;
                }
                lost.insert((*key, *value));
                findings.add(
                    Class::LostWrite,
                    [writer, reader_max],
                    format!(
                        "{key} value {value} at offset {} from committed op {} was never polled, \
                         though op {} polled up to offset {} (value {value_max})",
                        log.offsets[index],
                        model.index(writer),
                        model.index(reader_max),
                        log.offsets[bound]
                    ),
                );
            }
        }
    }
    lost
}

fn unseen(
    model: &Model<'_>,
    findings: &mut Findings<'_, '_>,
    lost: &HashSet<(&Key, Val)>,
    torn: &HashSet<(&Key, Val)>,
) {
    for (id, op) in model.ops.iter().enumerate() {
        // Without a read-back phase, only an acknowledged write is expected to be read.
        let expected = model.is_ok(id) || (model.committed[id] && model.has_final_polls);
        if !expected {
            continue;
        }
        for (key, value, offset) in op.sends() {
            let seen = if model.has_final_polls {
                model.final_reads.contains(&(key, value))
            } else {
                model.was_read(key, value)
            };
            if seen || lost.contains(&(key, value)) || torn.contains(&(key, value)) {
                continue;
            }
            let at = offset.map_or_else(|| "unknown offset".to_string(), |o| format!("offset {o}"));
            let by = if model.has_final_polls { "the final polls" } else { "any ok poll" };
            findings.add(
                Class::Unseen,
                [id],
                format!(
                    "{key} value {value} ({at}) committed by op {} was never returned by {by}",
                    model.index(id)
                ),
            );
        }
    }
}

/// Form (a): one reader covered all of a committed transaction's writes, saw some.
fn torn_by_reader(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    for (reader, op) in model.ops.iter().enumerate() {
        if !model.is_ok(reader) {
            continue;
        }
        let by_key = op.reads_by_key();
        let ranges: HashMap<&Key, (Offset, Offset)> = by_key
            .iter()
            .map(|(key, records)| {
                let lo = records.iter().map(|r| r.offset).min().expect("non-empty");
                let hi = records.iter().map(|r| r.offset).max().expect("non-empty");
                (*key, (lo, hi))
            })
            .collect();
        let read: HashSet<(&Key, Val)> = op.reads().map(|(k, r)| (k, r.value)).collect();
        let writers: BTreeSet<OpId> = read
            .iter()
            .filter_map(|kv| model.writer_of.get(kv).copied())
            .filter(|&w| w != reader && model.committed[w] && model.ops[w].sends().nth(1).is_some())
            .collect();
        for writer in writers {
            let mut missing = Vec::new();
            let mut total = 0;
            let covered_all = model.ops[writer].sends().all(|(key, value, acked)| {
                total += 1;
                let Some(offset) = model.logs.get(key).and_then(|l| l.send_offset(value, acked))
                else {
                    return false;
                };
                let Some(&(lo, hi)) = ranges.get(key) else {
                    return false;
                };
                if !read.contains(&(key, value)) {
                    missing.push((key, value, offset));
                }
                lo <= offset && offset <= hi
            });
            if !covered_all || missing.is_empty() {
                continue;
            }
            let (key, value, offset) = missing[0];
            findings.add(
                Class::TornTransaction,
                [writer, reader],
                format!(
                    "op {} polled across all {total} writes of committed op {} but saw only {}; \
                     missing e.g. {key} value {value} at offset {offset}",
                    model.index(reader),
                    model.index(writer),
                    total - missing.len()
                ),
            );
        }
    }
}

/// Form (b): an info transaction partly seen. Returns the writes it reports.
fn torn_info<'h>(model: &Model<'h>, findings: &mut Findings<'_, '_>) -> HashSet<(&'h Key, Val)> {
    // Without a read-back phase: per key, the latest invocation of an ok poll of it.
    let mut read_invoked_last: HashMap<&Key, u64> = HashMap::new();
    for (id, op) in model.ops.iter().enumerate() {
        if model.is_ok(id) {
            for (key, _) in op.reads() {
                let t = read_invoked_last.entry(key).or_default();
                *t = (*t).max(op.invoke.time_ns);
            }
        }
    }
    let mut torn = HashSet::new();
    for (id, op) in model.ops.iter().enumerate() {
        if op.outcome() != OpType::Info || !model.committed[id] {
            continue;
        }
        let mut seen_by = None;
        let mut missing = Vec::new();
        for (key, value, _) in op.sends() {
            match model.readers_of.get(&(key, value)) {
                Some(readers) => seen_by = seen_by.or(Some((key, value, readers[0]))),
                None => {
                    let checked = if model.has_final_polls {
                        model.final_keys.contains(key)
                    } else {
                        op.completion.is_some_and(|c| {
                            read_invoked_last.get(key).is_some_and(|&t| t > c.time_ns)
                        })
                    };
                    if checked {
                        missing.push((key, value));
                    }
                }
            }
        }
        let Some((seen_key, seen_value, reader)) = seen_by else {
            continue;
        };
        if missing.is_empty() {
            continue;
        }
        torn.extend(missing.iter().copied());
        let (key, value) = missing[0];
        findings.add(
            Class::TornTransaction,
            [id, reader],
            format!(
                "info op {} is partly visible: op {} polled its {seen_key} value {seen_value}, \
                 but its {key} value {value}{} was never polled though later polls read {key}",
                model.index(id),
                model.index(reader),
                more(missing.len() - 1)
            ),
        );
    }
    torn
}
