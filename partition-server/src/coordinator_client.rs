//! The partition server's side of the coordinator: it registers there at
//! start-up (retrying in the background until the coordinator answers), and
//! asks it, before the first transactional write of a transaction to a
//! partition, whether that partition was added to the transaction
//! ([`CoordinatorVerifier`], the [`TxnVerifier`] used when a coordinator is
//! configured). Also: the server's stable id, kept in its data directory.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use xo_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use xo_proto::coordinator::{
    ErrorCode, RegisterPartitionServerRequest, TopicPartition, VerifyTxnPartitionRequest,
};
use xo_proto::{ProducerEpoch, ProducerId};

use crate::log::segment::write_atomically;
use crate::partition::{PartitionError, TxnVerifier};

/// File in the data directory holding the server's id.
pub const SERVER_ID_FILE: &str = "server.id";
/// A verification the coordinator does not answer within this fails (the
/// producer retries); the produce request is not held longer.
pub const VERIFY_TIMEOUT_MS_MAX: u64 = 5_000;
/// Longest wait between two registration attempts.
pub const REGISTER_BACKOFF_MS_MAX: u64 = 2_000;
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// The channel to the coordinator pings its connection (HTTP/2) this often,
/// idle or not, and drops it when a ping is not answered within
/// [`KEEP_ALIVE_TIMEOUT_MS`]; the next call reconnects. Without it a
/// connection gone silent (a partition TCP does not ride out, a host lost
/// without a reset) fails every verification on it until the kernel gives
/// up on it, many minutes later.
pub const KEEP_ALIVE_INTERVAL_MS: u64 = 2_000;
pub const KEEP_ALIVE_TIMEOUT_MS: u64 = 4_000;

fn channel(coordinator: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{coordinator}"))
        .map_err(|e| format!("bad coordinator address {coordinator:?}: {e}"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
        .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_TIMEOUT_MS))
        .keep_alive_while_idle(true);
    Ok(crate::hooks::connect_lazy(endpoint))
}

/// Verifies transactional writes with the coordinator (VerifyTxnPartition).
pub struct CoordinatorVerifier {
    client: CoordinatorServiceClient<Channel>,
}

impl CoordinatorVerifier {
    /// Connects lazily: the coordinator need not be up yet.
    pub fn new(coordinator: &str) -> Result<CoordinatorVerifier, String> {
        Ok(CoordinatorVerifier { client: CoordinatorServiceClient::new(channel(coordinator)?) })
    }
}

#[tonic::async_trait]
impl TxnVerifier for CoordinatorVerifier {
    async fn verify(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        topic: &str,
        partition: u32,
    ) -> Result<(), PartitionError> {
        let request = VerifyTxnPartitionRequest {
            producer_id: producer_id.0,
            producer_epoch: i32::from(producer_epoch.0),
            partition: Some(TopicPartition { topic: topic.to_string(), partition }),
        };
        let mut client = self.client.clone();
        let timeout = Duration::from_millis(VERIFY_TIMEOUT_MS_MAX);
        let not_verified = |why: String| Err(PartitionError::TransactionNotVerified(why));
        match tokio::time::timeout(timeout, client.verify_txn_partition(request)).await {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                if response.error == ErrorCode::None as i32 && response.verified {
                    Ok(())
                } else if response.error == ErrorCode::None as i32 {
                    not_verified(format!(
                        "{topic}-{partition} is not in an ongoing transaction of producer \
                         {producer_id} epoch {producer_epoch}: call AddPartitionsToTxn first"
                    ))
                } else {
                    not_verified(format!("coordinator: {}", response.error_message))
                }
            }
            Ok(Err(status)) => {
                not_verified(format!("coordinator unreachable: {}", status.message()))
            }
            Err(_) => not_verified(format!("coordinator did not answer within {timeout:?}")),
        }
    }
}

/// Registers `server_id` at `address` with the coordinator, retrying with
/// capped backoff until it is accepted; returns the coordinator's epoch.
/// Runs in the background of a starting server: the server serves (and
/// refuses unverifiable transactional writes) meanwhile.
pub async fn register_until_accepted(
    coordinator: String,
    server_id: String,
    address: String,
) -> i32 {
    let mut wait_ms = 50;
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let outcome = match channel(&coordinator) {
            Ok(channel) => {
                let request = RegisterPartitionServerRequest {
                    server_id: server_id.clone(),
                    address: address.clone(),
                };
                CoordinatorServiceClient::new(channel)
                    .register_partition_server(request)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.message().to_string())
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(response) if response.error == ErrorCode::None as i32 => {
                tracing::info!(
                    %coordinator, %server_id, %address,
                    coordinator_epoch = response.coordinator_epoch,
                    "registered with the coordinator"
                );
                return response.coordinator_epoch;
            }
            Ok(response) => tracing::warn!(
                %coordinator, error = %response.error_message,
                "registration refused; retrying"
            ),
            // Expected while the coordinator starts: say so once in a while.
            Err(e) if attempts % 20 == 1 => {
                tracing::warn!(%coordinator, error = %e, "coordinator not reachable yet; retrying")
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        wait_ms = (wait_ms * 2).min(REGISTER_BACKOFF_MS_MAX);
    }
}

/// The server's stable id: read from `<data_dir>/server.id`, or made (a
/// random UUID) and written durably on the first start.
pub fn load_or_create_server_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(SERVER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let id = uuid::Uuid::new_v4().to_string();
    write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_id_is_made_once_and_kept() {
        // Proves: the first call creates an id, later calls return the same.
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_server_id(dir.path()).unwrap();
        assert_eq!(first.len(), 36);
        assert_eq!(load_or_create_server_id(dir.path()).unwrap(), first);
    }

    #[tokio::test]
    async fn unreachable_coordinator_means_not_verified() {
        // Proves: with no coordinator listening, a transactional write is
        // refused as not verified (never let through).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let verifier = CoordinatorVerifier::new(&port.to_string()).unwrap();
        let outcome = verifier.verify(ProducerId(1), ProducerEpoch(0), "t", 0).await;
        assert!(matches!(outcome, Err(PartitionError::TransactionNotVerified(_))), "{outcome:?}");
    }
}
