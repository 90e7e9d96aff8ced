//! Tasks: records (defined in `ifc-api`, stored as JSON), and creating,
//! reading, listing and cancelling them.

use ifc_api::TaskPage;
use ifc_kv::{Compare, KeyRange, RangeRequest, TxnRequest, prefix_end};
use serde_json::json;

pub use ifc_api::{Attempt, AttemptOutcome, NewTask, TaskRecord, TaskState, TaskView};

pub use crate::txn::ClaimValue;

use crate::codec::{decode, encode};
use crate::config::{MAX_ATTEMPTS_CEILING, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS};
use crate::keys::{Key, capset_id, task_chain};
use crate::txn::{self, MAX_CAS_ROUNDS, delete, put, range_op, ranges};
use crate::witness::{Entry, Head, WitnessOp};
use crate::{Coordinator, CoreError, now_ms, validate};

fn canonical_capabilities(mut caps: Vec<String>) -> Vec<String> {
    caps.sort();
    caps.dedup();
    caps
}

impl Coordinator {
    /// Creates a task, ready to claim. Creating the same id with the same content
    /// again returns the existing task; with other content it is
    /// [`CoreError::TaskExists`].
    pub async fn create_task(&self, new: NewTask) -> Result<TaskRecord, CoreError> {
        let record = self.new_record(&new)?;
        let (caps, max_attempts) = (record.required_capabilities.clone(), record.max_attempts);
        let timeout_ms = record.timeout_ms;
        let capset = capset_id(&caps);
        let (witness, mut ops) = Entry {
            op: WitnessOp::TaskCreated,
            actor: "orchestrator".into(),
            task_id: Some(new.task_id.clone()),
            swarm_id: None,
            token: None,
            outcome: TaskState::Ready.as_str().into(),
            detail: json!({"task_type": new.task_type, "priority": new.priority,
                "required_capabilities": caps, "max_attempts": max_attempts, "timeout_ms": timeout_ms}),
        }
        .seal(&self.keys, &task_chain(&new.task_id), &Head::empty())?;
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
            self.witness_log.log(witness, resp.revision);
            return Ok(record);
        }
        let existing: TaskRecord = match ranges(&resp.responses).first().and_then(|kvs| kvs.first())
        {
            Some(kv) => decode(kv)?,
            // It was there at the compare and gone at the read: cancelled
            // and removed under us.
            None => return Err(CoreError::Contended(format!("task {}", new.task_id))),
        };
        if existing.same_spec(&new, max_attempts, &caps) {
            Ok(existing)
        } else {
            Err(CoreError::TaskExists(new.task_id))
        }
    }

    /// Checks a new task and builds its ready record.
    pub(crate) fn new_record(&self, new: &NewTask) -> Result<TaskRecord, CoreError> {
        validate::id("task_id", &new.task_id)?;
        validate::text("task_type", &new.task_type)?;
        validate::capabilities("required_capabilities", &new.required_capabilities)?;
        validate::json("metadata", &new.metadata, self.config.max_json_bytes)?;
        let max_attempts = new.max_attempts.unwrap_or(self.config.default_max_attempts);
        if !(1..=MAX_ATTEMPTS_CEILING).contains(&max_attempts) {
            return Err(CoreError::Invalid {
                field: "max_attempts",
                reason: format!("must be 1 ..= {MAX_ATTEMPTS_CEILING}, not {max_attempts}"),
            });
        }
        let timeout_ms = new.timeout_ms.unwrap_or(self.config.claim_timeout_ms);
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(CoreError::Invalid {
                field: "timeout_ms",
                reason: format!(
                    "must be {MIN_TIMEOUT_MS} ..= {MAX_TIMEOUT_MS} ms, not {timeout_ms}"
                ),
            });
        }
        Ok(TaskRecord {
            task_id: new.task_id.clone(),
            task_type: new.task_type.clone(),
            metadata: new.metadata.clone(),
            required_capabilities: canonical_capabilities(new.required_capabilities.clone()),
            priority: new.priority,
            max_attempts,
            timeout_ms,
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
            claim_token: None,
            finished_at_ms: None,
        })
    }

    /// The whole task as it stands.
    pub async fn get_task(&self, task_id: &str) -> Result<TaskView, CoreError> {
        validate::id("task_id", task_id)?;
        let keys = txn::read_task(&*self.store, &self.keys, task_id)
            .await?
            .ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
        txn::view(&keys)
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
        let page = self.store.range(RangeRequest::new(range).with_limit(limit as i64)).await?;
        let ids = self.indexed_ids(&page.kvs);
        let mut txn = TxnRequest::new();
        for id in &ids {
            txn = txn.and_then(range_op(KeyRange::prefix(self.keys.task_dir(id))));
        }
        let resp = self.store.txn(txn).await?;
        let mut tasks = Vec::new();
        for (id, kvs) in ids.iter().zip(ranges(&resp.responses)) {
            if let Some(keys) = txn::task_keys(&self.keys, id, kvs) {
                tasks.push(txn::view(&keys)?);
            }
        }
        let next_after = if page.more { ids.last().cloned() } else { None };
        Ok(TaskPage { tasks, next_after })
    }

    /// The task ids of `state` index entries.
    pub(crate) fn indexed_ids(&self, entries: &[ifc_kv::KeyValue]) -> Vec<String> {
        let task_id = |kv: &ifc_kv::KeyValue| match self.keys.parse(&kv.key) {
            Some(Key::State { task_id, .. }) => Some(task_id.to_string()),
            _ => None,
        };
        entries.iter().filter_map(task_id).collect()
    }

    /// Cancels a task that is not finished. Cancelling a cancelled task is a
    /// no-op; cancelling a completed or dead one is [`CoreError::TaskFinished`].
    pub async fn cancel_task(&self, task_id: &str) -> Result<TaskRecord, CoreError> {
        validate::id("task_id", task_id)?;
        for _ in 0..MAX_CAS_ROUNDS {
            let snap = txn::snapshot(&*self.store, &self.keys, task_id, None, false).await?;
            let keys = snap.keys.ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
            let view = txn::view(&keys)?;
            let mut record = view.record.clone();
            match record.state {
                TaskState::Cancelled => return Ok(record),
                state @ (TaskState::Completed | TaskState::Dead) => {
                    return Err(CoreError::TaskFinished { task_id: task_id.into(), state });
                }
                _ => {}
            }
            let capset = capset_id(&record.required_capabilities);
            let mut ops = vec![delete(self.keys.ready(
                &capset,
                record.priority,
                record.created_at_ms,
                task_id,
            ))];
            ops.extend(txn::teardown_ops(
                &self.keys,
                task_id,
                record.state,
                record.owner.as_deref(),
            ));
            if let Some(owner) = record.owner.take() {
                let outcome =
                    if view.lapsed { AttemptOutcome::Lapsed } else { AttemptOutcome::Cancelled };
                let token = view.token.unwrap_or_else(|| txn::claim_token(&keys, &view.record));
                let lease_ms = self.lease_ms(&record);
                txn::close_attempt(&mut record, &owner, token, outcome, lease_ms, None);
            }
            ops.extend(txn::finish(&self.keys, &mut record, TaskState::Cancelled));
            record.awaiting_ack = false;
            record.claim_token = None;
            record.claimed_at_ms = None;
            let (witness, witness_ops) = Entry {
                op: WitnessOp::TaskCancelled,
                actor: "orchestrator".into(),
                task_id: Some(task_id.into()),
                swarm_id: None,
                token: view.token,
                outcome: TaskState::Cancelled.as_str().into(),
                detail: json!({}),
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
}
