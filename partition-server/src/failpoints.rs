//! Named crash sites for the fault-injection suite. Compiled in only with
//! the `failpoints` cargo feature; in normal builds `crash_at` is empty.
//!
//! With the feature on, `XO_CRASH_AT=<name>` makes the process abort (as
//! abruptly as kill -9: no destructor, no flush) the first time it reaches
//! the named site. Sites in the partition server:
//! - `partition::after_marker_append`: a marker is in the log, but the
//!   partition's transaction state (LSO, aborted index) is not yet updated.

#[cfg(feature = "failpoints")]
pub fn crash_at(site: &str) {
    if std::env::var("XO_CRASH_AT").is_ok_and(|wanted| wanted == site) {
        eprintln!("failpoint {site}: crashing");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_at(_site: &str) {}
