//! A cancellation flag for the run: set on Ctrl-C or SIGTERM; workers and the
//! nemesis check it and return promptly.

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Cancel {
    rx: watch::Receiver<bool>,
}

#[derive(Debug)]
pub struct CancelHandle {
    tx: watch::Sender<bool>,
}

pub fn cancel_pair() -> (CancelHandle, Cancel) {
    let (tx, rx) = watch::channel(false);
    (CancelHandle { tx }, Cancel { rx })
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }
}

impl Cancel {
    /// Never cancelled: for tests and tools.
    pub fn never() -> Cancel {
        let (handle, cancel) = cancel_pair();
        std::mem::forget(handle);
        cancel
    }

    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once cancelled (never, if the handle is dropped uncancelled).
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
