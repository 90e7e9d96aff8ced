//! Claims: claiming a task by id (`claim_next.rs` chooses one from the
//! queues), renewing the claim, and ending it by completing or failing the
//! task. Every write is
//! guarded by the task record's revision and fenced by the claim's token.

use ifc_api::{Claim, ClaimOutcome};
use ifc_kv::{
    Compare, CompareOp, CompareTarget, KeyValue, KvError, LeaseId, Revision, TxnOp, TxnRequest,
};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::keys::{Counter, task_chain};
use crate::swarm::SwarmRecord;
use crate::task::{AttemptOutcome, TaskRecord, TaskState};
use crate::txn::{self, ClaimValue, Freshness, MAX_CAS_ROUNDS, NewClaim, TaskKeys, put, put_on};
use crate::witness::{Entry, Head, WitnessOp, WitnessRecord};
use crate::{Coordinator, CoreError, now_ms, validate};

/// What a claim attempt on one snapshot of a task comes to.
pub(crate) enum ClaimPlan {
    /// Claimable: the parts of the txn that claims it.
    Ready(Box<PreparedClaim>),
    /// Not claimable now, and why (taken, finished, backing off).
    Refused(ClaimOutcome),
    /// The snapshot is stale (a lapse was found and recorded): read again.
    Stale,
}

/// The parts of one task's claim txn: the compares that guard it (the
/// record's revision, no holder, no older claim) and the ops that write it.
/// The swarm record's compare is the caller's, so a batch states it once.
pub(crate) struct PreparedClaim {
    /// The record as claimed.
    pub record: TaskRecord,
    /// Its `task_claimed` record, logged once the txn commits.
    pub witness: WitnessRecord,
    pub compares: Vec<Compare>,
    pub ops: Vec<TxnOp>,
    /// The claim lease the claim key is on.
    pub lease: LeaseId,
    pub deadline_ms: i64,
}

impl Coordinator {
    /// A task's claim lease in ms (records from before per-task leases use
    /// the configured claim timeout).
    pub(crate) fn lease_ms(&self, record: &TaskRecord) -> u64 {
        if record.timeout_ms == 0 { self.config.claim_timeout_ms } else { record.timeout_ms }
    }

    /// The lease new claims of `record` attach to, and the deadline it gives
    /// them.
    pub(crate) async fn claim_lease(
        &self,
        record: &TaskRecord,
    ) -> Result<(LeaseId, i64), CoreError> {
        self.leases.lease(&*self.store, self.lease_ms(record)).await
    }

    /// The lease new pushes attach to (until acknowledged).
    pub(crate) async fn push_lease(&self) -> Result<(LeaseId, i64), CoreError> {
        self.leases.lease(&*self.store, self.config.push_timeout_ms).await
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
            // The first attempt trusts this node's copy or a serializable
            // read; a refusal or a failed compare reads again, linearizably.
            let first = round == 0;
            let freshness = if first { Freshness::Cached } else { Freshness::Linearizable };
            let snap = self.snapshot(task_id, Some(swarm_id), freshness).await?;
            let (keys, swarm_kv) = match (snap.keys, snap.swarm) {
                (Some(keys), Some(swarm)) => (keys, swarm),
                // Confirm a negative answer on a linearizable read.
                _ if first => continue,
                (None, _) => return Err(CoreError::TaskNotFound(task_id.into())),
                (_, None) => return Err(CoreError::NotRegistered(swarm_id.into())),
            };
            match self.try_claim(&swarm_kv, &keys, &snap.head).await {
                Ok(Some(ClaimOutcome::Claimed(claim))) => return Ok(ClaimOutcome::Claimed(claim)),
                // A refusal, or a swarm lease gone: a cached swarm record may
                // be older than the swarm's re-registration.
                Ok(Some(_)) | Err(CoreError::Incapable { .. } | CoreError::NotRegistered(_))
                    if first =>
                {
                    continue;
                }
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CoreError::Contended(format!("task {task_id}")))
    }

