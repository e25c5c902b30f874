//! The history: every client operation and every fault, in the order the runner
//! saw them, one JSON object per line (`history.jsonl`).
//!
//! # Records
//!
//! ```text
//! {"index": 12, "time_ns": 48210033, "process": 3, "type": "invoke", "f": "txn",
//!  "value": [["send", "t0/1", 17], ["poll"]]}
//! {"index": 13, "time_ns": 51002871, "process": 3, "type": "ok", "f": "txn",
//!  "value": [["send", "t0/1", [40, 17]], ["poll", {"t0/2": [[7, 3], [9, 4]]}]]}
//! ```
//!
//! - `index`: strictly increasing position in the history; anomalies name operations by
//!   the index of their completion record (or of the invocation, for an operation that
//!   never completed).
//! - `time_ns`: monotonic nanoseconds since the run started.
//! - `process`: a client process number, or `"nemesis"` (`-1` is read as nemesis too).
//!   A client process runs one operation at a time: its completion is the next record of
//!   that process after the invocation.
//! - `type`: `invoke`, then exactly one of `ok` (it happened), `fail` (it certainly did
//!   not happen: a failed transaction was aborted) or `info` (outcome unknown). An
//!   invocation with no completion by the end of the history counts as `info`.
//! - `f`: what the operation does.
//!   - `txn`, `send`, `poll`: a list of micro-operations (below). `send` and `poll` are
//!     transactions made only of sends or only of polls.
//!   - `final-poll`: a poll of the read-back phase after the faults are healed (the
//!     client was recreated and assigned every key with `seek_to_beginning`). The
//!     `unseen` check compares acknowledged writes with these reads.
//!   - `transform`: a consume-transform-produce transaction of the pipeline workload
//!     (see below).
//!   - `assign`, `subscribe`: `value` is the list of keys now assigned (or whose topics
//!     are now subscribed); it replaces the previous assignment. `"seek_to_beginning":
//!     true` on an assign rewinds every assigned key.
//!   - `crash`: the client was torn down and replaced; its consumer position is gone.
//!   - anything else (`start-kill`, `stop-kill`, `start-partition`, ...) is a nemesis
//!     operation; the checker only reports the fault windows they delimit, pairing
//!     `start-X` with the next `stop-X`.
//!
//! Optional fields: `seek_to_beginning` (assign), `rebalance` (keys whose assignment
//! changed while the operation ran: a subscribed consumer's position on them may jump,
//! so order checks skip them for this operation), `error` (free text on fail/info).
//!
//! # Micro-operations
//!
//! - `["send", key, value]` on invoke; on completion `["send", key, [offset, value]]`,
//!   where `offset` is `null` when the producer did not learn it (a bare `value` means
//!   the same as `[null, value]`).
//! - `["poll"]` on invoke; on completion `["poll", {key: [[offset, value], ...]}]`, the
//!   records the poll returned per key, in the order returned.
//!
//! A key names one partition as `"topic/partition"`, e.g. `"t0/3"`. Values are unique
//! integers per key (the pipeline workload makes them unique across all input keys).
//!
//! # Pipeline workload
//!
//! A `transform` operation is a transaction that polls input keys and, for every input
//! record `(k_in, offset, v)` it consumed, sends `["send", k_out, w]` to an output key,
//! where `w = output_value(v, attempt)` (see [`output_value`]) and `attempt` numbers the
//! transform operation, unique in the run. An output record so names both the input it
//! came from and the attempt that wrote it: two attempts at one input (a worker that
//! crashed after its sends, and the one that redid its work) write different values, so
//! seeing one attempt's record says nothing about the other's. Consumed offsets are
//! committed inside the same transaction. The workload ends with `final-poll`s of the
//! input and output keys. The pipeline check asks that every input value a committed
//! transform consumed (or that lies below the highest input offset a committed
//! transform consumed) appears in exactly one output record.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

/// A partition, written `"topic/partition"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(pub String);

impl Key {
    pub fn new(name: impl Into<String>) -> Key {
        Key(name.into())
    }

