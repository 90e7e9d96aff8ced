//! The coordinator: every task operation as one store transaction, guarded by
//! compare-and-swap on the task record, fenced by the claim's token, and
//! witnessed in the same transaction.
//!
//! Hot path shape: one read (a read-only txn of a few ranges) then one write txn.
//! A lost CAS re-reads and decides again, a bounded number of times.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ifc_api::{Claim, ClaimOutcome, SwarmStats, TaskPage, WitnessQuery};
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, KeyValue, KvError, KvStore,
    LeaseId, PutRequest, RangeRequest, Revision, TxnOp, TxnOpResponse, TxnRequest, prefix_end,
};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::keys::{Counter, Keys, task_chain};
use crate::swarm::{SwarmRecord, SwarmRegistry, SwarmSession};
use crate::task::{
    Attempt, AttemptOutcome, ClaimValue, NewTask, TaskKeys, TaskRecord, TaskState, TaskView,
};
use crate::witness::{self, Entry, Head, Tampering, WitnessRecord};
use crate::{CoreConfig, CoreError, now_ms, validate};

/// Receives every witness record after its transaction committed (the seed's
/// `witness_logger`).
pub type WitnessLogger = Arc<dyn Fn(&WitnessRecord) + Send + Sync>;

/// How many times an operation re-reads after losing a compare-and-swap.
const MAX_CAS_ROUNDS: usize = 16;

/// What a write reads first.
pub(crate) struct Snapshot {
    pub keys: Option<TaskKeys>,
    pub head: Head,
    pub swarm: Option<KeyValue>,
}

struct Bucket {
    ttl: i64,
    lease: LeaseId,
    opened: Instant,
    deadline_ms: i64,
}

/// The coordinator over one store. Stateless apart from a lease cache: any
/// number of coordinators may share a store.
pub struct Coordinator {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) keys: Keys,
    pub(crate) config: CoreConfig,
    pub(crate) swarms: SwarmRegistry,
    /// The leases new claims and pushes attach to, one per TTL; replaced every
    /// second, so claims lapse between their timeout and one second after it.
    buckets: Mutex<Vec<Bucket>>,
}

pub(crate) fn range_op(range: KeyRange) -> TxnOp {
    TxnOp::Range(RangeRequest::new(range))
}

pub(crate) fn put(key: String, value: Vec<u8>) -> TxnOp {
    TxnOp::Put(PutRequest::new(key, value))
}

pub(crate) fn delete(key: String) -> TxnOp {
    TxnOp::Delete(DeleteRequest::key(key))
}

pub(crate) fn ranges(responses: &[TxnOpResponse]) -> Vec<&[KeyValue]> {
    responses
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Range(r) => Some(r.kvs.as_slice()),
            _ => None,
        })
        .collect()
}

