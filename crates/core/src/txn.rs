//! The building blocks every task write shares: the read snapshot, the task
//! view, the compare-and-swap guard and the claim fence, and the ops that
//! write a claim and tear one down (written once, here). Free functions over
//! the store and the key layout, so the coordinator and the registry can both
//! use them.
//!
//! Hot path shape: one write txn, preceded by one read (a read-only txn of a
//! few ranges) unless this node's snapshot cache knows the task. A lost CAS
//! re-reads and decides again, at most [`MAX_CAS_ROUNDS`] times.

use std::sync::Arc;

use ifc_api::{Attempt, AttemptOutcome, TaskRecord, TaskState, TaskView};
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, KeyValue, KvStore, LeaseId,
    PutRequest, RangeRequest, Revision, TxnOp, TxnOpResponse, TxnRequest,
};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::config::{ERROR_TEXT_LIMIT, HISTORY_LIMIT, TRUNCATED_MARKER};
use crate::keys::{Counter, Keys, capset_id, task_chain};
use crate::snapshot_cache::{CachedTask, SnapshotCache};
use crate::witness::Head;
use crate::{CoreError, now_ms};

/// How many times an operation re-reads after losing a compare-and-swap.
pub(crate) const MAX_CAS_ROUNDS: usize = 16;

/// Bytes of keys and values one txn that writes several tasks carries at
/// most. etcd refuses a request over 1.5 MiB (`--max-request-bytes`); this
/// leaves room for its framing. A task larger than this (metadata up to the
/// JSON limit) goes in a txn of its own.
pub(crate) const TXN_BYTES: usize = 1 << 20;

/// Bytes of keys and values an op carries (reads and deletes: a key's worth).
pub(crate) fn op_bytes(op: &TxnOp) -> usize {
    match op {
        TxnOp::Put(put) => put.key.len() + put.value.len(),
        TxnOp::Delete(_) | TxnOp::Range(_) => 128,
    }
}

/// The claim key's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimValue {
    /// The claiming swarm.
    pub swarm_id: String,
    /// When the claim lapses at the latest, unless renewed (ms since the epoch).
    pub deadline_ms: i64,
    /// When this value was written (the claim, the ack or the last renewal).
    #[serde(default)]
    pub written_at_ms: i64,
}

/// The keys of one task, read together in one snapshot.
#[derive(Clone, Debug)]
pub(crate) struct TaskKeys {
    pub record: KeyValue,
    pub claim: Option<KeyValue>,
    pub holder: Option<KeyValue>,
}

impl TaskKeys {
    /// The live claim: the claim key and its holder, made by the same claim.
    pub fn live_claim(&self) -> Option<&KeyValue> {
        match (&self.claim, &self.holder) {
            (Some(claim), Some(holder)) if holder.create_revision == claim.create_revision => {
                Some(claim)
            }
            _ => None,
        }
    }
}

/// What a write reads first.
pub(crate) struct Snapshot {
    pub keys: Option<TaskKeys>,
    pub head: Head,
    pub swarm: Option<KeyValue>,
}

pub(crate) fn range_op(range: KeyRange) -> TxnOp {
    TxnOp::Range(RangeRequest::new(range))
}

pub(crate) fn put(key: String, value: Vec<u8>) -> TxnOp {
    TxnOp::Put(PutRequest::new(key, value))
}

pub(crate) fn put_on(key: String, value: impl Into<Vec<u8>>, lease: LeaseId) -> TxnOp {
    TxnOp::Put(PutRequest::new(key, value).with_lease(lease))
}

pub(crate) fn delete(key: String) -> TxnOp {
    TxnOp::Delete(DeleteRequest::key(key))
}

/// The ranges a txn read, in order.
pub(crate) fn ranges(responses: &[TxnOpResponse]) -> Vec<&[KeyValue]> {
    responses
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Range(r) => Some(r.kvs.as_slice()),
            _ => None,
        })
        .collect()
}

/// A task's keys among `kvs` (the range of its directory).
pub(crate) fn task_keys(keys: &Keys, task_id: &str, kvs: &[KeyValue]) -> Option<TaskKeys> {
    let find = |key: String| kvs.iter().find(|kv| kv.key == key.as_bytes()).cloned();
    Some(TaskKeys {
        record: find(keys.task(task_id))?,
        claim: find(keys.claim(task_id)),
        holder: find(keys.holder(task_id)),
    })
}

