//! Claiming several tasks in one call (workers that fetch a batch of jobs):
//! up to [`MAX_CLAIM_BATCH`] ready tasks the swarm can do, each its own claim
//! with its own fencing token, lease and `task_claimed` record, built by the
//! single claim's [`Coordinator::plan_claim`] from claim_next's own queue
//! read (`queue_heads`, through each queue's window).
//!
//! Several claims go in one txn, each guarded by its own compare-and-swap
//! (the record's revision, no holder, no older claim) and the swarm record's
//! once. A txn that loses on any task applies nothing; its failure branch
//! reads every task of it again, so the claims still claimable go again at
//! once without the lost ones, and the call reads the queues again for
//! replacements. Claims made in one txn share its revision as their token:
//! a token is unique per task (fencing compares one task's keys), not
//! across tasks.

use std::cmp::Reverse;

use futures::future::join_all;
use ifc_api::Claim;
use ifc_kv::validate::Limits;
use ifc_kv::{Compare, KeyValue, LeaseId, TxnRequest};
use rand::seq::index::sample;

use crate::claim::{ClaimPlan, PreparedClaim};
use crate::claim_next::Candidate;
use crate::claims_in_flight::wait_for_others;
use crate::codec::decode;
use crate::swarm::SwarmRecord;
use crate::txn::{self, MAX_CAS_ROUNDS, Snapshots, TXN_BYTES};
use crate::{Coordinator, CoreError, validate};

/// The most tasks one call claims.
const MAX_CLAIM_BATCH: usize = ifc_api::MAX_CLAIM_BATCH as usize;

/// Ops of one claim: out of the pool (2), its witness record and chain head
/// (2), the record, state entry, claim, holder, holding and counter (6).
const CLAIM_OPS: usize = 10;

/// How often a txn of claims that lost a race goes again with what is still
/// claimable, before the call reads the queues again.
const TXN_RETRIES: usize = 3;

/// What one group of claims came to.
#[derive(Default)]
struct GroupOutcome {
    claims: Vec<Claim>,
    /// Tasks found taken, finished or backing off: not tried again this call.
    passed: Vec<String>,
    error: Option<CoreError>,
}

