//! The coordinator core, generic over [`ifc_kv::KvStore`]: it never names a
//! backend, axum or HTTP, and it is the only code that builds key paths
//! ([`keys`]).
//!
//! The design (key layout, claim protocol, lease rules, state machine, witness
//! chains) is in `docs/design.md`, "Coordinator core".

#![deny(missing_docs)]

mod codec;
mod coordinator;
mod error;
pub mod keys;
mod realtime;
mod reaper;
pub mod swarm;
pub mod task;
pub mod validate;
pub mod witness;

pub use coordinator::{Coordinator, WitnessLogger, capset_id};
pub use error::CoreError;
pub use ifc_api::{
    Blocker, BlockerEvent, BlockerInfo, BlockerState, Claim, ClaimOutcome, CoordinationEvent,
    HelperCandidate, InboxItem, Swarm, SwarmStats, TaskPage, WitnessQuery,
};
pub use realtime::CoreStream;
pub use reaper::Reaper;
pub use swarm::{SwarmRecord, SwarmRegistry, SwarmSession};
pub use task::{Attempt, AttemptOutcome, NewTask, TaskRecord, TaskState, TaskView};
pub use witness::{Tampering, WitnessRecord};

/// Settings every coordinator node of one deployment must share.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Key prefix of this deployment (several may share one etcd).
    pub namespace: String,
    /// Liveness TTL of a swarm, in seconds.
    pub swarm_ttl_secs: i64,
    /// Most live swarms at once (the seed's `IF_COORDINATOR_MAX_SWARMS`).
    pub max_swarms: usize,
    /// Largest metadata, result or error JSON, in bytes.
    pub max_json_bytes: usize,
    /// How long a claim lasts unless renewed, in ms (the seed's
    /// `IF_COORDINATOR_CLAIM_TIMEOUT`). Claims lapse between this and one
    /// second more (claim leases are shared per second).
    pub claim_timeout_ms: u64,
    /// How long a pushed task waits for the swarm's ack before it returns to
    /// the pool, in ms (the seed's `IF_COORDINATOR_PUSH_TIMEOUT`).
    pub push_timeout_ms: u64,
    /// Delay after a failure before the task can be claimed again, in ms.
    pub retry_backoff_ms: u64,
    /// Attempts a task gets when its creator does not say.
    pub default_max_attempts: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            namespace: "ifc".into(),
            swarm_ttl_secs: 10,
            max_swarms: 100,
            max_json_bytes: 1 << 20,
            claim_timeout_ms: 5000,
            push_timeout_ms: 10_000,
            retry_backoff_ms: 0,
            default_max_attempts: 3,
        }
    }
}

/// Milliseconds since the Unix epoch (record timestamps; never used for ordering,
/// which comes from store revisions).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
