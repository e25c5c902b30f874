//! `xo produce TOPIC`: one record per line of stdin, written by the
//! idempotent producer, or in transactions of N records under a
//! transactional id.
//!
//! Stdin is read by a thread into a bounded mailbox while the records read
//! before are in flight, so a large input streams through in bounded memory
//! and an interactive one is sent line by line as it is typed. Every line's
//! acknowledgement is awaited, so a failure can name exactly the lines that
//! were not acknowledged (or, in transactions, not committed).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use xo_client::config::RECORD_BYTES_MAX_DEFAULT;
use xo_client::{
    Error, Producer, ProducerConfig, ProducerRecord, RecordMetadata, TransactionalProducer,
};

use super::client::{ClusterArgs, describe_topic, explain, one_line};
use super::topic::plural;

/// Lines read ahead of the producer, at most.
const PENDING_LINES_MAX: usize = 10_000;
/// Bytes of lines read ahead of the producer, at most: well under the
/// producer's buffer (32 MiB by default), so `send` never finds it full.
const PENDING_BYTES_MAX: usize = 4 * 1024 * 1024;
/// What one line costs in the read-ahead bound beyond its bytes.
const LINE_OVERHEAD_BYTES: usize = 64;
/// Longest line: the largest record the producer accepts.
const LINE_BYTES_MAX: usize = RECORD_BYTES_MAX_DEFAULT;
const STDIN_BUFFER_BYTES: usize = 256 * 1024;
/// Partitions the summary names one by one; more are summed up.
const SUMMARY_PARTITIONS_MAX: usize = 16;
/// Ranges of line numbers an error lists before "and N more".
const LINE_RANGES_SHOWN_MAX: usize = 20;
/// How long an interrupted transactional run waits for its abort.
const ABORT_WAIT_MAX: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic to write to.
    topic: String,
    /// Give every record this key (records with one key go to one partition,
    /// in order).
    #[arg(long, value_name = "K", conflicts_with = "key_separator")]
    key: Option<String>,
    /// Read each line as KEY SEP VALUE, split at the first SEP; a line
    /// without SEP becomes a record without a key.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition instead of choosing by key (or,
    /// for records without a key, spreading them over the partitions).
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Give every record this header (repeat for more; the value may be
    /// empty, the key may not). `xo consume --format json` shows them.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Write in transactions under this transactional id: read-committed
    /// consumers see each transaction whole once it commits, or never. An
    /// earlier producer with the same id is fenced and its open transaction aborted.
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// Records per transaction (with --transactional-id); the last, partial
    /// transaction is committed at the end of input.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "transactional_id",
          value_parser = clap::value_parser!(u64).range(1..))]
    transaction_records: u64,
}

/// `KEY=VALUE`, split at the first `=`.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some(("", _)) => Err(format!("{text:?} has an empty key: expected KEY=VALUE")),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("{text:?} has no '=': expected KEY=VALUE, e.g. source=billing")),
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.key_separator.as_deref() == Some("") {
        anyhow::bail!("--key-separator must not be empty");
    }
    let config = args.cluster.connect().await?;
    let admin = xo_client::Admin::new(config.clone()).map_err(|e| explain(&e))?;
    let topic = describe_topic(&admin, &args.topic).await?;
    let partitions = topic.partitions.len();
    if let Some(p) = args.partition
        && p as usize >= partitions
    {
        anyhow::bail!(
            "topic {:?} has {partitions} partition{}: --partition must be 0 to {}",
            args.topic,
            plural(partitions),
            partitions.saturating_sub(1)
        );
    }
    let producer_config = ProducerConfig::new(config);
    let sink = match &args.transactional_id {
        None => Sink::Idempotent(Producer::new(producer_config).await.map_err(|e| explain(&e))?),
        Some(id) => {
            let producer =
                TransactionalProducer::new(producer_config, id).map_err(|e| explain(&e))?;
            producer.init_transactions().await.map_err(|e| explain(&e))?;
            Sink::Transactional(producer)
        }
    };

    let mailbox = Arc::new(Mailbox::default());
    let reader_mailbox = mailbox.clone();
    std::thread::Builder::new()
        .name("xo-produce-stdin".into())
        .spawn(move || read_stdin(&reader_mailbox))?;

    let headers: Vec<(&str, Option<&[u8]>)> =
        args.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))).collect();
    let mut run = Run {
        args: &args,
        headers: &headers,
        sink: &sink,
        done: Tally::default(),
        txn: None,
        settled_up_to: 0,
        sent_up_to: 0,
    };
    let outcome = tokio::select! {
        outcome = run.stream(&mailbox) => outcome,
        _ = super::shutdown_signal() => Err(Stop::Interrupted),
    };
    let result = match outcome {
        Ok(()) => {
            eprintln!("{}", run.summary());
            Ok(())
        }
        Err(stop) => Err(anyhow::anyhow!(one_line(&run.report(stop).await))),
    };
    match &sink {
        Sink::Idempotent(p) => p.close().await.map_err(|e| explain(&e))?,
        Sink::Transactional(p) => p.close().await.map_err(|e| explain(&e))?,
    }
    result
}

