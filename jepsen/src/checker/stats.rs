//! Numbers that describe a run without judging it: operation counts, fault windows,
//! latencies.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::history::{History, OpType, Process};

use super::model::Model;

/// One fault as the nemesis recorded it: from the invocation of `start-X` to the
/// completion of the matching `stop-X` (`end_*` absent when never stopped). A nemesis
/// operation of any other name is a window of its own, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub fault: String,
    pub start_index: u64,
    pub start_ns: u64,
    pub end_index: Option<u64>,
    pub end_ns: Option<u64>,
}

/// Invocation-to-completion latency percentiles (nearest rank), in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub count: usize,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[i - 1]
        };
        let latency = Latency {
            count: samples.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: *samples.last().expect("non-empty"),
        };
        assert!(latency.p50 <= latency.p95 && latency.p95 <= latency.p99);
        assert!(latency.p99 <= latency.max);
        Some(latency)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// History records (lines).
    pub records: usize,
    /// Client operations (invocations).
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Keys with a reconstructed log.
    pub keys: usize,
    pub final_polls: usize,
    pub faults: Vec<FaultWindow>,
    /// Over all ok client operations.
    pub latency_ns: Option<Latency>,
    /// Per operation `f`, over its ok operations.
    pub latency_ns_by_f: BTreeMap<String, Latency>,
    /// Caveats about what could not be checked.
    pub notes: Vec<String>,
}

pub(crate) fn compute(history: &History, model: &Model<'_>) -> Stats {
    let mut stats = Stats {
        records: history.ops.len(),
        ops: model.ops.len(),
        keys: model.logs.len(),
        faults: fault_windows(history),
        ..Stats::default()
    };
    let mut all = Vec::new();
    let mut by_f: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for op in &model.ops {
        match op.outcome() {
            OpType::Ok => stats.ok += 1,
            OpType::Fail => stats.fail += 1,
            OpType::Info | OpType::Invoke => stats.info += 1,
        }
        if *op.f() == crate::history::F::FinalPoll {
            stats.final_polls += 1;
        }
        if op.outcome() == OpType::Ok
            && let Some(ns) = op.latency_ns()
        {
            all.push(ns);
            by_f.entry(op.f().to_string()).or_default().push(ns);
        }
    }
    stats.latency_ns = Latency::of(all);
    stats.latency_ns_by_f =
        by_f.into_iter().filter_map(|(f, samples)| Some((f, Latency::of(samples)?))).collect();
    if !model.has_final_polls {
        stats.notes.push(
            "no final-poll operations: unseen compares acknowledged writes with all polls"
                .to_string(),
        );
    }
    if model.ambiguous_writes > 0 {
        stats.notes.push(format!(
            "{} (key, value) pairs were sent by more than one operation; values must be unique per key",
            model.ambiguous_writes
        ));
    }
    stats
}

fn fault_windows(history: &History) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    // Fault name -> its window still waiting for a stop completion.
    let mut open: HashMap<String, usize> = HashMap::new();
    // Other nemesis operations: the window waiting for its completion.
    let mut pending_other: Option<usize> = None;
    for op in &history.ops {
        if op.process != Process::Nemesis {
            continue;
        }
        let name = op.f.name();
        if let Some(fault) = name.strip_prefix("start-") {
            if op.kind == OpType::Invoke && !open.contains_key(fault) {
                open.insert(fault.to_string(), windows.len());
                windows.push(FaultWindow {
                    fault: fault.to_string(),
                    start_index: op.index,
                    start_ns: op.time_ns,
                    end_index: None,
                    end_ns: None,
                });
            }
        } else if let Some(fault) = name.strip_prefix("stop-") {
            if let Some(&w) = open.get(fault) {
                windows[w].end_index = Some(op.index);
                windows[w].end_ns = Some(op.time_ns);
                if op.kind != OpType::Invoke {
                    open.remove(fault);
                }
            }
        } else if op.kind == OpType::Invoke {
            pending_other = Some(windows.len());
            windows.push(FaultWindow {
                fault: name.to_string(),
                start_index: op.index,
                start_ns: op.time_ns,
                end_index: None,
                end_ns: None,
            });
        } else if let Some(w) = pending_other.take() {
            windows[w].end_index = Some(op.index);
            windows[w].end_ns = Some(op.time_ns);
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::Latency;

    // Proves percentiles are nearest-rank over the samples, whatever their order.
    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::of(samples).unwrap();
        assert_eq!((l.count, l.p50, l.p95, l.p99, l.max), (100, 50, 95, 99, 100));
        let one = Latency::of(vec![7]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (7, 7, 7));
        assert!(Latency::of(Vec::new()).is_none());
    }
}
