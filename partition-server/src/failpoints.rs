//! Named crash sites for the fault-injection suite. Off unless the process
//! was started with `XO_CRASH_AT=<site>`; then it aborts — as abruptly as
//! kill -9: no destructor, no flush — the first time it reaches that site.
//! The variable is read once, so a site costs one comparison of a cached
//! `Option` when the suite is not running.
//!
//! Sites in the partition server:
//! - `partition::after_marker_append`: a marker is in the log, but the
//!   partition's transaction state (LSO, aborted index) is not yet updated.

use std::sync::OnceLock;

pub const CRASH_AT_ENV: &str = "XO_CRASH_AT";

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
