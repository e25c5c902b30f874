//! Consumer groups and offsets (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, TxnOffsetCommit, OffsetFetch): not built yet —
//! another issue. Every group RPC answers through this one function, so the
//! file that implements them replaces only this.

use tonic::Status;

pub fn not_built() -> Status {
    Status::unimplemented("consumer groups: not built yet")
}