/// Reads a task's keys (linearizable).
pub(crate) async fn read_task(
    store: &dyn KvStore,
    keys: &Keys,
    task_id: &str,
) -> Result<Option<TaskKeys>, CoreError> {
    let resp = store.range(RangeRequest::prefix(keys.task_dir(task_id))).await?;
    Ok(task_keys(keys, task_id, &resp.kvs))
}

/// How fresh a [`snapshot`] must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// This node's watch-fed copy if it has one, else a serializable read:
    /// for a first attempt whose every input is also a compare of its txn.
    Cached,
    /// As `Cached`, but a task this node does not know is taken as absent
    /// (no read) when it knows the swarm: for a push, which usually creates
    /// the task; a wrong guess fails the txn's `missing` compares.
    Assumed,
    /// A linearizable read: to confirm a negative answer, or after a
    /// compare failed.
    Linearizable,
}

/// Reads a task's keys, its chain head and optionally a swarm, in one
/// snapshot. A cached or serializable read is fine for a first attempt: every
/// write that follows is guarded by compare-and-swap, and negative answers
/// are confirmed on a linearizable read before they are returned. What the
/// store answers refreshes the cache.
pub(crate) async fn snapshot(
    store: &dyn KvStore,
    keys: &Keys,
    cache: &SnapshotCache,
    task_id: &str,
    swarm_id: Option<&str>,
    freshness: Freshness,
) -> Result<Snapshot, CoreError> {
    if freshness != Freshness::Linearizable {
        let task = match cache.task(task_id) {
            Some(task) => Some(task),
            None if freshness == Freshness::Assumed => Some(CachedTask::default()),
            None => None,
        };
        let swarm = match swarm_id {
            Some(swarm_id) => cache.swarm(swarm_id).map(Some),
            None => Some(None),
        };
        if let (Some(task), Some(swarm)) = (task, swarm) {
            let owned = |kv: Option<Arc<KeyValue>>| kv.map(Arc::unwrap_or_clone);
            let head = Head::from_kv(task.head.as_deref())?;
            let keys = owned(task.record).map(|record| TaskKeys {
                record,
                claim: owned(task.claim),
                holder: owned(task.holder),
            });
            return Ok(Snapshot { keys, head, swarm: owned(swarm) });
        }
    }
    let serializable = freshness != Freshness::Linearizable;
    let read =
        |range: KeyRange| TxnOp::Range(RangeRequest { serializable, ..RangeRequest::new(range) });
    let mut txn = TxnRequest::new()
        .and_then(read(KeyRange::prefix(keys.task_dir(task_id))))
        .and_then(read(KeyRange::key(keys.witness_head(&task_chain(task_id)))));
    if let Some(swarm_id) = swarm_id {
        txn = txn.and_then(read(KeyRange::key(keys.swarm(swarm_id))));
    }
    let resp = store.txn(txn).await?;
    let read = ranges(&resp.responses);
    let dir = read.first().copied().unwrap_or_default();
    let head = read.get(1).and_then(|kvs| kvs.first());
    let snap = Snapshot {
        keys: task_keys(keys, task_id, dir),
        head: Head::from_kv(head)?,
        swarm: read.get(2).and_then(|kvs| kvs.first().cloned()),
    };
    let shared = |kv: Option<&KeyValue>| kv.cloned().map(Arc::new);
    let cached = snap.keys.as_ref().map(|k| CachedTask {
        record: shared(Some(&k.record)),
        claim: shared(k.claim.as_ref()),
        holder: shared(k.holder.as_ref()),
        head: shared(head),
        ..CachedTask::default()
    });
    cache.fill(resp.revision, task_id, cached, swarm_id, snap.swarm.as_ref());
    Ok(snap)
}

/// What a snapshot of several tasks and one swarm read (see [`snapshot_reads`]).
pub(crate) struct Snapshots {
    /// Each task's keys (`None`: no such task) and chain head, in the order asked.
    pub tasks: Vec<(Option<TaskKeys>, Head)>,
    pub swarm: Option<KeyValue>,
}

