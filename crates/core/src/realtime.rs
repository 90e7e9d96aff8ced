//! Real time: the durable push inbox, blockers with helper matching, and the
//! event stream. All three are built on the store's watch, so a change made
//! through one coordinator node reaches subscribers on every other.
//!
//! - **Push** is one txn: the task (created if new, or taken if ready) is
//!   claimed for the target swarm on a *push lease* and written to the swarm's
//!   inbox (`inbox/<swarm>/<task>`). The inbox key's create revision is the
//!   claim's token and the subscriber's resume point. Ack moves the claim onto a
//!   normal claim lease and empties the inbox slot; decline, or no ack before
//!   the push timeout, returns the task to the pool without using an attempt.
//! - **Blockers** are records under `blockers/`, each with its own witness
//!   chain; the orchestrator's stream computes helper candidates when it
//!   delivers a blocker, from the live swarms and their holdings.
//! - **Events** are the witness records as they commit (plus claim renewals),
//!   resumable from any revision inside the store's history.

use futures::StreamExt;
use futures::stream::BoxStream;
use ifc_api::{
    Blocker, BlockerEvent, BlockerInfo, BlockerState, CoordinationEvent, HelperCandidate,
    InboxItem, NewTask, TaskRecord, TaskState,
};
use ifc_kv::{
    Compare, EventKind, KeyRange, KvError, PutRequest, RangeRequest, TxnOp, TxnRequest,
    WatchRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::coordinator::{delete, put, range_op, ranges};
use crate::keys::{blocker_chain, task_chain};
use crate::swarm::SwarmRecord;
use crate::task::ClaimValue;
use crate::witness::{Entry, Head, WitnessRecord};
use crate::{Coordinator, CoreError, capset_id, now_ms, validate};

/// What an inbox slot holds (the token and revision come from the key).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct InboxEntry {
    task: TaskRecord,
    ack_deadline_ms: i64,
    blocker_id: Option<String>,
}

fn inbox_item(kv: &ifc_kv::KeyValue) -> Result<InboxItem, CoreError> {
    let entry: InboxEntry = decode(kv)?;
    Ok(InboxItem {
        revision: kv.create_revision,
        task: entry.task,
        token: kv.create_revision,
        ack_deadline_ms: entry.ack_deadline_ms,
        blocker_id: entry.blocker_id,
    })
}

/// A stream of items, each a result.
pub type CoreStream<T> = BoxStream<'static, Result<T, CoreError>>;

fn stream_error(e: KvError) -> CoreError {
    match e {
        KvError::Compacted { compact_revision } => CoreError::Compacted { compact_revision },
        e => CoreError::Store(e),
    }
}

const MAX_ROUNDS: usize = 16;

impl Coordinator {
    /// The seed's `push_task_to_swarm`: in one txn, creates the task if it is new
    /// (or takes a ready one), claims it for `swarm_id` and puts it in the swarm's
    /// durable inbox. Push bypasses capability routing: the orchestrator chose.
    pub async fn push_task_to_swarm(
        &self,
        swarm_id: &str,
        task: NewTask,
    ) -> Result<InboxItem, CoreError> {
        self.push(swarm_id, task, None).await
    }

