//! Operator controls: a dead task back in the pool, and queue depth (tasks
//! by state and ready tasks by capability set).

use ifc_api::{CapabilitySetCount, QueueCounts, StateCounts};
use ifc_kv::{KvStore, RangeRequest};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::keys::{capset_id, task_chain};
use crate::task::{TaskRecord, TaskState};
use crate::txn::{self, Freshness, MAX_CAS_ROUNDS, put};
use crate::witness::{Entry, WitnessOp};
use crate::{Coordinator, CoreError, validate};

/// How many keys start with `prefix`, without reading them. Every count
/// goes through here, so a change to how the store reports counts is one
/// edit.
pub(crate) async fn count_keys(store: &dyn KvStore, prefix: String) -> Result<i64, CoreError> {
    let resp = store.range(RangeRequest::prefix(prefix).count_only()).await?;
    Ok(resp.count)
}

impl Coordinator {
    /// Puts a dead task back in the pool with its attempts reset to 0
    /// (witnessed as `task_retried`); any other state is
    /// [`CoreError::NotDead`].
    pub async fn retry_task(&self, task_id: &str) -> Result<TaskRecord, CoreError> {
        validate::id("task_id", task_id)?;
        for _ in 0..MAX_CAS_ROUNDS {
            let snap = self.snapshot(task_id, None, Freshness::Linearizable).await?;
            let keys = snap.keys.ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
            let view = txn::view(&keys)?;
            if view.lapsed {
                // Its last claim lapsed unrecorded: record it, then decide.
                self.reap_task(task_id).await?;
                continue;
            }
            if view.state != TaskState::Dead {
                return Err(CoreError::NotDead { task_id: task_id.into(), state: view.state });
            }
            let mut record = view.record;
            let previous_attempts = record.attempts;
            record.attempts = 0;
            record.not_before_ms = 0;
            let mut ops = txn::unfinish(&self.keys, &mut record);
            self.release(&mut record, &mut ops);
            let (witness, witness_ops) = Entry {
                op: WitnessOp::TaskRetried,
                actor: "orchestrator".into(),
                task_id: Some(task_id.into()),
                swarm_id: None,
                token: None,
                outcome: TaskState::Ready.as_str().into(),
                detail: json!({"previous_attempts": previous_attempts}),
            }
            .seal(&self.keys, &task_chain(task_id), &snap.head)?;
            ops.extend(witness_ops);
            ops.push(put(self.keys.task(task_id), encode(&record)?));
            let resp = self.store.txn(txn::guarded(&keys, ops)).await?;
            if resp.succeeded {
                self.witness_log.log(witness, resp.revision);
                return Ok(record);
            }
        }
        Err(CoreError::Contended(format!("task {task_id}")))
    }

    /// Queue depth: tasks by state, and ready tasks by the capability set
    /// they need (sets with none ready are left out). Counts keys; reads no
    /// task.
    pub async fn queue_counts(&self) -> Result<QueueCounts, CoreError> {
        let store = &*self.store;
        let states = self.task_counts().await?;
        let capsets = store.range(RangeRequest::prefix(self.keys.capsets())).await?;
        let mut capability_sets = Vec::new();
        for kv in &capsets.kvs {
            let capabilities: Vec<String> = decode(kv)?;
            let queue = self.keys.ready_queue(&capset_id(&capabilities));
            let ready = count_keys(store, queue).await?;
            if ready > 0 {
                capability_sets.push(CapabilitySetCount { capabilities, ready });
            }
        }
        Ok(QueueCounts { states, capability_sets })
    }

    /// Tasks by state (as indexed: a lapsed claim counts as claimed until a
    /// node records the lapse).
    pub async fn task_counts(&self) -> Result<StateCounts, CoreError> {
        let store = &*self.store;
        let count = |state: TaskState| count_keys(store, self.keys.state_index(state.as_str()));
        Ok(StateCounts {
            ready: count(TaskState::Ready).await?,
            claimed: count(TaskState::Claimed).await?,
            completed: count(TaskState::Completed).await?,
            dead: count(TaskState::Dead).await?,
            cancelled: count(TaskState::Cancelled).await?,
        })
    }
}