impl Coordinator {
    /// Claims up to `max` (1 ..= [`MAX_CLAIM_BATCH`]) ready tasks whose
    /// required capabilities the swarm holds, best first: a task is taken
    /// only once every ready task of a higher priority was taken (or found
    /// taken or backing off, or being taken by another claim on this node);
    /// within one priority the older go first, spread at random over a few
    /// times `max` of the oldest so that callers on other nodes meet less.
    /// Callers on one node never try the same task at once (see
    /// `claims_in_flight`). Fewer than `max` (or none) when fewer are ready,
    /// or when the rest were being taken by other claims on this node for
    /// about 0.7 s.
    /// The claims come back best first.
    ///
    /// Each claim is its own, exactly as [`Coordinator::claim_next`] would
    /// make it. If the store fails after some claims were made, those are
    /// returned (they hold, and their holder should work on them or release
    /// them); the error is returned only when none was made.
    pub async fn claim_next_many(
        &self,
        swarm_id: &str,
        max: usize,
    ) -> Result<Vec<Claim>, CoreError> {
        validate::id("swarm_id", swarm_id)?;
        if !(1..=MAX_CLAIM_BATCH).contains(&max) {
            let reason = format!("must be 1 ..= {MAX_CLAIM_BATCH}, not {max}");
            return Err(CoreError::Invalid { field: "max", reason });
        }
        let queues = self.claimable_queues(swarm_id).await?;
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let per_group = Limits::default().max_txn_ops / CLAIM_OPS;
        let mut won: Vec<Claim> = Vec::with_capacity(max);
        let mut passed: Vec<String> = Vec::new();
        // The queues' windows are read again when they held nothing to take.
        let mut refill = false;
        let (mut round, mut waits) = (0, 0);
        // Whether the queues were read afresh since this call last took a task.
        let mut refilled = false;
        while round < MAX_CAS_ROUNDS {
            let want = max - won.len();
            if want == 0 {
                break;
            }
            // Wider as contention shows: 2, 4, then 8 times what is wanted.
            let spread = 2usize << round.min(2);
            // Past what this call passed and what other claims on this node take.
            let epoch = self.claims_in_flight.epoch();
            let skipped = passed.len() as i64 + self.claims_in_flight.len();
            let head = ((want * spread) as i64).saturating_add(skipped);
            let (heads, fresh) = self.queue_heads(&queues, head, refill).await?;
            let candidates = self.candidates(&heads, &passed);
            if candidates.is_empty() {
                if fresh {
                    break;
                }
                refill = true;
                round += 1;
                continue;
            }
            let taking =
                self.claims_in_flight.take(epoch, &candidates, |free| choose(free, want, spread));
            if taking.tasks().is_empty() {
                // Every candidate is being taken on this node: read each
                // queue's first keys afresh once, then wait for those claims.
                refilled |= fresh;
                refill = !refilled;
                if refilled && !wait_for_others(&mut waits).await {
                    break;
                }
                refilled = true;
                continue;
            }
            (refill, refilled) = (false, false);
            round += 1;
            let groups = taking.tasks().chunks(per_group).map(|g| self.claim_group(swarm_id, g));
            let mut failure = None;
            for outcome in join_all(groups).await {
                won.extend(outcome.claims);
                passed.extend(outcome.passed);
                failure = failure.or(outcome.error);
            }
            if let Some(e) = failure {
                if won.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
        won.sort_by(|a, b| {
            let key = |c: &Claim| (Reverse(c.task.priority), c.task.created_at_ms);
            key(a).cmp(&key(b)).then_with(|| a.task.task_id.cmp(&b.task.task_id))
        });
        Ok(won)
    }

    /// Claims the tasks of one group (few enough for one txn's ops): one read
    /// of them all, a plan for each, then txns of at most [`TXN_BYTES`].
    /// Each claim counts on the counter shard of its place in the group.
    async fn claim_group(&self, swarm_id: &str, task_ids: &[String]) -> GroupOutcome {
        let mut out = GroupOutcome::default();
        let ids: Vec<&str> = task_ids.iter().map(String::as_str).collect();
        // Serializable: every claim is a compare-and-swap on what it read.
        let reads = TxnRequest {
            success: txn::snapshot_reads(&self.keys, &ids, swarm_id, true),
            ..TxnRequest::new()
        };
        let snapshots = match self.store.txn(reads).await {
            Ok(resp) => txn::read_snapshots(&self.keys, &ids, &resp.responses),
            Err(e) => Err(e.into()),
        };
        let shards: Vec<usize> = (0..ids.len()).collect();
        let planned = match snapshots {
            Ok(snapshots) => self.plan_claims(swarm_id, &ids, &shards, snapshots, &mut out).await,
            Err(e) => Err(e),
        };
        let (swarm_kv, mut claims) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        // Split by bytes: a claim rewrites its record, and metadata may be large.
        let mut txns: Vec<Vec<(usize, PreparedClaim)>> = Vec::new();
        let mut bytes = 0;
        for claim in claims.drain(..) {
            let size: usize = claim.1.ops.iter().map(txn::op_bytes).sum();
            if txns.is_empty() || bytes + size > TXN_BYTES {
                txns.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(txn) = txns.last_mut() {
                txn.push(claim);
            }
        }
        let commits = txns.into_iter().map(|txn| self.commit_claims(swarm_id, &swarm_kv, txn));
        for outcome in join_all(commits).await {
            out.claims.extend(outcome.claims);
            out.passed.extend(outcome.passed);
            out.error = out.error.or(outcome.error);
        }
        out
    }

    /// Plans a claim of each task of `snapshots` (read for `task_ids`) on its
    /// counter shard in `shards`; records the refused ones in `out.passed`.
    /// Returns the swarm record the plans were made for.
    async fn plan_claims(
        &self,
        swarm_id: &str,
        task_ids: &[&str],
        shards: &[usize],
        snapshots: Snapshots,
        out: &mut GroupOutcome,
    ) -> Result<(KeyValue, Vec<(usize, PreparedClaim)>), CoreError> {
        let swarm_kv = snapshots.swarm.ok_or_else(|| CoreError::NotRegistered(swarm_id.into()))?;
        let swarm: SwarmRecord = decode(&swarm_kv)?;
        let mut claims = Vec::new();
        let tasks = task_ids.iter().zip(shards).zip(snapshots.tasks);
        for ((task_id, &shard), (keys, head)) in tasks {
            let Some(keys) = keys else {
                out.passed.push(task_id.to_string());
                continue;
            };
            match self.plan_claim(&swarm, &keys, &head, shard).await {
                Ok(ClaimPlan::Ready(claim)) => claims.push((shard, *claim)),
                // A task whose capabilities disagree with its queue is skipped.
                Ok(ClaimPlan::Refused(_)) | Err(CoreError::Incapable { .. }) => {
                    out.passed.push(task_id.to_string());
                }
                // A lapse was recorded: the next read finds it ready again.
                Ok(ClaimPlan::Stale) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((swarm_kv, claims))
    }

    /// Commits `claims` (each with its counter shard) in one txn, guarded by
    /// each claim's compares and the swarm record's revision. On a lost race
    /// the failure branch's reads re-plan every claim: the ones still
    /// claimable go again, up to [`TXN_RETRIES`] times.
    async fn commit_claims(
        &self,
        swarm_id: &str,
        swarm_kv: &KeyValue,
        mut claims: Vec<(usize, PreparedClaim)>,
    ) -> GroupOutcome {
        let mut out = GroupOutcome::default();
        let mut swarm_kv = swarm_kv.clone();
        for _ in 0..TXN_RETRIES {
            if claims.is_empty() {
                break;
            }
            let ids: Vec<String> = claims.iter().map(|(_, c)| c.record.task_id.clone()).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut txn = TxnRequest {
                compares: vec![Compare::mod_revision_is(
                    swarm_kv.key.clone(),
                    swarm_kv.mod_revision,
                )],
                success: Vec::with_capacity(claims.len() * CLAIM_OPS),
                failure: txn::snapshot_reads(&self.keys, &ids, swarm_id, false),
            };
            for (_, claim) in &claims {
                txn.compares.extend(claim.compares.iter().cloned());
                txn.success.extend(claim.ops.iter().cloned());
            }
            let leases: Vec<LeaseId> = claims.iter().map(|(_, c)| c.lease).collect();
            let resp = match self.store.txn(txn).await {
                Ok(resp) => resp,
                Err(e) => {
                    // A claim lease that expired under us is forgotten; the
                    // tasks are read again by the next round.
                    out.error = self.claim_txn_failed(e, &leases, swarm_id).err();
                    return out;
                }
            };
            if resp.succeeded {
                for (_, claim) in claims.drain(..) {
                    self.witness_log.log(claim.witness, resp.revision);
                    let task = claim.record;
                    out.claims.push(Claim {
                        task,
                        token: resp.revision,
                        deadline_ms: claim.deadline_ms,
                    });
                }
                return out;
            }
            let snapshots = match txn::read_snapshots(&self.keys, &ids, &resp.responses) {
                Ok(snapshots) => snapshots,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            // Plan again from what the failure branch read, each on its shard.
            let shards: Vec<usize> = claims.iter().map(|(shard, _)| *shard).collect();
            match self.plan_claims(swarm_id, &ids, &shards, snapshots, &mut out).await {
                Ok((swarm, again)) => (swarm_kv, claims) = (swarm, again),
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out
    }
}

/// Up to `want` task ids from `candidates` (best first), a whole rank at a
/// time: a lower rank only once every candidate of the better ones is
/// chosen. In the last rank reached, the ones chosen are picked at random
/// among its first `want × spread` (keeping their queue order), so that
/// concurrent callers spread over the head instead of all taking its front.
fn choose(candidates: &[Candidate], want: usize, spread: usize) -> Vec<String> {
    let mut chosen = Vec::with_capacity(want);
    let mut rest = candidates;
    while chosen.len() < want
        && let Some(first) = rest.first()
    {
        let same = rest.iter().take_while(|c| c.rank == first.rank).count();
        let (rank, after) = rest.split_at(same);
        let need = want - chosen.len();
        if rank.len() <= need {
            chosen.extend(rank.iter().map(|c| c.task_id.clone()));
        } else {
            let window = &rank[..(need * spread).min(rank.len())];
            let mut picked = sample(&mut rand::rng(), window.len(), need).into_vec();
            picked.sort_unstable();
            chosen.extend(picked.into_iter().map(|i| window[i].task_id.clone()));
        }
        rest = after;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(priority: i32, created: i64, id: &str) -> Candidate {
        Candidate {
            rank: format!("{:010}", i64::from(i32::MAX) - i64::from(priority)),
            created: format!("{created:016}"),
            task_id: id.into(),
        }
    }

    #[test]
    fn a_lower_rank_is_chosen_only_after_every_higher_one() {
        let mut candidates = vec![candidate(5, 1, "urgent-a"), candidate(5, 2, "urgent-b")];
        candidates.extend((0..50).map(|i| candidate(0, i, &format!("normal-{i:02}"))));
        candidates.sort();
        for _ in 0..20 {
            let chosen = choose(&candidates, 4, 2);
            assert_eq!(chosen.len(), 4);
            assert_eq!(&chosen[..2], ["urgent-a", "urgent-b"]);
            // The rest: two of the four oldest normal tasks, in queue order.
            let rest: Vec<&str> = chosen[2..].iter().map(String::as_str).collect();
            assert!(
                rest.iter()
                    .all(|id| ["normal-00", "normal-01", "normal-02", "normal-03"].contains(id))
            );
            assert!(rest[0] < rest[1], "{rest:?}");
        }
        assert_eq!(choose(&candidates[..2], 10, 2), ["urgent-a", "urgent-b"]);
    }
}
