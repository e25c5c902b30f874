//! The producer's background task: plans with [`ProducerState::plan`],
//! starts the RPCs the plan asks for, and feeds each answer back into the
//! state. It decides nothing itself.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use xo_proto::coordinator::{self as pb, AddPartitionsToTxnRequest};
use xo_proto::partition::ProduceResponse;
use xo_proto::{ProducerEpoch, ProducerId};

use super::Engine;
use super::state::{ProduceCall, SentBatch};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// How long the sender sleeps when nothing is due (it is woken earlier by
/// every send that needs it).
const IDLE_WAKE: Duration = Duration::from_secs(1);

enum Event {
    Produce { sent: Vec<SentBatch>, answer: Result<ProduceResponse> },
    AddPartitions { partitions: Vec<TopicPartition>, answer: Result<()> },
    Reset(Result<(ProducerId, ProducerEpoch)>),
    Refresh(Result<()>),
}

type Task = Pin<Box<dyn Future<Output = Event> + Send>>;

pub(crate) async fn run(engine: Arc<Engine>) {
    let mut tasks: FuturesUnordered<Task> = FuturesUnordered::new();
    loop {
        let wake = engine.wake.notified();
        let now = Instant::now();
        let (plan, finished, identity) = {
            let mut state = engine.state.lock().unwrap();
            #[cfg(test)]
            if state.fault_sender_panics {
                // Under the lock, as the worst real panic would be.
                panic!("injected fault: the sender panics while planning");
            }
            let plan = state
                .plan(now, &|topic, partition| engine.cluster.cached_address(topic, partition));
            (plan, state.finished(), state.identity)
        };
        if finished && tasks.is_empty() {
            break;
        }
        for call in plan.produce {
            tasks.push(Box::pin(produce(engine.cluster.clone(), call)));
        }
        if let Some(partitions) = plan.add_partitions {
            let identity = identity.expect("a transaction has a producer id");
            tasks.push(Box::pin(add_partitions(engine.clone(), identity, partitions)));
        }
        if plan.init_producer_id {
            tasks.push(Box::pin(reset(engine.clone())));
        }
        if let Some(topics) = plan.refresh {
            let cluster = engine.cluster.clone();
            tasks.push(Box::pin(async move {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                Event::Refresh(cluster.refresh(&topics).await)
            }));
        }
        let wake_at = plan.wake_at.unwrap_or(now + IDLE_WAKE);
        tokio::select! {
            Some(event) = tasks.next(), if !tasks.is_empty() => {
                apply(&engine, event);
                // Take every other answer that is ready before planning again.
                while let Some(Some(event)) = futures::FutureExt::now_or_never(tasks.next()) {
                    apply(&engine, event);
                }
            }
            _ = wake => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
    tracing::debug!("producer sender stopped");
}

fn apply(engine: &Engine, event: Event) {
    let now = Instant::now();
    {
        let mut state = engine.state.lock().unwrap();
        match event {
            Event::Produce { sent, answer } => state.on_produce_answer(&sent, answer, now),
            Event::AddPartitions { partitions, answer } => {
                state.on_add_partitions_answer(&partitions, answer, now)
            }
            Event::Reset(answer) => state.on_reset_answer(answer, now),
            Event::Refresh(answer) => state.on_refresh_answer(answer, now),
        }
    }
    engine.changed.notify_waiters();
}

async fn produce(cluster: Arc<Cluster>, call: ProduceCall) -> Event {
    let ProduceCall { addr, request, sent } = call;
    let answer = async {
        let mut client = cluster.partition_client(&addr)?;
        let timeout = cluster.config.request_timeout;
        match tokio::time::timeout(timeout, client.produce(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(&addr, status)),
            Err(_) => Err(Error::Transport {
                addr: addr.to_string(),
                message: format!("no answer within {timeout:?}"),
            }),
        }
    }
    .await;
    Event::Produce { sent, answer }
}

async fn add_partitions(
    engine: Arc<Engine>,
    (producer_id, epoch): (ProducerId, ProducerEpoch),
    partitions: Vec<TopicPartition>,
) -> Event {
    let request = AddPartitionsToTxnRequest {
        transactional_id: engine.transactional_id.clone().unwrap_or_default(),
        producer_id: producer_id.0,
        producer_epoch: epoch.0 as i32,
        partitions: partitions
            .iter()
            .map(|tp| pb::TopicPartition { topic: tp.topic.clone(), partition: tp.partition })
            .collect(),
    };
    let answer = engine
        .cluster
        .coordinator_once(|mut c| async move { c.add_partitions_to_txn(request).await })
        .await
        .and_then(|r| Error::from_coordinator(r.error, r.error_message).map_or(Ok(()), Err));
    Event::AddPartitions { partitions, answer }
}

async fn reset(engine: Arc<Engine>) -> Event {
    let timeout_ms = engine.transaction_timeout.as_millis() as i64;
    Event::Reset(super::init_producer_id(&engine.cluster, "", timeout_ms, None).await)
}