enum Sink {
    Idempotent(Producer),
    Transactional(TransactionalProducer),
}

/// Why the stream stopped early.
enum Stop {
    /// Some lines were refused; `lines` are their numbers. Nothing after
    /// `sent_up_to` was sent; `more` says whether input went on after it.
    Unacknowledged { lines: Vec<u64>, sent: Sent, cause: Error },
    /// The open transaction (`Run::txn`) failed or could not commit.
    TxnFailed { sent: Sent, cause: Error, committing: bool },
    /// Stdin could not be read, or a line was too long.
    Input(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// How far sending got when it stopped.
#[derive(Clone, Copy)]
struct Sent {
    /// The last line sent.
    up_to: u64,
    /// Whether there were (or may be) lines after it.
    more: bool,
}

impl Sent {
    /// "; lines after 12 were not sent", or nothing at the end of input.
    fn rest(self) -> String {
        if self.more {
            format!("; lines after {} were not sent", self.up_to)
        } else {
            String::new()
        }
    }
}

/// Records acknowledged (or, in transactions, committed) so far.
#[derive(Default)]
struct Tally {
    records: u64,
    /// Partition → lowest and highest offset written.
    offsets: BTreeMap<u32, (i64, i64)>,
    transactions: u64,
}

impl Tally {
    fn add(&mut self, meta: &RecordMetadata) {
        let offset = meta.offset.0;
        self.records += 1;
        let range = self.offsets.entry(meta.partition).or_insert((offset, offset));
        range.0 = range.0.min(offset);
        range.1 = range.1.max(offset);
    }

    fn merge(&mut self, other: Tally) {
        self.records += other.records;
        for (partition, (low, high)) in other.offsets {
            let range = self.offsets.entry(partition).or_insert((low, high));
            range.0 = range.0.min(low);
            range.1 = range.1.max(high);
        }
    }

    /// "partition 0 offsets 0-4, partition 2 offset 7", or a sum for many.
    fn describe_offsets(&self) -> String {
        let span = |(low, high): (i64, i64)| {
            if low == high { format!("offset {low}") } else { format!("offsets {low}-{high}") }
        };
        if self.offsets.len() > SUMMARY_PARTITIONS_MAX {
            let low = self.offsets.values().map(|r| r.0).min().unwrap_or(0);
            let high = self.offsets.values().map(|r| r.1).max().unwrap_or(0);
            return format!("{} partitions, {}", self.offsets.len(), span((low, high)));
        }
        let parts: Vec<String> =
            self.offsets.iter().map(|(p, r)| format!("partition {p} {}", span(*r))).collect();
        parts.join(", ")
    }
}

/// The transaction currently open.
struct OpenTxn {
    first_line: u64,
    records: u64,
    /// Acknowledged, not yet committed.
    tally: Tally,
}

struct Run<'a> {
    args: &'a Args,
    /// `--header`s, as every record carries them.
    headers: &'a [(&'a str, Option<&'a [u8]>)],
    sink: &'a Sink,
    done: Tally,
    txn: Option<OpenTxn>,
    /// Every line up to this one was acknowledged (idempotent producer).
    settled_up_to: u64,
    /// The last line handed to the producer.
    sent_up_to: u64,
}

impl Run<'_> {
    /// Sends every line of stdin; returns at the end of input with every
    /// record acknowledged (and the last transaction committed).
    async fn stream(&mut self, mailbox: &Mailbox) -> Result<(), Stop> {
        loop {
            let chunk = mailbox.take().await;
            match self.sink {
                Sink::Idempotent(producer) => self.send_idempotent(producer, &chunk).await?,
                Sink::Transactional(producer) => self.send_transactional(producer, &chunk).await?,
            }
            match chunk.end {
                None => continue,
                Some(InputEnd::Eof) => {
                    if let Sink::Transactional(producer) = self.sink {
                        let up_to = (chunk.first_line + chunk.lines.len() as u64).max(1) - 1;
                        self.commit(producer, Sent { up_to, more: false }).await?;
                    }
                    return Ok(());
                }
                Some(InputEnd::Failed(message)) => return Err(Stop::Input(message)),
            }
        }
    }
}

