//! Goal: prove the consumer's side of the group protocol — join, sync,
//! heartbeat, rejoin on REBALANCE_IN_PROGRESS, revoke/assign callbacks
//! only inside `poll`, offset commits carrying the generation (and refused
//! once it is over), `committed()` waiting out UNSTABLE_OFFSET_COMMIT —
//! against an in-process fake coordinator that follows the contract of
//! `coordinator.proto` in the simplest way (no waiting for members in
//! JoinGroup; round-robin assignment in SyncGroup). The real coordinator's
//! groups are another issue; these tests pin down what the client expects.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use xo_client::{
    ClientConfig, Consumer, ConsumerConfig, Error, ErrorClass, Offset, Rebalance, TopicPartition,
};
use xo_proto::coordinator::coordinator_service_server::{
    CoordinatorService, CoordinatorServiceServer,
};
use xo_proto::coordinator::*;

const TOPIC: &str = "in";
const PARTITIONS: u32 = 4;

#[derive(Default)]
struct Group {
    generation: i32,
    /// Member → the generation it last joined.
    members: BTreeMap<String, i32>,
    next_member: u32,
    offsets: BTreeMap<(String, u32), i64>,
    /// OffsetFetch answers UNSTABLE_OFFSET_COMMIT until then.
    unstable_until: Option<Instant>,
    /// Generation of each accepted OffsetCommit.
    commits: Vec<(String, i32)>,
}

#[derive(Clone, Default)]
struct Fake {
    group: Arc<Mutex<Group>>,
}

