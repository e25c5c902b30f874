//! `xo consume TOPIC`: prints a topic's records, read-committed by
//! default, from every partition (assign mode) or from the partitions a
//! consumer group gives this member (`--group`, offsets committed after
//! the records are printed).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use xo_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, TopicPartition,
};
use xo_proto::Offset;

use super::client::{ClusterArgs, describe_topic, explain};

/// Longest single wait for records; bounds how stale the idle check gets.
const POLL_WAIT_MAX: Duration = Duration::from_secs(1);
/// Longest `--idle-timeout`: a day.
const IDLE_TIMEOUT_SECS_MAX: f64 = 86_400.0;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Plain,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic to read.
    topic: String,
    /// Read as a member of this consumer group: the group shares the
    /// partitions among its members, and offsets are committed after the
    /// records are printed, so the next run goes on from there. Without it,
    /// every partition is read and nothing is committed.
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// Start at the oldest record kept instead of at the end (with --group:
    /// only on partitions where the group has no committed offset).
    #[arg(long)]
    from_beginning: bool,
    /// read-committed shows only records of committed transactions (and
    /// non-transactional ones); read-uncommitted shows everything written,
    /// open and aborted transactions included.
    #[arg(long, value_enum, value_name = "LEVEL", default_value = "read-committed")]
    isolation: Isolation,
    /// Exit after printing N records.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// Exit once no new record has arrived for SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    idle_timeout: Option<Duration>,
    /// plain: each record's value on a line of its own (no key, no headers);
    /// json: one JSON object per line with topic, partition, offset, key,
    /// value, headers and timestamp.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "plain")]
    format: Format,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= IDLE_TIMEOUT_SECS_MAX) {
        return Err(format!("must be above 0 and at most {IDLE_TIMEOUT_SECS_MAX} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.cluster.connect().await?;
    let admin = Admin::new(client.clone()).map_err(|e| explain(&e))?;
    let topic = describe_topic(&admin, &args.topic).await?;
    let mut config = ConsumerConfig::new(client);
    config.isolation = match args.isolation {
        Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
        Isolation::ReadUncommitted => IsolationLevel::ReadUncommitted,
    };
    config.offset_reset =
        if args.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest };
    if let Some(group) = &args.group {
        config = config.group(group);
    }
    let mut consumer = Consumer::new(config).map_err(|e| explain(&e))?;
    match &args.group {
        Some(group) => consumer.subscribe(&[&args.topic], group),
        None => {
            let partitions: Vec<TopicPartition> = topic
                .partitions
                .iter()
                .map(|p| TopicPartition::new(&args.topic, p.partition))
                .collect();
            consumer.assign(&partitions)
        }
    }
    .map_err(|e| explain(&e))?;

    let result = consume(&args, &mut consumer).await;
    let closed = consumer.close().await.map_err(|e| explain(&e));
    result.and(closed)
}

/// The poll → print → commit loop, until `--max`, `--idle-timeout`, a
/// closed stdout, or Ctrl-C / SIGTERM.
async fn consume(args: &Args, consumer: &mut Consumer) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let mut printed = 0u64;
    let mut idle_since = Instant::now();
    let mut joined = false;
    let mut text = Vec::new();
    loop {
        let wait = match args.idle_timeout {
            Some(idle) => (idle_since + idle).saturating_duration_since(Instant::now()),
            None => POLL_WAIT_MAX,
        };
        let polled = tokio::select! {
            polled = consumer.poll(wait.min(POLL_WAIT_MAX)) => polled,
            _ = &mut shutdown => return Ok(()),
        };
        let records = polled.map_err(|e| explain(&e))?;
        if !joined {
            // The first poll joins the group and looks positions up, which
            // may take longer than the idle timeout: idleness counts from here.
            joined = true;
            idle_since = Instant::now();
        }
        if records.is_empty() {
            if args.idle_timeout.is_some_and(|idle| idle_since.elapsed() >= idle) {
                return Ok(());
            }
            continue;
        }
        idle_since = Instant::now();
        let wanted = args.max.map_or(records.len(), |max| (max - printed) as usize);
        let shown = &records[..records.len().min(wanted)];
        text.clear();
        for record in shown {
            format_record(&mut text, record, args.format);
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(&text).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            anyhow::bail!("writing to stdout: {e}");
        }
        drop(out);
        printed += shown.len() as u64;
        if args.group.is_some() {
            commit_printed(consumer, shown).await?;
        }
        if args.max.is_some_and(|max| printed >= max) {
            return Ok(());
        }
    }
}