    pub(crate) async fn push(
        &self,
        swarm_id: &str,
        task: NewTask,
        blocker_id: Option<String>,
    ) -> Result<InboxItem, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let fresh = self.new_record(&task)?;
        let task_id = fresh.task_id.clone();
        for _ in 0..MAX_ROUNDS {
            let snap = self.snapshot(&task_id, Some(swarm_id), false).await?;
            let swarm_kv = snap.swarm.ok_or_else(|| CoreError::NotRegistered(swarm_id.into()))?;
            let swarm: SwarmRecord = decode(&swarm_kv)?;
            let mut compares =
                vec![Compare::mod_revision_is(swarm_kv.key.clone(), swarm_kv.mod_revision)];
            let mut ops = Vec::new();
            let (mut record, created) = match &snap.keys {
                None => {
                    compares.push(Compare::missing(self.keys.task(&task_id)));
                    let caps = fresh.required_capabilities.clone();
                    ops.push(put(self.keys.capset(&capset_id(&caps)), encode(&caps)?));
                    (fresh.clone(), true)
                }
                Some(keys) => {
                    let view = self.view(keys)?;
                    if view.lapsed {
                        self.reap_task(&task_id).await?;
                        continue;
                    }
                    match view.state {
                        TaskState::Ready => {}
                        TaskState::Claimed => {
                            return Err(CoreError::Conflict(format!(
                                "task {task_id} is held by {}",
                                view.record.owner.unwrap_or_default()
                            )));
                        }
                        state => {
                            return Err(CoreError::Conflict(format!(
                                "task {task_id} is {} and cannot be pushed",
                                state.as_str()
                            )));
                        }
                    }
                    compares.push(Compare::mod_revision_is(
                        keys.record.key.clone(),
                        keys.record.mod_revision,
                    ));
                    let record = view.record;
                    let capset = capset_id(&record.required_capabilities);
                    ops.push(delete(self.keys.ready(
                        &capset,
                        record.priority,
                        record.created_at_ms,
                        &task_id,
                    )));
                    ops.push(delete(self.keys.state_entry(TaskState::Ready.as_str(), &task_id)));
                    (record, false)
                }
            };
            compares.push(Compare::missing(self.keys.claim(&task_id)));
            compares.push(Compare::missing(self.keys.holder(&task_id)));
            let (lease, ack_deadline_ms) = self.push_lease().await?;
            record.state = TaskState::Claimed;
            record.owner = Some(swarm_id.into());
            record.claimed_at_ms = Some(now_ms());
            record.awaiting_ack = true;
            let (witness, witness_ops) = Entry {
                op: "task_pushed",
                actor: "orchestrator".into(),
                task_id: Some(task_id.clone()),
                swarm_id: Some(swarm_id.into()),
                token: None,
                outcome: TaskState::Claimed.as_str().into(),
                detail: json!({"created": created, "ack_deadline_ms": ack_deadline_ms, "blocker_id": blocker_id}),
            }
            .seal(&self.keys, &task_chain(&task_id), &snap.head)?;
            ops.extend(witness_ops);
            let claim = ClaimValue {
                swarm_id: swarm_id.into(),
                deadline_ms: ack_deadline_ms,
                written_at_ms: now_ms(),
            };
            let entry = InboxEntry {
                task: record.clone(),
                ack_deadline_ms,
                blocker_id: blocker_id.clone(),
            };
            ops.extend([
                put(self.keys.task(&task_id), encode(&record)?),
                put(self.keys.state_entry(TaskState::Claimed.as_str(), &task_id), Vec::new()),
                TxnOp::Put(
                    PutRequest::new(self.keys.claim(&task_id), encode(&claim)?).with_lease(lease),
                ),
                TxnOp::Put(
                    PutRequest::new(self.keys.holder(&task_id), swarm_id).with_lease(swarm.lease),
                ),
                TxnOp::Put(
                    PutRequest::new(self.keys.holding_entry(swarm_id, &task_id), Vec::new())
                        .with_lease(swarm.lease),
                ),
                TxnOp::Put(
                    PutRequest::new(self.keys.inbox_entry(swarm_id, &task_id), encode(&entry)?)
                        .with_lease(lease),
                ),
                put(self.keys.counter(swarm_id, crate::keys::Counter::Claimed), Vec::new()),
            ]);
            let txn = TxnRequest { compares, success: ops, failure: Vec::new() };
            let resp = match self.store.txn(txn).await {
                Ok(resp) => resp,
                Err(KvError::LeaseNotFound(id)) if id == lease => {
                    self.forget_claim_lease(lease);
                    continue;
                }
                Err(KvError::LeaseNotFound(_)) => {
                    return Err(CoreError::NotRegistered(swarm_id.into()));
                }
                Err(e) => return Err(e.into()),
            };
            if resp.succeeded {
                let mut witness = witness;
                witness.token = Some(resp.revision);
                self.log(witness, resp.revision);
                return Ok(InboxItem {
                    revision: resp.revision,
                    task: record,
                    token: resp.revision,
                    ack_deadline_ms,
                    blocker_id,
                });
            }
        }
        Err(CoreError::Conflict(format!("task {task_id} is too contended; retry")))
    }

    /// Acknowledges a pushed task: the swarm has it. The claim becomes a normal
    /// claim (renew, complete, fail as usual). Returns the claim's deadline.
    pub async fn ack_push(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: i64,
    ) -> Result<i64, CoreError> {
        self.answer_push(swarm_id, task_id, token, true).await.map(|(deadline, _)| deadline)
    }

    /// Declines a pushed task: it returns to the pool at once, its attempts
    /// untouched.
    pub async fn decline_push(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: i64,
    ) -> Result<TaskRecord, CoreError> {
        self.answer_push(swarm_id, task_id, token, false).await.map(|(_, record)| record)
    }

    async fn answer_push(
        &self,
        swarm_id: &str,
        task_id: &str,
        token: i64,
        accept: bool,
    ) -> Result<(i64, TaskRecord), CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::id("task_id", task_id)?;
        for _ in 0..MAX_ROUNDS {
            let snap = self.snapshot(task_id, None, false).await?;
            let keys = snap.keys.ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
            let claim = self.check_fence(swarm_id, task_id, token, &keys)?.clone();
            let mut record: TaskRecord = decode(&keys.record)?;
            if !record.awaiting_ack {
                return Err(CoreError::Conflict(format!(
                    "task {task_id} was already acknowledged"
                )));
            }
            record.awaiting_ack = false;
            let inbox = self.keys.inbox_entry(swarm_id, task_id);
            let mut ops = vec![delete(inbox.clone())];
            let (op, deadline) = if accept {
                let (lease, deadline_ms) = self.claim_lease().await?;
                let value =
                    ClaimValue { swarm_id: swarm_id.into(), deadline_ms, written_at_ms: now_ms() };
                ops.push(TxnOp::Put(
                    PutRequest::new(claim.key.clone(), encode(&value)?).with_lease(lease),
                ));
                ("push_acked", deadline_ms)
            } else {
                ops.extend([
                    delete(self.keys.claim(task_id)),
                    delete(self.keys.holder(task_id)),
                    delete(self.keys.holding_entry(swarm_id, task_id)),
                    delete(self.keys.state_entry(TaskState::Claimed.as_str(), task_id)),
                ]);
                self.release(&mut record, &mut ops);
                ("push_declined", 0)
            };
            let (witness, witness_ops) =
                Entry::by_holder(op, swarm_id, task_id, token, record.state.as_str(), json!({}))
                    .seal(&self.keys, &task_chain(task_id), &snap.head)?;
            ops.extend(witness_ops);
            // Rewriting the record serialises this with every other write to the task.
            ops.push(put(self.keys.task(task_id), encode(&record)?));
            let mut txn = self.guarded(&keys, ops);
            txn.compares.extend(self.fence(task_id, token));
            txn.compares.push(Compare::exists(inbox));
            match self.store.txn(txn).await {
                Ok(resp) if resp.succeeded => {
                    self.log(witness, resp.revision);
                    return Ok((deadline, record));
                }
                Ok(_) => continue,
                Err(KvError::LeaseNotFound(lease)) => self.forget_claim_lease(lease),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Conflict(format!("task {task_id} is too contended; retry")))
    }

    /// The swarm's inbox as a stream (the seed's `task_callback`): every pushed
    /// task not yet acknowledged, in push order, then each new push as it
    /// commits. Items at or below `after` (the last one the subscriber saw) are
    /// skipped, so a reconnecting subscriber resumes exactly.
    pub async fn inbox(
        &self,
        swarm_id: &str,
        after: i64,
    ) -> Result<CoreStream<InboxItem>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let prefix = self.keys.inbox(swarm_id);
        let pending = self.store.range(RangeRequest::prefix(prefix.clone())).await?;
        let mut items: Vec<InboxItem> = Vec::new();
        for kv in &pending.kvs {
            let item = inbox_item(kv)?;
            if item.revision > after {
                items.push(item);
            }
        }
        items.sort_by_key(|i| i.revision);
        let from = pending.revision.max(after) + 1;
        let watch = self.store.watch(WatchRequest::prefix(prefix).from_revision(from)).await?;
        let live = watch.flat_map(|batch| {
            let items: Vec<Result<InboxItem, CoreError>> = match batch {
                Err(e) => vec![Err(stream_error(e))],
                Ok(batch) => batch
                    .events
                    .iter()
                    .filter(|e| e.kind == EventKind::Put && e.kv.version == 1)
                    .map(|e| inbox_item(&e.kv))
                    .collect(),
            };
            futures::stream::iter(items)
        });
        Ok(futures::stream::iter(items.into_iter().map(Ok)).chain(live).boxed())
    }

    // ---- blockers -----------------------------------------------------------

    /// The seed's `detect_blocker`: records the blocker (the blocked task keeps
    /// its owner and its attempts) and returns its id. The orchestrator's
    /// [`Coordinator::blockers`] stream delivers it with helper candidates.
    pub async fn detect_blocker(
        &self,
        swarm_id: &str,
        info: BlockerInfo,
    ) -> Result<String, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        validate::text("type", &info.blocker_type)?;
        validate::capabilities("required_capabilities", &info.required_capabilities)?;
        validate::json("description", &json!(info.description), self.config.max_json_bytes)?;
        if !info.severity.is_empty() {
            validate::text("severity", &info.severity)?;
        }
        if let Some(task_id) = &info.task_id {
            validate::id("task_id", task_id)?;
            if self.snapshot(task_id, None, false).await?.keys.is_none() {
                return Err(CoreError::TaskNotFound(task_id.clone()));
            }
        }
        let blocker_id = format!("blk-{:012x}-{:08x}", now_ms(), rand::random::<u32>());
        let blocker = Blocker {
            blocker_id: blocker_id.clone(),
            swarm_id: swarm_id.into(),
            info,
            state: BlockerState::Open,
            helpers: Vec::new(),
            resolution: None,
            raised_at_ms: now_ms(),
        };
        let key = self.keys.blocker(&blocker_id);
        let (witness, mut ops) = Entry {
            op: "blocker_raised",
            actor: swarm_id.into(),
            task_id: blocker.info.task_id.clone(),
            swarm_id: Some(swarm_id.into()),
            token: None,
            outcome: "open".into(),
            detail: json!({"blocker_id": blocker_id, "type": blocker.info.blocker_type,
                "severity": blocker.info.severity, "required_capabilities": blocker.info.required_capabilities}),
        }
        .seal(&self.keys, &blocker_chain(&blocker_id), &Head::empty())?;
        ops.push(put(key.clone(), encode(&blocker)?));
        let txn = TxnRequest {
            compares: vec![Compare::exists(self.keys.swarm(swarm_id)), Compare::missing(key)],
            success: ops,
            failure: Vec::new(),
        };
        let resp = self.store.txn(txn).await?;
        if !resp.succeeded {
            return Err(CoreError::NotRegistered(swarm_id.into()));
        }
        self.log(witness, resp.revision);
        Ok(blocker_id)
    }

    /// Live swarms holding every capability the blocker needs, least loaded
    /// first, the reporter excluded.
    pub async fn helper_candidates(
        &self,
        blocker: &Blocker,
    ) -> Result<Vec<HelperCandidate>, CoreError> {
        // Advisory data: member-local (serializable) reads are fresh enough, and
        // spare the orchestrator's notification a round of consensus.
        let swarms =
            self.store.range(RangeRequest::prefix(self.keys.swarms()).serializable()).await?;
        let mut capable = Vec::new();
        for kv in &swarms.kvs {
            let swarm: SwarmRecord = decode(kv)?;
            if swarm.swarm_id != blocker.swarm_id
                && blocker.info.required_capabilities.iter().all(|c| swarm.capabilities.contains(c))
            {
                capable.push(swarm);
            }
        }
        // Load = how many tasks each capable swarm holds: a count per swarm (no
        // keys returned), never a scan of everyone's holdings.
        let mut candidates = Vec::with_capacity(capable.len());
        for chunk in capable.chunks(64) {
            let mut txn = TxnRequest::new();
            for swarm in chunk {
                let count = RangeRequest::prefix(self.keys.holding(&swarm.swarm_id))
                    .with_limit(1)
                    .serializable();
                txn = txn.and_then(TxnOp::Range(count));
            }
            let resp = self.store.txn(txn).await?;
            for (swarm, response) in chunk.iter().zip(&resp.responses) {
                let current_claims = match response {
                    ifc_kv::TxnOpResponse::Range(r) => r.count as usize,
                    _ => 0,
                };
                candidates.push(HelperCandidate {
                    swarm_id: swarm.swarm_id.clone(),
                    capabilities: swarm.capabilities.clone(),
                    current_claims,
                });
            }
        }
        candidates.sort_by(|a, b| {
            a.current_claims.cmp(&b.current_claims).then(a.swarm_id.cmp(&b.swarm_id))
        });
        Ok(candidates)
    }

    /// The orchestrator's blocker stream: each blocker raised after revision
    /// `after` (`None`: from now), with its helper candidates as they stand at
    /// delivery.
    pub async fn blockers(
        self: &std::sync::Arc<Self>,
        after: Option<i64>,
    ) -> Result<CoreStream<BlockerEvent>, CoreError> {
        let from = after.map_or(0, |after| after + 1);
        let watch = self
            .store
            .watch(WatchRequest::prefix(self.keys.blockers()).from_revision(from))
            .await?;
        let raised = watch.flat_map(|batch| {
            let items: Vec<Result<(i64, Blocker), CoreError>> = match batch {
                Err(e) => vec![Err(stream_error(e))],
                Ok(batch) => batch
                    .events
                    .iter()
                    .filter(|e| e.kind == EventKind::Put && e.kv.version == 1)
                    .map(|e| decode::<Blocker>(&e.kv).map(|b| (batch.revision, b)))
                    .collect(),
            };
            futures::stream::iter(items)
        });
        let this = self.clone();
        Ok(raised
            .then(move |raised| {
                let this = this.clone();
                async move {
                    let (revision, blocker) = raised?;
                    let candidates = this.helper_candidates(&blocker).await?;
                    Ok(BlockerEvent { revision, blocker, candidates })
                }
            })
            .boxed())
    }

    async fn read_blocker(
        &self,
        blocker_id: &str,
    ) -> Result<(Blocker, ifc_kv::KeyValue, Head, i64), CoreError> {
        validate::id("blocker_id", blocker_id)?;
        let chain = blocker_chain(blocker_id);
        let txn = TxnRequest::new()
            .and_then(range_op(KeyRange::key(self.keys.blocker(blocker_id))))
            .and_then(range_op(KeyRange::key(self.keys.witness_head(&chain))));
        let resp = self.store.txn(txn).await?;
        let read = ranges(&resp.responses);
        let kv = read[0]
            .first()
            .cloned()
            .ok_or_else(|| CoreError::BlockerNotFound(blocker_id.into()))?;
        let head_kv = read[1].first();
        Ok((decode(&kv)?, kv, Head::from_kv(head_kv)?, head_kv.map_or(0, |h| h.mod_revision)))
    }

    async fn update_blocker(
        &self,
        blocker_id: &str,
        op: &'static str,
        actor: &str,
        change: impl Fn(&mut Blocker) -> Result<serde_json::Value, CoreError>,
    ) -> Result<Blocker, CoreError> {
        for _ in 0..MAX_ROUNDS {
            let (mut blocker, kv, head, head_revision) = self.read_blocker(blocker_id).await?;
            let detail = change(&mut blocker)?;
            let chain = blocker_chain(blocker_id);
            let (witness, mut ops) = Entry {
                op,
                actor: actor.into(),
                task_id: blocker.info.task_id.clone(),
                swarm_id: Some(blocker.swarm_id.clone()),
                token: None,
                outcome: serde_json::to_value(blocker.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                detail,
            }
            .seal(&self.keys, &chain, &head)?;
            ops.push(put(self.keys.blocker(blocker_id), encode(&blocker)?));
            let txn = TxnRequest {
                compares: vec![
                    Compare::mod_revision_is(kv.key.clone(), kv.mod_revision),
                    Compare::mod_revision_is(self.keys.witness_head(&chain), head_revision),
                ],
                success: ops,
                failure: Vec::new(),
            };
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                self.log(witness, resp.revision);
                return Ok(blocker);
            }
        }
        Err(CoreError::Conflict(format!("blocker {blocker_id} is too contended; retry")))
    }

    /// Pushes a help task for the blocker to `helper_swarm_id` (through its
    /// durable inbox), then records the assignment. Returns the pushed item.
    pub async fn assign_helper(
        &self,
        blocker_id: &str,
        helper_swarm_id: &str,
    ) -> Result<InboxItem, CoreError> {
        validate::id("helper_swarm_id", helper_swarm_id)?;
        let (blocker, ..) = self.read_blocker(blocker_id).await?;
        if blocker.state == BlockerState::Resolved {
            return Err(CoreError::Conflict(format!("blocker {blocker_id} is resolved")));
        }
        let help = NewTask {
            task_id: format!("help-{blocker_id}-{helper_swarm_id}"),
            task_type: "help".into(),
            metadata: json!({"blocker_id": blocker_id, "blocked_task_id": blocker.info.task_id,
                "reporter": blocker.swarm_id, "type": blocker.info.blocker_type,
                "description": blocker.info.description, "severity": blocker.info.severity}),
            required_capabilities: blocker.info.required_capabilities.clone(),
            priority: 0,
            max_attempts: None,
        };
        let item = self.push(helper_swarm_id, help, Some(blocker_id.into())).await?;
        let helper = helper_swarm_id.to_string();
        self.update_blocker(blocker_id, "blocker_assigned", "orchestrator", move |b| {
            if !b.helpers.contains(&helper) {
                b.helpers.push(helper.clone());
            }
            if b.state == BlockerState::Open {
                b.state = BlockerState::Assigned;
            }
            Ok(json!({"blocker_id": b.blocker_id, "helper": helper}))
        })
        .await?;
        Ok(item)
    }

    /// Marks a blocker resolved.
    pub async fn resolve_blocker(
        &self,
        blocker_id: &str,
        resolution: &str,
    ) -> Result<Blocker, CoreError> {
        validate::json("resolution", &json!(resolution), self.config.max_json_bytes)?;
        let resolution = resolution.to_string();
        self.update_blocker(blocker_id, "blocker_resolved", "orchestrator", move |b| {
            if b.state == BlockerState::Resolved {
                return Err(CoreError::Conflict(format!(
                    "blocker {} is already resolved",
                    b.blocker_id
                )));
            }
            b.state = BlockerState::Resolved;
            b.resolution = Some(resolution.clone());
            Ok(json!({"blocker_id": b.blocker_id, "resolution": resolution}))
        })
        .await
    }

    /// A blocker.
    pub async fn get_blocker(&self, blocker_id: &str) -> Result<Blocker, CoreError> {
        Ok(self.read_blocker(blocker_id).await?.0)
    }

    /// Every blocker, or only those not resolved.
    pub async fn list_blockers(&self, open_only: bool) -> Result<Vec<Blocker>, CoreError> {
        let resp = self.store.range(RangeRequest::prefix(self.keys.blockers())).await?;
        let mut blockers: Vec<Blocker> = resp.kvs.iter().map(decode).collect::<Result<_, _>>()?;
        blockers.retain(|b| !open_only || b.state != BlockerState::Resolved);
        blockers.sort_by_key(|b| b.raised_at_ms);
        Ok(blockers)
    }

    // ---- events --------------------------------------------------------------

    /// Every coordination event after revision `after` (`None`: from now), in commit
    /// order: the witness records as they commit, and claim renewals. A revision
    /// older than the store's history ends the stream with
    /// [`CoreError::Compacted`].
    pub async fn events(
        &self,
        after: Option<i64>,
    ) -> Result<CoreStream<CoordinationEvent>, CoreError> {
        let from = after.map_or(0, |after| after + 1);
        let root = self.keys.root().to_string();
        let keys = self.keys.clone();
        let watch = self.store.watch(WatchRequest::prefix(root).from_revision(from)).await?;
        Ok(watch
            .flat_map(move |batch| {
                let items: Vec<Result<CoordinationEvent, CoreError>> = match batch {
                    Err(e) => vec![Err(stream_error(e))],
                    Ok(batch) => batch_events(&keys, batch),
                };
                futures::stream::iter(items)
            })
            .boxed())
    }
}

