//! claim_next: the best ready task a swarm can do, chosen from the heads of
//! the ready queues whose capability sets it holds, and claimed as
//! `claim_task` claims (claim_next_many, in `claim_batch.rs`, reads the same
//! heads for several).

use ifc_api::{Claim, ClaimOutcome};
use ifc_kv::{KeyValue, RangeRequest};

use crate::claims_in_flight::wait_for_others;
use crate::codec::decode;
use crate::keys::{Key, capset_id};
use crate::queue_head::{QUEUE_HEAD, QueueHead};
use crate::txn::MAX_CAS_ROUNDS;
use crate::{Coordinator, CoreError, validate};

/// A ready task found at the head of a queue. Ordered as the queue is:
/// rank (higher priority first), then age, then id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Candidate {
    /// `i32::MAX - priority`, fixed width.
    pub rank: String,
    /// Creation time, fixed width.
    pub created: String,
    pub task_id: String,
}

impl Coordinator {
    /// The ready queues whose capability sets the registered swarm holds in
    /// full.
    pub(crate) async fn claimable_queues(&self, swarm_id: &str) -> Result<Vec<String>, CoreError> {
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
        Ok(queues)
    }

    /// The ready tasks among `heads` (the answer of `queue_heads`), best
    /// first (priority, then age, then id), leaving out those in `skip`. A
    /// queue whose read was cut may hold better tasks past its last key than
    /// another queue's, so the answer stops at the first such last key: it is
    /// a true prefix of the swarm's queues merged, and a caller choosing from
    /// it keeps strict priority whichever of it it cannot take.
    pub(crate) fn candidates(&self, heads: &[QueueHead], skip: &[String]) -> Vec<Candidate> {
        let candidate = |kv: &KeyValue| match self.keys.parse(&kv.key) {
            Some(Key::Ready { rank, created, task_id, .. }) => Some(Candidate {
                rank: rank.into(),
                created: created.into(),
                task_id: task_id.into(),
            }),
            _ => None,
        };
        let cut = heads
            .iter()
            .filter(|head| head.cut)
            .filter_map(|head| head.kvs.last().and_then(candidate))
            .min();
        let mut candidates: Vec<Candidate> = heads
            .iter()
            .flat_map(|head| &head.kvs)
            .filter_map(candidate)
            .filter(|c| cut.as_ref().is_none_or(|cut| c <= cut))
            .filter(|c| !skip.contains(&c.task_id))
            .collect();
        candidates.sort();
        candidates
    }

    /// The highest-priority, oldest ready task whose required capabilities the
    /// swarm all holds; `None` if there is none.
    ///
    /// Reads the head of each matching capability queue (a few keys each, never
    /// the whole pool), then tries one of the best few of the highest priority
    /// at random, so concurrent callers spread over the head instead of all
    /// fighting for its first key; a lower priority is never taken while a
    /// higher one was ready, unless another claim on this node was taking it.
    /// Callers on one node never try the same task at once (see
    /// `claims_in_flight`); `None` may also mean that every ready task was
    /// being taken by other claims on this node for about 0.7 s.
    pub async fn claim_next(&self, swarm_id: &str) -> Result<Option<Claim>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        let queues = self.claimable_queues(swarm_id).await?;
        if queues.is_empty() {
            return Ok(None);
        }
        // Tasks this call found taken or backing off: never tried twice, so a
        // high-priority task in retry backoff does not hide the ones below it.
        let mut passed: Vec<String> = Vec::new();
        // Windows are read again when they held nothing this call could take.
        let mut refill = false;
        let (mut round, mut waits) = (0, 0);
        // Whether the queues were read afresh since this call last took a task.
        let mut refilled = false;
        while round < MAX_CAS_ROUNDS {
            // Past the tasks other claims on this node are taking.
            let epoch = self.claims_in_flight.epoch();
            let head = QUEUE_HEAD.saturating_add(self.claims_in_flight.len());
            let (heads, fresh) = self.queue_heads(&queues, head, refill).await?;
            let candidates = self.candidates(&heads, &passed);
            if candidates.is_empty() {
                if fresh {
                    return Ok(None);
                }
                refill = true;
                round += 1;
                continue;
            }
            // Spread: pick among the best few, more of them as contention shows,
            // but only among tasks ranked like the best free one, so a higher
            // priority is served first unless another claim on this node is
            // taking it (lower ranks wait for the next read).
            let taking = self.claims_in_flight.take(epoch, &candidates, |free| {
                let best_rank = &free[0].rank;
                let equals = free.iter().take_while(|c| &c.rank == best_rank).count();
                let spread = (4 << round.min(3)).min(equals);
                vec![free[rand::random_range(0..spread)].task_id.clone()]
            });
            let Some(task_id) = taking.tasks().first() else {
                // Every candidate is being taken on this node: read each
                // queue's first keys afresh once, then wait for those claims.
                refilled |= fresh;
                refill = !refilled;
                if refilled && !wait_for_others(&mut waits).await {
                    return Ok(None);
                }
                refilled = true;
                continue;
            };
            (refill, refilled) = (false, false);
            round += 1;
            match self.claim_task(swarm_id, task_id).await? {
                ClaimOutcome::Claimed(claim) => return Ok(Some(*claim)),
                ClaimOutcome::Finished { .. }
                | ClaimOutcome::AlreadyClaimed { .. }
                | ClaimOutcome::BackingOff { .. } => passed.push(task_id.to_string()),
            }
        }
        Ok(None)
    }
}
