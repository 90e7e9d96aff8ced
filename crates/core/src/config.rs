//! The settings every coordinator node of one deployment shares (its own file
//! so the swarm registry and the coordinator can both read it without
//! importing each other).

/// The shortest claim lease a task may ask for, in ms.
pub const MIN_TIMEOUT_MS: u64 = 1_000;
/// The longest claim lease a task may ask for, in ms (a day).
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// The most attempts a task may have (keeps its record bounded).
pub const MAX_ATTEMPTS_CEILING: u32 = 100;
/// How many finished attempts a task's history keeps (the last ones).
pub const HISTORY_LIMIT: usize = 20;
/// The most bytes of a failure's error text that are stored; longer text is
/// cut at a character boundary and ends with [`TRUNCATED_MARKER`].
pub const ERROR_TEXT_LIMIT: usize = 4096;
/// What ends an error text that was cut.
pub const TRUNCATED_MARKER: &str = "… [truncated]";

/// Settings every coordinator node of one deployment must share.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Key prefix of this deployment (several may share one etcd).
    pub namespace: String,
    /// Liveness TTL of a swarm, in seconds (default 30; clients heartbeat
    /// every third of it).
    pub swarm_ttl_secs: i64,
    /// Most live swarms at once (the seed's `IF_COORDINATOR_MAX_SWARMS`).
    pub max_swarms: usize,
    /// Largest metadata, result or error JSON, in bytes.
    pub max_json_bytes: usize,
    /// How long a claim lasts unless renewed, in ms (the seed's
    /// `IF_COORDINATOR_CLAIM_TIMEOUT`). Claims lapse between this and one
    /// second more (claim leases are shared per second). A task's own
    /// `timeout_ms` overrides it.
    pub claim_timeout_ms: u64,
    /// How long a pushed task waits for the swarm's ack before it returns to
    /// the pool, in ms (the seed's `IF_COORDINATOR_PUSH_TIMEOUT`).
    pub push_timeout_ms: u64,
    /// Delay after a failure before the task can be claimed again, in ms.
    pub retry_backoff_ms: u64,
    /// Attempts a task gets when its creator does not say.
    pub default_max_attempts: u32,
    /// Bytes of tasks this node keeps a watch-fed copy of, so a claim,
    /// renew, complete or push needs no read before its txn (0: off). See
    /// `snapshot_cache.rs`.
    pub snapshot_cache_bytes: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            namespace: "ifc".into(),
            swarm_ttl_secs: 30,
            max_swarms: 100,
            max_json_bytes: 1 << 20,
            claim_timeout_ms: 5000,
            push_timeout_ms: 10_000,
            retry_backoff_ms: 0,
            default_max_attempts: 3,
            snapshot_cache_bytes: 64 << 20,
        }
    }
}