/// The reads of a snapshot of several tasks (each its keys and chain head)
/// and a swarm, for one read-only txn or a txn's failure branch: what
/// [`snapshot`] reads of one task, for many.
pub(crate) fn snapshot_reads(
    keys: &Keys,
    task_ids: &[&str],
    swarm_id: &str,
    serializable: bool,
) -> Vec<TxnOp> {
    let read =
        |range: KeyRange| TxnOp::Range(RangeRequest { serializable, ..RangeRequest::new(range) });
    let mut reads = Vec::with_capacity(2 * task_ids.len() + 1);
    for task_id in task_ids {
        reads.push(read(KeyRange::prefix(keys.task_dir(task_id))));
        reads.push(read(KeyRange::key(keys.witness_head(&task_chain(task_id)))));
    }
    reads.push(read(KeyRange::key(keys.swarm(swarm_id))));
    reads
}

/// The answers to [`snapshot_reads`] of `task_ids`.
pub(crate) fn read_snapshots(
    keys: &Keys,
    task_ids: &[&str],
    responses: &[TxnOpResponse],
) -> Result<Snapshots, CoreError> {
    let read = ranges(responses);
    let mut tasks = Vec::with_capacity(task_ids.len());
    for (i, task_id) in task_ids.iter().enumerate() {
        let dir = read.get(2 * i).copied().unwrap_or_default();
        let head = read.get(2 * i + 1).and_then(|kvs| kvs.first());
        tasks.push((task_keys(keys, task_id, dir), Head::from_kv(head)?));
    }
    let swarm = read.get(2 * task_ids.len()).and_then(|kvs| kvs.first().cloned());
    Ok(Snapshots { tasks, swarm })
}

/// The task as it stands: a claim whose keys are gone reads as lapsed.
pub(crate) fn view(keys: &TaskKeys) -> Result<TaskView, CoreError> {
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
    let state = match (lapsed, record.attempts + 1 >= record.max_attempts) {
        (true, true) => TaskState::Dead,
        (true, false) => TaskState::Ready,
        (false, _) => record.state,
    };
    Ok(TaskView { state, token, deadline_ms, lapsed, revision: keys.record.mod_revision, record })
}

/// A txn guarded by the task record's revision (every task write is).
pub(crate) fn guarded(keys: &TaskKeys, ops: Vec<TxnOp>) -> TxnRequest {
    TxnRequest {
        compares: vec![Compare::mod_revision_is(keys.record.key.clone(), keys.record.mod_revision)],
        success: ops,
        failure: Vec::new(),
    }
}

/// The compares that hold only while claim `token` is live: the claim key
/// and the holder key, both created by that claim.
pub(crate) fn fence(keys: &Keys, task_id: &str, token: Revision) -> [Compare; 2] {
    let made_by_claim = CompareTarget::CreateRevision(token);
    [
        Compare::new(keys.claim(task_id), CompareOp::Equal, made_by_claim.clone()),
        Compare::new(keys.holder(task_id), CompareOp::Equal, made_by_claim),
    ]
}

/// Checks that `swarm_id` holds the live claim `token` on the task; returns
/// the claim key. A refusal says why (see [`refusal`]).
pub(crate) fn check_fence<'k>(
    swarm_id: &str,
    task_id: &str,
    token: Revision,
    keys: &'k TaskKeys,
) -> Result<&'k KeyValue, CoreError> {
    let record: TaskRecord = decode(&keys.record)?;
    if let Some(claim) = keys.live_claim().filter(|_| record.state == TaskState::Claimed) {
        let value: ClaimValue = decode(claim)?;
        if value.swarm_id == swarm_id && claim.create_revision == token {
            return Ok(claim);
        }
    }
    Err(refusal(swarm_id, task_id, token, keys, &record)?)
}

