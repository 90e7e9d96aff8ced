//! Lapses: a claim whose lease ran out (or whose swarm went away) is recorded
//! as an ended attempt, and its task goes back to the pool or to dead-letter.
//! The reaper (`reaper.rs`) calls [`Coordinator::reap_task`] and
//! [`Coordinator::reap_all`]; a claim of a lapsed task records the lapse
//! itself, so correctness never waits for the reaper.

use ifc_kv::TxnOp;
use serde_json::json;

use crate::codec::encode;
use crate::keys::{capset_id, task_chain};
use crate::task::{AttemptOutcome, TaskRecord, TaskState};
use crate::txn::{self, Freshness, MAX_CAS_ROUNDS, TaskKeys, put};
use crate::witness::{Entry, Head, WitnessOp, WitnessRecord};
use crate::{Coordinator, CoreError};

impl Coordinator {
    /// Records a lapsed claim of one task, if it has lapsed (idempotent: any
    /// node may call it for any task at any time). Returns whether it wrote.
    pub async fn reap_task(&self, task_id: &str) -> Result<bool, CoreError> {
        for _ in 0..MAX_CAS_ROUNDS {
            let snap = self.snapshot(task_id, None, Freshness::Linearizable).await?;
            let Some(keys) = snap.keys else { return Ok(false) };
            let view = txn::view(&keys)?;
            if !view.lapsed {
                return Ok(false);
            }
            let mut record = view.record;
            let (ops, witness) = self.lapse_ops(&mut record, &keys, &snap.head)?;
            let resp = self.store.txn(txn::guarded(&keys, ops)).await?;
            if resp.succeeded {
                log_lapse(&witness, &record);
                self.witness_log.log(witness, resp.revision);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `task_id`'s claim may have lapsed, by this node's copy: false
    /// only when the copy shows the task unclaimed or its claim live (as after
    /// a complete, which deletes the claim too). The reaper asks before it
    /// reads, so an ordinary complete costs no node a read. The copy is
    /// current through the event that prompted the question: the reaper
    /// feeds it each revision before acting on its deletes.
    pub(crate) fn may_have_lapsed(&self, task_id: &str) -> bool {
        let Some(task) = self.snapshots.task(task_id) else { return true };
        let Some(record) = task.record else { return true };
        let owned = |kv: Option<std::sync::Arc<ifc_kv::KeyValue>>| kv.map(|kv| (*kv).clone());
        let keys = TaskKeys {
            record: (*record).clone(),
            claim: owned(task.claim),
            holder: owned(task.holder),
        };
        txn::view(&keys).map_or(true, |view| view.lapsed)
    }

    /// Records every lapsed claim in the store: the start-up sweep, and what the
    /// reaper runs after it falls behind. Returns how many it recorded.
    pub async fn reap_all(&self) -> Result<usize, CoreError> {
        let claimed = self.keys.state_index(TaskState::Claimed.as_str());
        // Page by page: the claimed index can be as large as the task count.
        let mut pager = crate::paging::Pager::prefix(claimed);
        let mut reaped = 0;
        while let Some(page) = pager.next_page(&*self.store).await? {
            for task_id in self.indexed_ids(&page) {
                if self.reap_task(&task_id).await? {
                    reaped += 1;
                }
            }
        }
        Ok(reaped)
    }

    /// Ops that record a lapsed claim: attempts + 1 (a push that was never
    /// acknowledged uses none), back to ready or to dead. Updates `record`.
    fn lapse_ops(
        &self,
        record: &mut TaskRecord,
        keys: &TaskKeys,
        head: &Head,
    ) -> Result<(Vec<TxnOp>, WitnessRecord), CoreError> {
        let owner = record.owner.clone().unwrap_or_default();
        let token = txn::claim_token(keys, record);
        let pushed = record.awaiting_ack;
        let lease_ms = if pushed { self.config.push_timeout_ms } else { self.lease_ms(record) };
        if !pushed {
            record.attempts += 1;
        }
        txn::close_attempt(record, &owner, token, AttemptOutcome::Lapsed, lease_ms, None);
        let task_id = record.task_id.clone();
        let mut ops = txn::teardown_ops(&self.keys, &task_id, TaskState::Claimed, Some(&owner));
        let (op, reason) = if pushed {
            self.release(record, &mut ops);
            (WitnessOp::PushExpired, "push not acknowledged")
        } else {
            (self.requeue(record, &mut ops), "claim lapsed")
        };
        let (witness, witness_ops) = Entry {
            op,
            actor: "coordinator".into(),
            task_id: Some(task_id.clone()),
            swarm_id: Some(owner),
            token: Some(token),
            outcome: record.state.as_str().into(),
            detail: json!({"reason": reason, "attempts": record.attempts, "lease_ms": lease_ms}),
        }
        .seal(&self.keys, &task_chain(&task_id), head)?;
        ops.extend(witness_ops);
        ops.push(put(self.keys.task(&task_id), encode(&*record)?));
        Ok((ops, witness))
    }

    /// Puts an ended attempt's task back in the pool, or in dead-letter when it
    /// has no attempts left. Returns the witness op.
    pub(crate) fn requeue(&self, record: &mut TaskRecord, ops: &mut Vec<TxnOp>) -> WitnessOp {
        if record.attempts < record.max_attempts {
            return self.release(record, ops);
        }
        unclaim(record, TaskState::Dead);
        ops.extend(txn::finish(&self.keys, record, TaskState::Dead));
        WitnessOp::TaskDeadLettered
    }

    /// Puts a task back in the pool (ready queue and state index). Returns the
    /// witness op.
    pub(crate) fn release(&self, record: &mut TaskRecord, ops: &mut Vec<TxnOp>) -> WitnessOp {
        unclaim(record, TaskState::Ready);
        let capset = capset_id(&record.required_capabilities);
        let task_id = &record.task_id;
        ops.push(put(
            self.keys.ready(&capset, record.priority, record.created_at_ms, task_id),
            Vec::new(),
        ));
        ops.push(put(self.keys.state_entry(TaskState::Ready.as_str(), task_id), Vec::new()));
        WitnessOp::TaskRequeued
    }
}

/// Clears a record's claim and moves it to `state`.
fn unclaim(record: &mut TaskRecord, state: TaskState) {
    record.owner = None;
    record.claimed_at_ms = None;
    record.awaiting_ack = false;
    record.claim_token = None;
    record.state = state;
}

/// One info line per recorded lapse, for the operator: which swarm, which
/// task, which attempt, and what became of the task (ids and counts only).
fn log_lapse(witness: &WitnessRecord, record: &TaskRecord) {
    let swarm_id = witness.swarm_id.as_deref().unwrap_or("");
    let what = match WitnessOp::parse(&witness.op) {
        Some(WitnessOp::PushExpired) => "push not acknowledged in time",
        _ => "claim lapsed",
    };
    tracing::info!(
        swarm_id,
        task_id = %record.task_id,
        attempt = record.attempts,
        max_attempts = record.max_attempts,
        outcome = record.state.as_str(),
        "{what}"
    );
}
