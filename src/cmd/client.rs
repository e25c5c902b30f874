//! What the client commands (`topic`, `produce`, `consume`, `txn`,
//! `producers`) share: the `--bootstrap-server` option, a reachability
//! check that fails in seconds instead of after the library's retries,
//! client errors turned into one line a user can act on, and plain-text
//! tables on stdout.

use std::io::Write;
use std::time::Duration;

use xo_client::{Admin, ClientConfig, Error, TopicDescription};
use xo_proto::coordinator::ErrorCode as CoordinatorCode;

/// How long the reachability check waits for a bootstrap address to accept
/// a TCP connection.
const BOOTSTRAP_CONNECT_WAIT_MAX: Duration = Duration::from_secs(3);

/// Where the cluster is, as Kafka's tools take it.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Address of the cluster's coordinator, host:port (several may be given,
    /// comma-separated); `xo dev` serves it on 127.0.0.1:7070 by default.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        env = "XO_BOOTSTRAP",
        default_value = "127.0.0.1:7070",
        value_name = "ADDR"
    )]
    pub bootstrap_server: String,
}

impl ClusterArgs {
    /// The client configuration, once some bootstrap address accepts a
    /// connection. The library would retry an unreachable coordinator for
    /// its whole operation timeout; a command line should say at once.
    pub async fn connect(&self) -> anyhow::Result<ClientConfig> {
        let config = ClientConfig::new(&self.bootstrap_server);
        if config.bootstrap.is_empty() {
            anyhow::bail!("--bootstrap-server is empty");
        }
        let mut failure = String::new();
        for addr in &config.bootstrap {
            let attempt = tokio::net::TcpStream::connect(addr.as_str());
            match tokio::time::timeout(BOOTSTRAP_CONNECT_WAIT_MAX, attempt).await {
                Ok(Ok(_)) => return Ok(config),
                Ok(Err(e)) => failure = e.to_string(),
                Err(_) => failure = format!("no answer within {BOOTSTRAP_CONNECT_WAIT_MAX:?}"),
            }
        }
        anyhow::bail!(
            "cannot reach the bootstrap server {} ({failure}); is `xo dev` running? \
             (start it with `xo dev`, or point --bootstrap-server / XO_BOOTSTRAP at your cluster)",
            self.bootstrap_server
        )
    }

    /// An admin client for the cluster, after the reachability check.
    pub async fn admin(&self) -> anyhow::Result<Admin> {
        let config = self.connect().await?;
        Admin::new(config).map_err(|e| explain(&e))
    }
}

/// The description of `topic`; an unknown topic is an error naming it.
pub async fn describe_topic(admin: &Admin, topic: &str) -> anyhow::Result<TopicDescription> {
    match admin.describe_topics(&[topic]).await {
        Ok(mut topics) => topics.pop().ok_or_else(|| unknown_topic(topic)),
        Err(e) if is_unknown_topic(&e) => Err(unknown_topic(topic)),
        Err(e) => Err(explain(&e)),
    }
}

pub fn unknown_topic(topic: &str) -> anyhow::Error {
    anyhow::anyhow!("unknown topic {topic:?} (`xo topic list` shows the topics)")
}

pub fn is_unknown_topic(e: &Error) -> bool {
    matches!(e, Error::UnknownTopic(_))
        || e.coordinator_code() == Some(CoordinatorCode::UnknownTopicOrPartition)
}

/// A client error as one line that says what went wrong where.
pub fn explain(e: &Error) -> anyhow::Error {
    let text = match e {
        Error::UnknownTopic(topic) => return unknown_topic(topic),
        Error::Transport { addr, message } => {
            format!("lost contact with {addr}: {message} (is the cluster still running?)")
        }
        Error::Rpc { message, .. } if message.contains("grpc-status header missing") => {
            format!(
                "the server did not answer as an xo coordinator ({message}); is --bootstrap-server right?"
            )
        }
        Error::Rpc { code: tonic::Code::Unimplemented, message } => {
            format!("the cluster does not support this yet: {message}")
        }
        Error::Coordinator { code, message } if message.is_empty() => format!("{code:?}"),
        Error::Coordinator { code, message } => format!("{message} ({code:?})"),
        other => other.to_string(),
    };
    anyhow::anyhow!(one_line(&text))
}

/// `text` with its line breaks folded into spaces: errors are one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes `rows` under `headers` in aligned columns to stdout. A closed
/// pipe (`| head`) ends the output quietly.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        assert_eq!(row.len(), headers.len(), "a table row has one cell per column");
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    print_text(&text)
}

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("writing to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time, for tables.
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_times_format_as_utc() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_time_ms(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn t11_errors_are_one_line() {
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
        let e = explain(&Error::UnknownTopic("t".into()));
        assert!(e.to_string().starts_with("unknown topic \"t\""));
    }
}