/// Why `swarm_id` with claim `token` may not act on the task: its claim
/// lapsed (when, after what lease, what became of the task), another swarm
/// holds the task, a newer claim replaced it, or it is not claimed. A lapse
/// not yet recorded reads as not claimed: callers record it first.
pub(crate) fn refusal(
    swarm_id: &str,
    task_id: &str,
    token: Revision,
    keys: &TaskKeys,
    record: &TaskRecord,
) -> Result<CoreError, CoreError> {
    let task_id = task_id.to_string();
    let attempt = record.history.iter().rev().find(|a| a.token == token && a.swarm_id == swarm_id);
    if let Some(attempt) = attempt.filter(|a| a.outcome == AttemptOutcome::Lapsed) {
        let ago_secs = (now_ms() - attempt.ended_at_ms).max(0) as f64 / 1000.0;
        let fate = if attempt.attempts_after >= record.max_attempts {
            "dead-lettered".to_string()
        } else {
            format!("requeued at attempt {}/{}", attempt.attempts_after + 1, record.max_attempts)
        };
        let detail = format!(
            "{ago_secs:.1} s ago (at {} ms since the epoch) after a lease of {} ms; the task was \
             {fate} and is now {}",
            attempt.ended_at_ms,
            attempt.lease_ms,
            record.state.as_str()
        );
        return Ok(CoreError::ClaimLapsed { task_id, token, detail });
    }
    let live = keys.live_claim().filter(|_| record.state == TaskState::Claimed);
    if let Some(claim) = live {
        let value: ClaimValue = decode(claim)?;
        if value.swarm_id != swarm_id {
            return Ok(CoreError::NotOwner { task_id, owner: value.swarm_id });
        }
        if claim.create_revision > token {
            return Ok(CoreError::ClaimReplaced { task_id, token, current: claim.create_revision });
        }
    }
    let state = record.state.as_str();
    let detail = match attempt {
        Some(a) => {
            format!("its attempt under this token ended ({:?}); the task is {state}", a.outcome)
                .to_lowercase()
        }
        None => format!("no claim with this token holds it; the task is {state}"),
    };
    Ok(CoreError::NotClaimed { task_id, token, detail })
}

/// The token of the claim a claimed record is under, even once the claim's
/// keys are gone: the claim or holder key's create revision, else the token
/// an ack stored, else the record's revision (the claim txn wrote it).
pub(crate) fn claim_token(keys: &TaskKeys, record: &TaskRecord) -> Revision {
    if let Some(claim) = &keys.claim {
        return claim.create_revision;
    }
    if let Some(holder) = &keys.holder {
        return holder.create_revision;
    }
    record.claim_token.unwrap_or(keys.record.mod_revision)
}

/// Ops that take a ready task out of its ready queue and the ready index.
pub(crate) fn take_from_pool(keys: &Keys, record: &TaskRecord) -> [TxnOp; 2] {
    let capset = capset_id(&record.required_capabilities);
    let task_id = &record.task_id;
    [
        delete(keys.ready(&capset, record.priority, record.created_at_ms, task_id)),
        delete(keys.state_entry(TaskState::Ready.as_str(), task_id)),
    ]
}

/// A new claim of `record` (already updated to claimed) by `swarm_id`.
pub(crate) struct NewClaim<'a> {
    pub swarm_id: &'a str,
    /// The swarm's liveness lease: the holder and holding keys end with it.
    pub swarm_lease: LeaseId,
    /// The claim (or push) lease.
    pub lease: LeaseId,
    pub deadline_ms: i64,
    /// Which shard of the swarm's claim counter this claim counts on: claims
    /// written in one txn each take their own (see `Keys::counter_shard`).
    pub counter_shard: usize,
}

/// Ops that write a claim: the record, the state index, the claim key on its
/// lease, the holder and holding keys on the swarm's lease, the claim counter.
/// The txn's revision becomes the claim's token.
pub(crate) fn claim_ops(
    keys: &Keys,
    record: &TaskRecord,
    claim: &NewClaim<'_>,
) -> Result<Vec<TxnOp>, CoreError> {
    let (task_id, swarm_id) = (record.task_id.as_str(), claim.swarm_id);
    let value = ClaimValue {
        swarm_id: swarm_id.into(),
        deadline_ms: claim.deadline_ms,
        written_at_ms: now_ms(),
    };
    Ok(vec![
        put(keys.task(task_id), encode(record)?),
        put(keys.state_entry(TaskState::Claimed.as_str(), task_id), Vec::new()),
        put_on(keys.claim(task_id), encode(&value)?, claim.lease),
        put_on(keys.holder(task_id), swarm_id, claim.swarm_lease),
        put_on(keys.holding_entry(swarm_id, task_id), Vec::new(), claim.swarm_lease),
        put(keys.counter_shard(swarm_id, Counter::Claimed, claim.counter_shard), Vec::new()),
    ])
}

