//! The checker: reads a [`History`] and reports every anomaly Jepsen's Kafka workload
//! knows, each with the operations that show it and a sentence saying why.
//!
//! Layout:
//! - `model`: the shared indexes: writers and readers of each value, which writers
//!   must have committed, each key's log rebuilt from sends and polls.
//! - `offsets`: the log itself disagrees: `inconsistent-offsets`, `duplicate`.
//! - `visibility`: what readers saw against what committed: `aborted-read` (G1a),
//!   `phantom-read`, `precommitted-read`, `lost-write`, `unseen`, `torn-transaction`.
//! - `order`: the order a consumer or producer saw: `nonmonotonic-poll`, `poll-skip`,
//!   `nonmonotonic-send` and the in-transaction `int-*` variants.
//! - `cycles`: `g1c`, circular information flow between transactions.
//! - `pipeline`: `pipeline-exactly-once` for consume-transform-produce.
//! - `stats`: fault windows and latencies, which decide nothing.
//!
//! A history is valid when every class is empty. Nothing here knows about a cluster.

mod cycles;
mod model;
mod offsets;
mod order;
mod pipeline;
mod stats;
mod visibility;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::{History, HistoryError};
use model::{Model, OpId};
pub use stats::{FaultWindow, Latency, Stats};

/// How many anomalies of one class are kept with their details; the count is always
/// complete. A broken run can produce one per record, and results.json must stay
/// readable.
pub const ANOMALIES_PER_CLASS_MAX: usize = 1000;

/// The anomaly classes, named in kebab-case in results.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    LostWrite,
    Duplicate,
    InconsistentOffsets,
    AbortedRead,
    PhantomRead,
    PrecommittedRead,
    TornTransaction,
    NonmonotonicPoll,
    PollSkip,
    NonmonotonicSend,
    IntPollSkip,
    IntNonmonotonicPoll,
    IntNonmonotonicSend,
    Unseen,
    G1c,
    PipelineExactlyOnce,
}

impl Class {
    pub const ALL: [Class; 16] = [
        Class::LostWrite,
        Class::Duplicate,
        Class::InconsistentOffsets,
        Class::AbortedRead,
        Class::PhantomRead,
        Class::PrecommittedRead,
        Class::TornTransaction,
        Class::NonmonotonicPoll,
        Class::PollSkip,
        Class::NonmonotonicSend,
        Class::IntPollSkip,
        Class::IntNonmonotonicPoll,
        Class::IntNonmonotonicSend,
        Class::Unseen,
        Class::G1c,
        Class::PipelineExactlyOnce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::LostWrite => "lost-write",
            Class::Duplicate => "duplicate",
            Class::InconsistentOffsets => "inconsistent-offsets",
            Class::AbortedRead => "aborted-read",
            Class::PhantomRead => "phantom-read",
            Class::PrecommittedRead => "precommitted-read",
            Class::TornTransaction => "torn-transaction",
            Class::NonmonotonicPoll => "nonmonotonic-poll",
            Class::PollSkip => "poll-skip",
            Class::NonmonotonicSend => "nonmonotonic-send",
            Class::IntPollSkip => "int-poll-skip",
            Class::IntNonmonotonicPoll => "int-nonmonotonic-poll",
            Class::IntNonmonotonicSend => "int-nonmonotonic-send",
            Class::Unseen => "unseen",
            Class::G1c => "g1c",
            Class::PipelineExactlyOnce => "pipeline-exactly-once",
        }
    }

    /// One line on what the class means, for the printed summary.
    pub fn meaning(self) -> &'static str {
        match self {
            Class::LostWrite => "a committed write below what readers read past, read by none",
            Class::Duplicate => "one value at more than one offset of a key",
            Class::InconsistentOffsets => "one offset of a key holding different values",
            Class::AbortedRead => "G1a: a poll saw a value of a failed (aborted) transaction",
            Class::PhantomRead => "a poll saw a value no operation ever sent",
            Class::PrecommittedRead => "a transaction saw its own uncommitted write",
            Class::TornTransaction => "some but not all of a committed transaction's writes",
            Class::NonmonotonicPoll => "a consumer's next poll went back (or repeated)",
            Class::PollSkip => "a consumer's next poll skipped records in the log",
            Class::NonmonotonicSend => "a producer's next send landed before its previous one",
            Class::IntPollSkip => "records skipped inside one transaction's polls",
            Class::IntNonmonotonicPoll => "polls going back inside one transaction",
            Class::IntNonmonotonicSend => "sends out of order inside one transaction",
            Class::Unseen => "a committed write missing from the final polls",
            Class::G1c => "circular information flow between committed transactions",
            Class::PipelineExactlyOnce => "an input not in exactly one pipeline output",
        }
    }
}

