//! Blockers: a swarm reports what stops it, the orchestrator's stream delivers
//! each blocker with helper candidates (live swarms holding the needed
//! capabilities, least loaded first), and a helper is assigned by pushing it a
//! help task. Each blocker has its own witness chain.

use std::sync::Arc;

use futures::StreamExt;
use ifc_api::{
    Blocker, BlockerEvent, BlockerInfo, BlockerState, HelperCandidate, InboxItem, NewTask,
};
use ifc_kv::{
    Compare, EventKind, KeyRange, KeyValue, RangeRequest, TxnOp, TxnOpResponse, TxnRequest,
    WatchRequest,
};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::events::{CoreStream, stream_error};
use crate::keys::blocker_chain;
use crate::paging::Pager;
use crate::swarm::SwarmRecord;
use crate::txn::{self, MAX_CAS_ROUNDS, put, range_op, ranges};
use crate::witness::{Entry, Head, WitnessOp};
use crate::{Coordinator, CoreError, now_ms, validate};

impl Coordinator {
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
            if txn::read_task(&*self.store, &self.keys, task_id).await?.is_none() {
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
            op: WitnessOp::BlockerRaised,
            actor: swarm_id.into(),
            task_id: blocker.info.task_id.clone(),
            swarm_id: Some(swarm_id.into()),
            token: None,
            outcome: "open".into(),
            detail: json!({"blocker_id": blocker_id, "type": blocker.info.blocker_type,
                "severity": blocker.info.severity,
                "required_capabilities": blocker.info.required_capabilities}),
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
        self.witness_log.log(witness, resp.revision);
        Ok(blocker_id)
    }

    /// Live swarms holding every capability the blocker needs, least loaded
    /// first, the reporter excluded.
    pub async fn helper_candidates(
        &self,
        blocker: &Blocker,
    ) -> Result<Vec<HelperCandidate>, CoreError> {
        // Page by page: only the capable swarms are kept. Serializable, as
        // the load counts below: candidates are advice (assigning a helper
        // pushes to it, and a push checks the swarm is registered), and on
        // etcd a linearizable read would cost every delivered blocker a
        // consensus round.
        let mut capable = Vec::new();
        let mut pager = Pager::prefix(self.keys.swarms()).serializable();
        while let Some(page) = pager.next_page(&*self.store).await? {
            for kv in &page {
                let swarm: SwarmRecord = decode(kv)?;
                if swarm.swarm_id != blocker.swarm_id
                    && blocker
                        .info
                        .required_capabilities
                        .iter()
                        .all(|c| swarm.capabilities.contains(c))
                {
                    capable.push(swarm);
                }
            }
        }
        // Load = how many tasks each capable swarm holds: a count per swarm (no
        // keys returned), never a scan of everyone's holdings.
        let mut candidates = Vec::with_capacity(capable.len());
        for chunk in capable.chunks(64) {
            let mut txn = TxnRequest::new();
            for swarm in chunk {
                let count = RangeRequest::prefix(self.keys.holding(&swarm.swarm_id))
                    .count_only()
                    .serializable();
                txn = txn.and_then(TxnOp::Range(count));
            }
            let resp = self.store.txn(txn).await?;
            for (swarm, response) in chunk.iter().zip(&resp.responses) {
                let current_claims = match response {
                    TxnOpResponse::Range(r) => r.count as usize,
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
        self: &Arc<Self>,
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
    ) -> Result<(Blocker, KeyValue, Head, i64), CoreError> {
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
        op: WitnessOp,
        actor: &str,
        change: impl Fn(&mut Blocker) -> Result<serde_json::Value, CoreError>,
    ) -> Result<Blocker, CoreError> {
        for _ in 0..MAX_CAS_ROUNDS {
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
                self.witness_log.log(witness, resp.revision);
                return Ok(blocker);
            }
        }
        Err(CoreError::Contended(format!("blocker {blocker_id}")))
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
            return Err(CoreError::BlockerResolved(blocker_id.into()));
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
            timeout_ms: None,
        };
        let item = self.push(helper_swarm_id, help, Some(blocker_id.into())).await?;
        let helper = helper_swarm_id.to_string();
        self.update_blocker(blocker_id, WitnessOp::BlockerAssigned, "orchestrator", move |b| {
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
        self.update_blocker(blocker_id, WitnessOp::BlockerResolved, "orchestrator", move |b| {
            if b.state == BlockerState::Resolved {
                return Err(CoreError::BlockerResolved(b.blocker_id.clone()));
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
        let mut blockers: Vec<Blocker> = Vec::new();
        let mut pager = Pager::prefix(self.keys.blockers());
        while let Some(page) = pager.next_page(&*self.store).await? {
            for kv in &page {
                let blocker: Blocker = decode(kv)?;
                if !open_only || blocker.state != BlockerState::Resolved {
                    blockers.push(blocker);
                }
            }
        }
        blockers.sort_by_key(|b| b.raised_at_ms);
        Ok(blockers)
    }
}