/// Commits, for each partition, the offset after the last printed record
/// (not the consumer's position, which may be past records `--max` left
/// unprinted).
async fn commit_printed(consumer: &mut Consumer, shown: &[ConsumerRecord]) -> anyhow::Result<()> {
    let mut next: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
    for r in shown {
        let tp = TopicPartition::new(&r.topic, r.partition);
        let after = Offset(r.offset.0 + 1);
        let entry = next.entry(tp).or_insert(after);
        *entry = (*entry).max(after);
    }
    let offsets: Vec<(TopicPartition, Offset)> = next.into_iter().collect();
    match consumer.commit_offsets(&offsets).await {
        Ok(()) => Ok(()),
        // The group moved on (a rebalance): these records may be printed
        // again by whichever member gets the partitions.
        Err(e) if e.is_abortable() => {
            tracing::warn!(error = %e, "offsets not committed; the group is rebalancing");
            Ok(())
        }
        Err(e) => Err(explain(&e)),
    }
}

fn format_record(out: &mut Vec<u8>, record: &ConsumerRecord, format: Format) {
    match format {
        Format::Plain => {
            out.extend_from_slice(record.value.as_deref().unwrap_or_default());
        }
        Format::Json => {
            let headers: Vec<Value> = record
                .headers
                .iter()
                .map(|h| json!({ "key": h.key, "value": bytes_value(h.value.as_deref()) }))
                .collect();
            // Written field by field to keep this order (a JSON map sorts).
            let fields: [(&str, Value); 7] = [
                ("topic", Value::from(&*record.topic)),
                ("partition", Value::from(record.partition)),
                ("offset", Value::from(record.offset.0)),
                ("key", bytes_value(record.key.as_deref())),
                ("value", bytes_value(record.value.as_deref())),
                ("headers", Value::Array(headers)),
                ("timestamp", Value::from(record.timestamp)),
            ];
            out.push(b'{');
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(format!("\"{name}\":{value}").as_bytes());
            }
            out.push(b'}');
        }
    }
    out.push(b'\n');
}

/// Bytes as JSON: null when absent, a string when UTF-8, else
/// `{"base64": "..."}` so nothing is lost.
fn bytes_value(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => json!({ "base64": base64(b) }),
        },
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use xo_client::RecordHeader;

    use super::*;

    #[test]
    fn t10_base64_matches_the_rfc_4648_vectors() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn t11_json_records_carry_every_field_and_lose_no_bytes() {
        let record = ConsumerRecord {
            topic: Arc::from("t"),
            partition: 2,
            offset: Offset(7),
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(&[0xff, 0x00])),
            headers: vec![RecordHeader { key: "h".into(), value: None }],
            timestamp: 1_000,
        };
        let mut out = Vec::new();
        format_record(&mut out, &record, Format::Json);
        assert!(out.starts_with(br#"{"topic":"t","partition":2,"offset":7,"key":"k","#));
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            json!({"topic": "t", "partition": 2, "offset": 7, "key": "k",
                   "value": {"base64": "/wA="}, "headers": [{"key": "h", "value": null}],
                   "timestamp": 1000})
        );
        out.clear();
        format_record(&mut out, &record, Format::Plain);
        assert_eq!(out, [0xff, 0x00, b'\n']);
    }

    #[test]
    fn t12_idle_timeouts_parse_as_positive_seconds() {
        assert_eq!(parse_secs("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_secs("0").is_err() && parse_secs("x").is_err() && parse_secs("NaN").is_err());
    }
}
