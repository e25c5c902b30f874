//! `pipeline-exactly-once`: every input value a committed `transform` consumed is in
//! exactly one output record.
//!
//! Input keys are the keys `transform` operations poll; output keys are the keys they
//! send to. Input values are unique across all input keys, and every output value is
//! `history::output_value(input, attempt)`, unique per transform attempt, so an output
//! record names the input it came from ([`input_of`]) and the attempt that wrote it.
//! Because attempts never share output values, a crashed attempt is not taken for
//! committed when another attempt's record of the same input is read: the model counts
//! an info transform as committed only when one of its own records was seen.
//!
//! An input value is *due* when a committed transform (ok, or info with one of its own
//! records seen) polled it, or when it sits in the input log at or below the highest
//! offset a committed transform polled on that key: the pipeline's consumer group
//! committed its position past it, so it has been processed for good. Every output
//! record, counted by distinct (key, offset) in the reconstructed output logs (several
//! final polls returning one record count it once), is one processing of its input.
//! Anomalies:
//! - a due input in no output record (consumed but its result lost, or skipped);
//! - an input in more than one output record (processed twice: two committed attempts,
//!   or one record stored twice);
//! - an output record whose input no input record holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::history::{F, Key, Offset, Val, input_of};

use super::model::{Model, OpId};
use super::{Class, Findings};

/// One output record: where it is and the value it holds.
#[derive(Debug, Clone, Copy)]
struct OutputRecord<'h> {
    key: &'h Key,
    offset: Offset,
    value: Val,
}

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

    // Input value -> the output records of it.
    let mut carried: BTreeMap<Val, Vec<OutputRecord<'_>>> = BTreeMap::new();
    for key in &outputs {
        let Some(log) = model.logs.get(*key) else {
            continue;
        };
        for (offset, values) in &log.values_at {
            for value in values {
                let (input, _) = input_of(*value);
                carried.entry(input).or_default().push(OutputRecord {
                    key,
                    offset: *offset,
                    value: *value,
                });
            }
        }
    }

    // The operations that sent or polled these records: never empty, since a record is
    // in a log only because some operation put it there.
    let writers = |records: &[OutputRecord<'_>]| -> Vec<OpId> {
        records
            .iter()
            .flat_map(|r| {
                let touched = model.logs[r.key].touched_by[&(r.offset, r.value)].iter().copied();
                model.writer_of.get(&(r.key, r.value)).copied().into_iter().chain(touched)
            })
            .collect()
    };
    let place = |records: &[OutputRecord<'_>]| -> String {
        let places: Vec<String> = records
            .iter()
            .map(|r| format!("{}@{} (attempt {})", r.key, r.offset, input_of(r.value).1))
            .collect();
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
    for (input, records) in &carried {
        if !input_at.contains_key(input) {
            if records.iter().all(|r| !model.writer_of.contains_key(&(r.key, r.value))) {
                continue; // a read of a value nobody sent: reported as phantom-read
            }
            findings.add(
                Class::PipelineExactlyOnce,
                writers(records),
                format!(
                    "output records {} are of input value {input}, which no input record holds",
                    place(records)
                ),
            );
        } else if records.len() > 1 {
            let mut ops = writers(records);
            ops.extend(due.get(input));
            findings.add(
                Class::PipelineExactlyOnce,
                ops,
                format!(
                    "input value {input} is in {} output records: {}",
                    records.len(),
                    place(records)
                ),
            );
        }
    }
}
