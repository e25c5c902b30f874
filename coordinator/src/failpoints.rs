//! Named crash sites for the fault-injection suite, armed like the
//! partition server's: off unless the process was started with
//! `XO_CRASH_AT=<site>`; then it aborts — as abruptly as kill -9: no
//! destructor, no flush — the first time it reaches that site. The variable
//! is read once, so a site costs one comparison of a cached `Option`.
//!
//! Sites in the coordinator, in the order two-phase commit reaches them:
//! - `coordinator::after_prepare_persisted`: PrepareCommit / PrepareAbort is
//!   durable, the client has not been answered, no marker sent.
//! - `coordinator::after_some_markers`: at least one partition server
//!   acknowledged its markers, at least one has not been asked or has not
//!   answered yet.
//! - `coordinator::before_complete_persisted`: every partition acknowledged
//!   its marker; CompleteCommit / CompleteAbort is not yet written.

use std::sync::OnceLock;

pub const CRASH_AT_ENV: &str = "XO_CRASH_AT";

pub const AFTER_PREPARE_PERSISTED: &str = "coordinator::after_prepare_persisted";
pub const AFTER_SOME_MARKERS: &str = "coordinator::after_some_markers";
pub const BEFORE_COMPLETE_PERSISTED: &str = "coordinator::before_complete_persisted";

fn armed_site() -> Option<&'static str> {
    static SITE: OnceLock<Option<String>> = OnceLock::new();
    SITE.get_or_init(|| std::env::var(CRASH_AT_ENV).ok().filter(|s| !s.is_empty())).as_deref()
}

/// Aborts the process if `site` is the armed crash site.
pub fn crash_at(site: &str) {
    if armed_site() == Some(site) {
        eprintln!("failpoint {site}: crashing");
        std::process::abort();
    }
}
