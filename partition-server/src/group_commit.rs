//! Group commit: many concurrent appends to one partition share one fsync.
//!
//! An appender that needs its batch durable calls [`GroupCommit::wait_durable`]
//! with the offset just past its batch. If no fsync is running, it starts one
//! on the blocking pool; every appender that arrives while it runs waits for
//! the next one, which then covers all of them. So at most one fsync runs per
//! partition at a time, and under load each fsync acknowledges a whole group.
//!
//! The fsync runs in a spawned blocking task, not in the appender's future:
//! a client that disconnects mid-wait drops its future, and that must never
//! leave the partition believing an fsync is still running.

use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Makes everything written so far durable and returns the offset below
/// which that is now true. Runs on the blocking pool.
pub type Syncer = Arc<dyn Fn() -> io::Result<i64> + Send + Sync>;

pub struct GroupCommit {
    // std Mutex: nothing async happens while it is held.
    state: Mutex<SyncState>,
    synced: Notify,
    syncer: Syncer,
}

struct SyncState {
    /// Everything below this offset has been fsync'd.
    durable_end: i64,
    sync_running: bool,
    /// Set after an fsync failed. The data's fate is then unknown (the
    /// kernel may have dropped the dirty pages), so nothing after it may be
    /// acknowledged: every later wait fails.
    failure: Option<String>,
    /// fsyncs completed, for tests and metrics.
    syncs: u64,
}

impl GroupCommit {
    pub fn new(durable_end: i64, syncer: Syncer) -> Arc<GroupCommit> {
        Arc::new(GroupCommit {
            state: Mutex::new(SyncState {
                durable_end,
                sync_running: false,
                failure: None,
                syncs: 0,
            }),
            synced: Notify::new(),
            syncer,
        })
    }

    /// Waits until everything below `end` is durable.
    pub async fn wait_durable(self: &Arc<Self>, end: i64) -> io::Result<()> {
        loop {
            let notified = self.synced.notified();
            tokio::pin!(notified);
            // Registered before looking at the state, so a sync finishing
            // between the look and the await still wakes us.
            notified.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap();
                if let Some(failure) = &state.failure {
                    return Err(io::Error::other(failure.clone()));
                }
                if state.durable_end >= end {
                    return Ok(());
                }
                if !state.sync_running {
                    state.sync_running = true;
                    self.start_sync();
                }
            }
            notified.await;
        }
    }

    fn start_sync(self: &Arc<Self>) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = (this.syncer)();
            let mut state = this.state.lock().unwrap();
            state.sync_running = false;
            match result {
                Ok(upto) => {
                    state.durable_end = state.durable_end.max(upto);
                    state.syncs += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "fsync failed; the partition refuses further writes");
                    state.failure = Some(format!("fsync failed: {e}"));
                }
            }
            drop(state);
            this.synced.notify_waiters();
        });
    }

    /// Runs one sync now (the interval policy's background flush, and clean
    /// shutdown). Returns the durable end.
    pub fn sync_now(&self) -> io::Result<i64> {
        let upto = (self.syncer)()?;
        let mut state = self.state.lock().unwrap();
        state.durable_end = state.durable_end.max(upto);
        state.syncs += 1;
        Ok(state.durable_end)
    }

    pub fn syncs(&self) -> u64 {
        self.state.lock().unwrap().syncs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_fsyncs() {
        // Proves group commit: 64 concurrent appenders need far fewer than 64 fsyncs, and each returns only once durable.
        let written = Arc::new(AtomicI64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let (w, c) = (written.clone(), calls.clone());
        let gc = GroupCommit::new(
            0,
            Arc::new(move || {
                let upto = w.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5)); // a slow disk
                c.fetch_add(1, Ordering::SeqCst);
                Ok(upto)
            }),
        );
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let end = written.fetch_add(1, Ordering::SeqCst) + 1;
            let gc = gc.clone();
            tasks.push(tokio::spawn(async move { gc.wait_durable(end).await.map(|_| end) }));
        }
        for t in tasks {
            let end = t.await.unwrap().unwrap();
            assert!(gc.state.lock().unwrap().durable_end >= end);
        }
        let fsyncs = calls.load(Ordering::SeqCst);
        assert!((1..64).contains(&fsyncs), "{fsyncs} fsyncs for 64 appends");
        assert_eq!(gc.syncs(), fsyncs);
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_every_later_wait() {
        // Proves no write is acknowledged after an fsync error.
        let gc = GroupCommit::new(0, Arc::new(|| Err(io::Error::other("EIO"))));
        assert!(gc.wait_durable(1).await.is_err());
        assert!(gc.wait_durable(1).await.is_err());
    }

    #[tokio::test]
    async fn cancelled_waiter_does_not_wedge_the_partition() {
        // Proves a dropped wait (client gone) leaves later waits working.
        let gc = GroupCommit::new(
            0,
            Arc::new(|| {
                std::thread::sleep(Duration::from_millis(20));
                Ok(10)
            }),
        );
        let first = tokio::time::timeout(Duration::from_millis(1), gc.wait_durable(5)).await;
        assert!(first.is_err(), "expected the first wait to be cut off");
        gc.wait_durable(10).await.unwrap();
    }
}
