//! The swarm registry: one record per live swarm, attached to that swarm's
//! liveness lease, so a swarm that stops heartbeating disappears through the
//! store's own lease expiry (no coordinator timer that dies with its process).
//!
//! Ownership: registering returns a random token; only its SHA-256 is stored.
//! Re-registering a live id with its token refreshes it; without it (or with
//! another) it is a conflict, so one swarm cannot take over another's id.

use std::sync::Arc;

use ifc_api::SwarmStats;
use ifc_kv::{
    Compare, DeleteRequest, KeyRange, KeyValue, KvError, KvStore, LeaseId, PutRequest,
    RangeRequest, TxnOp, TxnRequest,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{decode, encode};
use crate::keys::{Counter, Key, Keys, swarm_chain};
use crate::txn::{range_op, ranges};
use crate::witness::{Entry, Head, WitnessLogger, WitnessOp, WitnessRecord, WitnessSink};
use crate::{CoreConfig, CoreError, now_ms, validate};

/// A registered swarm as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwarmRecord {
    /// Its id.
    pub swarm_id: String,
    /// What it can do (matched against tasks' required capabilities).
    pub capabilities: Vec<String>,
    /// Free-form metadata given at registration.
    pub metadata: serde_json::Value,
    /// When it first registered (ms since the epoch); kept across refreshes.
    pub registered_at_ms: i64,
    /// Its liveness lease.
    pub lease: LeaseId,
    /// Hex SHA-256 of its owner token.
    pub token_sha256: String,
}

impl SwarmRecord {
    /// The record as the API shows it (without the token hash and lease).
    pub fn public(&self) -> ifc_api::Swarm {
        ifc_api::Swarm {
            swarm_id: self.swarm_id.clone(),
            capabilities: self.capabilities.clone(),
            metadata: self.metadata.clone(),
            registered_at_ms: self.registered_at_ms,
        }
    }
}

/// What a successful registration hands the swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmSession {
    /// The swarm's id.
    pub swarm_id: String,
    /// The owner token: present it to heartbeat, act as, or unregister the swarm.
    pub token: String,
    /// Seconds the swarm stays registered without a heartbeat.
    pub ttl_secs: i64,
}

/// Registers, refreshes and removes swarms.
pub struct SwarmRegistry {
    store: Arc<dyn KvStore>,
    keys: Keys,
    config: CoreConfig,
    witness_log: WitnessSink,
}

