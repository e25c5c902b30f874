//! Checks on the reconstructed logs themselves.
//!
//! - `inconsistent-offsets`: two sends or polls disagree on the value at one offset of
//!   a key. A partition is one totally ordered log, so each offset holds one record.
//! - `duplicate`: one value sits at two offsets of a key. Values are unique per key, so
//!   the second copy is a retry the partition failed to drop.

use std::collections::BTreeSet;

use super::model::{Model, OpId};
use super::{Class, Findings};

pub(crate) fn check(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    for (key, log) in &model.logs {
        for (offset, values) in &log.values_at {
            if values.len() < 2 {
                continue;
            }
            let ops: BTreeSet<OpId> = values
                .iter()
                .flat_map(|v| log.touched_by[&(*offset, *v)].iter().copied())
                .collect();
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            findings.add(
                Class::InconsistentOffsets,
                ops,
                format!(
                    "{key} offset {offset} holds different values {{{}}} in different sends/polls",
                    values.join(", ")
                ),
            );
        }

        let mut duplicated: Vec<_> =
            log.offsets_of.iter().filter(|(_, offsets)| offsets.len() > 1).collect();
        duplicated.sort();
        for (value, offsets) in duplicated {
            let ops: BTreeSet<OpId> = offsets
                .iter()
                .flat_map(|o| log.touched_by[&(*o, *value)].iter().copied())
                .chain(model.writer_of.get(&(*key, *value)).copied())
                .collect();
            let offsets: Vec<String> = offsets.iter().map(|o| o.to_string()).collect();
            findings.add(
                Class::Duplicate,
                ops,
                format!(
                    "{key} value {value} appears at {} offsets: {}",
                    offsets.len(),
                    offsets.join(", ")
                ),
            );
        }
    }
}