/// The record for one line.
fn record<'l>(
    args: &'l Args,
    headers: &'l [(&'l str, Option<&'l [u8]>)],
    line: &'l [u8],
) -> ProducerRecord<'l> {
    let (key, value) = match (&args.key, &args.key_separator) {
        (Some(key), _) => (Some(key.as_bytes()), line),
        (None, Some(sep)) => match find(line, sep.as_bytes()) {
            Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
            None => (None, line),
        },
        (None, None) => (None, line),
    };
    let mut record = ProducerRecord::new(&args.topic, value);
    record.key = key;
    record.partition = args.partition;
    record.headers(headers)
}

impl Run<'_> {
    async fn send_idempotent(&mut self, producer: &Producer, chunk: &Chunk) -> Result<(), Stop> {
        let (args, headers) = (self.args, self.headers);
        let acks: Vec<_> =
            chunk.lines.iter().map(|line| producer.send(record(args, headers, line))).collect();
        if !chunk.lines.is_empty() {
            self.sent_up_to = chunk.first_line + chunk.lines.len() as u64 - 1;
        }
        let mut refused = Vec::new();
        let mut cause = None;
        for (i, ack) in acks.into_iter().enumerate() {
            match ack.await {
                Ok(meta) if cause.is_none() => {
                    self.done.add(&meta);
                    self.settled_up_to = chunk.first_line + i as u64;
                }
                Ok(meta) => self.done.add(&meta),
                Err(e) => {
                    refused.push(chunk.first_line + i as u64);
                    cause.get_or_insert(e);
                }
            }
        }
        match cause {
            None => Ok(()),
            Some(cause) => Err(Stop::Unacknowledged {
                lines: refused,
                sent: Sent {
                    up_to: chunk.first_line + chunk.lines.len() as u64 - 1,
                    more: chunk.end.is_none(),
                },
                cause,
            }),
        }
    }

    async fn send_transactional(
        &mut self,
        producer: &TransactionalProducer,
        chunk: &Chunk,
    ) -> Result<(), Stop> {
        let per_txn = self.args.transaction_records;
        let mut at = 0usize;
        while at < chunk.lines.len() {
            let line_no = chunk.first_line + at as u64;
            if self.txn.is_none() {
                self.txn =
                    Some(OpenTxn { first_line: line_no, records: 0, tally: Tally::default() });
                if let Err(cause) = producer.begin_transaction() {
                    let sent = Sent { up_to: line_no.saturating_sub(1), more: true };
                    return Err(Stop::TxnFailed { sent, cause, committing: false });
                }
            }
            let txn = self.txn.as_ref().expect("opened above");
            let room = (per_txn - txn.records).min((chunk.lines.len() - at) as u64) as usize;
            let segment = &chunk.lines[at..at + room];
            let (args, headers) = (self.args, self.headers);
            let acks: Vec<_> =
                segment.iter().map(|line| producer.send(record(args, headers, line))).collect();
            let mut cause = None;
            let mut acked = Vec::with_capacity(acks.len());
            for ack in acks {
                match ack.await {
                    Ok(meta) => acked.push(meta),
                    Err(e) => {
                        cause.get_or_insert(e);
                    }
                }
            }
            at += room;
            let sent = Sent {
                up_to: chunk.first_line + at as u64 - 1,
                more: at < chunk.lines.len() || chunk.end.is_none(),
            };
            let txn = self.txn.as_mut().expect("opened above");
            txn.records += room as u64;
            for meta in &acked {
                txn.tally.add(meta);
            }
            if let Some(cause) = cause {
                return Err(Stop::TxnFailed { sent, cause, committing: false });
            }
            if txn.records == per_txn {
                self.commit(producer, sent).await?;
            }
        }
        Ok(())
    }

    /// Commits the open transaction, if there is one.
    async fn commit(&mut self, producer: &TransactionalProducer, sent: Sent) -> Result<(), Stop> {
        if self.txn.is_none() {
            return Ok(());
        }
        if let Err(cause) = producer.commit_transaction().await {
            return Err(Stop::TxnFailed { sent, cause, committing: true });
        }
        let txn = self.txn.take().expect("checked above");
        self.done.merge(txn.tally);
        self.done.transactions += 1;
        Ok(())
    }

    fn summary(&self) -> String {
        let mut text = format!(
            "produced {} record{} to {}",
            self.done.records,
            plural(self.done.records as usize),
            self.args.topic
        );
        if self.done.records > 0 {
            text.push_str(&format!(
                " in {} partition{} ({})",
                self.done.offsets.len(),
                plural(self.done.offsets.len()),
                self.done.describe_offsets()
            ));
        }
        if self.args.transactional_id.is_some() {
            let n = self.done.transactions;
            text.push_str(&format!(", {n} committed transaction{}", plural(n as usize)));
        }
        text
    }

    /// The one-line error for `stop`, after aborting the open transaction
    /// where that is still possible.
    async fn report(&mut self, stop: Stop) -> String {
        let done = if self.done.records == 0 && self.args.transactional_id.is_some() {
            "nothing was committed".to_string()
        } else if self.done.records == 0 {
            "nothing was acknowledged".to_string()
        } else if self.args.transactional_id.is_some() {
            format!("committed: {}", self.summary())
        } else {
            format!("acknowledged: {}", self.summary())
        };
        match stop {
            Stop::Unacknowledged { lines, sent, cause } => format!(
                "line{} {} {} not acknowledged ({}){}; {done}",
                plural(lines.len()),
                line_ranges(&lines),
                if lines.len() == 1 { "was" } else { "were" },
                explain(&cause),
                sent.rest(),
            ),
            Stop::TxnFailed { sent, cause, committing } => {
                let first = self.txn.take().map_or(sent.up_to, |t| t.first_line);
                let fate = self.abort_after(&cause, committing).await;
                let txn = if first > sent.up_to {
                    "the next transaction".to_string()
                } else {
                    format!("the transaction of lines {first}-{}", sent.up_to)
                };
                format!("{txn} {fate} ({}){}; {done}", explain(&cause), sent.rest())
            }
            Stop::Input(message) => {
                let fate = match self.txn.take() {
                    Some(txn) => {
                        let fate = self.abort_now().await;
                        format!(
                            "; the open transaction of the lines from {} {fate}",
                            txn.first_line
                        )
                    }
                    None => String::new(),
                };
                format!("{message}{fate}; {done}")
            }
            Stop::Interrupted => {
                let fate = match self.txn.take() {
                    Some(txn) => {
                        let fate = self.abort_now().await;
                        format!(
                            ", the open transaction of the lines from {} {fate}",
                            txn.first_line
                        )
                    }
                    None if self.sent_up_to > self.settled_up_to => format!(
                        ", lines {}-{} may or may not have been written",
                        self.settled_up_to + 1,
                        self.sent_up_to
                    ),
                    None => String::new(),
                };
                format!("interrupted{fate}; {done}")
            }
        }
    }

    /// What became of the open transaction after `cause`: aborted here when
    /// the producer allows it.
    async fn abort_after(&self, cause: &Error, committing: bool) -> &'static str {
        if committing && cause.is_retriable() {
            // The commit may have landed: only the coordinator knows.
            return "may or may not be committed: see `xo txn describe`";
        }
        if cause.is_fatal() {
            return "was not committed (the producer was fenced; the coordinator aborts it)";
        }
        self.abort_now().await
    }

    async fn abort_now(&self) -> &'static str {
        let Sink::Transactional(producer) = self.sink else {
            return "was not committed";
        };
        match tokio::time::timeout(ABORT_WAIT_MAX, producer.abort_transaction()).await {
            Ok(Ok(())) => "was aborted and not committed",
            // Interrupted in the middle of its commit.
            Ok(Err(Error::State(_))) => "may or may not be committed: see `xo txn describe`",
            _ => "was not committed (the coordinator aborts it after its timeout)",
        }
    }
}