    /// The topic part of `"topic/partition"` (the whole name when there is no `/`).
    pub fn topic(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(topic, _)| topic)
    }

    /// The partition number, when the name has one.
    pub fn partition(&self) -> Option<u32> {
        self.0.rsplit_once('/').and_then(|(_, p)| p.parse().ok())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record's position in its partition, as xo assigned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message: an integer unique within its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Val(pub u64);

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Pipeline input values lie below this; an output value's digits below it are the
/// input, those above the attempt (decimal, so a history stays readable: attempt 37 of
/// input 1194 writes 37001194).
pub const PIPELINE_INPUT_LIMIT: u64 = 1_000_000;

/// The value a pipeline transform attempt (numbered from 1) writes for one input.
pub fn output_value(input: Val, attempt: u64) -> Val {
    assert!(input.0 < PIPELINE_INPUT_LIMIT, "pipeline input {input} too large");
    assert!(attempt >= 1, "pipeline attempts are numbered from 1");
    let high = attempt.checked_mul(PIPELINE_INPUT_LIMIT).expect("attempt number overflows");
    Val(high + input.0)
}

/// The (input, attempt) an output value was written for: the inverse of
/// [`output_value`]. Attempt 0 means the value was not written by `output_value`.
pub fn input_of(output: Val) -> (Val, u64) {
    (Val(output.0 % PIPELINE_INPUT_LIMIT), output.0 / PIPELINE_INPUT_LIMIT)
}

/// Who performed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(n) => s.serialize_u64(*n),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Process, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(i64),
            Name(String),
        }
        match Repr::deserialize(d)? {
            Repr::Number(-1) => Ok(Process::Nemesis),
            Repr::Number(n) if n >= 0 => Ok(Process::Client(n as u64)),
            Repr::Number(n) => Err(serde::de::Error::custom(format!("bad process {n}"))),
            Repr::Name(name) if name == "nemesis" => Ok(Process::Nemesis),
            Repr::Name(name) => Err(serde::de::Error::custom(format!(
                "bad process {name:?}: a number or \"nemesis\""
            ))),
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(n) => write!(f, "{n}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// Invocation or one of the three outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does; unknown names are nemesis (or future) operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum F {
    Txn,
    Send,
    Poll,
    FinalPoll,
    Transform,
    Assign,
    Subscribe,
    Crash,
    Other(String),
}

impl F {
    pub fn name(&self) -> &str {
        match self {
            F::Txn => "txn",
            F::Send => "send",
            F::Poll => "poll",
            F::FinalPoll => "final-poll",
            F::Transform => "transform",
            F::Assign => "assign",
            F::Subscribe => "subscribe",
            F::Crash => "crash",
            F::Other(name) => name,
        }
    }

    /// Operations whose value is a list of micro-operations.
    pub fn has_mops(&self) -> bool {
        matches!(self, F::Txn | F::Send | F::Poll | F::FinalPoll | F::Transform)
    }
}

impl From<String> for F {
    fn from(name: String) -> F {
        match name.as_str() {
            "txn" => F::Txn,
            "send" => F::Send,
            "poll" => F::Poll,
            "final-poll" => F::FinalPoll,
            "transform" => F::Transform,
            "assign" => F::Assign,
            "subscribe" => F::Subscribe,
            "crash" => F::Crash,
            _ => F::Other(name),
        }
    }
}

impl From<F> for String {
    fn from(f: F) -> String {
        f.name().to_string()
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One record a poll returned, written `[offset, value]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "(Offset, Val)", into = "(Offset, Val)")]
pub struct Record {
    pub offset: Offset,
    pub value: Val,
}

impl From<(Offset, Val)> for Record {
    fn from((offset, value): (Offset, Val)) -> Record {
        Record { offset, value }
    }
}

impl From<Record> for (Offset, Val) {
    fn from(r: Record) -> (Offset, Val) {
        (r.offset, r.value)
    }
}

/// A micro-operation inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    /// Append `value` to `key`; `offset` is where it landed, when the producer knows.
    Send { key: Key, value: Val, offset: Option<Offset> },
    /// One consumer poll; `reads` is empty on invocation.
    Poll { reads: BTreeMap<Key, Vec<Record>> },
}

impl Serialize for Mop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let json = match self {
            Mop::Send { key, value, offset: None } => serde_json::json!(["send", key, value]),
            Mop::Send { key, value, offset: Some(offset) } => {
                serde_json::json!(["send", key, [offset, value]])
            }
            Mop::Poll { reads } => serde_json::json!(["poll", reads]),
        };
        json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Mop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mop, D::Error> {
        let json = Json::deserialize(d)?;
        mop_from_json(&json).map_err(serde::de::Error::custom)
    }
}

fn mop_from_json(json: &Json) -> Result<Mop, String> {
    let parts = json.as_array().ok_or_else(|| format!("micro-op {json} is not a list"))?;
    let name = parts.first().and_then(Json::as_str);
    match (name, parts.len()) {
        (Some("send"), 3) => {
            let key = Key::deserialize(&parts[1]).map_err(|e| format!("send key: {e}"))?;
            let (offset, value) = match &parts[2] {
                Json::Array(pair) if pair.len() == 2 => (
                    Option::<Offset>::deserialize(&pair[0])
                        .map_err(|e| format!("send offset: {e}"))?,
                    Val::deserialize(&pair[1]).map_err(|e| format!("send value: {e}"))?,
                ),
                single => (None, Val::deserialize(single).map_err(|e| format!("send value: {e}"))?),
            };
            Ok(Mop::Send { key, value, offset })
        }
        (Some("poll"), 1) => Ok(Mop::Poll { reads: BTreeMap::new() }),
        (Some("poll"), 2) => {
            let reads = if parts[1].is_null() {
                BTreeMap::new()
            } else {
                BTreeMap::deserialize(&parts[1]).map_err(|e| format!("poll result: {e}"))?
            };
            Ok(Mop::Poll { reads })
        }
        _ => Err(format!("unknown micro-op {json}")),
    }
}

/// An operation's value, shaped by its `f`.
#[derive(Debug, Clone, PartialEq)]
pub enum OpValue {
    Mops(Vec<Mop>),
    Keys(Vec<Key>),
    Other(Json),
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawOp", into = "RawOp")]
pub struct Op {
    pub index: u64,
    pub time_ns: u64,
    pub process: Process,
    pub kind: OpType,
    pub f: F,
    pub value: OpValue,
    pub seek_to_beginning: bool,
    pub rebalance: Vec<Key>,
    pub error: Option<String>,
}

impl Op {
    /// An operation with only the common fields set: no seek to the
    /// beginning, no rebalance, no error.
    pub fn new(
        index: u64,
        time_ns: u64,
        process: Process,
        kind: OpType,
        f: F,
        value: OpValue,
    ) -> Op {
        Op {
            index,
            time_ns,
            process,
            kind,
            f,
            value,
            seek_to_beginning: false,
            rebalance: Vec::new(),
            error: None,
        }
    }

    /// The micro-operations, or nothing for an operation that has none.
    pub fn mops(&self) -> &[Mop] {
        match &self.value {
            OpValue::Mops(mops) => mops,
            _ => &[],
        }
    }

    /// The keys of an assign or subscribe.
    pub fn keys(&self) -> &[Key] {
        match &self.value {
            OpValue::Keys(keys) => keys,
            _ => &[],
        }
    }
}

/// The serde shape of [`Op`]: `value` stays raw JSON until `f` says what it is.
#[derive(Serialize, Deserialize)]
struct RawOp {
    index: u64,
    time_ns: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: F,
    #[serde(default)]
    value: Json,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    seek_to_beginning: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rebalance: Vec<Key>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl TryFrom<RawOp> for Op {
    type Error = String;

    fn try_from(raw: RawOp) -> Result<Op, String> {
        let value = if raw.f.has_mops() {
            match &raw.value {
                Json::Null => OpValue::Mops(Vec::new()),
                Json::Array(items) => {
                    OpValue::Mops(items.iter().map(mop_from_json).collect::<Result<_, _>>()?)
                }
                other => return Err(format!("{} value {other} is not a list", raw.f)),
            }
        } else if matches!(raw.f, F::Assign | F::Subscribe) {
            match &raw.value {
                Json::Null => OpValue::Keys(Vec::new()),
                keys => OpValue::Keys(
                    Vec::<Key>::deserialize(keys).map_err(|e| format!("{} keys: {e}", raw.f))?,
                ),
            }
        } else {
            OpValue::Other(raw.value)
        };
        Ok(Op {
            index: raw.index,
            time_ns: raw.time_ns,
            process: raw.process,
            kind: raw.kind,
            f: raw.f,
            value,
            seek_to_beginning: raw.seek_to_beginning,
            rebalance: raw.rebalance,
            error: raw.error,
        })
    }
}

impl From<Op> for RawOp {
    fn from(op: Op) -> RawOp {
        let value = match op.value {
            OpValue::Mops(mops) => serde_json::to_value(mops).expect("micro-ops serialise"),
            OpValue::Keys(keys) => serde_json::to_value(keys).expect("keys serialise"),
            OpValue::Other(json) => json,
        };
        RawOp {
            index: op.index,
            time_ns: op.time_ns,
            process: op.process,
            kind: op.kind,
            f: op.f,
            value,
            seek_to_beginning: op.seek_to_beginning,
            rebalance: op.rebalance,
            error: op.error,
        }
    }
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("op {index}: {message}")]
    Shape { index: u64, message: String },
}

/// A whole history, in record order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    pub fn read_jsonl(path: &Path) -> Result<History, HistoryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| HistoryError::Io { path: path.display().to_string(), source })?;
        History::from_jsonl(&text)
    }

    /// Parses one JSON object per line; blank lines are skipped.
    pub fn from_jsonl(text: &str) -> Result<History, HistoryError> {
        let mut ops = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let op: Op = serde_json::from_str(line)
                .map_err(|e| HistoryError::Parse { line: n + 1, message: e.to_string() })?;
            ops.push(op);
        }
        let history = History { ops };
        history.operations()?;
        Ok(history)
    }

    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            out.push_str(&serde_json::to_string(op).expect("ops serialise"));
            out.push('\n');
        }
        out
    }

    /// Pairs each client invocation with its completion, in invocation order. Checks
    /// the shape the checker relies on: increasing indexes, one outstanding operation
    /// per client process, completions matching their invocation's `f`.
    pub fn operations(&self) -> Result<Vec<Operation<'_>>, HistoryError> {
        let mut operations: Vec<Operation<'_>> = Vec::new();
        // Client process -> position in `operations` of its outstanding invocation.
        let mut open: HashMap<u64, usize> = HashMap::new();
        let mut index_last: Option<u64> = None;
        for (position, op) in self.ops.iter().enumerate() {
            let shape = |message: String| HistoryError::Shape { index: op.index, message };
            if index_last.is_some_and(|last| op.index <= last) {
                return Err(shape("index does not increase".into()));
            }
            index_last = Some(op.index);
            let Process::Client(process) = op.process else {
                continue;
            };
            match op.kind {
                OpType::Invoke => {
                    if let Some(&pending) = open.get(&process) {
                        return Err(shape(format!(
                            "process {process} invoked while op {} is outstanding",
                            operations[pending].invoke.index
                        )));
                    }
                    open.insert(process, operations.len());
                    operations.push(Operation { invoke: op, completion: None, position });
                }
                OpType::Ok | OpType::Fail | OpType::Info => {
                    let Some(pending) = open.remove(&process) else {
                        return Err(shape(format!(
                            "completion without invocation by process {process}"
                        )));
                    };
                    let operation = &mut operations[pending];
                    if operation.invoke.f != op.f {
                        return Err(shape(format!(
                            "completes a {} invocation as {}",
                            operation.invoke.f, op.f
                        )));
                    }
                    operation.completion = Some(op);
                    operation.position = position;
                }
            }
        }
        Ok(operations)
    }
}

/// A client operation: its invocation and, unless it never finished, its completion.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'h> {
    pub invoke: &'h Op,
    pub completion: Option<&'h Op>,
    /// Position in the history of the completion (of the invocation if none).
    pub position: usize,
}

impl<'h> Operation<'h> {
    /// The index that names this operation: its completion's, else its invocation's.
    pub fn index(&self) -> u64 {
        self.completion.unwrap_or(self.invoke).index
    }

    /// The outcome; an operation that never completed is `info`.
    pub fn outcome(&self) -> OpType {
        self.completion.map_or(OpType::Info, |c| c.kind)
    }

    pub fn process(&self) -> u64 {
        match self.invoke.process {
            Process::Client(n) => n,
            Process::Nemesis => unreachable!("operations are client operations"),
        }
    }

    pub fn f(&self) -> &'h F {
        &self.invoke.f
    }

    /// The micro-operations as completed, or as invoked when the completion has none
    /// (a fail or info completion may leave its value out).
    pub fn mops(&self) -> &'h [Mop] {
        match self.completion {
            Some(c) if !c.mops().is_empty() => c.mops(),
            _ => self.invoke.mops(),
        }
    }

    /// Nanoseconds from invocation to completion.
    pub fn latency_ns(&self) -> Option<u64> {
        self.completion.map(|c| c.time_ns.saturating_sub(self.invoke.time_ns))
    }

    /// Every send, in order: (key, value, offset if known).
    pub fn sends(&self) -> impl Iterator<Item = (&'h Key, Val, Option<Offset>)> + 'h {
        self.mops().iter().filter_map(|mop| match mop {
            Mop::Send { key, value, offset } => Some((key, *value, *offset)),
            Mop::Poll { .. } => None,
        })
    }

    /// Every polled record, in order: (key, record). Only a completion has any.
    pub fn reads(&self) -> impl Iterator<Item = (&'h Key, Record)> + 'h {
        self.mops().iter().flat_map(|mop| match mop {
            Mop::Poll { reads } => reads
                .iter()
                .flat_map(|(key, records)| records.iter().map(move |r| (key, *r)))
                .collect::<Vec<_>>(),
            Mop::Send { .. } => Vec::new(),
        })
    }

    /// Polled records grouped per key, each key's records in the order read.
    pub fn reads_by_key(&self) -> BTreeMap<&'h Key, Vec<Record>> {
        let mut by_key: BTreeMap<&Key, Vec<Record>> = BTreeMap::new();
        for (key, record) in self.reads() {
            by_key.entry(key).or_default().push(record);
        }
        by_key
    }
}

/// Builds histories by hand, for tests of the checker and of workloads. Each call
/// appends records with the next index and a clock that advances 1 ms per record.
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    ops: Vec<Op>,
    time_ns: u64,
}

/// An invocation waiting for [`HistoryBuilder::complete`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Pending {
    process: u64,
    f: F,
}

impl Pending {
    pub fn process(&self) -> u64 {
        self.process
    }
}

/// `["send", key, [offset, value]]`.
pub fn send(key: &str, offset: u64, value: u64) -> Mop {
    Mop::Send { key: Key::new(key), value: Val(value), offset: Some(Offset(offset)) }
}

/// `["send", key, value]`: a send whose offset is unknown.
pub fn send_unacked(key: &str, value: u64) -> Mop {
    Mop::Send { key: Key::new(key), value: Val(value), offset: None }
}

/// `["poll", {key: [[offset, value], ...]}]`.
pub fn poll(reads: &[(&str, &[(u64, u64)])]) -> Mop {
    let mut by_key: BTreeMap<Key, Vec<Record>> = BTreeMap::new();
    for (key, records) in reads {
        by_key.entry(Key::new(*key)).or_default().extend(
            records
                .iter()
                .map(|&(offset, value)| Record { offset: Offset(offset), value: Val(value) }),
        );
    }
    Mop::Poll { reads: by_key }
}

/// What an invocation says: sends without offsets, polls without results.
fn invocation_of(mops: &[Mop]) -> Vec<Mop> {
    mops.iter()
        .map(|mop| match mop {
            Mop::Send { key, value, .. } => {
                Mop::Send { key: key.clone(), value: *value, offset: None }
            }
            Mop::Poll { .. } => Mop::Poll { reads: BTreeMap::new() },
        })
        .collect()
}

impl HistoryBuilder {
    pub fn new() -> HistoryBuilder {
        HistoryBuilder::default()
    }

    fn push(&mut self, process: Process, kind: OpType, f: F, value: OpValue) -> u64 {
        let index = self.ops.len() as u64;
        self.time_ns += 1_000_000;
        self.ops.push(Op::new(index, self.time_ns, process, kind, f, value));
        index
    }

    /// Invokes an operation whose completion comes later, so others can interleave.
    /// `mops` are the completed micro-ops; the invocation strips their results.
    pub fn invoke(&mut self, process: u64, f: F, mops: &[Mop]) -> Pending {
        self.push(
            Process::Client(process),
            OpType::Invoke,
            f.clone(),
            OpValue::Mops(invocation_of(mops)),
        );
        Pending { process, f }
    }

    /// Completes a pending invocation; returns the completion's index.
    pub fn complete(&mut self, pending: Pending, kind: OpType, mops: &[Mop]) -> u64 {
        assert_ne!(kind, OpType::Invoke, "a completion is ok, fail or info");
        self.push(Process::Client(pending.process), kind, pending.f, OpValue::Mops(mops.to_vec()))
    }

    /// Invocation and completion back to back; returns the completion's index.
    pub fn op(&mut self, process: u64, f: F, kind: OpType, mops: &[Mop]) -> u64 {
        let pending = self.invoke(process, f, mops);
        self.complete(pending, kind, mops)
    }

    pub fn ok(&mut self, process: u64, f: F, mops: &[Mop]) -> u64 {
        self.op(process, f, OpType::Ok, mops)
    }

    pub fn fail(&mut self, process: u64, f: F, mops: &[Mop]) -> u64 {
        self.op(process, f, OpType::Fail, mops)
    }

    pub fn info(&mut self, process: u64, f: F, mops: &[Mop]) -> u64 {
        self.op(process, f, OpType::Info, mops)
    }

    /// An ok assign of `keys`, optionally rewinding them to the beginning.
    pub fn assign(&mut self, process: u64, keys: &[&str], seek_to_beginning: bool) -> u64 {
        let keys: Vec<Key> = keys.iter().map(|k| Key::new(*k)).collect();
        for kind in [OpType::Invoke, OpType::Ok] {
            let index =
                self.push(Process::Client(process), kind, F::Assign, OpValue::Keys(keys.clone()));
            self.ops[index as usize].seek_to_beginning = seek_to_beginning;
        }
        self.ops.len() as u64 - 1
    }

    /// A client crash: invoke and info.
    pub fn crash(&mut self, process: u64) -> u64 {
        self.push(Process::Client(process), OpType::Invoke, F::Crash, OpValue::Other(Json::Null));
        self.push(Process::Client(process), OpType::Info, F::Crash, OpValue::Other(Json::Null))
    }

    /// A nemesis operation such as `start-kill`, recorded as invoke and info.
    pub fn nemesis(&mut self, f: &str) -> u64 {
        for kind in [OpType::Invoke, OpType::Info] {
            self.push(Process::Nemesis, kind, F::from(f.to_string()), OpValue::Other(Json::Null));
        }
        self.ops.len() as u64 - 1
    }

    /// Marks the last record's keys as rebalanced during that operation.
    pub fn rebalanced(&mut self, keys: &[&str]) {
        let last = self.ops.last_mut().expect("a record to mark");
        last.rebalance = keys.iter().map(|k| Key::new(*k)).collect();
    }

    pub fn build(self) -> History {
        let history = History { ops: self.ops };
        history.operations().expect("the builder makes well-formed histories");
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the documented JSON shapes parse, including nulls, bare send values and
    // the nemesis process, and that writing a history back reads the same history.
    #[test]
    fn jsonl_round_trip_keeps_every_field() {
        let text = r#"
{"index": 0, "time_ns": 10, "process": 1, "type": "invoke", "f": "txn", "value": [["send", "t0/1", 5], ["poll"]]}
{"index": 1, "time_ns": 20, "process": "nemesis", "type": "invoke", "f": "start-kill", "value": {"nodes": ["n1"]}}
{"index": 2, "time_ns": 30, "process": 1, "type": "ok", "f": "txn", "value": [["send", "t0/1", [null, 5]], ["poll", {"t0/2": [[3, 9]]}]]}
{"index": 3, "time_ns": 40, "process": -1, "type": "info", "f": "start-kill"}
{"index": 4, "time_ns": 50, "process": 2, "type": "invoke", "f": "assign", "value": ["t0/1"], "seek_to_beginning": true}
{"index": 5, "time_ns": 60, "process": 2, "type": "ok", "f": "assign", "value": ["t0/1"], "seek_to_beginning": true}
"#;
        let history = History::from_jsonl(text).expect("parses");
        assert_eq!(history.ops.len(), 6);
        assert_eq!(history.ops[1].process, Process::Nemesis);
        assert_eq!(history.ops[3].process, Process::Nemesis);
        assert_eq!(history.ops[1].f, F::Other("start-kill".into()));
        assert!(history.ops[4].seek_to_beginning);
        let ops = history.operations().expect("well formed");
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].index(), 2);
        assert_eq!(ops[0].latency_ns(), Some(20));
        let sends: Vec<_> = ops[0].sends().collect();
        assert_eq!(sends, vec![(&Key::new("t0/1"), Val(5), None)]);
        let reads: Vec<_> = ops[0].reads().collect();
        assert_eq!(reads, vec![(&Key::new("t0/2"), Record { offset: Offset(3), value: Val(9) })]);
        let again = History::from_jsonl(&history.to_jsonl()).expect("reparses");
        assert_eq!(again, history);
    }

    // Proves malformed histories are rejected with the line or op that is wrong.
    #[test]
    fn malformed_histories_are_rejected() {
        let bad_mop = r#"{"index": 0, "time_ns": 0, "process": 0, "type": "invoke", "f": "txn", "value": [["append", "k", 1]]}"#;
        assert!(matches!(History::from_jsonl(bad_mop), Err(HistoryError::Parse { line: 1, .. })));
        let orphan =
            r#"{"index": 0, "time_ns": 0, "process": 0, "type": "ok", "f": "poll", "value": []}"#;
        assert!(matches!(History::from_jsonl(orphan), Err(HistoryError::Shape { index: 0, .. })));
        let twice = "{\"index\": 0, \"time_ns\": 0, \"process\": 0, \"type\": \"invoke\", \"f\": \"poll\"}\n\
                     {\"index\": 1, \"time_ns\": 0, \"process\": 0, \"type\": \"invoke\", \"f\": \"poll\"}";
        assert!(matches!(History::from_jsonl(twice), Err(HistoryError::Shape { index: 1, .. })));
    }

    // Proves an invocation that never completed counts as info, named by its own index.
    #[test]
    fn unfinished_invocation_is_info() {
        let mut h = HistoryBuilder::new();
        let _pending = h.invoke(0, F::Txn, &[send("t0/0", 0, 1)]);
        let history = h.build();
        let ops = history.operations().unwrap();
        assert_eq!(ops[0].outcome(), OpType::Info);
        assert_eq!(ops[0].index(), 0);
        assert_eq!(ops[0].sends().count(), 1);
    }

    #[test]
    fn key_names_topic_and_partition() {
        let key = Key::new("orders/7");
        assert_eq!(key.topic(), "orders");
        assert_eq!(key.partition(), Some(7));
    }

    // Proves a pipeline output value names its input and attempt, and two attempts at
    // one input write different values.
    #[test]
    fn output_value_round_trips_input_and_attempt() {
        assert_eq!(output_value(Val(1194), 37), Val(37_001_194));
        assert_eq!(input_of(output_value(Val(1194), 37)), (Val(1194), 37));
        assert_eq!(input_of(output_value(Val(PIPELINE_INPUT_LIMIT - 1), 1)).0.0, 999_999);
        assert_ne!(output_value(Val(5), 1), output_value(Val(5), 2));
        assert_eq!(input_of(Val(5)), (Val(5), 0));
    }
}