fn none() -> i32 {
    ErrorCode::None as i32
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CoordinatorService for Fake {
    async fn register_partition_server(
        &self,
        _: Request<RegisterPartitionServerRequest>,
    ) -> Answer<RegisterPartitionServerResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_topic(&self, _: Request<CreateTopicRequest>) -> Answer<CreateTopicResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_topic(&self, _: Request<DeleteTopicRequest>) -> Answer<DeleteTopicResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn metadata(&self, _: Request<MetadataRequest>) -> Answer<MetadataResponse> {
        // The partitions live nowhere reachable: fetchers just retry.
        let partitions = (0..PARTITIONS)
            .map(|p| PartitionMetadata {
                partition: p,
                server_id: "s".into(),
                address: "127.0.0.1:9".into(),
            })
            .collect();
        Ok(Response::new(MetadataResponse {
            error: none(),
            topics: vec![TopicMetadata {
                name: TOPIC.into(),
                config: None,
                partitions,
                internal: false,
            }],
            ..Default::default()
        }))
    }
    async fn init_producer_id(
        &self,
        _: Request<InitProducerIdRequest>,
    ) -> Answer<InitProducerIdResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn add_partitions_to_txn(
        &self,
        _: Request<AddPartitionsToTxnRequest>,
    ) -> Answer<AddPartitionsToTxnResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn add_offsets_to_txn(
        &self,
        _: Request<AddOffsetsToTxnRequest>,
    ) -> Answer<AddOffsetsToTxnResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn end_txn(&self, _: Request<EndTxnRequest>) -> Answer<EndTxnResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn verify_txn_partition(
        &self,
        _: Request<VerifyTxnPartitionRequest>,
    ) -> Answer<VerifyTxnPartitionResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_transactions(
        &self,
        _: Request<ListTransactionsRequest>,
    ) -> Answer<ListTransactionsResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn describe_transaction(
        &self,
        _: Request<DescribeTransactionRequest>,
    ) -> Answer<DescribeTransactionResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn abort_transaction(
        &self,
        _: Request<AbortTransactionRequest>,
    ) -> Answer<AbortTransactionResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn find_hanging(&self, _: Request<FindHangingRequest>) -> Answer<FindHangingResponse> {
        Err(Status::unimplemented("fake"))
    }

    async fn join_group(&self, r: Request<JoinGroupRequest>) -> Answer<JoinGroupResponse> {
        let r = r.into_inner();
        let mut g = self.group.lock().unwrap();
        let member_id = if r.member_id.is_empty() {
            g.next_member += 1;
            format!("member-{}", g.next_member)
        } else if g.members.contains_key(&r.member_id) {
            r.member_id
        } else {
            return Ok(Response::new(JoinGroupResponse {
                error: ErrorCode::UnknownMemberId as i32,
                ..Default::default()
            }));
        };
        // A new member starts a new generation; a member rejoining takes
        // the current one.
        if !g.members.contains_key(&member_id) {
            g.generation += 1;
        }
        let generation = g.generation;
        g.members.insert(member_id.clone(), generation);
        Ok(Response::new(JoinGroupResponse {
            error: none(),
            error_message: String::new(),
            member_id,
            generation_id: generation,
        }))
    }

    async fn sync_group(&self, r: Request<SyncGroupRequest>) -> Answer<SyncGroupResponse> {
        let r = r.into_inner();
        let g = self.group.lock().unwrap();
        if r.generation_id != g.generation {
            return Ok(Response::new(SyncGroupResponse {
                error: ErrorCode::IllegalGeneration as i32,
                ..Default::default()
            }));
        }
        let members: Vec<&String> = g.members.keys().collect();
        let index = members.iter().position(|m| **m == r.member_id).unwrap();
        let assignment = (0..PARTITIONS)
            .filter(|p| *p as usize % members.len() == index)
            .map(|p| xo_proto::coordinator::TopicPartition { topic: TOPIC.into(), partition: p })
            .collect();
        Ok(Response::new(SyncGroupResponse {
            error: none(),
            error_message: String::new(),
            assignment,
        }))
    }

    async fn heartbeat(&self, r: Request<HeartbeatRequest>) -> Answer<HeartbeatResponse> {
        let r = r.into_inner();
        let g = self.group.lock().unwrap();
        let error = match g.members.get(&r.member_id) {
            None => ErrorCode::UnknownMemberId,
            Some(_) if r.generation_id != g.generation => ErrorCode::RebalanceInProgress,
            Some(_) => ErrorCode::None,
        };
        Ok(Response::new(HeartbeatResponse { error: error as i32, error_message: String::new() }))
    }

    async fn leave_group(&self, r: Request<LeaveGroupRequest>) -> Answer<LeaveGroupResponse> {
        let mut g = self.group.lock().unwrap();
        if g.members.remove(&r.into_inner().member_id).is_some() {
            g.generation += 1;
        }
        Ok(Response::new(LeaveGroupResponse { error: none(), error_message: String::new() }))
    }

    async fn offset_commit(&self, r: Request<OffsetCommitRequest>) -> Answer<OffsetCommitResponse> {
        let r = r.into_inner();
        let mut g = self.group.lock().unwrap();
        if !r.member_id.is_empty() && r.generation_id != g.generation {
            return Ok(Response::new(OffsetCommitResponse {
                error: ErrorCode::IllegalGeneration as i32,
                error_message: "old generation".into(),
            }));
        }
        for po in r.offsets {
            let tp = po.partition.unwrap();
            g.offsets.insert((tp.topic, tp.partition), po.offset);
        }
        g.commits.push((r.member_id, r.generation_id));
        Ok(Response::new(OffsetCommitResponse { error: none(), error_message: String::new() }))
    }

    async fn txn_offset_commit(
        &self,
        _: Request<TxnOffsetCommitRequest>,
    ) -> Answer<TxnOffsetCommitResponse> {
        Err(Status::unimplemented("fake"))
    }

    async fn offset_fetch(&self, r: Request<OffsetFetchRequest>) -> Answer<OffsetFetchResponse> {
        let r = r.into_inner();
        let g = self.group.lock().unwrap();
        if g.unstable_until.is_some_and(|t| Instant::now() < t) {
            return Ok(Response::new(OffsetFetchResponse {
                error: ErrorCode::UnstableOffsetCommit as i32,
                ..Default::default()
            }));
        }
        let offsets = r
            .partitions
            .into_iter()
            .map(|tp| PartitionOffset {
                offset: *g.offsets.get(&(tp.topic.clone(), tp.partition)).unwrap_or(&-1),
                partition: Some(tp),
                metadata: String::new(),
            })
            .collect();
        Ok(Response::new(OffsetFetchResponse {
            error: none(),
            error_message: String::new(),
            offsets,
        }))
    }
}

async fn start_fake() -> (Fake, String) {
    let fake = Fake::default();
    {
        // Every partition has a committed offset: positions never need the
        // (unreachable) partition servers.
        let mut g = fake.group.lock().unwrap();
        for p in 0..PARTITIONS {
            g.offsets.insert((TOPIC.into(), p), 10 * p as i64);
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = CoordinatorServiceServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (fake, addr)
}

fn consumer(addr: &str) -> (Consumer, Arc<Mutex<Vec<String>>>) {
    let mut client = ClientConfig::new(addr);
    client.operation_timeout = Duration::from_secs(5);
    client.request_timeout = Duration::from_secs(2);
    let mut config = ConsumerConfig::new(client).group("g");
    config.session_timeout = Duration::from_secs(2);
    config.heartbeat_interval = Duration::from_millis(50);
    let mut consumer = Consumer::new(config).unwrap();
    consumer.subscribe(&[TOPIC], "g").unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    consumer.set_rebalance_listener(move |change| {
        log.lock().unwrap().push(match change {
            Rebalance::Revoked(p) => format!("revoked {}", p.len()),
            Rebalance::Assigned(p) => format!("assigned {}", p.len()),
        })
    });
    (consumer, events)
}

fn partitions(consumer: &Consumer) -> Vec<u32> {
    consumer.assignment().iter().map(|tp| tp.partition).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_join_assigns_every_partition_at_its_committed_offset() {
    let (_fake, addr) = start_fake().await;
    let (mut c, events) = consumer(&addr);
    assert!(c.assignment().is_empty(), "nothing before the first poll");
    assert!(c.poll(Duration::from_millis(100)).await.unwrap().is_empty());
    assert_eq!(partitions(&c), vec![0, 1, 2, 3]);
    assert_eq!(*events.lock().unwrap(), vec!["assigned 4"]);
    let meta = c.group_metadata();
    assert_eq!(
        (meta.group_id.as_str(), meta.member_id.as_str(), meta.generation_id),
        ("g", "member-1", 1)
    );
    let positions: HashMap<u32, i64> =
        c.positions().into_iter().map(|(tp, o)| (tp.partition, o.0)).collect();
    assert_eq!(positions, HashMap::from([(0, 0), (1, 10), (2, 20), (3, 30)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_new_member_triggers_a_rebalance_that_fences_old_commits() {
    // Proves: when a second member joins, the first learns it from its
    // heartbeat; until its next poll it still holds its partitions but a
    // commit with its old generation is refused (abortable); the next poll
    // revokes, rejoins and assigns, and commits work again.
    let (fake, addr) = start_fake().await;
    let (mut a, a_events) = consumer(&addr);
    a.poll(Duration::from_millis(100)).await.unwrap();
    let (mut b, _) = consumer(&addr);
    b.poll(Duration::from_millis(100)).await.unwrap();
    assert_eq!(b.group_metadata().generation_id, 2);
    // Give a's heartbeat time to hear of the rebalance.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(partitions(&a), vec![0, 1, 2, 3], "nothing changes outside poll");
    let stale = a.commit().await.unwrap_err();
    assert_eq!(stale.coordinator_code(), Some(ErrorCode::IllegalGeneration), "{stale:?}");
    assert_eq!(stale.class(), ErrorClass::Abortable);
    a.poll(Duration::from_millis(100)).await.unwrap();
    assert_eq!(*a_events.lock().unwrap(), vec!["assigned 4", "revoked 4", "assigned 2"]);
    assert_eq!(a.group_metadata().generation_id, 2);
    b.poll(Duration::from_millis(100)).await.unwrap();
    let mut all = partitions(&a);
    all.extend(partitions(&b));
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3], "every partition has exactly one owner");
    a.seek(&a.assignment()[0], Offset(99)).unwrap();
    a.commit().await.unwrap();
    let g = fake.group.lock().unwrap();
    assert_eq!(g.commits.last().unwrap().1, 2, "the commit carries the new generation");
    assert_eq!(g.offsets[&(TOPIC.to_string(), a.assignment()[0].partition)], 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_committed_waits_out_unstable_offsets_then_gives_up() {
    let (fake, addr) = start_fake().await;
    let (c, _) = consumer(&addr);
    let tp = TopicPartition::new(TOPIC, 1);
    fake.group.lock().unwrap().unstable_until = Some(Instant::now() + Duration::from_millis(400));
    let started = Instant::now();
    let committed = c.committed(std::slice::from_ref(&tp)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(350));
    assert_eq!(committed[&tp], Some(Offset(10)));
    // Unstable past the operation timeout: a typed retriable error.
    fake.group.lock().unwrap().unstable_until = Some(Instant::now() + Duration::from_secs(3600));
    let e: Error = c.committed(&[tp]).await.unwrap_err();
    assert_eq!(e.coordinator_code(), Some(ErrorCode::UnstableOffsetCommit));
    assert!(e.is_retriable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_close_leaves_the_group() {
    let (fake, addr) = start_fake().await;
    let (mut c, _) = consumer(&addr);
    c.poll(Duration::from_millis(100)).await.unwrap();
    c.close().await.unwrap();
    assert!(fake.group.lock().unwrap().members.is_empty());
    assert!(matches!(c.poll(Duration::from_millis(10)).await, Err(Error::Closed)));
}
