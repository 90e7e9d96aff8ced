//! Tasks: records (defined in `ifc-api`, stored as JSON), and creating,
//! reading, listing and cancelling them.

use ifc_api::TaskPage;
use ifc_kv::{Compare, KeyRange, RangeRequest, TxnOp, TxnRequest, prefix_end};
use serde_json::json;

pub use ifc_api::{Attempt, AttemptOutcome, NewTask, TaskRecord, TaskState, TaskView};

pub use crate::txn::ClaimValue;

use crate::codec::{decode, encode};
use crate::config::{MAX_ATTEMPTS_CEILING, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS};
use crate::keys::{Key, capset_id, task_chain};
use crate::txn::{self, Freshness, MAX_CAS_ROUNDS, delete, put, range_op, ranges};
use crate::witness::{Entry, Head, WitnessOp, WitnessRecord};
use crate::{Coordinator, CoreError, now_ms, validate};

fn canonical_capabilities(mut caps: Vec<String>) -> Vec<String> {
    caps.sort();
    caps.dedup();
    caps
}

/// What creating a task came to.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    /// It is new.
    Created(TaskRecord),
    /// It existed already with the same content (an idempotent retry): the
    /// task as it stands.
    Exists(TaskRecord),
}

impl CreateOutcome {
    /// The task, however it came.
    pub fn into_record(self) -> TaskRecord {
        match self {
            CreateOutcome::Created(record) | CreateOutcome::Exists(record) => record,
        }
    }
}

/// A checked new task and what creates it (see [`Coordinator::prepare_create`]).
pub(crate) struct PreparedTask {
    /// As the caller gave it (an existing task is compared with it).
    pub new: NewTask,
    /// Its ready record.
    pub record: TaskRecord,
    /// Its `task_created` record, logged once the txn commits.
    pub witness: WitnessRecord,
    /// Ops that write the record, its indexes and its witness record.
    pub ops: Vec<TxnOp>,
    /// Its capability set's key and definition: put once per txn, however
    /// many of the txn's tasks share it.
    pub capset: (String, Vec<u8>),
    /// Bytes of keys and values its ops carry (txns are packed by it).
    pub bytes: usize,
}

impl PreparedTask {
    /// What a create of this task means when `existing` (its record) is there.
    fn settle_existing(&self, existing: &ifc_kv::KeyValue) -> Result<CreateOutcome, CoreError> {
        let existing: TaskRecord = decode(existing)?;
        let (max_attempts, caps) = (self.record.max_attempts, &self.record.required_capabilities);
        if existing.same_spec(&self.new, max_attempts, caps) {
            Ok(CreateOutcome::Exists(existing))
        } else {
            Err(CoreError::TaskExists(self.new.task_id.clone()))
        }
    }
}

fn no_answer() -> CoreError {
    CoreError::Store(ifc_kv::KvError::Backend("a create got no answer".into()))
}

impl Coordinator {
    /// Creates a task, ready to claim. Creating the same id with the same content
    /// again returns the existing task; with other content it is
    /// [`CoreError::TaskExists`].
    pub async fn create_task(&self, new: NewTask) -> Result<TaskRecord, CoreError> {
        let task = self.prepare_create(new)?;
        match self.create_together(vec![task]).await.pop() {
            Some(outcome) => outcome.map(CreateOutcome::into_record),
            None => Err(no_answer()),
        }
    }

    /// Checks a new task and builds everything that creates it: its record,
    /// its `task_created` witness record and the ops that write them and its
    /// indexes. The one place a task's creation is built (a batch builds each
    /// of its tasks here too).
    pub(crate) fn prepare_create(&self, new: NewTask) -> Result<PreparedTask, CoreError> {
        let record = self.new_record(&new)?;
        let caps = record.required_capabilities.clone();
        let capset = capset_id(&caps);
        let (witness, mut ops) = Entry {
            op: WitnessOp::TaskCreated,
            actor: "orchestrator".into(),
            task_id: Some(new.task_id.clone()),
            swarm_id: None,
            token: None,
            outcome: TaskState::Ready.as_str().into(),
            detail: json!({"task_type": new.task_type, "priority": new.priority,
                "required_capabilities": caps, "max_attempts": record.max_attempts,
                "timeout_ms": record.timeout_ms}),
        }
        .seal(&self.keys, &task_chain(&new.task_id), &Head::empty())?;
        ops.extend([
            put(self.keys.task(&new.task_id), encode(&record)?),
            put(
                self.keys.ready(&capset, record.priority, record.created_at_ms, &record.task_id),
                Vec::new(),
            ),
            put(self.keys.state_entry(TaskState::Ready.as_str(), &record.task_id), Vec::new()),
        ]);
        let capset = (self.keys.capset(&capset), encode(&caps)?);
        let bytes = ops.iter().map(txn::op_bytes).sum::<usize>() + capset.0.len() + capset.1.len();
        Ok(PreparedTask { new, record, witness, ops, capset, bytes })
    }

    /// Creates `tasks` in one txn: each must be missing, and one that exists
    /// already is settled as a single create settles it (the same content is
    /// [`CreateOutcome::Exists`], other content [`CoreError::TaskExists`]); the
    /// rest go again without it. One answer per task, in order. The caller
    /// keeps the txn inside the store's limits (ops, bytes).
    pub(crate) async fn create_together(
        &self,
        tasks: Vec<PreparedTask>,
    ) -> Vec<Result<CreateOutcome, CoreError>> {
        let mut answers: Vec<Option<Result<CreateOutcome, CoreError>>> =
            tasks.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..tasks.len()).collect();
        for _ in 0..MAX_CAS_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let mut txn = TxnRequest::new();
            let mut capsets: Vec<&str> = Vec::new();
            for &i in &pending {
                let task = &tasks[i];
                let task_key = self.keys.task(&task.record.task_id);
                txn.compares.push(Compare::missing(task_key.clone()));
                txn.success.extend(task.ops.iter().cloned());
                txn.failure.push(range_op(KeyRange::key(task_key)));
                // A branch may put a key only once: one definition per set.
                if !capsets.contains(&task.capset.0.as_str()) {
                    capsets.push(&task.capset.0);
                    txn.success.push(put(task.capset.0.clone(), task.capset.1.clone()));
                }
            }
            let resp = match self.store.txn(txn).await {
                Ok(resp) => resp,
                Err(e) => {
                    for &i in &pending {
                        answers[i] = Some(Err(CoreError::Store(e.clone())));
                    }
                    break;
                }
            };
            if resp.succeeded {
                for &i in &pending {
                    self.witness_log.log(tasks[i].witness.clone(), resp.revision);
                    answers[i] = Some(Ok(CreateOutcome::Created(tasks[i].record.clone())));
                }
                pending.clear();
                break;
            }
            // Settle the tasks that exist; the others go again without them.
            let found = ranges(&resp.responses);
            let mut still = Vec::new();
            for (&i, kvs) in pending.iter().zip(found) {
                match kvs.first() {
                    Some(kv) => answers[i] = Some(tasks[i].settle_existing(kv)),
                    None => still.push(i),
                }
            }
            pending = still;
        }
        for i in pending {
            // It was there at the compare and gone at the read, every time:
            // created and removed under us.
            let task_id = &tasks[i].record.task_id;
            answers[i] = Some(Err(CoreError::Contended(format!("task {task_id}"))));
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(no_answer()))).collect()
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
            let snap = self.snapshot(task_id, None, Freshness::Linearizable).await?;
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