fn token_hash(token: &str) -> String {
    crate::hex(&Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    crate::hex(&bytes)
}

impl SwarmRegistry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn KvStore>, config: CoreConfig) -> Self {
        SwarmRegistry {
            keys: Keys::new(&config.namespace),
            store,
            config,
            witness_log: WitnessSink::default(),
        }
    }

    /// Sends witness records to `logger` after commit.
    pub fn set_logger(&mut self, logger: WitnessLogger) {
        self.witness_log = WitnessSink::new(logger);
    }

    /// The swarm's chain head and its key's revision (0 if none).
    async fn head(&self, swarm_id: &str) -> Result<(Head, i64), CoreError> {
        let key = self.keys.witness_head(&swarm_chain(swarm_id));
        let resp = self.store.range(RangeRequest::key(key)).await?;
        let kv = resp.kvs.first();
        Ok((Head::from_kv(kv)?, kv.map_or(0, |kv| kv.mod_revision)))
    }

    /// Writes `ops` plus the swarm's next witness record, if `compares` hold and
    /// the chain head has not moved.
    async fn witnessed(
        &self,
        swarm_id: &str,
        op: WitnessOp,
        outcome: &str,
        detail: serde_json::Value,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<bool, CoreError> {
        let chain = swarm_chain(swarm_id);
        let (head, head_revision) = self.head(swarm_id).await?;
        let entry = Entry {
            op,
            actor: if op == WitnessOp::SwarmExpired {
                "coordinator".into()
            } else {
                swarm_id.into()
            },
            task_id: None,
            swarm_id: Some(swarm_id.into()),
            token: None,
            outcome: outcome.into(),
            detail,
        };
        let (witness, mut success) = entry.seal(&self.keys, &chain, &head)?;
        success.extend(ops);
        compares.push(Compare::mod_revision_is(self.keys.witness_head(&chain), head_revision));
        let txn = TxnRequest { compares, success, failure: Vec::new() };
        let resp = self.store.txn(txn).await.map_err(|e| lease_gone(e, swarm_id))?;
        if resp.succeeded {
            self.witness_log.log(witness, resp.revision);
        }
        Ok(resp.succeeded)
    }

    /// Registers `swarm_id`, or refreshes it if `token` is its owner's.
    pub async fn register(
        &self,
        swarm_id: &str,
        capabilities: Vec<String>,
        metadata: serde_json::Value,
        token: Option<&str>,
    ) -> Result<SwarmSession, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::capabilities("capabilities", &capabilities)?;
        validate::json("metadata", &metadata, self.config.max_json_bytes)?;
        let key = self.keys.swarm(swarm_id);

        if let Some((existing, mod_revision)) = self.read(swarm_id).await? {
            let Some(token) = token.filter(|t| token_hash(t) == existing.token_sha256) else {
                return Err(CoreError::SwarmTaken(swarm_id.into()));
            };
            let ttl_secs = self.keep_alive(swarm_id, existing.lease).await?;
            let record = SwarmRecord { capabilities, metadata, ..existing };
            let put = PutRequest::new(key.clone(), encode(&record)?).with_lease(record.lease);
            let detail = serde_json::json!({"capabilities": record.capabilities});
            let compares = vec![Compare::mod_revision_is(key, mod_revision)];
            let ops = vec![TxnOp::Put(put)];
            if !self
                .witnessed(swarm_id, WitnessOp::SwarmRefreshed, "registered", detail, compares, ops)
                .await?
            {
                return Err(CoreError::Contended(format!("swarm {swarm_id}")));
            }
            return Ok(SwarmSession { swarm_id: swarm_id.into(), token: token.into(), ttl_secs });
        }

        // The limit is checked before the write, so two registrations racing for
        // the last slot may both get in: the limit can be overshot by the number
        // of concurrent registrations, never by more.
        let live = self.store.range(RangeRequest::prefix(self.keys.swarms()).count_only()).await?;
        if live.count as usize >= self.config.max_swarms {
            return Err(CoreError::TooManySwarms { max: self.config.max_swarms });
        }
        let lease = self.store.lease_grant(self.config.swarm_ttl_secs).await?;
        let token = new_token();
        let record = SwarmRecord {
            swarm_id: swarm_id.into(),
            capabilities,
            metadata,
            registered_at_ms: now_ms(),
            lease: lease.id,
            token_sha256: token_hash(&token),
        };
        let detail =
            serde_json::json!({"capabilities": record.capabilities, "ttl_secs": lease.ttl});
        let put = PutRequest::new(key.clone(), encode(&record)?).with_lease(lease.id);
        let compares = vec![Compare::missing(key)];
        let ops = vec![TxnOp::Put(put)];
        if !self
            .witnessed(swarm_id, WitnessOp::SwarmRegistered, "registered", detail, compares, ops)
            .await?
        {
            let _ = self.store.lease_revoke(lease.id).await;
            // Someone else registered the id at the same moment: it is theirs.
            return Err(CoreError::SwarmTaken(swarm_id.into()));
        }
        Ok(SwarmSession { swarm_id: swarm_id.into(), token, ttl_secs: lease.ttl })
    }

    /// Keeps a swarm alive; returns its TTL.
    pub async fn heartbeat(&self, swarm_id: &str, token: &str) -> Result<i64, CoreError> {
        let record = self.owned(swarm_id, token).await?;
        self.keep_alive(swarm_id, record.lease).await
    }

    /// Removes a swarm at once: its record goes with a `swarm_left` witness
    /// record, then its lease is revoked, which ends its holdings in one revision.
    pub async fn unregister(&self, swarm_id: &str, token: &str) -> Result<(), CoreError> {
        let record = self.owned(swarm_id, token).await?;
        self.remove(swarm_id, record).await
    }

    /// Removes any swarm at once, without its token (the operator's eviction);
    /// like [`SwarmRegistry::unregister`] otherwise.
    pub async fn evict(&self, swarm_id: &str) -> Result<(), CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let (record, _) =
            self.read(swarm_id).await?.ok_or_else(|| CoreError::NotRegistered(swarm_id.into()))?;
        self.remove(swarm_id, record).await
    }

    /// Keeps any swarm alive without its token (an operator acting for it).
    pub async fn touch(&self, swarm_id: &str) -> Result<i64, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let (record, _) =
            self.read(swarm_id).await?.ok_or_else(|| CoreError::NotRegistered(swarm_id.into()))?;
        self.keep_alive(swarm_id, record.lease).await
    }

    async fn remove(&self, swarm_id: &str, record: SwarmRecord) -> Result<(), CoreError> {
        let key = self.keys.swarm(swarm_id);
        let compares = vec![Compare::exists(key.clone())];
        let ops = vec![TxnOp::Delete(DeleteRequest::key(key))];
        let detail = serde_json::json!({});
        if !self
            .witnessed(swarm_id, WitnessOp::SwarmLeft, "unregistered", detail, compares, ops)
            .await?
        {
            return Err(CoreError::Contended(format!("swarm {swarm_id}")));
        }
        match self.store.lease_revoke(record.lease).await {
            Ok(_) | Err(KvError::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks a swarm's owner token.
    pub async fn check_token(&self, swarm_id: &str, token: &str) -> Result<(), CoreError> {
        validate::id("swarm_id", swarm_id)?;
        // A member-local read answers nearly every check without a round of
        // consensus. A yes from a lagging member names a token that was valid a
        // moment ago, and every write that follows is guarded by compare-and-swap;
        // a no is confirmed on a linearizable read, so a fresh swarm is never refused.
        let local = self.store.range(RangeRequest::key(self.keys.swarm(swarm_id)).serializable());
        if let Some(kv) = local.await?.kvs.first() {
            let record: SwarmRecord = decode(kv)?;
            if token_hash(token) == record.token_sha256 {
                return Ok(());
            }
        }
        self.owned(swarm_id, token).await.map(drop)
    }

    /// Writes `swarm_expired` if the swarm's record is gone and its chain does
    /// not already end with its departure. Returns whether it wrote.
    pub async fn record_expiry(&self, swarm_id: &str) -> Result<bool, CoreError> {
        if self.read(swarm_id).await?.is_some() {
            return Ok(false);
        }
        let chain = swarm_chain(swarm_id);
        let (head, _) = self.head(swarm_id).await?;
        if head.seq == 0 {
            return Ok(false);
        }
        let last =
            self.store.range(RangeRequest::key(self.keys.witness_record(&chain, head.seq))).await?;
        let Some(last) = last.kvs.first() else {
            return Ok(false);
        };
        let last: WitnessRecord = decode(last)?;
        let last_op = WitnessOp::parse(&last.op);
        if matches!(last_op, Some(WitnessOp::SwarmLeft | WitnessOp::SwarmExpired)) {
            return Ok(false);
        }
        let compares = vec![Compare::missing(self.keys.swarm(swarm_id))];
        let detail = serde_json::json!({"reason": "liveness lease ran out"});
        self.witnessed(swarm_id, WitnessOp::SwarmExpired, "expired", detail, compares, Vec::new())
            .await
    }

    /// The seed's `get_swarm_stats`: `None` if the swarm is not registered.
    pub async fn stats(&self, swarm_id: &str) -> Result<Option<SwarmStats>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let txn = TxnRequest::new()
            .and_then(range_op(KeyRange::key(self.keys.swarm(swarm_id))))
            .and_then(range_op(KeyRange::prefix(self.keys.counters(swarm_id))))
            .and_then(range_op(KeyRange::prefix(self.keys.holding(swarm_id))));
        let resp = self.store.txn(txn).await?;
        let [swarm, counters, holding] = ranges(&resp.responses)[..] else {
            return Err(CoreError::Store(KvError::Backend("short txn answer".into())));
        };
        let Some(swarm) = swarm.first() else {
            return Ok(None);
        };
        let swarm: SwarmRecord = decode(swarm)?;
        // A counter is the sum of its shards' versions (see `Keys::counter_shard`).
        let count = |c: Counter| {
            let shard = |kv: &&KeyValue| match self.keys.parse(&kv.key) {
                Some(Key::Counter { counter, .. }) => c.is_shard(counter),
                _ => false,
            };
            counters.iter().filter(shard).map(|kv| kv.version).sum()
        };
        let current_claims = self.held_ids(holding);
        Ok(Some(SwarmStats {
            uptime_seconds: (now_ms() - swarm.registered_at_ms).max(0) / 1000,
            swarm: swarm.public(),
            current_claims,
            tasks_claimed: count(Counter::Claimed),
            task_count: count(Counter::Completed),
            tasks_failed: count(Counter::Failed),
        }))
    }

    /// The tasks a swarm holds.
    pub(crate) async fn held(&self, swarm_id: &str) -> Result<Vec<String>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let resp = self.store.range(RangeRequest::prefix(self.keys.holding(swarm_id))).await?;
        Ok(self.held_ids(&resp.kvs))
    }

    fn held_ids(&self, holding: &[KeyValue]) -> Vec<String> {
        let task_id = |kv: &KeyValue| match self.keys.parse(&kv.key) {
            Some(Key::Holding { task_id, .. }) => Some(task_id.to_string()),
            _ => None,
        };
        holding.iter().filter_map(task_id).collect()
    }

    /// A live swarm's record.
    pub async fn get(&self, swarm_id: &str) -> Result<Option<SwarmRecord>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        Ok(self.read(swarm_id).await?.map(|(record, _)| record))
    }

    /// Every live swarm, by id.
    pub async fn list(&self) -> Result<Vec<SwarmRecord>, CoreError> {
        let swarms = crate::paging::range_all(&*self.store, self.keys.swarms()).await?;
        swarms.iter().map(decode).collect()
    }

    async fn owned(&self, swarm_id: &str, token: &str) -> Result<SwarmRecord, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let (record, _) =
            self.read(swarm_id).await?.ok_or_else(|| CoreError::NotRegistered(swarm_id.into()))?;
        if token_hash(token) != record.token_sha256 {
            return Err(CoreError::WrongToken(swarm_id.into()));
        }
        Ok(record)
    }

    async fn read(&self, swarm_id: &str) -> Result<Option<(SwarmRecord, i64)>, CoreError> {
        let resp = self.store.range(RangeRequest::key(self.keys.swarm(swarm_id))).await?;
        resp.kvs.first().map(|kv| Ok((decode(kv)?, kv.mod_revision))).transpose()
    }

    async fn keep_alive(&self, swarm_id: &str, lease: LeaseId) -> Result<i64, CoreError> {
        self.store.lease_keep_alive(lease).await.map_err(|e| lease_gone(e, swarm_id))
    }
}

/// A lease that vanished under us means the swarm lapsed.
fn lease_gone(e: KvError, swarm_id: &str) -> CoreError {
    match e {
        KvError::LeaseNotFound(_) => CoreError::NotRegistered(swarm_id.into()),
        e => CoreError::Store(e),
    }
}