    /// One claim attempt on a read snapshot; `None` if the snapshot went stale.
    async fn try_claim(
        &self,
        swarm_kv: &KeyValue,
        keys: &TaskKeys,
        head: &Head,
    ) -> Result<Option<ClaimOutcome>, CoreError> {
        let swarm: SwarmRecord = decode(swarm_kv)?;
        let claim = match self.plan_claim(&swarm, keys, head, 0).await? {
            ClaimPlan::Ready(claim) => *claim,
            ClaimPlan::Refused(outcome) => return Ok(Some(outcome)),
            ClaimPlan::Stale => return Ok(None),
        };
        let mut compares = claim.compares;
        compares.push(Compare::mod_revision_is(swarm_kv.key.clone(), swarm_kv.mod_revision));
        let txn = TxnRequest { compares, success: claim.ops, failure: Vec::new() };
        let resp = match self.store.txn(txn).await {
            Ok(resp) => resp,
            Err(e) => {
                return self.claim_txn_failed(e, &[claim.lease], &swarm.swarm_id).map(|_| None);
            }
        };
        if !resp.succeeded {
            return Ok(None);
        }
        self.witness_log.log(claim.witness, resp.revision);
        let claim =
            Claim { task: claim.record, token: resp.revision, deadline_ms: claim.deadline_ms };
        Ok(Some(ClaimOutcome::Claimed(Box::new(claim))))
    }