/// The coordination events of one revision.
fn batch_events(
    keys: &crate::keys::Keys,
    batch: ifc_kv::WatchBatch,
) -> Vec<Result<CoordinationEvent, CoreError>> {
    let mut out = Vec::new();
    let mut witnessed_tasks = Vec::new();
    for event in batch.events.iter().filter(|e| e.kind == EventKind::Put) {
        let key = String::from_utf8_lossy(&event.kv.key);
        let Some(rest) = keys.strip(&key) else { continue };
        if let Some(chain_rest) = rest.strip_prefix("witness/")
            && chain_rest.contains("/r/")
        {
            match decode::<WitnessRecord>(&event.kv) {
                Ok(record) => {
                    if let Some(task) = &record.task_id {
                        witnessed_tasks.push(task.clone());
                    }
                    let token = match record.op.as_str() {
                        "task_claimed" | "task_pushed" if record.token.is_none() => {
                            Some(batch.revision)
                        }
                        _ => record.token,
                    };
                    out.push(Ok(CoordinationEvent {
                        revision: batch.revision,
                        blocker_id: record.chain.strip_prefix("blocker/").map(String::from),
                        op: record.op,
                        actor: record.actor,
                        task_id: record.task_id,
                        swarm_id: record.swarm_id,
                        token,
                        outcome: record.outcome,
                        detail: record.detail,
                        at_ms: record.at_ms,
                    }));
                }
                Err(e) => out.push(Err(e)),
            }
        }
    }
    // A claim key rewritten without a witnessed change is a renewal.
    for event in batch.events.iter().filter(|e| e.kind == EventKind::Put && e.kv.version > 1) {
        let key = String::from_utf8_lossy(&event.kv.key);
        let Some(task) = keys
            .strip(&key)
            .and_then(|k| k.strip_prefix("tasks/"))
            .and_then(|k| k.strip_suffix("/claim"))
        else {
            continue;
        };
        if witnessed_tasks.iter().any(|t| t == task) {
            continue;
        }
        let Ok(claim) = decode::<ClaimValue>(&event.kv) else { continue };
        out.push(Ok(CoordinationEvent {
            revision: batch.revision,
            op: "task_renewed".into(),
            actor: claim.swarm_id.clone(),
            task_id: Some(task.to_string()),
            swarm_id: Some(claim.swarm_id),
            blocker_id: None,
            token: Some(event.kv.create_revision),
            outcome: "claimed".into(),
            detail: json!({"deadline_ms": claim.deadline_ms}),
            at_ms: claim.written_at_ms,
        }));
    }
    out
}
