//! The coordinator core, generic over [`ifc_kv::KvStore`]: it never names a
//! backend, axum or HTTP, and it is the only code that builds key paths
//! ([`keys`]).
//!
//! The design (key layout, claim protocol, lease rules, state machine, witness
//! chains) is in `docs/design.md`, "Coordinator core". Where things are:
//! [`Coordinator`] (`coordinator.rs`) is the facade; each domain noun has its
//! file (`task`, `claim`, `lapse`, `inbox`, `blocker`, `events`, `witness`;
//! `task_batch` and `claim_batch` for their batches),
//! and the txn building blocks they share are in `txn.rs`.

#![deny(missing_docs)]

mod acting;
mod blocker;
#[cfg(test)]
mod blocker_tests;
mod claim;
mod claim_batch;
mod claim_next;
mod claims_in_flight;
#[cfg(test)]
mod claims_in_flight_tests;
mod codec;
mod config;
mod coordinator;
mod error;
mod events;
mod hex;
mod inbox;
pub mod keys;
mod lapse;
mod lease_bucket;
mod operator;
mod paging;
mod queue_head;
mod reaper;
mod retention;
mod snapshot_cache;
#[cfg(test)]
mod snapshot_cache_tests;
pub mod swarm;
pub mod task;
mod task_batch;
#[cfg(test)]
mod test_support;
mod txn;
pub mod user_kv;
pub mod validate;
pub mod witness;
pub mod witness_archive;
mod witness_verify;

pub use acting::acting_as_admin;
pub use config::{
    CoreConfig, ERROR_TEXT_LIMIT, HISTORY_LIMIT, MAX_ATTEMPTS_CEILING, MAX_TIMEOUT_MS,
    MIN_TIMEOUT_MS, TRUNCATED_MARKER,
};
pub use coordinator::Coordinator;
pub use error::CoreError;
pub use events::CoreStream;
pub use hex::hex;
pub use ifc_api::{
    Blocker, BlockerEvent, BlockerInfo, BlockerState, Claim, ClaimOutcome, CoordinationEvent,
    HelperCandidate, InboxItem, MAX_BATCH_TASKS, MAX_CLAIM_BATCH, QueueCounts, Swarm, SwarmStats,
    TaskPage, WitnessQuery,
};
pub use keys::capset_id;
pub use reaper::Reaper;
pub use retention::{Pruner, Retention, parse_period};
pub use swarm::{SwarmRecord, SwarmRegistry, SwarmSession};
pub use task::{Attempt, AttemptOutcome, CreateOutcome, NewTask, TaskRecord, TaskState, TaskView};
pub use task_batch::BatchAnswer;
pub use witness::{Tampering, WitnessLogger, WitnessOp, WitnessRecord};

/// Milliseconds since the Unix epoch (record timestamps; never used for ordering,
/// which comes from store revisions).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