/// "3-5, 9, 12-20" for sorted line numbers, at most
/// [`LINE_RANGES_SHOWN_MAX`] ranges.
fn line_ranges(lines: &[u64]) -> String {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &line in lines {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == line => *end = line,
            _ => ranges.push((line, line)),
        }
    }
    let mut parts: Vec<String> = ranges
        .iter()
        .take(LINE_RANGES_SHOWN_MAX)
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect();
    if ranges.len() > LINE_RANGES_SHOWN_MAX {
        parts.push(format!("and {} more ranges", ranges.len() - LINE_RANGES_SHOWN_MAX));
    }
    parts.join(", ")
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- stdin ----------------------------------------------------------------

/// How reading stdin ended.
enum InputEnd {
    Eof,
    Failed(String),
}

/// Lines taken from the mailbox in one go: every line read since the last
/// take.
struct Chunk {
    first_line: u64,
    lines: Vec<Vec<u8>>,
    /// Set on the last chunk.
    end: Option<InputEnd>,
}

#[derive(Default)]
struct Pending {
    first_line: u64,
    lines: Vec<Vec<u8>>,
    bytes: usize,
    end: Option<InputEnd>,
}

/// The lines read but not yet taken by the producer side, bounded by
/// [`PENDING_LINES_MAX`] and [`PENDING_BYTES_MAX`]: the reader thread waits
/// while it is full.
#[derive(Default)]
struct Mailbox {
    /// std Mutex: held only to move lines in or out, never across an await.
    pending: Mutex<Pending>,
    /// The reader waits here for room.
    room: Condvar,
    /// Wakes the producer side: lines (or the end) arrived.
    arrived: tokio::sync::Notify,
}

