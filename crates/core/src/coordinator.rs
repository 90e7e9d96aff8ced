//! The coordinator: the struct every operation hangs off, and its thin facade
//! over the swarm registry and the witness log. Task, claim, lapse, inbox,
//! blocker and event operations are `impl Coordinator` blocks in the files
//! named after them; the txn building blocks they share are in `txn.rs`.

use std::sync::Arc;

use ifc_api::{SwarmStats, WitnessQuery};
use ifc_kv::KvStore;

use crate::claims_in_flight::ClaimsInFlight;
use crate::config::CoreConfig;
use crate::keys::Keys;
use crate::lease_bucket::LeaseBuckets;
use crate::queue_head::QueueWindows;
use crate::snapshot_cache::SnapshotCache;
use crate::swarm::{SwarmRecord, SwarmRegistry, SwarmSession};
use crate::txn::{self, Freshness, Snapshot};
use crate::witness::{self, Tampering, WitnessLogger, WitnessRecord, WitnessSink};
use crate::{CoreError, validate};

/// The coordinator over one store. Stateless apart from a lease cache and
/// each ready queue's read window (both hints, never trusted for a write): any
/// number of coordinators may share a store.
pub struct Coordinator {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) keys: Keys,
    pub(crate) config: CoreConfig,
    pub(crate) swarms: SwarmRegistry,
    pub(crate) leases: LeaseBuckets,
    pub(crate) witness_log: WitnessSink,
    pub(crate) queue_windows: QueueWindows,
    pub(crate) claims_in_flight: ClaimsInFlight,
    pub(crate) snapshots: SnapshotCache,
}

impl Coordinator {
    /// A coordinator over `store`.
    pub fn new(store: Arc<dyn KvStore>, config: CoreConfig) -> Self {
        Coordinator {
            keys: Keys::new(&config.namespace),
            swarms: SwarmRegistry::new(store.clone(), config.clone()),
            store,
            leases: LeaseBuckets::default(),
            witness_log: WitnessSink::default(),
            queue_windows: QueueWindows::default(),
            claims_in_flight: ClaimsInFlight::default(),
            snapshots: SnapshotCache::new(
                Keys::new(&config.namespace),
                config.snapshot_cache_bytes,
            ),
            config,
        }
    }

    /// Sends every witness record to `logger` after commit.
    pub fn with_witness_logger(mut self, logger: WitnessLogger) -> Self {
        self.swarms.set_logger(logger.clone());
        self.witness_log = WitnessSink::new(logger);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// A task's keys, chain head and optionally a swarm (see [`txn::snapshot`]).
    pub(crate) async fn snapshot(
        &self,
        task_id: &str,
        swarm_id: Option<&str>,
        freshness: Freshness,
    ) -> Result<Snapshot, CoreError> {
        txn::snapshot(&*self.store, &self.keys, &self.snapshots, task_id, swarm_id, freshness).await
    }

    /// What the reaper's watch of the namespace tells this node's cache.
    pub(crate) fn snapshot_cache(&self) -> &SnapshotCache {
        &self.snapshots
    }

    // ---- swarms ------------------------------------------------------------

    /// Registers a swarm (or refreshes it with its owner token).
    pub async fn register_swarm(
        &self,
        swarm_id: &str,
        capabilities: Vec<String>,
        metadata: serde_json::Value,
        token: Option<&str>,
    ) -> Result<SwarmSession, CoreError> {
        self.swarms.register(swarm_id, capabilities, metadata, token).await
    }

    /// Keeps a swarm alive.
    pub async fn heartbeat(&self, swarm_id: &str, token: &str) -> Result<i64, CoreError> {
        self.swarms.heartbeat(swarm_id, token).await
    }

    /// Removes a swarm at once; its claims return to the pool (the reaper records
    /// each one as lapsed).
    pub async fn unregister_swarm(&self, swarm_id: &str, token: &str) -> Result<(), CoreError> {
        let held = self.swarms.held(swarm_id).await?;
        self.swarms.unregister(swarm_id, token).await?;
        for task_id in held {
            self.reap_task(&task_id).await?;
        }
        Ok(())
    }

    /// Removes any swarm at once without its token (the operator's eviction);
    /// its claims lapse at once and return to the pool or dead-letter.
    pub async fn evict_swarm(&self, swarm_id: &str) -> Result<(), CoreError> {
        let held = self.swarms.held(swarm_id).await?;
        self.swarms.evict(swarm_id).await?;
        for task_id in held {
            self.reap_task(&task_id).await?;
        }
        Ok(())
    }

    /// Keeps any swarm alive without its token (an operator acting for it).
    pub async fn touch_swarm(&self, swarm_id: &str) -> Result<i64, CoreError> {
        self.swarms.touch(swarm_id).await
    }

    /// A live swarm.
    pub async fn get_swarm(&self, swarm_id: &str) -> Result<Option<SwarmRecord>, CoreError> {
        self.swarms.get(swarm_id).await
    }

    /// Every live swarm.
    pub async fn list_swarms(&self) -> Result<Vec<SwarmRecord>, CoreError> {
        self.swarms.list().await
    }

    /// Whether `token` is the swarm's owner token (for the service's auth).
    pub async fn check_swarm_token(&self, swarm_id: &str, token: &str) -> Result<(), CoreError> {
        self.swarms.check_token(swarm_id, token).await
    }

    /// The seed's `get_swarm_stats`: `None` if the swarm is not registered.
    pub async fn get_swarm_stats(&self, swarm_id: &str) -> Result<Option<SwarmStats>, CoreError> {
        self.swarms.stats(swarm_id).await
    }

    /// Records a swarm's expiry in its witness chain if its record is gone
    /// without a `swarm_left` (its lease ran out). Returns whether it wrote.
    pub async fn reap_swarm(&self, swarm_id: &str) -> Result<bool, CoreError> {
        // Its holdings went with it (same lease); the reaper records those
        // tasks from their own delete events.
        validate::id("swarm_id", swarm_id)?;
        self.swarms.record_expiry(swarm_id).await
    }

    // ---- witness -------------------------------------------------------------

    /// Witness records matching `query`, in commit order.
    pub async fn witness(&self, query: &WitnessQuery) -> Result<Vec<WitnessRecord>, CoreError> {
        witness::query(&*self.store, &self.keys, query).await
    }

    /// Every witness record as JSON Lines, in commit order.
    pub async fn export_witness(&self) -> Result<String, CoreError> {
        witness::export(self.store.clone(), self.keys.clone()).await
    }

    /// Verifies every chain; the first problem found, per chain.
    pub async fn verify_witness(&self) -> Result<Vec<Tampering>, CoreError> {
        Ok(self.verify_witness_from(None, u64::MAX).await?.problems)
    }
}