/// Ops that file a task that just reached final `state`: its state-index
/// entry and its entry in the finished-time index that retention walks.
/// Sets the record's state and `finished_at_ms`.
pub(crate) fn finish(keys: &Keys, record: &mut TaskRecord, state: TaskState) -> [TxnOp; 2] {
    debug_assert!(state.is_final(), "{state:?} is not final");
    let finished_at_ms = now_ms();
    record.state = state;
    record.finished_at_ms = Some(finished_at_ms);
    let task_id = &record.task_id;
    [
        put(keys.state_entry(state.as_str(), task_id), Vec::new()),
        put(keys.finished_entry(finished_at_ms, task_id), state.as_str().into()),
    ]
}

/// Ops that take a finished task out of both final-state indexes (a
/// dead-lettered task retried). Clears `finished_at_ms`.
pub(crate) fn unfinish(keys: &Keys, record: &mut TaskRecord) -> Vec<TxnOp> {
    let task_id = &record.task_id;
    let mut ops = vec![delete(keys.state_entry(record.state.as_str(), task_id))];
    if let Some(finished_at_ms) = record.finished_at_ms.take() {
        ops.push(delete(keys.finished_entry(finished_at_ms, task_id)));
    }
    ops
}

/// Ops that tear down a task's claim, if it has one: the claim, holder,
/// holding and inbox keys, and the task's entry in the `state` index.
pub(crate) fn teardown_ops(
    keys: &Keys,
    task_id: &str,
    state: TaskState,
    owner: Option<&str>,
) -> Vec<TxnOp> {
    let mut ops = vec![
        delete(keys.claim(task_id)),
        delete(keys.holder(task_id)),
        delete(keys.state_entry(state.as_str(), task_id)),
    ];
    if let Some(owner) = owner {
        ops.push(delete(keys.holding_entry(owner, task_id)));
        ops.push(delete(keys.inbox_entry(owner, task_id)));
    }
    ops
}

/// Adds the attempt that just ended to the task's history (its last
/// [`HISTORY_LIMIT`] attempts are kept); returns when it ended. A failure's
/// text goes to `record.error` only (cut at [`ERROR_TEXT_LIMIT`]); the text
/// of the failure before it moves into that one's attempt, so each is stored
/// once. Call it after `record.attempts` counts this attempt.
pub(crate) fn close_attempt(
    record: &mut TaskRecord,
    swarm_id: &str,
    token: Revision,
    outcome: AttemptOutcome,
    lease_ms: u64,
    error: Option<&str>,
) -> i64 {
    let ended_at_ms = now_ms();
    if let Some(error) = error {
        let previous = record.error.replace(capped(error));
        let last_failed = record
            .history
            .iter_mut()
            .rev()
            .find(|a| a.outcome == AttemptOutcome::Failed && a.error.is_none());
        if let Some(attempt) = last_failed {
            attempt.error = previous;
        }
    }
    record.history.push(Attempt {
        swarm_id: swarm_id.into(),
        token,
        claimed_at_ms: record.claimed_at_ms.unwrap_or(0),
        ended_at_ms,
        outcome,
        error: None,
        lease_ms,
        attempts_after: record.attempts,
    });
    let excess = record.history.len().saturating_sub(HISTORY_LIMIT);
    record.history.drain(..excess);
    ended_at_ms
}

/// `text` cut to at most [`ERROR_TEXT_LIMIT`] bytes (on a character
/// boundary), ending with [`TRUNCATED_MARKER`] when cut.
pub(crate) fn capped(text: &str) -> String {
    if text.len() <= ERROR_TEXT_LIMIT {
        return text.to_string();
    }
    let mut end = ERROR_TEXT_LIMIT - TRUNCATED_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED_MARKER}", &text[..end])
}