/// One occurrence of an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Indexes of the operations that show it (completion records), ascending.
    pub ops: Vec<u64>,
    pub explanation: String,
}

/// The checker's verdict, written as results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub valid: bool,
    /// Every class, 0 when none.
    #[serde(rename = "anomaly_counts")]
    pub counts: BTreeMap<String, usize>,
    /// Details, at most [`ANOMALIES_PER_CLASS_MAX`] per class; classes with none are
    /// left out.
    pub anomalies: BTreeMap<String, Vec<Anomaly>>,
    #[serde(flatten)]
    pub stats: Stats,
}

impl CheckResult {
    /// The anomalies of one class (empty when none).
    pub fn of(&self, class: Class) -> &[Anomaly] {
        self.anomalies.get(class.name()).map_or(&[], |anomalies| anomalies.as_slice())
    }

    pub fn count(&self, class: Class) -> usize {
        self.counts.get(class.name()).copied().unwrap_or(0)
    }

    /// The classes with at least one anomaly.
    pub fn classes_found(&self) -> Vec<Class> {
        Class::ALL.into_iter().filter(|class| self.count(*class) > 0).collect()
    }

    /// A human summary: verdict, counts, the first few anomalies of each class.
    pub fn summary(&self) -> String {
        const EXAMPLES_PER_CLASS: usize = 3;
        let mut out = String::new();
        let s = &self.stats;
        let _ = writeln!(
            out,
            "{} client operations ({} ok, {} fail, {} info) over {} keys, {} history records",
            s.ops, s.ok, s.fail, s.info, s.keys, s.records
        );
        if let Some(l) = &s.latency_ns {
            let _ = writeln!(
                out,
                "latency of ok operations: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50 as f64 / 1e6,
                l.p95 as f64 / 1e6,
                l.p99 as f64 / 1e6,
                l.max as f64 / 1e6
            );
        }
        let _ = writeln!(out, "{} fault windows", s.faults.len());
        for note in &s.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for class in Class::ALL {
            let count = self.count(class);
            if count == 0 {
                continue;
            }
            let _ = writeln!(out, "{}: {count} ({})", class.name(), class.meaning());
            for anomaly in self.of(class).iter().take(EXAMPLES_PER_CLASS) {
                let _ = writeln!(out, "  ops {:?}: {}", anomaly.ops, anomaly.explanation);
            }
        }
        let _ = writeln!(out, "{}", if self.valid { "VALID: no anomalies" } else { "INVALID" });
        out
    }
}

/// Collects anomalies while the checks run.
pub(crate) struct Findings<'m, 'h> {
    model: &'m Model<'h>,
    counts: BTreeMap<Class, usize>,
    anomalies: BTreeMap<Class, Vec<Anomaly>>,
}

impl<'m, 'h> Findings<'m, 'h> {
    fn new(model: &'m Model<'h>) -> Self {
        Findings { model, counts: BTreeMap::new(), anomalies: BTreeMap::new() }
    }

    /// Records one anomaly shown by the given operations.
    pub fn add(&mut self, class: Class, ops: impl IntoIterator<Item = OpId>, explanation: String) {
        let ops: BTreeSet<u64> = ops.into_iter().map(|id| self.model.index(id)).collect();
        assert!(!ops.is_empty(), "an anomaly names the operations showing it");
        let count = self.counts.entry(class).or_default();
        *count += 1;
        if *count <= ANOMALIES_PER_CLASS_MAX {
            self.anomalies
                .entry(class)
                .or_default()
                .push(Anomaly { ops: ops.into_iter().collect(), explanation });
        }
    }
}

/// Checks a history. Fails only when the history is malformed.
pub fn check(history: &History) -> Result<CheckResult, HistoryError> {
    let model = Model::build(history)?;
    let mut findings = Findings::new(&model);
    offsets::check(&model, &mut findings);
    visibility::check(&model, &mut findings);
    order::check(&model, &mut findings);
    cycles::check(&model, &mut findings);
    pipeline::check(&model, &mut findings);

    let counts: BTreeMap<String, usize> = Class::ALL
        .into_iter()
        .map(|class| (class.name().to_string(), findings.counts.get(&class).copied().unwrap_or(0)))
        .collect();
    let anomalies = findings
        .anomalies
        .into_iter()
        .map(|(class, list)| (class.name().to_string(), list))
        .collect();
    let valid = counts.values().all(|&n| n == 0);
    assert_eq!(counts.len(), Class::ALL.len(), "every class is reported");
    Ok(CheckResult { valid, counts, anomalies, stats: stats::compute(history, &model) })
}