/// A capability set's queue name: a short hash of the sorted set.
pub fn capset_id(capabilities: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(capabilities.join("\n").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn canonical_capabilities(mut caps: Vec<String>) -> Vec<String> {
    caps.sort();
    caps.dedup();
    caps
}

impl Coordinator {
    /// A coordinator over `store`.
    pub fn new(store: Arc<dyn KvStore>, config: CoreConfig) -> Self {
        Coordinator {
            keys: Keys::new(&config.namespace),
            swarms: SwarmRegistry::new(store.clone(), config.clone()),
            store,
            config,
            buckets: Mutex::new(Vec::new()),
        }
    }

    /// Sends every witness record to `logger` after commit.
    pub fn with_witness_logger(mut self, logger: WitnessLogger) -> Self {
        self.swarms.set_logger(logger);
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
        let held = self.held_tasks(swarm_id).await?;
        self.swarms.unregister(swarm_id, token).await?;
        for task_id in held {
            self.reap_task(&task_id).await?;
        }
        Ok(())
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
        let count = |c: Counter| {
            let key = self.keys.counter(swarm_id, c).into_bytes();
            counters.iter().find(|kv| kv.key == key).map_or(0, |kv| kv.version)
        };
        let mut current_claims = Vec::new();
        for kv in holding {
            let key = String::from_utf8_lossy(&kv.key);
            if let Some(task_id) = key.rsplit('/').next() {
                current_claims.push(task_id.to_string());
            }
        }
        Ok(Some(SwarmStats {
            uptime_seconds: (now_ms() - swarm.registered_at_ms).max(0) / 1000,
            swarm: swarm.public(),
            current_claims,
            tasks_claimed: count(Counter::Claimed),
            task_count: count(Counter::Completed),
            tasks_failed: count(Counter::Failed),
        }))
    }

    /// Records a swarm's expiry in its witness chain if its record is gone
    /// without a `swarm_left` (its lease ran out). Returns whether it wrote.
    pub async fn reap_swarm(&self, swarm_id: &str) -> Result<bool, CoreError> {
        // Its holdings went with it (same lease); the reaper records those
        // tasks from their own delete events.
        validate::id("swarm_id", swarm_id)?;
        self.swarms.record_expiry(swarm_id).await
    }

    pub(crate) async fn held_tasks(&self, swarm_id: &str) -> Result<Vec<String>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let resp = self.store.range(RangeRequest::prefix(self.keys.holding(swarm_id))).await?;
        Ok(resp
            .kvs
            .iter()
            .filter_map(|kv| {
                String::from_utf8_lossy(&kv.key).rsplit('/').next().map(str::to_string)
            })
            .collect())
    }

    // ---- tasks -------------------------------------------------------------

    /// Creates a task, ready to claim. Creating the same id with the same content
    /// again returns the existing task; with other content it is a conflict.
    pub async fn create_task(&self, new: NewTask) -> Result<TaskRecord, CoreError> {
        let record = self.new_record(&new)?;
        let (caps, max_attempts) = (record.required_capabilities.clone(), record.max_attempts);
        let capset = capset_id(&caps);
        let chain = task_chain(&new.task_id);
        let (witness, mut ops) = Entry {
            op: "task_created",
            actor: "orchestrator".into(),
            task_id: Some(new.task_id.clone()),
            swarm_id: None,
            token: None,
            outcome: TaskState::Ready.as_str().into(),
            detail: json!({"task_type": new.task_type, "priority": new.priority,
                "required_capabilities": caps, "max_attempts": max_attempts}),
        }
        .seal(&self.keys, &chain, &Head::empty())?;
        let task_key = self.keys.task(&new.task_id);
        ops.extend([
            put(task_key.clone(), encode(&record)?),
            put(
                self.keys.ready(&capset, record.priority, record.created_at_ms, &record.task_id),
                Vec::new(),
            ),
            put(self.keys.capset(&capset), encode(&caps)?),
            put(self.keys.state_entry(TaskState::Ready.as_str(), &record.task_id), Vec::new()),
        ]);
        let txn = TxnRequest {
            compares: vec![Compare::missing(task_key.clone())],
            success: ops,
            failure: vec![range_op(KeyRange::key(task_key))],
        };
        let resp = self.store.txn(txn).await?;
        if resp.succeeded {
            self.log(witness, resp.revision);
            return Ok(record);
        }
        let existing: TaskRecord = match ranges(&resp.responses).first().and_then(|kvs| kvs.first())
        {
            Some(kv) => decode(kv)?,
            None => {
                return Err(CoreError::Conflict(format!(
                    "task {} changed during create; retry",
                    new.task_id
                )));
            }
        };
        if existing.same_spec(&new, max_attempts, &caps) {
            Ok(existing)
        } else {
            Err(CoreError::Conflict(format!("task {} exists with different content", new.task_id)))
        }
    }

    /// Checks a new task and builds its ready record.
    pub(crate) fn new_record(&self, new: &NewTask) -> Result<TaskRecord, CoreError> {
        validate::id("task_id", &new.task_id)?;
        validate::text("task_type", &new.task_type)?;
        validate::capabilities("required_capabilities", &new.required_capabilities)?;
        validate::json("metadata", &new.metadata, self.config.max_json_bytes)?;
        let max_attempts = new.max_attempts.unwrap_or(self.config.default_max_attempts);
        if max_attempts == 0 {
            return Err(CoreError::Invalid {
                field: "max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        Ok(TaskRecord {
            task_id: new.task_id.clone(),
            task_type: new.task_type.clone(),
            metadata: new.metadata.clone(),
            required_capabilities: canonical_capabilities(new.required_capabilities.clone()),
            priority: new.priority,
            max_attempts,
            created_at_ms: now_ms(),
            state: TaskState::Ready,
            owner: None,
            claimed_at_ms: None,
            attempts: 0,
            history: Vec::new(),
            result: None,
            error: None,
            not_before_ms: 0,
            awaiting_ack: false,
        })
    }

    /// Reads a task's keys (linearizable).
    async fn read_task(&self, task_id: &str) -> Result<Option<TaskKeys>, CoreError> {
        let resp = self.store.range(RangeRequest::prefix(self.keys.task_dir(task_id))).await?;
        Ok(self.task_keys(task_id, &resp.kvs))
    }

    /// Reads a task's keys, its chain head and optionally a swarm, in one
    /// snapshot. A serializable read is fine here: every write that follows is
    /// guarded by compare-and-swap, and negative answers are confirmed on a
    /// linearizable read before they are returned.
    pub(crate) async fn snapshot(
        &self,
        task_id: &str,
        swarm_id: Option<&str>,
        serializable: bool,
    ) -> Result<Snapshot, CoreError> {
        let read = |range: KeyRange| {
            TxnOp::Range(RangeRequest { serializable, ..RangeRequest::new(range) })
        };
        let mut txn = TxnRequest::new()
            .and_then(read(KeyRange::prefix(self.keys.task_dir(task_id))))
            .and_then(read(KeyRange::key(self.keys.witness_head(&task_chain(task_id)))));
        if let Some(swarm_id) = swarm_id {
            txn = txn.and_then(read(KeyRange::key(self.keys.swarm(swarm_id))));
        }
        let resp = self.store.txn(txn).await?;
        let read = ranges(&resp.responses);
        Ok(Snapshot {
            keys: self.task_keys(task_id, read[0]),
            head: Head::from_kv(read[1].first())?,
            swarm: read.get(2).and_then(|kvs| kvs.first().cloned()),
        })
    }

    pub(crate) fn task_keys(&self, task_id: &str, kvs: &[KeyValue]) -> Option<TaskKeys> {
        let find = |key: String| kvs.iter().find(|kv| kv.key == key.as_bytes()).cloned();
        Some(TaskKeys {
            record: find(self.keys.task(task_id))?,
            claim: find(self.keys.claim(task_id)),
            holder: find(self.keys.holder(task_id)),
        })
    }

    pub(crate) fn view(&self, keys: &TaskKeys) -> Result<TaskView, CoreError> {
        let record: TaskRecord = decode(&keys.record)?;
        let live_claim = keys.live_claim();
        let lapsed = record.state == TaskState::Claimed && live_claim.is_none();
        let (token, deadline_ms) = match live_claim {
            Some(claim) if record.state == TaskState::Claimed => {
                let value: ClaimValue = decode(claim)?;
                (Some(claim.create_revision), Some(value.deadline_ms))
            }
            _ => (None, None),
        };
        let state = if lapsed {
            if record.attempts + 1 >= record.max_attempts {
                TaskState::Dead
            } else {
                TaskState::Ready
            }
        } else {
            record.state
        };
        Ok(TaskView {
            state,
            token,
            deadline_ms,
            lapsed,
            revision: keys.record.mod_revision,
            record,
        })
    }

    /// The whole task as it stands.
    pub async fn get_task(&self, task_id: &str) -> Result<TaskView, CoreError> {
        validate::id("task_id", task_id)?;
        let keys = self
            .read_task(task_id)
            .await?
            .ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
        self.view(&keys)
    }

    /// The seed's `get_task_owner`: `unclaimed`, the owner's id,
    /// `completed:<swarm>`, `dead` or `cancelled`; `None` for no such task.
    pub async fn get_task_owner(&self, task_id: &str) -> Result<Option<String>, CoreError> {
        let view = match self.get_task(task_id).await {
            Ok(view) => view,
            Err(CoreError::TaskNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(match view.state {
            TaskState::Ready => "unclaimed".into(),
            TaskState::Claimed => view.record.owner.unwrap_or_default(),
            TaskState::Completed => format!("completed:{}", view.record.owner.unwrap_or_default()),
            TaskState::Dead => "dead".into(),
            TaskState::Cancelled => "cancelled".into(),
        }))
    }

    /// Tasks in one state (as indexed: a lapsed claim lists as claimed until a
    /// node records the lapse), by id, `limit` at a time after `after`.
    pub async fn list_tasks(
        &self,
        state: TaskState,
        after: Option<&str>,
        limit: usize,
    ) -> Result<TaskPage, CoreError> {
        let limit = limit.clamp(1, 100);
        let prefix = self.keys.state_index(state.as_str());
        let start = match after {
            Some(after) => {
                validate::id("after", after)?;
                let mut start = self.keys.state_entry(state.as_str(), after).into_bytes();
                start.push(0);
                start
            }
            None => prefix.clone().into_bytes(),
        };
        let range = KeyRange::Span { start, end: prefix_end(prefix.as_bytes()) };
        let page = self
            .store
            .range(RangeRequest { serializable: false, range, limit: limit as i64 })
            .await?;
        let ids: Vec<String> = page
            .kvs
            .iter()
            .filter_map(|kv| {
                String::from_utf8_lossy(&kv.key).rsplit('/').next().map(str::to_string)
            })
            .collect();
        let mut txn = TxnRequest::new();
        for id in &ids {
            txn = txn.and_then(range_op(KeyRange::prefix(self.keys.task_dir(id))));
        }
        let resp = self.store.txn(txn).await?;
        let mut tasks = Vec::new();
        for (id, kvs) in ids.iter().zip(ranges(&resp.responses)) {
            if let Some(keys) = self.task_keys(id, kvs) {
                tasks.push(self.view(&keys)?);
            }
        }
        let next_after = if page.more { ids.last().cloned() } else { None };
        Ok(TaskPage { tasks, next_after })
    }

    // ---- claims ------------------------------------------------------------

    /// The lease new claims attach to, and the deadline it gives them.
    pub(crate) async fn claim_lease(&self) -> Result<(LeaseId, i64), CoreError> {
        self.bucket_lease(self.config.claim_timeout_ms).await
    }

    /// The lease new pushes attach to (until acknowledged).
    pub(crate) async fn push_lease(&self) -> Result<(LeaseId, i64), CoreError> {
        self.bucket_lease(self.config.push_timeout_ms).await
    }

    /// A lease shared by everything this node attaches in one second, lasting at
    /// least `timeout_ms`: the hot path grants a lease once a second, not once
    /// per claim. Returns the lease and the earliest time it can expire.
    async fn bucket_lease(&self, timeout_ms: u64) -> Result<(LeaseId, i64), CoreError> {
        let ttl = timeout_ms.div_ceil(1000) as i64 + 1;
        {
            let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = buckets.iter().find(|b| b.ttl == ttl)
                && b.opened.elapsed() < Duration::from_secs(1)
            {
                return Ok((b.lease, b.deadline_ms));
            }
        }
        let started_ms = now_ms();
        let lease = self.store.lease_grant(ttl).await?;
        let deadline_ms = started_ms + lease.ttl * 1000;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.retain(|b| b.ttl != ttl);
        buckets.push(Bucket { ttl, lease: lease.id, opened: Instant::now(), deadline_ms });
        Ok((lease.id, deadline_ms))
    }

    /// Drops a cached lease that turned out to be gone.
    pub(crate) fn forget_claim_lease(&self, lease: LeaseId) {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).retain(|b| b.lease != lease);
    }

    /// The seed's `claim_task`: exactly one of any number of concurrent claimers
    /// wins. A lost race is [`ClaimOutcome::AlreadyClaimed`], not an error.
    pub async fn claim_task(
        &self,
        swarm_id: &str,
        task_id: &str,
    ) -> Result<ClaimOutcome, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::id("task_id", task_id)?;
        for round in 0..MAX_CAS_ROUNDS {
            let serializable = round == 0;
            let snap = self.snapshot(task_id, Some(swarm_id), serializable).await?;
            let (keys, swarm_kv) = match (snap.keys, snap.swarm) {
                (Some(keys), Some(swarm)) => (keys, swarm),
                // Confirm a negative answer on a linearizable read.
                _ if serializable => continue,
                (None, _) => return Err(CoreError::TaskNotFound(task_id.into())),
                (_, None) => return Err(CoreError::NotRegistered(swarm_id.into())),
            };
            let swarm: SwarmRecord = decode(&swarm_kv)?;
            match self.try_claim(&swarm, &swarm_kv, &keys, &snap.head).await {
                Ok(Some(ClaimOutcome::Claimed(claim))) => return Ok(ClaimOutcome::Claimed(claim)),
                Ok(Some(_)) | Err(CoreError::Incapable { .. }) if serializable => continue,
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CoreError::Conflict(format!("task {task_id} is too contended; retry")))
    }

    /// One claim attempt on a read snapshot; `None` if the snapshot went stale.
    async fn try_claim(
        &self,
        swarm: &SwarmRecord,
        swarm_kv: &KeyValue,
        keys: &TaskKeys,
        head: &Head,
    ) -> Result<Option<ClaimOutcome>, CoreError> {
        let view = self.view(keys)?;
        let mut record = view.record.clone();
        match view.state {
            TaskState::Claimed => {
                return Ok(Some(ClaimOutcome::AlreadyClaimed {
                    owner: record.owner.unwrap_or_default(),
                }));
            }
            state if state.is_final() && !view.lapsed => {
                return Ok(Some(ClaimOutcome::Finished { state }));
            }
            _ => {}
        }
        let missing: Vec<&String> = record
            .required_capabilities
            .iter()
            .filter(|c| !swarm.capabilities.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(CoreError::Incapable {
                swarm_id: swarm.swarm_id.clone(),
                missing: missing.into_iter().cloned().collect(),
            });
        }
        if view.lapsed {
            // Record the lapse first (as the reaper would), then decide again on
            // fresh state: the task may have used its last attempt.
            self.reap_task(&record.task_id).await?;
            return Ok(None);
        }
        if record.not_before_ms > now_ms() {
            return Ok(Some(ClaimOutcome::BackingOff { ready_at_ms: record.not_before_ms }));
        }
        let chain = task_chain(&record.task_id);
        let mut ops = Vec::new();
        let mut witnesses = Vec::new();

        let (lease, deadline_ms) = self.claim_lease().await?;
        let claimed_at = now_ms();
        let capset = capset_id(&record.required_capabilities);
        ops.push(delete(self.keys.ready(
            &capset,
            record.priority,
            record.created_at_ms,
            &record.task_id,
        )));
        ops.push(delete(self.keys.state_entry(TaskState::Ready.as_str(), &record.task_id)));
        record.state = TaskState::Claimed;
        record.owner = Some(swarm.swarm_id.clone());
        record.claimed_at_ms = Some(claimed_at);
        let (witness, witness_ops) = Entry {
            op: "task_claimed",
            actor: swarm.swarm_id.clone(),
            task_id: Some(record.task_id.clone()),
            swarm_id: Some(swarm.swarm_id.clone()),
            token: None,
            outcome: TaskState::Claimed.as_str().into(),
            detail: json!({"attempt": record.attempts + 1, "deadline_ms": deadline_ms}),
        }
        .seal(&self.keys, &chain, head)?;
        ops.extend(witness_ops);
        witnesses.push(witness);
        let claim =
            ClaimValue { swarm_id: swarm.swarm_id.clone(), deadline_ms, written_at_ms: now_ms() };
        ops.extend([
            put(self.keys.task(&record.task_id), encode(&record)?),
            put(self.keys.state_entry(TaskState::Claimed.as_str(), &record.task_id), Vec::new()),
            TxnOp::Put(
                PutRequest::new(self.keys.claim(&record.task_id), encode(&claim)?)
                    .with_lease(lease),
            ),
            TxnOp::Put(
                PutRequest::new(
                    self.keys.holding_entry(&swarm.swarm_id, &record.task_id),
                    Vec::new(),
                )
                .with_lease(swarm.lease),
            ),
            TxnOp::Put(
                PutRequest::new(self.keys.holder(&record.task_id), swarm.swarm_id.clone())
                    .with_lease(swarm.lease),
            ),
            put(self.keys.counter(&swarm.swarm_id, Counter::Claimed), Vec::new()),
        ]);
        let mut txn = self.guarded(keys, ops);
        txn.compares.push(Compare::missing(self.keys.holder(&record.task_id)));
        txn.compares.push(Compare::mod_revision_is(swarm_kv.key.clone(), swarm_kv.mod_revision));
        // The claim key must not exist: a claim that lapsed is gone already.
        txn.compares.push(Compare::new(
            self.keys.claim(&record.task_id),
            CompareOp::Equal,
            CompareTarget::CreateRevision(keys.claim.as_ref().map_or(0, |c| c.create_revision)),
        ));
        let resp = match self.store.txn(txn).await {
            Ok(resp) => resp,
            Err(KvError::LeaseNotFound(id)) if id == lease => {
                self.forget_claim_lease(lease);
                return Ok(None);
            }
            Err(KvError::LeaseNotFound(_)) => {
                return Err(CoreError::NotRegistered(swarm.swarm_id.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        if !resp.succeeded {
            return Ok(None);
        }
        for mut w in witnesses {
            if w.op == "task_claimed" {
                w.token = Some(resp.revision);
            }
            self.log(w, resp.revision);
        }
        Ok(Some(ClaimOutcome::Claimed(Box::new(Claim {
            task: record,
            token: resp.revision,
            deadline_ms,
        }))))
    }

    /// A txn guarded by the task record's revision (every task write is).
    pub(crate) fn guarded(&self, keys: &TaskKeys, ops: Vec<TxnOp>) -> TxnRequest {
        TxnRequest {
            compares: vec![Compare::mod_revision_is(
                keys.record.key.clone(),
                keys.record.mod_revision,
            )],
            success: ops,
            failure: Vec::new(),
        }
    }

    /// Ops that record a lapsed claim: attempts + 1, back to ready or to dead.
    /// Updates `record` and `head`.
    pub(crate) fn lapse_ops(
        &self,
        record: &mut TaskRecord,
        keys: &TaskKeys,
        head: &mut Head,
    ) -> Result<(Vec<TxnOp>, WitnessRecord), CoreError> {
        let owner = record.owner.clone().unwrap_or_default();
        let token = keys.claim.as_ref().map_or(0, |c| c.create_revision);
        let pushed = record.awaiting_ack;
        record.awaiting_ack = false;
        if !pushed {
            record.attempts += 1;
        }
        record.history.push(Attempt {
            swarm_id: owner.clone(),
            token,
            claimed_at_ms: record.claimed_at_ms.unwrap_or(0),
            ended_at_ms: now_ms(),
            outcome: AttemptOutcome::Lapsed,
            error: None,
        });
        let mut ops =
            vec![delete(self.keys.state_entry(TaskState::Claimed.as_str(), &record.task_id))];
        if let Some(claim) = &keys.claim {
            ops.push(delete(String::from_utf8_lossy(&claim.key).into_owned()));
        }
        ops.push(delete(self.keys.holder(&record.task_id)));
        ops.push(delete(self.keys.holding_entry(&owner, &record.task_id)));
        ops.push(delete(self.keys.inbox_entry(&owner, &record.task_id)));
        let op =
            if pushed { self.release(record, &mut ops) } else { self.requeue(record, &mut ops)? };
        let op = if pushed { "push_expired" } else { op };
        let chain = task_chain(&record.task_id);
        let (witness, witness_ops) = Entry {
            op,
            actor: "coordinator".into(),
            task_id: Some(record.task_id.clone()),
            swarm_id: Some(owner),
            token: if token == 0 { None } else { Some(token) },
            outcome: record.state.as_str().into(),
            detail: json!({"reason": if pushed { "push not acknowledged" } else { "claim lapsed" },
                "attempts": record.attempts}),
        }
        .seal(&self.keys, &chain, head)?;
        *head = Head { seq: witness.seq, hash: witness.hash.clone() };
        ops.extend(witness_ops);
        ops.push(put(self.keys.task(&record.task_id), encode(&*record)?));
        Ok((ops, witness))
    }

    /// Puts an ended attempt's task back in the pool, or in dead-letter when it
    /// has no attempts left. Returns the witness op name.
    pub(crate) fn requeue(
        &self,
        record: &mut TaskRecord,
        ops: &mut Vec<TxnOp>,
    ) -> Result<&'static str, CoreError> {
        if record.attempts < record.max_attempts {
            return Ok(self.release(record, ops));
        }
        record.owner = None;
        record.claimed_at_ms = None;
        record.awaiting_ack = false;
        record.state = TaskState::Dead;
        ops.push(put(self.keys.state_entry(TaskState::Dead.as_str(), &record.task_id), Vec::new()));
        Ok("task_dead_lettered")
    }

    /// Puts a task back in the pool (ready index and state index). Returns the
    /// witness op name.
    pub(crate) fn release(&self, record: &mut TaskRecord, ops: &mut Vec<TxnOp>) -> &'static str {
        record.owner = None;
        record.claimed_at_ms = None;
        record.awaiting_ack = false;
        record.state = TaskState::Ready;
        let capset = capset_id(&record.required_capabilities);
        ops.push(put(
            self.keys.ready(&capset, record.priority, record.created_at_ms, &record.task_id),
            Vec::new(),
        ));
        ops.push(put(
            self.keys.state_entry(TaskState::Ready.as_str(), &record.task_id),
            Vec::new(),
        ));
        "task_requeued"
    }

    /// The highest-priority, oldest ready task whose required capabilities the
    /// swarm all holds; `None` if there is none.
    ///
    /// Reads the head of each matching capability queue (a few keys each, never
    /// the whole pool), then tries one of the best few at random, so concurrent
    /// callers spread over the head instead of all fighting for its first key.
    pub async fn claim_next(&self, swarm_id: &str) -> Result<Option<Claim>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let swarm = self
            .swarms
            .get(swarm_id)
            .await?
            .ok_or_else(|| CoreError::NotRegistered(swarm_id.into()))?;
        let capsets = self.store.range(RangeRequest::prefix(self.keys.capsets())).await?;
        let mut queues = Vec::new();
        for kv in &capsets.kvs {
            let caps: Vec<String> = decode(kv)?;
            if caps.iter().all(|c| swarm.capabilities.contains(c)) {
                queues.push(capset_id(&caps));
            }
        }
        if queues.is_empty() {
            return Ok(None);
        }
        const HEAD: i64 = 32;
        for round in 0..MAX_CAS_ROUNDS {
            let mut txn = TxnRequest::new();
            for queue in &queues {
                txn = txn.and_then(TxnOp::Range(
                    RangeRequest::prefix(self.keys.ready_queue(queue)).with_limit(HEAD),
                ));
            }
            let resp = self.store.txn(txn).await?;
            let mut candidates: Vec<(String, String)> = Vec::new();
            for kvs in ranges(&resp.responses) {
                for kv in kvs {
                    let key = String::from_utf8_lossy(&kv.key).into_owned();
                    let mut parts = key.rsplitn(4, '/');
                    let (Some(task_id), Some(created), Some(rank)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    candidates.push((format!("{rank}/{created}"), task_id.to_string()));
                }
            }
            if candidates.is_empty() {
                return Ok(None);
            }
            candidates.sort();
            // Spread: pick among the best few, more of them as contention shows.
            let spread = (4 << round.min(3)).min(candidates.len());
            let pick = rand::random_range(0..spread);
            let task_id = candidates[pick].1.clone();
            match self.claim_task(swarm_id, &task_id).await? {
                ClaimOutcome::Claimed(claim) => return Ok(Some(*claim)),
                ClaimOutcome::Finished { .. } | ClaimOutcome::AlreadyClaimed { .. } => continue,
                ClaimOutcome::BackingOff { .. } => continue,
            }
        }
        Ok(None)
    }

    /// Extends a claim by another claim timeout.
    pub async fn renew_claim(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
    ) -> Result<i64, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::id("task_id", task_id)?;
        let keys = self
            .read_task(task_id)
            .await?
            .ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
        let claim = self.check_fence(swarm_id, task_id, token, &keys)?;
        for _ in 0..2 {
            let (lease, deadline_ms) = self.claim_lease().await?;
            let value =
                ClaimValue { swarm_id: swarm_id.into(), deadline_ms, written_at_ms: now_ms() };
            let fence = self.fence(task_id, token);
            let txn = TxnRequest::new().when(fence[0].clone()).when(fence[1].clone()).and_then(
                TxnOp::Put(PutRequest::new(claim.key.clone(), encode(&value)?).with_lease(lease)),
            );
            match self.store.txn(txn).await {
                Ok(resp) if resp.succeeded => return Ok(deadline_ms),
                Ok(_) => {
                    return Err(CoreError::Fenced { task_id: task_id.into(), token });
                }
                Err(KvError::LeaseNotFound(_)) => self.forget_claim_lease(lease),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Conflict("claim lease churn; retry".into()))
    }

    /// The compares that hold only while claim `token` is live: the claim key
    /// and the holder key, both created by that claim.
    pub(crate) fn fence(&self, task_id: &str, token: Revision) -> [Compare; 2] {
        let made_by_claim = CompareTarget::CreateRevision(token);
        [
            Compare::new(self.keys.claim(task_id), CompareOp::Equal, made_by_claim.clone()),
            Compare::new(self.keys.holder(task_id), CompareOp::Equal, made_by_claim),
        ]
    }

    /// Checks that `swarm_id` holds the live claim `token` on the task; returns
    /// the claim key.
    pub(crate) fn check_fence<'k>(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
        keys: &'k TaskKeys,
    ) -> Result<&'k KeyValue, CoreError> {
        let record: TaskRecord = decode(&keys.record)?;
        let live = keys.live_claim().filter(|_| record.state == TaskState::Claimed);
        match live {
            Some(claim) => {
                let value: ClaimValue = decode(claim)?;
                if value.swarm_id != swarm_id {
                    return Err(CoreError::NotOwner {
                        task_id: task_id.into(),
                        owner: value.swarm_id,
                    });
                }
                if claim.create_revision != token {
                    return Err(CoreError::Fenced { task_id: task_id.into(), token });
                }
                Ok(claim)
            }
            None => Err(CoreError::Fenced { task_id: task_id.into(), token }),
        }
    }

    /// Marks a task completed by the swarm holding claim `token`.
    pub async fn complete_task(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
        result: serde_json::Value,
    ) -> Result<TaskRecord, CoreError> {
        validate::json("result", &result, self.config.max_json_bytes)?;
        self.end_claim(swarm_id, task_id, token, Ok(result)).await
    }

    /// Marks a task failed by the swarm holding claim `token`: back to the pool
    /// (after the retry backoff), or to dead-letter on its last attempt.
    pub async fn fail_task(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
        error: String,
    ) -> Result<TaskRecord, CoreError> {
        if error.len() > self.config.max_json_bytes {
            return Err(CoreError::Invalid {
                field: "error",
                reason: format!(
                    "is {} bytes, more than {}",
                    error.len(),
                    self.config.max_json_bytes
                ),
            });
        }
        self.end_claim(swarm_id, task_id, token, Err(error)).await
    }

    async fn end_claim(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
        outcome: Result<serde_json::Value, String>,
    ) -> Result<TaskRecord, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::id("task_id", task_id)?;
        for round in 0..MAX_CAS_ROUNDS {
            let serializable = round == 0;
            let snap = self.snapshot(task_id, None, serializable).await?;
            let head = snap.head;
            let checked =
                snap.keys.ok_or_else(|| CoreError::TaskNotFound(task_id.into())).and_then(|keys| {
                    self.check_fence(swarm_id, task_id, token, &keys)?;
                    Ok(keys)
                });
            let keys = match checked {
                Ok(checked) => checked,
                // Confirm a refusal on a linearizable read.
                Err(_) if serializable => continue,
                Err(e) => return Err(e),
            };
            let mut record: TaskRecord = decode(&keys.record)?;
            let mut ops = vec![
                delete(self.keys.claim(task_id)),
                delete(self.keys.holder(task_id)),
                delete(self.keys.holding_entry(swarm_id, task_id)),
                delete(self.keys.inbox_entry(swarm_id, task_id)),
                delete(self.keys.state_entry(TaskState::Claimed.as_str(), task_id)),
            ];
            let ended = now_ms();
            let mut attempt = Attempt {
                swarm_id: swarm_id.into(),
                token,
                claimed_at_ms: record.claimed_at_ms.unwrap_or(0),
                ended_at_ms: ended,
                outcome: AttemptOutcome::Completed,
                error: None,
            };
            let (op, detail) = match &outcome {
                Ok(result) => {
                    record.state = TaskState::Completed;
                    record.awaiting_ack = false;
                    record.result = Some(result.clone());
                    record.claimed_at_ms = None;
                    ops.push(put(
                        self.keys.state_entry(TaskState::Completed.as_str(), task_id),
                        Vec::new(),
                    ));
                    ops.push(put(self.keys.counter(swarm_id, Counter::Completed), Vec::new()));
                    let size = serde_json::to_vec(result).map_or(0, |v| v.len());
                    ("task_completed", json!({"result_bytes": size}))
                }
                Err(error) => {
                    attempt.outcome = AttemptOutcome::Failed;
                    attempt.error = Some(error.clone());
                    record.attempts += 1;
                    record.error = Some(error.clone());
                    record.not_before_ms = ended + self.config.retry_backoff_ms as i64;
                    ops.push(put(self.keys.counter(swarm_id, Counter::Failed), Vec::new()));
                    let requeued = self.requeue(&mut record, &mut ops)?;
                    let op =
                        if requeued == "task_dead_lettered" { requeued } else { "task_failed" };
                    (op, json!({"error": error, "attempts": record.attempts}))
                }
            };
            record.history.push(attempt);
            let (witness, witness_ops) =
                Entry::by_holder(op, swarm_id, task_id, token, record.state.as_str(), detail)
                    .seal(&self.keys, &task_chain(task_id), &head)?;
            ops.extend(witness_ops);
            ops.push(put(self.keys.task(task_id), encode(&record)?));
            let mut txn = self.guarded(&keys, ops);
            txn.compares.extend(self.fence(task_id, token));
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                self.log(witness, resp.revision);
                return Ok(record);
            }
        }
        Err(CoreError::Conflict(format!("task {task_id} is too contended; retry")))
    }

    /// Cancels a task that is not finished. Cancelling a cancelled task is a
    /// no-op; cancelling a completed or dead one is a conflict.
    pub async fn cancel_task(&self, task_id: &str) -> Result<TaskRecord, CoreError> {
        validate::id("task_id", task_id)?;
        for _ in 0..MAX_CAS_ROUNDS {
            let snap = self.snapshot(task_id, None, false).await?;
            let keys = snap.keys.ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
            let head = snap.head;
            let view = self.view(&keys)?;
            let mut record = view.record.clone();
            match record.state {
                TaskState::Cancelled => return Ok(record),
                TaskState::Completed | TaskState::Dead => {
                    return Err(CoreError::Conflict(format!(
                        "task {task_id} is {} and cannot be cancelled",
                        record.state.as_str()
                    )));
                }
                _ => {}
            }
            let capset = capset_id(&record.required_capabilities);
            let mut ops = vec![
                delete(self.keys.ready(&capset, record.priority, record.created_at_ms, task_id)),
                delete(self.keys.state_entry(record.state.as_str(), task_id)),
                delete(self.keys.claim(task_id)),
                delete(self.keys.holder(task_id)),
                put(self.keys.state_entry(TaskState::Cancelled.as_str(), task_id), Vec::new()),
            ];
            if let Some(owner) = record.owner.clone() {
                ops.push(delete(self.keys.holding_entry(&owner, task_id)));
                ops.push(delete(self.keys.inbox_entry(&owner, task_id)));
                record.history.push(Attempt {
                    swarm_id: owner,
                    token: view.token.unwrap_or(0),
                    claimed_at_ms: record.claimed_at_ms.unwrap_or(0),
                    ended_at_ms: now_ms(),
                    outcome: if view.lapsed {
                        AttemptOutcome::Lapsed
                    } else {
                        AttemptOutcome::Cancelled
                    },
                    error: None,
                });
            }
            record.state = TaskState::Cancelled;
            record.awaiting_ack = false;
            record.owner = None;
            record.claimed_at_ms = None;
            let (witness, witness_ops) = Entry {
                op: "task_cancelled",
                actor: "orchestrator".into(),
                task_id: Some(task_id.into()),
                swarm_id: None,
                token: view.token,
                outcome: TaskState::Cancelled.as_str().into(),
                detail: json!({}),
            }
            .seal(&self.keys, &task_chain(task_id), &head)?;
            ops.extend(witness_ops);
            ops.push(put(self.keys.task(task_id), encode(&record)?));
            let resp = self.store.txn(self.guarded(&keys, ops)).await?;
            if resp.succeeded {
                self.log(witness, resp.revision);
                return Ok(record);
            }
        }
        Err(CoreError::Conflict(format!("task {task_id} is too contended; retry")))
    }

    /// Records a lapsed claim of one task, if it has lapsed (idempotent: any
    /// node may call it for any task at any time). Returns whether it wrote.
    pub async fn reap_task(&self, task_id: &str) -> Result<bool, CoreError> {
        for _ in 0..MAX_CAS_ROUNDS {
            let snap = self.snapshot(task_id, None, false).await?;
            let Some(keys) = snap.keys else { return Ok(false) };
            let view = self.view(&keys)?;
            if !view.lapsed {
                return Ok(false);
            }
            let mut head = snap.head;
            let mut record = view.record;
            let (ops, witness) = self.lapse_ops(&mut record, &keys, &mut head)?;
            let resp = self.store.txn(self.guarded(&keys, ops)).await?;
            if resp.succeeded {
                self.log(witness, resp.revision);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records every lapsed claim in the store: the start-up sweep, and what the
    /// reaper runs after it falls behind. Returns how many it recorded.
    pub async fn reap_all(&self) -> Result<usize, CoreError> {
        let claimed =
            self.store.range(RangeRequest::prefix(self.keys.state_index("claimed"))).await?;
        let mut reaped = 0;
        for kv in &claimed.kvs {
            let key = String::from_utf8_lossy(&kv.key);
            if let Some(task_id) = key.rsplit('/').next()
                && self.reap_task(task_id).await?
            {
                reaped += 1;
            }
        }
        Ok(reaped)
    }

    // ---- witness -------------------------------------------------------------

    pub(crate) fn log(&self, record: WitnessRecord, revision: Revision) {
        self.swarms.log(record, revision);
    }

    async fn chains(&self) -> Result<Vec<(String, Vec<WitnessRecord>, Head)>, CoreError> {
        let all = self.store.range(RangeRequest::prefix(self.keys.witness_all())).await?;
        let mut chains: Vec<(String, Vec<WitnessRecord>, Head)> = Vec::new();
        for kv in &all.kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let Some(rest) = self.keys.strip(&key).and_then(|k| k.strip_prefix("witness/")) else {
                continue;
            };
            let (chain, is_head) = match rest.strip_suffix("/head") {
                Some(chain) => (chain.to_string(), true),
                None => match rest.rsplit_once("/r/") {
                    Some((chain, _)) => (chain.to_string(), false),
                    None => continue,
                },
            };
            if chains.last().is_none_or(|(c, _, _)| *c != chain) {
                chains.push((chain.clone(), Vec::new(), Head::empty()));
            }
            let entry = chains.last_mut().expect("pushed above");
            if is_head {
                entry.2 = decode(kv)?;
            } else {
                let mut record: WitnessRecord = decode(kv)?;
                record.revision = kv.mod_revision;
                entry.1.push(record);
            }
        }
        Ok(chains)
    }

    /// Witness records matching `query`, in commit order.
    pub async fn witness(&self, query: &WitnessQuery) -> Result<Vec<WitnessRecord>, CoreError> {
        let mut records: Vec<WitnessRecord> = match &query.task_id {
            Some(task_id) => {
                validate::id("task_id", task_id)?;
                let chain = task_chain(task_id);
                let resp = self
                    .store
                    .range(RangeRequest::prefix(self.keys.witness_records(&chain)))
                    .await?;
                resp.kvs
                    .iter()
                    .map(|kv| {
                        decode::<WitnessRecord>(kv).map(|mut r| {
                            r.revision = kv.mod_revision;
                            r
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            None => self.chains().await?.into_iter().flat_map(|(_, records, _)| records).collect(),
        };
        records.retain(|r| {
            query.swarm_id.as_ref().is_none_or(|s| r.swarm_id.as_ref() == Some(s) || r.actor == *s)
                && query.from_ms.is_none_or(|from| r.at_ms >= from)
                && query.to_ms.is_none_or(|to| r.at_ms < to)
        });
        records.sort_by_key(|r| (r.revision, r.chain.clone(), r.seq));
        for record in &mut records {
            if record.op == "task_claimed" && record.token.is_none() {
                record.token = Some(record.revision);
            }
        }
        Ok(records)
    }

    /// Every witness record as JSON Lines, in commit order.
    pub async fn export_witness(&self) -> Result<String, CoreError> {
        let mut out = String::new();
        for record in self.witness(&WitnessQuery::default()).await? {
            out.push_str(&serde_json::to_string(&record).unwrap_or_default());
            out.push('\n');
        }
        Ok(out)
    }

    /// Verifies every chain; the first problem found, per chain.
    pub async fn verify_witness(&self) -> Result<Vec<Tampering>, CoreError> {
        Ok(self
            .chains()
            .await?
            .iter()
            .filter_map(|(chain, records, head)| witness::verify_chain(chain, records, head).err())
            .collect())
    }
}
