//! Settings of a partition server and of each partition, with their bounds.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Largest batch a producer may send (and so the largest stored batch).
pub const BATCH_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Largest gRPC request or response the server accepts or builds.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Upper bound on the bytes one fetch returns, whatever the client asks.
pub const FETCH_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Upper bound on a fetch's long-poll wait.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;
/// Partitions one server hosts.
pub const PARTITIONS_PER_SERVER_MAX: usize = 10_000;
/// Longest topic name.
pub const TOPIC_NAME_LEN_MAX: usize = 200;

/// When an appended batch is fsync'd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before the produce is acknowledged; concurrent appends share one fsync
    /// (group commit). The default: acknowledged means durable.
    Always,
    /// Every so often in the background; a crash of the machine (not only of
    /// the process) can lose acknowledged writes from the last interval.
    Interval(Duration),
    /// Never explicitly; the OS writes back when it likes. For comparison
    /// with Kafka's page-cache default only.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<FsyncPolicy, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => match other.strip_prefix("interval:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
                    _ => Err(format!("bad fsync interval {ms:?}: expected milliseconds > 0")),
                },
                None => Err(format!(
                    "unknown fsync policy {other:?}: expected always, interval:<ms> or never"
                )),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Producer state of a producer idle this long is dropped.
    pub producer_expiry: Duration,
    pub batch_bytes_max: usize,
    /// Defaults for partitions whose config leaves them at 0.
    pub segment_bytes_default: u64,
    pub segment_ms_default: i64,
    /// How often retention, compaction and producer expiry run.
    pub housekeeping_interval: Duration,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            fsync: FsyncPolicy::Always,
            producer_expiry: Duration::from_secs(7 * 24 * 3600),
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            segment_bytes_default: 1 << 30,
            segment_ms_default: 7 * 24 * 3600 * 1000,
            housekeeping_interval: Duration::from_secs(30),
        }
    }
}

/// Checks a topic name: non-empty, at most [`TOPIC_NAME_LEN_MAX`] bytes of
/// ASCII letters, digits, `.`, `_` and `-` (so it is a safe directory name).
pub fn validate_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > TOPIC_NAME_LEN_MAX {
        return Err(format!("topic name must be 1 to {TOPIC_NAME_LEN_MAX} bytes"));
    }
    if topic == "." || topic == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if let Some(c) = topic.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!("topic name {topic:?} has {c:?}: use letters, digits, '.', '_', '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_parse() {
        // Proves every documented spelling parses and bad ones explain themselves.
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!("interval:50".parse(), Ok(FsyncPolicy::Interval(Duration::from_millis(50))));
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().unwrap_err().contains("always"));
    }

    #[test]
    fn topic_names_are_safe_directory_names() {
        // Proves path tricks and odd characters are refused.
        assert!(validate_topic_name("orders.v2_eu-1").is_ok());
        assert!(validate_topic_name("__consumer_offsets").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "x\0", &"t".repeat(201)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
