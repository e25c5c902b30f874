//! The live history: every client operation and nemesis action appended as it
//! happens, stamped with the next index and the monotonic time since the run began.
//! Shared by the workers and the nemesis behind one mutex.
//!
//! A run's recorder ([`Recorder::to_file`]) streams the records to `history.jsonl` as
//! they come instead of holding them until the end: whole lines go out at least every
//! [`FLUSH_INTERVAL`] (a background thread flushes even when nothing is recorded), so
//! a run killed midway leaves a history to check, missing at most its last second,
//! and never a torn line. [`Recorder::history`] reads the file back for the checker.
//! [`Recorder::new`] keeps the records in memory instead (tests).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::history::{F, History, HistoryError, Op, OpType, OpValue, Process};

/// Records one run may hold: a run at 1 000 ops/s for an hour writes 7.2 M; past
/// this the run is misconfigured and the history would not fit a checker anyway.
pub const RECORDS_MAX: usize = 20_000_000;
/// Longest a recorded line waits in memory before it is written out.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of lines buffered before they are written out regardless of the interval.
pub const BUFFER_BYTES_MAX: usize = 1 << 20;

/// Where the records go.
#[derive(Debug)]
enum Sink {
    Memory(Vec<Op>),
    File(FileSink),
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    file: File,
    /// Whole lines not yet written; written with one `write_all` so the file only
    /// ever ends at a line's end.
    buffer: Vec<u8>,
    /// The first write error: later records are dropped, and `history` reports it.
    error: Option<String>,
}

impl FileSink {
    fn flush(&mut self) {
        if self.buffer.is_empty() || self.error.is_some() {
            return;
        }
        if let Err(e) = self.file.write_all(&self.buffer) {
            self.error = Some(format!("writing {}: {e}", self.path.display()));
        }
        self.buffer.clear();
    }
}

#[derive(Debug)]
struct State {
    sink: Sink,
    /// Records so far: the next record's index.
    records: u64,
    last_time_ns: u64,
}

#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    // std Mutex: nothing async happens while it is held, and a push is short.
    state: Mutex<State>,
}

impl Recorder {
    /// A recorder that keeps the history in memory.
    pub fn new() -> Arc<Recorder> {
        Recorder::with_sink(Sink::Memory(Vec::new()))
    }

    /// A recorder that streams the history to `path` (created, or truncated), with a
    /// background thread flushing it every [`FLUSH_INTERVAL`] for as long as the
    /// recorder lives.
    pub fn to_file(path: &Path) -> anyhow::Result<Arc<Recorder>> {
        let file =
            File::create(path).map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
        let recorder = Recorder::with_sink(Sink::File(FileSink {
            path: path.to_path_buf(),
            file,
            buffer: Vec::new(),
            error: None,
        }));
        let weak: Weak<Recorder> = Arc::downgrade(&recorder);
        std::thread::Builder::new()
            .name("history-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    let Some(recorder) = weak.upgrade() else {
                        return;
                    };
                    recorder.flush();
                }
            })
            .map_err(|e| anyhow::anyhow!("starting the history flusher: {e}"))?;
        Ok(recorder)
    }

    fn with_sink(sink: Sink) -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            state: Mutex::new(State { sink, records: 0, last_time_ns: 0 }),
        })
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
        let mut state = self.state.lock().expect("recorder lock");
        assert!((state.records as usize) < RECORDS_MAX, "history past RECORDS_MAX records");
        // Taken under the lock, so time never goes back as the index goes up.
        op.time_ns = self.start.elapsed().as_nanos() as u64;
        op.index = state.records;
        assert!(state.last_time_ns <= op.time_ns, "history time went back");
        state.last_time_ns = op.time_ns;
        state.records += 1;
        let index = op.index;
        match &mut state.sink {
            Sink::Memory(ops) => ops.push(op),
            Sink::File(sink) => {
                if sink.error.is_none() {
                    serde_json::to_writer(&mut sink.buffer, &op).expect("ops serialise");
                    sink.buffer.push(b'\n');
                    if sink.buffer.len() >= BUFFER_BYTES_MAX {
                        sink.flush();
                    }
                }
            }
        }
        index
    }

    /// Writes out the buffered lines of a streaming recorder.
    pub fn flush(&self) {
        if let Sink::File(sink) = &mut self.state.lock().expect("recorder lock").sink {
            sink.flush();
        }
    }

    /// Records a record with only the common fields set.
    pub fn record(&self, process: Process, kind: OpType, f: F, value: OpValue) -> u64 {
        self.push(Op::new(0, 0, process, kind, f, value))
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
        self.state.lock().expect("recorder lock").records as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The history so far. A streaming recorder flushes and reads its file back, so
    /// what is checked is exactly what `history.jsonl` holds; a write error fails.
    pub fn history(&self) -> Result<History, HistoryError> {
        let mut state = self.state.lock().expect("recorder lock");
        match &mut state.sink {
            Sink::Memory(ops) => Ok(History { ops: ops.clone() }),
            Sink::File(sink) => {
                sink.flush();
                if let Some(message) = &sink.error {
                    return Err(HistoryError::Io {
                        path: sink.path.display().to_string(),
                        source: std::io::Error::other(message.clone()),
                    });
                }
                let path = sink.path.clone();
                drop(state);
                History::read_jsonl(&path)
            }
        }
    }
}

impl Drop for Recorder {
    /// A run that ends on an error still leaves every line it recorded.
    fn drop(&mut self) {
        if let Ok(state) = self.state.get_mut()
            && let Sink::File(sink) = &mut state.sink
        {
            sink.flush();
        }
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
        let h = r.history().unwrap();
        assert_eq!(h.ops.len(), 6);
        assert!(h.ops.windows(2).all(|w| w[0].index < w[1].index && w[0].time_ns <= w[1].time_ns));
        assert_eq!(h.operations().unwrap().len(), 2);
        let again = History::from_jsonl(&h.to_jsonl()).unwrap();
        assert_eq!(again, h);
    }

    // Proves a streaming recorder leaves whole lines on disk within the flush interval
    // without being asked (what a run killed midway leaves is checkable), and reads
    // back exactly what it recorded.
    #[test]
    fn streamed_history_reaches_the_file_while_recording() {
        let dir = std::env::temp_dir().join(format!("xo-jepsen-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let r = Recorder::to_file(&path).unwrap();
        let a = r.invoke(0, F::Other("ping".into()), OpValue::Other(Json::Null));
        a.finish(OpType::Ok, OpValue::Other(Json::Null), None);
        let _open = r.invoke(1, F::Other("ping".into()), OpValue::Other(Json::Null));
        let deadline = Instant::now() + FLUSH_INTERVAL * 5;
        let on_disk = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 3 || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(on_disk.ends_with('\n'), "{on_disk}");
        let partial = History::from_jsonl(&on_disk).unwrap();
        assert_eq!(partial.ops.len(), 3);
        // The unfinished invocation reads as info, as for a run killed midway.
        assert_eq!(partial.operations().unwrap()[1].outcome(), OpType::Info);
        r.nemesis(OpType::Info, "start-kill", Json::Null);
        let h = r.history().unwrap();
        assert_eq!(h.ops.len(), 4);
        assert_eq!(h.ops[3].index, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
