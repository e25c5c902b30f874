//! What the checks share: the client operations, who wrote and who read each value,
//! which writers must have committed, and each key's reconstructed log.
//!
//! The log of a key is rebuilt the way Jepsen's Kafka checker does it: every offset any
//! poll returned (from ok, info and failed operations alike, since a read-committed
//! poll must return only committed data whatever becomes of its own transaction), plus
//! every send whose offset is known from a writer that must have committed. Offsets may
//! be sparse (transaction markers and aborted records take offsets nobody sees), so the
//! checks that ask "is this the next record" use the *dense index*: the rank of an
//! offset among the offsets that hold a known value.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::history::{F, History, HistoryError, Key, Offset, OpType, Operation, Val};

/// Position of an operation in [`Model::ops`].
pub(crate) type OpId = usize;

/// One key's log as reconstructed from sends and polls.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// Every value seen or acknowledged at each offset: more than one is an
    /// inconsistent offset.
    pub values_at: BTreeMap<Offset, BTreeSet<Val>>,
    /// Offset -> dense index (rank among offsets holding a value).
    pub dense: HashMap<Offset, usize>,
    /// Dense index -> offset.
    pub offsets: Vec<Offset>,
    /// Every offset a value was seen at, ascending: more than one is a duplicate.
    pub offsets_of: HashMap<Val, Vec<Offset>>,
    /// The operations that put each (offset, value) into the log, for explanations.
    pub touched_by: HashMap<(Offset, Val), BTreeSet<OpId>>,
}

impl Log {
    fn add(&mut self, offset: Offset, value: Val, op: OpId) {
        self.values_at.entry(offset).or_default().insert(value);
        self.touched_by.entry((offset, value)).or_default().insert(op);
    }

    fn finish(&mut self) {
        self.offsets = self.values_at.keys().copied().collect();
        self.dense = self.offsets.iter().enumerate().map(|(i, o)| (*o, i)).collect();
        for (offset, values) in &self.values_at {
            for value in values {
                self.offsets_of.entry(*value).or_default().push(*offset);
            }
        }
        debug_assert!(self.offsets_of.values().all(|os| os.is_sorted()));
    }

    /// Dense index of the first offset holding `value`.
    pub fn first_index(&self, value: Val) -> Option<usize> {
        let offset = self.offsets_of.get(&value)?.first()?;
        Some(self.dense[offset])
    }

    /// Dense index of the last offset holding `value`.
    pub fn last_index(&self, value: Val) -> Option<usize> {
        let offset = self.offsets_of.get(&value)?.last()?;
        Some(self.dense[offset])
    }

    /// The values at a dense index.
    pub fn values_at_index(&self, index: usize) -> &BTreeSet<Val> {
        &self.values_at[&self.offsets[index]]
    }

    /// Where a send landed: its acknowledged offset, else the last offset its value was
    /// seen at.
    pub fn send_offset(&self, value: Val, acked: Option<Offset>) -> Option<Offset> {
        acked.or_else(|| self.offsets_of.get(&value)?.last().copied())
    }

    /// Dense index of a send, as [`Log::send_offset`] places it.
    pub fn send_index(&self, value: Val, acked: Option<Offset>) -> Option<usize> {
        let offset = self.send_offset(value, acked)?;
        self.dense.get(&offset).copied()
    }
}

/// How sure an outcome is that the operation's writes happened.
fn outcome_rank(outcome: OpType) -> u8 {
    match outcome {
        OpType::Ok => 2,
        OpType::Info | OpType::Invoke => 1,
        OpType::Fail => 0,
    }
}

