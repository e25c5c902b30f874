//! The live history: every client operation and nemesis action appended as it
//! happens, stamped with the next index and the monotonic time since the run began.
//! Shared by the workers and the nemesis behind one mutex; `History` is what it
//! hands to the checker at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::history::{F, History, Op, OpType, OpValue, Process};

/// Records one run may hold: a run at 1 000 ops/s for an hour writes 7.2 M; past
/// this the run is misconfigured and the history would not fit a checker anyway.
pub const RECORDS_MAX: usize = 20_000_000;

#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    // std Mutex: nothing async happens while it is held, and a push is short.
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder { start: Instant::now(), ops: Mutex::new(Vec::new()) })
    }

    /// When time 0 of the history was.
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Appends `op`, overwriting its index and time; returns the index.
    pub fn push(&self, mut op: Op) -> u64 {
        let mut ops = self.ops.lock().expect("recorder lock");
        assert!(ops.len() < RECORDS_MAX, "history past RECORDS_MAX records");
        // Taken under the lock, so time never goes back as the index goes up.
        op.time_ns = self.start.elapsed().as_nanos() as u64;
        op.index = ops.len() as u64;
        if let Some(last) = ops.last() {
            assert!(last.time_ns <= op.time_ns, "history time went back");
        }
        let index = op.index;
        ops.push(op);
        index
    }

    /// Records a record with only the common fields set.
    pub fn record(&self, process: Process, kind: OpType, f: F, value: OpValue) -> u64 {
        self.push(Op {
            index: 0,
            time_ns: 0,
            process,
            kind,
            f,
            value,
            seek_to_beginning: false,
            rebalance: Vec::new(),
            error: None,
        })
    }

    /// Invokes a client operation; complete it with [`Invocation::finish`].
    pub fn invoke(self: &Arc<Self>, process: u64, f: F, value: OpValue) -> Invocation {
        self.record(Process::Client(process), OpType::Invoke, f.clone(), value);
        Invocation { recorder: self.clone(), process, f, done: false }
    }

    /// A nemesis record (`start-kill` ...): `value` says what it did.
    pub fn nemesis(&self, kind: OpType, f: &str, value: Json) -> u64 {
        self.record(Process::Nemesis, kind, F::from(f.to_string()), OpValue::Other(value))
    }

    pub fn len(&self) -> usize {
        self.ops.lock().expect("recorder lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn history(&self) -> History {
        History { ops: self.ops.lock().expect("recorder lock").clone() }
    }
}

/// A client operation waiting for its outcome. Dropping it unfinished leaves the
/// invocation open, which the checker reads as `info`, as it should: a worker that
/// vanished mid-operation does not know the outcome either.
#[derive(Debug)]
#[must_use]
pub struct Invocation {
    recorder: Arc<Recorder>,
    process: u64,
    f: F,
    done: bool,
}

impl Invocation {
    pub fn process(&self) -> u64 {
        self.process
    }

    /// Records the completion; returns its index.
    pub fn finish(self, kind: OpType, value: OpValue, error: Option<String>) -> u64 {
        self.finish_with(kind, value, error, Vec::new())
    }

    /// Records the completion with the keys whose assignment changed while the
    /// operation ran (a subscribed consumer's rebalance); returns its index.
    pub fn finish_with(
        mut self,
        kind: OpType,
        value: OpValue,
        error: Option<String>,
        rebalance: Vec<crate::history::Key>,
    ) -> u64 {
        assert_ne!(kind, OpType::Invoke, "a completion is ok, fail or info");
        self.done = true;
        self.recorder.push(Op {
            index: 0,
            time_ns: 0,
            process: Process::Client(self.process),
            kind,
            f: self.f.clone(),
            value,
            seek_to_beginning: false,
            rebalance,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves records get increasing indexes and times, and the result is a history
    // the checker's shape rules accept.
    #[test]
    fn records_form_a_well_shaped_history() {
        let r = Recorder::new();
        let a = r.invoke(0, F::Other("ping".into()), OpValue::Other(Json::Null));
        r.nemesis(OpType::Invoke, "start-kill", serde_json::json!({"nodes": ["ps1"]}));
        let b = r.invoke(1, F::Other("ping".into()), OpValue::Other(Json::Null));
        a.finish(OpType::Ok, OpValue::Other(Json::Null), None);
        r.nemesis(OpType::Info, "start-kill", Json::Null);
        b.finish(OpType::Info, OpValue::Other(Json::Null), Some("timeout".into()));
        let h = r.history();
        assert_eq!(h.ops.len(), 6);
        assert!(h.ops.windows(2).all(|w| w[0].index < w[1].index && w[0].time_ns <= w[1].time_ns));
        assert_eq!(h.operations().unwrap().len(), 2);
        let again = History::from_jsonl(&h.to_jsonl()).unwrap();
        assert_eq!(again, h);
    }
}