impl Mailbox {
    /// Reader side: adds line `line_no`, waiting while the mailbox is full.
    fn put(&self, line_no: u64, line: Vec<u8>) {
        let mut pending = self.pending.lock().unwrap();
        while pending.lines.len() >= PENDING_LINES_MAX || pending.bytes >= PENDING_BYTES_MAX {
            pending = self.room.wait(pending).unwrap();
        }
        if pending.lines.is_empty() {
            pending.first_line = line_no;
        }
        assert_eq!(pending.first_line + pending.lines.len() as u64, line_no, "lines in order");
        pending.bytes += line.len() + LINE_OVERHEAD_BYTES;
        pending.lines.push(line);
        drop(pending);
        self.arrived.notify_one();
    }

    fn finish(&self, end: InputEnd) {
        self.pending.lock().unwrap().end = Some(end);
        self.arrived.notify_one();
    }

    /// Producer side: every line read since the last take (at least one,
    /// unless the input ended).
    async fn take(&self) -> Chunk {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut pending = self.pending.lock().unwrap();
                if !pending.lines.is_empty() || pending.end.is_some() {
                    let taken = std::mem::take(&mut *pending);
                    // Numbering continues after the lines taken.
                    pending.first_line = taken.first_line + taken.lines.len() as u64;
                    drop(pending);
                    self.room.notify_one();
                    return Chunk {
                        first_line: taken.first_line,
                        lines: taken.lines,
                        end: taken.end,
                    };
                }
            }
            arrived.await;
        }
    }
}

/// The reader thread: stdin, line by line, into the mailbox.
fn read_stdin(mailbox: &Mailbox) {
    let mut reader = BufReader::with_capacity(STDIN_BUFFER_BYTES, std::io::stdin().lock());
    let mut line_no = 0u64;
    let end = loop {
        let mut line = Vec::new();
        let limit = LINE_BYTES_MAX as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => break InputEnd::Eof,
            Ok(_) => {}
            Err(e) => break InputEnd::Failed(format!("reading stdin after line {line_no}: {e}")),
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        } else if line.len() > LINE_BYTES_MAX {
            break InputEnd::Failed(format!(
                "line {line_no} is longer than {LINE_BYTES_MAX} bytes, the largest record"
            ));
        }
        mailbox.put(line_no, line);
    };
    mailbox.finish(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_line_ranges_are_compact() {
        assert_eq!(line_ranges(&[3, 4, 5, 9, 12, 13]), "3-5, 9, 12-13");
        assert_eq!(line_ranges(&[7]), "7");
        let many: Vec<u64> = (0..50).map(|i| i * 2).collect();
        assert!(line_ranges(&many).ends_with("and 30 more ranges"));
    }

    #[test]
    fn t13_headers_split_at_the_first_equals_sign() {
        assert_eq!(parse_header("a=b=c").unwrap(), ("a".to_string(), "b=c".to_string()));
        assert_eq!(parse_header("empty=").unwrap(), ("empty".to_string(), String::new()));
        assert!(parse_header("novalue").unwrap_err().contains("expected KEY=VALUE"));
        assert!(parse_header("=v").unwrap_err().contains("empty key"));
    }

    #[test]
    fn t11_key_separator_splits_at_the_first_occurrence() {
        assert_eq!(find(b"a::b::c", b"::"), Some(1));
        assert_eq!(find(b"abc", b":"), None);
    }

    #[tokio::test]
    async fn t12_mailbox_hands_over_lines_in_order_then_the_end() {
        let mailbox = Mailbox::default();
        mailbox.put(1, b"a".to_vec());
        mailbox.put(2, b"b".to_vec());
        let first = mailbox.take().await;
        assert_eq!((first.first_line, first.lines.len(), first.end.is_none()), (1, 2, true));
        mailbox.put(3, b"c".to_vec());
        mailbox.finish(InputEnd::Eof);
        let last = mailbox.take().await;
        assert_eq!(last.first_line, 3);
        assert!(matches!(last.end, Some(InputEnd::Eof)));
    }
}
