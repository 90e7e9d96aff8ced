//! The coordinator core, generic over [`ifc_kv::KvStore`]: it never names a
//! backend, axum or HTTP, and it is the only code that builds key paths
//! ([`keys`]).
//!
//! Built so far: input validation and the swarm registry (liveness leases,
//! heartbeats, owner tokens, the swarm limit). Tasks, claims and the witness log
//! follow the plan in `docs/design.md` ("Coordinator core").

#![deny(missing_docs)]

mod error;
pub mod keys;
pub mod swarm;
pub mod validate;

pub use error::CoreError;
pub use swarm::{SwarmRecord, SwarmRegistry, SwarmSession};

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
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            namespace: "ifc".into(),
            swarm_ttl_secs: 10,
            max_swarms: 100,
            max_json_bytes: 1 << 20,
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
