//! The coordinator's reads and writes of `__consumer_offsets` on the
//! partition servers: Produce one batch, Fetch (read_committed) from an
//! offset, ListOffsets for the log start, over the coordinator's channels
//! to partition servers (`partition_client::PartitionChannels`). The
//! partition service's wire types stop here.

use bytes::Bytes;
use xo_proto::Offset;
use xo_proto::partition::{
    ErrorCode, FetchRequest, IsolationLevel, ListOffsetsRequest, PartitionBatch, ProduceRequest,
    list_offsets_request::Spec,
};

use super::offsets::WriteOutcome;
use crate::partition_client::{PartitionChannels, timed};

/// A write or read that does not answer within this has an unknown outcome.
pub const OFFSETS_CALL_TIMEOUT_MS_MAX: u64 = 10_000;
/// Bytes asked for per read-back fetch.
pub const READ_BACK_FETCH_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// A failed append: the outcome the groups' state needs, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendFailure {
    /// [`WriteOutcome::Refused`] or [`WriteOutcome::Unknown`].
    pub outcome: WriteOutcome,
    /// The partition's refusal code, if it answered.
    pub code: Option<ErrorCode>,
    pub message: String,
}

/// One read-back answer.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub batches: Vec<Bytes>,
    pub next_offset: Offset,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchFailure {
    /// The offset is before the log start (or past the end).
    OutOfRange,
    Other(String),
}

#[derive(Default)]
pub struct OffsetsLog {
    channels: PartitionChannels,
}

impl OffsetsLog {
    pub fn new() -> OffsetsLog {
        OffsetsLog::default()
    }

    /// Appends `batch` to `__consumer_offsets`-`partition`; its base offset.
    pub async fn append(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
        batch: Bytes,
    ) -> Result<Offset, AppendFailure> {
        let unknown =
            |message: String| AppendFailure { outcome: WriteOutcome::Unknown, code: None, message };
        let mut client = self.channels.client(address).map_err(unknown)?;
        let request = ProduceRequest {
            batches: vec![PartitionBatch { topic: topic.to_string(), partition, batch }],
        };
        let response =
            timed(OFFSETS_CALL_TIMEOUT_MS_MAX, client.produce(request)).await.map_err(unknown)?;
        let Some(result) = response.results.into_iter().find(|r| r.partition == partition) else {
            return Err(unknown(format!(
                "{address} answered without a result for {topic}-{partition}"
            )));
        };
        match ErrorCode::try_from(result.error) {
            Ok(ErrorCode::None) => {
                assert!(result.base_offset >= 0, "an appended batch has an offset");
                Ok(Offset(result.base_offset))
            }
            code => Err(AppendFailure {
                outcome: WriteOutcome::Refused,
                code: code.ok(),
                message: format!("{topic}-{partition} on {address}: {}", result.error_message),
            }),
        }
    }

    /// A read_committed fetch from `offset`, not waiting for new data.
    pub async fn fetch(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
        offset: Offset,
    ) -> Result<Chunk, FetchFailure> {
        let mut client = self.channels.client(address).map_err(FetchFailure::Other)?;
        let request = FetchRequest {
            topic: topic.to_string(),
            partition,
            offset: offset.0,
            max_bytes: READ_BACK_FETCH_BYTES_MAX,
            max_wait_ms: 0,
            isolation: IsolationLevel::ReadCommitted as i32,
        };
        let response = timed(OFFSETS_CALL_TIMEOUT_MS_MAX, client.fetch(request))
            .await
            .map_err(FetchFailure::Other)?;
        match ErrorCode::try_from(response.error) {
            Ok(ErrorCode::None) => Ok(Chunk {
                batches: response.batches,
                next_offset: Offset(response.next_offset),
                high_watermark: Offset(response.high_watermark),
                last_stable_offset: Offset(response.last_stable_offset),
            }),
            Ok(ErrorCode::OffsetOutOfRange) => Err(FetchFailure::OutOfRange),
            _ => Err(FetchFailure::Other(format!(
                "{topic}-{partition} on {address}: {}",
                response.error_message
            ))),
        }
    }

    /// The first offset still in the partition's log.
    pub async fn log_start(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Offset, String> {
        let mut client = self.channels.client(address)?;
        let request = ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec: Some(Spec::Earliest(true)),
            isolation: IsolationLevel::ReadCommitted as i32,
        };
        let response = timed(OFFSETS_CALL_TIMEOUT_MS_MAX, client.list_offsets(request)).await?;
        if response.error != ErrorCode::None as i32 {
            return Err(format!("{topic}-{partition} on {address}: {}", response.error_message));
        }
        Ok(Offset(response.offset.max(response.log_start_offset)))
    }
}