/// The indexes every check reads.
pub(crate) struct Model<'h> {
    /// Client operations in invocation order.
    pub ops: Vec<Operation<'h>>,
    /// The operation that sent each (key, value).
    pub writer_of: HashMap<(&'h Key, Val), OpId>,
    /// The ok operations that polled each (key, value).
    pub readers_of: HashMap<(&'h Key, Val), Vec<OpId>>,
    /// Per operation: it committed (ok), or it is info and an ok poll saw one of its
    /// writes. Only these writers' acknowledged offsets enter the logs.
    pub committed: Vec<bool>,
    pub logs: BTreeMap<&'h Key, Log>,
    /// Whether the history has a read-back phase (`final-poll` operations).
    pub has_final_polls: bool,
    /// (key, value) pairs that ok final polls returned.
    pub final_reads: HashSet<(&'h Key, Val)>,
    /// Keys some ok final poll returned records of.
    pub final_keys: HashSet<&'h Key>,
    /// (key, value) pairs sent by more than one operation: the workload broke the
    /// unique-values rule, so conclusions about them are unsafe.
    pub ambiguous_writes: usize,
}

impl<'h> Model<'h> {
    pub fn build(history: &'h History) -> Result<Model<'h>, HistoryError> {
        let ops = history.operations()?;
        let mut writer_of: HashMap<(&Key, Val), OpId> = HashMap::new();
        let mut ambiguous_writes = 0;
        let mut readers_of: HashMap<(&Key, Val), Vec<OpId>> = HashMap::new();
        let mut final_reads = HashSet::new();
        let mut final_keys = HashSet::new();
        let mut has_final_polls = false;
        for (id, op) in ops.iter().enumerate() {
            for (key, value, _) in op.sends() {
                match writer_of.entry((key, value)) {
                    Entry::Vacant(slot) => {
                        slot.insert(id);
                    }
                    Entry::Occupied(mut slot) => {
                        // The workload broke the unique-values rule (pipeline attempts
                        // too write unique values: `history::output_value`). The surest
                        // writer stands for the value, so a read of it is never blamed
                        // on a failed operation.
                        ambiguous_writes += 1;
                        let other = &ops[*slot.get()];
                        if outcome_rank(op.outcome()) > outcome_rank(other.outcome()) {
                            slot.insert(id);
                        }
                    }
                }
            }
            has_final_polls |= *op.f() == F::FinalPoll;
            if op.outcome() != OpType::Ok {
                continue;
            }
            for (key, record) in op.reads() {
                let readers = readers_of.entry((key, record.value)).or_default();
                if readers.last() != Some(&id) {
                    readers.push(id);
                }
                if *op.f() == F::FinalPoll {
                    final_reads.insert((key, record.value));
                    final_keys.insert(key);
                }
            }
        }

        let committed: Vec<bool> = ops
            .iter()
            .enumerate()
            .map(|(id, op)| match op.outcome() {
                OpType::Ok => true,
                OpType::Info => op.sends().any(|(key, value, _)| {
                    readers_of
                        .get(&(key, value))
                        .is_some_and(|readers| readers.iter().any(|&r| r != id))
                }),
                OpType::Fail | OpType::Invoke => false,
            })
            .collect();

        let mut logs: BTreeMap<&Key, Log> = BTreeMap::new();
        for (id, op) in ops.iter().enumerate() {
            if committed[id] {
                for (key, value, offset) in op.sends() {
                    if let Some(offset) = offset {
                        logs.entry(key).or_default().add(offset, value, id);
                    }
                }
            }
            if op.completion.is_some() {
                for (key, record) in op.reads() {
                    logs.entry(key).or_default().add(record.offset, record.value, id);
                }
            }
        }
        for log in logs.values_mut() {
            log.finish();
        }

        Ok(Model {
            ops,
            writer_of,
            readers_of,
            committed,
            logs,
            has_final_polls,
            final_reads,
            final_keys,
            ambiguous_writes,
        })
    }

    /// The index naming an operation in reports.
    pub fn index(&self, id: OpId) -> u64 {
        self.ops[id].index()
    }

    pub fn is_ok(&self, id: OpId) -> bool {
        self.ops[id].outcome() == OpType::Ok
    }

    /// Whether an ok operation polled (key, value).
    pub fn was_read(&self, key: &Key, value: Val) -> bool {
        self.readers_of.contains_key(&(key, value))
    }
}