    /// What claiming the task in `keys` (read with its chain `head`) for
    /// `swarm` comes to: the parts of the claim's txn, a refusal, or a
    /// snapshot gone stale (a lapse it found is recorded first). The one place
    /// a claim is built: `claim_task`, `claim_next` and `claim_next_many` all
    /// come here. The claim counts on shard `counter_shard` of the swarm's
    /// claim counter.
    pub(crate) async fn plan_claim(
        &self,
        swarm: &SwarmRecord,
        keys: &TaskKeys,
        head: &Head,
        counter_shard: usize,
    ) -> Result<ClaimPlan, CoreError> {
        let view = txn::view(keys)?;
        let mut record = view.record.clone();
        match view.state {
            TaskState::Claimed => {
                let owner = record.owner.unwrap_or_default();
                return Ok(ClaimPlan::Refused(ClaimOutcome::AlreadyClaimed { owner }));
            }
            state if state.is_final() && !view.lapsed => {
                return Ok(ClaimPlan::Refused(ClaimOutcome::Finished { state }));
            }
            _ => {}
        }
        let missing: Vec<String> = record
            .required_capabilities
            .iter()
            .filter(|c| !swarm.capabilities.contains(c))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(CoreError::Incapable { swarm_id: swarm.swarm_id.clone(), missing });
        }
        if view.lapsed {
            // Record the lapse first (as the reaper would), then decide again on
            // fresh state: the task may have used its last attempt.
            self.reap_task(&record.task_id).await?;
            return Ok(ClaimPlan::Stale);
        }
        if record.not_before_ms > now_ms() {
            let ready_at_ms = record.not_before_ms;
            return Ok(ClaimPlan::Refused(ClaimOutcome::BackingOff { ready_at_ms }));
        }
        let (lease, deadline_ms) = self.claim_lease(&record).await?;
        let mut ops = Vec::from(txn::take_from_pool(&self.keys, &record));
        record.state = TaskState::Claimed;
        record.owner = Some(swarm.swarm_id.clone());
        record.claimed_at_ms = Some(now_ms());
        record.claim_token = None;
        let (witness, witness_ops) = Entry {
            op: WitnessOp::TaskClaimed,
            actor: swarm.swarm_id.clone(),
            task_id: Some(record.task_id.clone()),
            swarm_id: Some(swarm.swarm_id.clone()),
            token: None,
            outcome: TaskState::Claimed.as_str().into(),
            detail: json!({"attempt": record.attempts + 1, "deadline_ms": deadline_ms}),
        }
        .seal(&self.keys, &task_chain(&record.task_id), head)?;
        ops.extend(witness_ops);
        let claim = NewClaim {
            swarm_id: &swarm.swarm_id,
            swarm_lease: swarm.lease,
            lease,
            deadline_ms,
            counter_shard,
        };
        ops.extend(txn::claim_ops(&self.keys, &record, &claim)?);
        let mut compares = vec![
            Compare::mod_revision_is(keys.record.key.clone(), keys.record.mod_revision),
            Compare::missing(self.keys.holder(&record.task_id)),
        ];
        // The claim key must not exist: a claim that lapsed is gone already.
        compares.push(Compare::new(
            self.keys.claim(&record.task_id),
            CompareOp::Equal,
            CompareTarget::CreateRevision(keys.claim.as_ref().map_or(0, |c| c.create_revision)),
        ));
        let claim = PreparedClaim { record, witness, compares, ops, lease, deadline_ms };
        Ok(ClaimPlan::Ready(Box::new(claim)))
    }

    /// What a claim txn's store error means: a claim lease that expired under
    /// us is forgotten and the caller tries again (`Ok`); the swarm's own
    /// lease gone means it is not registered.
    pub(crate) fn claim_txn_failed(
        &self,
        error: KvError,
        claim_leases: &[LeaseId],
        swarm_id: &str,
    ) -> Result<(), CoreError> {
        match error {
            KvError::LeaseNotFound(id) if claim_leases.contains(&id) => {
                self.leases.forget(id);
                Ok(())
            }
            KvError::LeaseNotFound(_) => Err(CoreError::NotRegistered(swarm_id.into())),
            e => Err(e.into()),
        }
    }

    /// Extends a claim by another of the task's claim leases.
    pub async fn renew_claim(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
    ) -> Result<i64, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::id("task_id", task_id)?;
        // This node's copy when it shows the claim live (the txn's fences
        // check it again); else the store, which also explains a refusal.
        let cached = self.snapshots.task(task_id).and_then(|t| {
            let owned = |kv: Option<std::sync::Arc<KeyValue>>| kv.map(|kv| (*kv).clone());
            let keys = TaskKeys {
                record: owned(t.record)?,
                claim: owned(t.claim),
                holder: owned(t.holder),
            };
            txn::check_fence(swarm_id, task_id, token, &keys).is_ok().then_some(keys)
        });
        let keys = match cached {
            Some(keys) => keys,
            None => txn::read_task(&*self.store, &self.keys, task_id)
                .await?
                .ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?,
        };
        let record: TaskRecord = decode(&keys.record)?;
        let claim = match txn::check_fence(swarm_id, task_id, token, &keys) {
            Ok(claim) => claim,
            Err(_) => return Err(self.refusal(swarm_id, task_id, token).await),
        };
        for _ in 0..2 {
            let (lease, deadline_ms) = self.claim_lease(&record).await?;
            let value =
                ClaimValue { swarm_id: swarm_id.into(), deadline_ms, written_at_ms: now_ms() };
            let key = String::from_utf8_lossy(&claim.key).into_owned();
            let [claim_fence, holder_fence] = txn::fence(&self.keys, task_id, token);
            let txn = TxnRequest::new().when(claim_fence).when(holder_fence).and_then(put_on(
                key,
                encode(&value)?,
                lease,
            ));
            match self.store.txn(txn).await {
                Ok(resp) if resp.succeeded => return Ok(deadline_ms),
                Ok(_) => return Err(self.refusal(swarm_id, task_id, token).await),
                Err(KvError::LeaseNotFound(_)) => self.leases.forget(lease),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Contended(format!("claim lease of task {task_id}")))
    }

    /// Why `swarm_id` with claim `token` may not act on the task, read fresh
    /// after recording a lapse not yet recorded (so a lapse explains itself).
    pub(crate) async fn refusal(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
    ) -> CoreError {
        if let Err(e) = self.reap_task(task_id).await {
            return e;
        }
        let keys = match txn::read_task(&*self.store, &self.keys, task_id).await {
            Ok(Some(keys)) => keys,
            Ok(None) => return CoreError::TaskNotFound(task_id.into()),
            Err(e) => return e,
        };
        match txn::check_fence(swarm_id, task_id, token, &keys) {
            Err(e) => e,
            // It holds after all: the write lost a race with another writer.
            Ok(_) => CoreError::Contended(format!("task {task_id}")),
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
        self.end_claim(swarm_id, task_id, token, Ending::Complete(result)).await
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
        // Too large for a request is refused; stored, it is cut to 4 KiB.
        let max = self.config.max_json_bytes;
        if error.len() > max {
            let reason = format!("is {} bytes, more than {max}", error.len());
            return Err(CoreError::Invalid { field: "error", reason });
        }
        self.end_claim(swarm_id, task_id, token, Ending::Fail(error)).await
    }

    /// Gives a claimed task back to the pool unfinished, without using an
    /// attempt and without a retry backoff: a worker stopping before it could
    /// finish. Only the holder of claim `token` may.
    pub async fn release_claim(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
    ) -> Result<TaskRecord, CoreError> {
        self.end_claim(swarm_id, task_id, token, Ending::Release).await
    }

    async fn end_claim(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: Revision,
        outcome: Ending,
    ) -> Result<TaskRecord, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::id("task_id", task_id)?;
        for round in 0..MAX_CAS_ROUNDS {
            // The first attempt trusts this node's copy or a serializable
            // read; a refusal or a failed compare reads again, linearizably.
            let first = round == 0;
            let freshness = if first { Freshness::Cached } else { Freshness::Linearizable };
            let snap = self.snapshot(task_id, None, freshness).await?;
            let keys = match snap.keys {
                Some(keys) => keys,
                // Confirm a refusal on a linearizable read.
                None if first => continue,
                None => return Err(CoreError::TaskNotFound(task_id.into())),
            };
            let mut record: TaskRecord = decode(&keys.record)?;
            if already_ended(&record, swarm_id, token, &outcome) {
                // A retry after a lost response: the same answer again.
                return Ok(record);
            }
            if txn::check_fence(swarm_id, task_id, token, &keys).is_err() {
                if first {
                    continue;
                }
                return Err(self.refusal(swarm_id, task_id, token).await);
            }
            let lease_ms = self.lease_ms(&record);
            let mut ops =
                txn::teardown_ops(&self.keys, task_id, TaskState::Claimed, Some(swarm_id));
            let (op, detail) = match &outcome {
                Ending::Complete(result) => {
                    let completed = AttemptOutcome::Completed;
                    txn::close_attempt(&mut record, swarm_id, token, completed, lease_ms, None);
                    ops.extend(txn::finish(&self.keys, &mut record, TaskState::Completed));
                    record.awaiting_ack = false;
                    record.claim_token = None;
                    record.result = Some(result.clone());
                    record.claimed_at_ms = None;
                    ops.push(put(self.keys.counter(swarm_id, Counter::Completed), Vec::new()));
                    let size = serde_json::to_vec(result).map_or(0, |v| v.len());
                    (WitnessOp::TaskCompleted, json!({"result_bytes": size}))
                }
                Ending::Fail(error) => {
                    record.attempts += 1;
                    let failed = AttemptOutcome::Failed;
                    let ended = txn::close_attempt(
                        &mut record,
                        swarm_id,
                        token,
                        failed,
                        lease_ms,
                        Some(error),
                    );
                    record.not_before_ms = ended + self.config.retry_backoff_ms as i64;
                    record.claim_token = None;
                    ops.push(put(self.keys.counter(swarm_id, Counter::Failed), Vec::new()));
                    let op = match self.requeue(&mut record, &mut ops) {
                        WitnessOp::TaskDeadLettered => WitnessOp::TaskDeadLettered,
                        _ => WitnessOp::TaskFailed,
                    };
                    (op, json!({"error": record.error, "attempts": record.attempts}))
                }
                Ending::Release => {
                    let released = AttemptOutcome::Released;
                    txn::close_attempt(&mut record, swarm_id, token, released, lease_ms, None);
                    record.claim_token = None;
                    let op = self.release(&mut record, &mut ops);
                    debug_assert_eq!(op, WitnessOp::TaskRequeued);
                    (WitnessOp::TaskReleased, json!({"attempts": record.attempts}))
                }
            };
            let state = record.state.as_str();
            let (witness, witness_ops) = Entry::by_holder(
                op, swarm_id, task_id, token, state, detail,
            )
            .seal(&self.keys, &task_chain(task_id), &snap.head)?;
            ops.extend(witness_ops);
            ops.push(put(self.keys.task(task_id), encode(&record)?));
            let mut txn = txn::guarded(&keys, ops);
            txn.compares.extend(txn::fence(&self.keys, task_id, token));
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                self.witness_log.log(witness, resp.revision);
                return Ok(record);
            }
        }
        Err(CoreError::Contended(format!("task {task_id}")))
    }
}

/// Whether claim `token` of `swarm_id` already ended the way `outcome` asks
/// (completed with this result, or failed with this error): a retried call
/// whose first response was lost.
fn already_ended(record: &TaskRecord, swarm_id: &str, token: Revision, outcome: &Ending) -> bool {
    let Some(attempt) =
        record.history.iter().rev().find(|a| a.token == token && a.swarm_id == swarm_id)
    else {
        return false;
    };
    match outcome {
        Ending::Complete(result) => {
            attempt.outcome == AttemptOutcome::Completed
                && record.state == TaskState::Completed
                && record.result.as_ref() == Some(result)
        }
        Ending::Fail(error) => {
            let stored = attempt.error.as_ref().or(record.error.as_ref());
            attempt.outcome == AttemptOutcome::Failed
                && stored.is_some_and(|e| *e == txn::capped(error))
        }
        Ending::Release => attempt.outcome == AttemptOutcome::Released,
    }
}

/// How the holder ends a claim.
enum Ending {
    /// Completed, with this result.
    Complete(serde_json::Value),
    /// Failed, with this error: an attempt used.
    Fail(String),
    /// Given back unfinished: no attempt used.
    Release,
}
