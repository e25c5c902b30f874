//! Watches the producer's two background tasks (the sender and the
//! appender). Everything the producer promises — every `send` resolves,
//! `flush` and `commit_transaction` return — rests on them running; one
//! that stops while the producer is open (a panic, or the Tokio runtime it
//! was spawned on shutting down) would leave every outstanding and every
//! later call waiting for an answer nobody gives. So a task that stops
//! makes the producer fatal at once with [`Error::ProducerStopped`], which
//! says why; a sender that stops also fails what is in flight, since no
//! answer for it will be applied any more.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError};

use futures::FutureExt;

use super::Engine;
use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    Sender,
    Appender,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Sender => "sender",
            Task::Appender => "appender",
        }
    }
}

/// Runs `body` (the task `task` of `engine`'s producer) and fails the
/// producer if it panics, is dropped unfinished, or returns while the
/// producer is open.
pub(crate) async fn supervise(
    engine: Arc<Engine>,
    task: Task,
    body: impl Future<Output = ()> + Send,
) {
    let mut watch = Watch { engine: &engine, task, armed: true };
    // The state is left consistent enough by a panic for what follows:
    // `stopped` only fails things, and the producer is unusable after it.
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    watch.armed = false;
    let closing = engine.state.lock().unwrap_or_else(PoisonError::into_inner).closing;
    match outcome {
        Ok(()) if closing => {}
        Ok(()) => stopped(&engine, task, "it returned while the producer was open".into()),
        Err(panic) => stopped(&engine, task, format!("it panicked: {}", panic_message(&*panic))),
    }
}

/// Fails the producer if the task's future is dropped before it finished:
/// the runtime shut down, or the task was aborted.
struct Watch<'a> {
    engine: &'a Engine,
    task: Task,
    armed: bool,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.armed {
            let reason = "it was cancelled (the Tokio runtime it ran on shut down, or the task \
                          was aborted)";
            stopped(self.engine, self.task, reason.into());
        }
    }
}

/// The producer can do nothing any more: fail everything it holds and
/// every later call, and wake whoever waits on it.
fn stopped(engine: &Engine, task: Task, reason: String) {
    // A panic while the state lock was held poisoned it; every later call
    // would panic in turn. Failing everything below is what makes the
    // state safe to use again (every path checks `fatal` first).
    engine.state.clear_poison();
    let error = Error::ProducerStopped { task: task.name(), reason };
    {
        let mut state = engine.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closing {
            tracing::debug!(error = %error, "producer task stopped while closing");
        } else {
            tracing::error!(error = %error, "producer task stopped");
        }
        match task {
            Task::Sender => state.set_sender_stopped(error),
            Task::Appender => state.set_fatal(error),
        }
    }
    engine.changed.notify_waiters();
    engine.wake.notify_one();
    engine.appender_wake.notify_one();
}

/// The text a panic was raised with, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => text,
        (None, Some(text)) => text,
        (None, None) => "(no message)",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{ClientConfig, ProducerConfig, StaticMetadata};
    use crate::error::{Error, Result};
    use crate::{Producer, ProducerRecord, RecordMetadata};

    /// Longest a call may take to fail once a task stopped: "at once",
    /// with room for a loaded machine.
    const FAIL_WAIT_MAX: Duration = Duration::from_millis(500);

    /// A producer whose only partition is on a port nobody listens on:
    /// every batch fails with a transport error and waits for a retry, so
    /// nothing resolves unless the producer fails it.
    async fn stuck_producer() -> Producer {
        let mut metadata = StaticMetadata::default().topic("t", 1, "127.0.0.1:1");
        metadata.producer_id = Some(1);
        let mut config = ProducerConfig::new(ClientConfig::with_static_metadata(metadata));
        config.linger = Duration::from_millis(1);
        Producer::new(config).await.unwrap()
    }

    fn assert_stopped(result: &Result<RecordMetadata>, task: &str, reason: &str) {
        match result {
            Err(e @ Error::ProducerStopped { .. }) => {
                assert!(e.is_fatal());
                let text = e.to_string();
                assert!(text.contains(task) && text.contains(reason), "{text}");
            }
            other => panic!("expected ProducerStopped, got {other:?}"),
        }
    }

    /// Stops the sender with `stop`, then checks that a record in flight,
    /// one queued behind it and a later one fail within FAIL_WAIT_MAX with
    /// `reason`, and that flush and close return as quickly.
    async fn check_stopped_sender_fails_everything(stop: impl FnOnce(&Producer), reason: &str) {
        let producer = stuck_producer().await;
        let in_flight = producer.send(ProducerRecord::new("t", "sent"));
        // Long enough for the batch to be sent, fail and wait for a retry.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = producer.send(ProducerRecord::new("t", "queued"));
        stop(&producer);
        let (in_flight, queued) =
            tokio::time::timeout(FAIL_WAIT_MAX, async { futures::join!(in_flight, queued) })
                .await
                .expect("outstanding sends fail at once");
        assert_stopped(&in_flight, "sender", reason);
        assert_stopped(&queued, "sender", reason);
        let later = producer.send(ProducerRecord::new("t", "later"));
        let later = tokio::time::timeout(FAIL_WAIT_MAX, later).await.expect("a later send fails");
        assert_stopped(&later, "sender", reason);
        tokio::time::timeout(FAIL_WAIT_MAX, producer.flush()).await.expect("flush returns");
        let closed = tokio::time::timeout(FAIL_WAIT_MAX, producer.close()).await;
        closed.expect("close returns").unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn t10_a_sender_that_panics_fails_every_call_at_once_saying_why() {
        // Proves: after the sender panics under the state lock (poisoning
        // it), outstanding and later sends fail at once with a fatal
        // ProducerStopped quoting the panic; flush and close return.
        let panic = |producer: &Producer| {
            let engine = &producer.handle.engine;
            engine.state.lock().unwrap().fault_sender_panics = true;
            engine.wake.notify_one();
        };
        check_stopped_sender_fails_everything(panic, "it panicked: injected fault").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn t11_a_cancelled_sender_fails_every_call_at_once_saying_why() {
        // Proves: the same when the sender's task is dropped unfinished, as
        // at a runtime shutdown.
        let abort = |producer: &Producer| producer.handle.tasks.lock().unwrap()[0].abort();
        check_stopped_sender_fails_everything(abort, "it was cancelled").await;
    }
}
