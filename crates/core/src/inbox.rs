//! The durable push inbox. Push is one txn: the task (created if new, or
//! taken if ready) is claimed for the target swarm on a *push lease* and
//! written to the swarm's inbox (`inbox/<swarm>/<task>`). The inbox key's
//! create revision is the claim's token and the subscriber's resume point. Ack
//! moves the claim onto a normal claim lease and empties the inbox slot;
//! decline, or no ack before the push timeout, returns the task to the pool
//! without using an attempt.

use futures::StreamExt;
use ifc_api::{InboxItem, NewTask, TaskRecord, TaskState};
use ifc_kv::{Compare, EventKind, KeyValue, KvError, RangeRequest, TxnRequest, WatchRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::events::{CoreStream, stream_error};
use crate::keys::{capset_id, task_chain};
use crate::swarm::SwarmRecord;
use crate::txn::{self, ClaimValue, Freshness, MAX_CAS_ROUNDS, NewClaim, delete, put, put_on};
use crate::witness::{Entry, WitnessOp};
use crate::{Coordinator, CoreError, now_ms, validate};

/// What an inbox slot holds (the token and revision come from the key).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct InboxEntry {
    task: TaskRecord,
    ack_deadline_ms: i64,
    blocker_id: Option<String>,
}

fn inbox_item(kv: &KeyValue) -> Result<InboxItem, CoreError> {
    let entry: InboxEntry = decode(kv)?;
    Ok(InboxItem {
        revision: kv.create_revision,
        task: entry.task,
        token: kv.create_revision,
        ack_deadline_ms: entry.ack_deadline_ms,
        blocker_id: entry.blocker_id,
    })
}

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
        for round in 0..MAX_CAS_ROUNDS {
            // The first attempt goes straight to its txn on this node's copy,
            // taking a task it does not know as new (a push usually creates
            // it); the txn's compares catch a wrong guess, and a refusal is
            // confirmed on a linearizable read.
            let first = round == 0;
            let freshness = if first { Freshness::Assumed } else { Freshness::Linearizable };
            let snap = self.snapshot(&task_id, Some(swarm_id), freshness).await?;
            let swarm_kv = match snap.swarm {
                Some(swarm_kv) => swarm_kv,
                None if first => continue,
                None => return Err(CoreError::NotRegistered(swarm_id.into())),
            };
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
                    let view = txn::view(keys)?;
                    if view.lapsed {
                        self.reap_task(&task_id).await?;
                        continue;
                    }
                    match view.state {
                        TaskState::Ready => {}
                        _ if first => continue,
                        TaskState::Claimed => {
                            let owner = view.record.owner.unwrap_or_default();
                            return Err(CoreError::TaskClaimed { task_id, owner });
                        }
                        state => return Err(CoreError::TaskFinished { task_id, state }),
                    }
                    compares.push(Compare::mod_revision_is(
                        keys.record.key.clone(),
                        keys.record.mod_revision,
                    ));
                    ops.extend(txn::take_from_pool(&self.keys, &view.record));
                    (view.record, false)
                }
            };
            compares.push(Compare::missing(self.keys.claim(&task_id)));
            compares.push(Compare::missing(self.keys.holder(&task_id)));
            let (lease, ack_deadline_ms) = self.push_lease().await?;
            record.state = TaskState::Claimed;
            record.owner = Some(swarm_id.into());
            record.claimed_at_ms = Some(now_ms());
            record.awaiting_ack = true;
            record.claim_token = None;
            let (witness, witness_ops) = Entry {
                op: WitnessOp::TaskPushed,
                actor: "orchestrator".into(),
                task_id: Some(task_id.clone()),
                swarm_id: Some(swarm_id.into()),
                token: None,
                outcome: TaskState::Claimed.as_str().into(),
                detail: json!({"created": created, "ack_deadline_ms": ack_deadline_ms,
                    "blocker_id": blocker_id}),
            }
            .seal(&self.keys, &task_chain(&task_id), &snap.head)?;
            ops.extend(witness_ops);
            let entry = InboxEntry {
                task: record.clone(),
                ack_deadline_ms,
                blocker_id: blocker_id.clone(),
            };
            let claim = NewClaim {
                swarm_id,
                swarm_lease: swarm.lease,
                lease,
                deadline_ms: ack_deadline_ms,
                counter_shard: 0,
            };
            ops.extend(txn::claim_ops(&self.keys, &record, &claim)?);
            let inbox = self.keys.inbox_entry(swarm_id, &task_id);
            ops.push(put_on(inbox, encode(&entry)?, lease));
            let txn = TxnRequest { compares, success: ops, failure: Vec::new() };
            let resp = match self.store.txn(txn).await {
                Ok(resp) => resp,
                Err(KvError::LeaseNotFound(id)) if id == lease => {
                    self.leases.forget(lease);
                    continue;
                }
                // A copy of the swarm older than its re-registration: read again.
                Err(KvError::LeaseNotFound(_)) if first => continue,
                Err(KvError::LeaseNotFound(_)) => {
                    return Err(CoreError::NotRegistered(swarm_id.into()));
                }
                Err(e) => return Err(e.into()),
            };
            if resp.succeeded {
                self.witness_log.log(witness, resp.revision);
                return Ok(InboxItem {
                    revision: resp.revision,
                    task: record,
                    token: resp.revision,
                    ack_deadline_ms,
                    blocker_id,
                });
            }
        }
        Err(CoreError::Contended(format!("task {task_id}")))
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
        for _ in 0..MAX_CAS_ROUNDS {
            let snap = self.snapshot(task_id, None, Freshness::Linearizable).await?;
            let keys = snap.keys.ok_or_else(|| CoreError::TaskNotFound(task_id.into()))?;
            let claim = match txn::check_fence(swarm_id, task_id, token, &keys) {
                Ok(claim) => claim.clone(),
                Err(_) => return Err(self.refusal(swarm_id, task_id, token).await),
            };
            let mut record: TaskRecord = decode(&keys.record)?;
            if !record.awaiting_ack {
                return Err(CoreError::AlreadyAcknowledged(task_id.into()));
            }
            record.awaiting_ack = false;
            let inbox = self.keys.inbox_entry(swarm_id, task_id);
            let (mut ops, op, deadline) = if accept {
                let (lease, deadline_ms) = self.claim_lease(&record).await?;
                record.claim_token = Some(token);
                let value =
                    ClaimValue { swarm_id: swarm_id.into(), deadline_ms, written_at_ms: now_ms() };
                let key = String::from_utf8_lossy(&claim.key).into_owned();
                let ops = vec![delete(inbox.clone()), put_on(key, encode(&value)?, lease)];
                (ops, WitnessOp::PushAcked, deadline_ms)
            } else {
                let mut ops =
                    txn::teardown_ops(&self.keys, task_id, TaskState::Claimed, Some(swarm_id));
                self.release(&mut record, &mut ops);
                (ops, WitnessOp::PushDeclined, 0)
            };
            let (witness, witness_ops) =
                Entry::by_holder(op, swarm_id, task_id, token, record.state.as_str(), json!({}))
                    .seal(&self.keys, &task_chain(task_id), &snap.head)?;
            ops.extend(witness_ops);
            // Rewriting the record serialises this with every other write to the task.
            ops.push(put(self.keys.task(task_id), encode(&record)?));
            let mut txn = txn::guarded(&keys, ops);
            txn.compares.extend(txn::fence(&self.keys, task_id, token));
            txn.compares.push(Compare::exists(inbox));
            match self.store.txn(txn).await {
                Ok(resp) if resp.succeeded => {
                    self.witness_log.log(witness, resp.revision);
                    return Ok((deadline, record));
                }
                Ok(_) => continue,
                Err(KvError::LeaseNotFound(lease)) => self.leases.forget(lease),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Contended(format!("task {task_id}")))
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
}
