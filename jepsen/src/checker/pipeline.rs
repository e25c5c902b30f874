//! `pipeline-exactly-once`: every input value a committed `transform` consumed is in
//! exactly one output record.
//!
//! Input keys are the keys `transform` operations poll; output keys are the keys they
//! send to. The transform is the identity on values, and input values are unique across
//! all input keys, so an output record names the input it came from.
//!
//! An input value is *due* when a committed transform (ok, or info with a write seen)
//! polled it, or when it sits in the input log at or below the highest offset a
//! committed transform polled on that key: the pipeline's consumer group committed its
//! position past it, so it has been processed for good. Output records are counted by
//! distinct (key, offset) in the reconstructed output logs, so several final polls
//! returning one record count it once. Anomalies:
//! - a due value in no output record (consumed but its result lost, or skipped);
//! - a value in more than one output record (processed twice);
//! - an output record whose value no input record holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::history::{F, Key, Offset, Val};

use super::model::{Model, OpId};
use super::{Class, Findings};

pub(crate) fn check(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    let transforms: Vec<OpId> =
        (0..model.ops.len()).filter(|&id| *model.ops[id].f() == F::Transform).collect();
    if transforms.is_empty() {
        return;
    }
    let mut inputs: BTreeSet<&Key> = BTreeSet::new();
    let mut outputs: BTreeSet<&Key> = BTreeSet::new();
    for &id in &transforms {
        inputs.extend(model.ops[id].reads().map(|(key, _)| key));
        outputs.extend(model.ops[id].sends().map(|(key, _, _)| key));
    }

    // Input value -> where it sits in the input logs.
    let mut input_at: HashMap<Val, (&Key, Offset)> = HashMap::new();
    for key in &inputs {
        let Some(log) = model.logs.get(*key) else {
            continue;
        };
        for (value, offsets) in &log.offsets_of {
            input_at.insert(*value, (*key, offsets[0]));
        }
    }

    // Due values, each with an operation that makes it due.
    let mut due: BTreeMap<Val, OpId> = BTreeMap::new();
    let mut consumed_max: HashMap<&Key, (Offset, OpId)> = HashMap::new();
    for &id in &transforms {
        if !model.committed[id] {
            continue;
        }
        for (key, record) in model.ops[id].reads() {
            due.entry(record.value).or_insert(id);
            let entry = consumed_max.entry(key).or_insert((record.offset, id));
            if record.offset > entry.0 {
                *entry = (record.offset, id);
            }
        }
    }
    for (key, (bound, id)) in &consumed_max {
        let log = &model.logs[*key];
        for (_, values) in log.values_at.range(..=*bound) {
            for value in values {
                due.entry(*value).or_insert(*id);
            }
        }
    }

    // Input value -> output records (key, offset) carrying it.
    let mut carried: BTreeMap<Val, Vec<(&Key, Offset)>> = BTreeMap::new();
    for key in &outputs {
        let Some(log) = model.logs.get(*key) else {
            continue;
        };
        for (offset, values) in &log.values_at {
            for value in values {
                carried.entry(*value).or_default().push((*key, *offset));
            }
        }
    }

    // The operations that sent or polled these records: never empty, since a record is
    // in a log only because some operation put it there.
    let writers = |value: Val, records: &[(&Key, Offset)]| -> Vec<OpId> {
        records
            .iter()
            .flat_map(|(key, offset)| {
                let touched = model.logs[*key].touched_by[&(*offset, value)].iter().copied();
                model.writer_of.get(&(*key, value)).copied().into_iter().chain(touched)
            })
            .collect()
    };
    let place = |records: &[(&Key, Offset)]| -> String {
        let places: Vec<String> = records.iter().map(|(k, o)| format!("{k}@{o}")).collect();
        places.join(", ")
    };

    for (value, &id) in &due {
        if carried.contains_key(value) {
            continue;
        }
        let from = input_at.get(value).map_or_else(String::new, |(k, o)| format!(" ({k}@{o})"));
        findings.add(
            Class::PipelineExactlyOnce,
            [id],
            format!(
                "input value {value}{from} was consumed (op {} committed past it) but is in no output record",
                model.index(id)
            ),
        );
    }
    for (value, records) in &carried {
        if !input_at.contains_key(value) {
            if records.iter().all(|(key, _)| !model.writer_of.contains_key(&(*key, *value))) {
                continue; // a read of a value nobody sent: reported as phantom-read
            }
            findings.add(
                Class::PipelineExactlyOnce,
                writers(*value, records),
                format!(
                    "output records {} carry value {value}, which no input record holds",
                    place(records)
                ),
            );
        } else if records.len() > 1 {
            let mut ops = writers(*value, records);
            ops.extend(due.get(value));
            findings.add(
                Class::PipelineExactlyOnce,
                ops,
                format!(
                    "input value {value} is in {} output records: {}",
                    records.len(),
                    place(records)
                ),
            );
        }
    }
}
