//! The coordinator on etcd against raw etcd: claim against a raw CAS, push and
//! blocker delivery against put → watch, and concurrent claimers.

use std::sync::Arc;

use anyhow::Result;
use ifc_core::ClaimOutcome;
use ifc_kv::KvStore;

use super::{claimer_scaling, curve};
use crate::etcd::{BenchEtcd, ns};
use crate::floors::raw_cas;
use crate::latency::{Summary, interleave};
use crate::realtime;
use crate::report::{Report, verdict};
use crate::workload::seeded_coordinator;

/// The three etcd sections; returns the claimers curve (claimers, claims/s).
pub async fn run(report: &mut Report, scale: usize) -> Result<Vec<(f64, f64)>> {
    let etcd = BenchEtcd::start(None).await;
    let ours = etcd.connect().await?;
    let mut raw = ours.client();
    report.section(
        "Coordinator core: claim_task",
        "On etcd, `claim_task` (one read of the task, its claim and its chain head, then one \
         compare-and-swap txn that writes the claim, the record, the indexes and the witness \
         record) is interleaved with a raw etcd-client CAS txn on the same etcd. \
         Target: claim p50 and p99 within 1.15× of the raw CAS. The seed promises p95 < 5 ms.",
    );
    let (claim, cas) = claim_vs_raw_cas(&mut raw, Arc::new(ours.clone()), 200 * scale).await?;
    report.latency_table(&[
        ("raw etcd-client CAS txn (floor)", cas, None),
        ("claim_task on etcd", claim, Some(cas)),
    ]);
    let (p50_ratio, p99_ratio) = (claim.p50 / cas.p50, claim.p99 / cas.p99);
    report.line(&format!(
        "\nVerdict: claim on etcd p50 {p50_ratio:.2}×, p99 {p99_ratio:.2}× the raw CAS \
         (target ≤ 1.15×: {}); p95 {:.2} ms vs the seed's 5 ms.",
        verdict(p50_ratio <= 1.15 && p99_ratio <= 1.15),
        claim.p95 / 1000.0,
    ));

    report.section(
        "Real time on etcd: push and blocker delivery",
        "Floor: a raw etcd-client put, timed until the same client's watch sees it. Ours: \
         `push_task_to_swarm` until the swarm's inbox stream yields the task, and \
         `detect_blocker` until the orchestrator's stream yields it with helper candidates. \
         Target: within 1.2× of the floor (the seed promises p95 < 10 ms).",
    );
    let floor = realtime::put_watch_floor(&mut raw, 100 * scale).await?;
    let push = realtime::push_delivery(Arc::new(ours.clone()), 100 * scale).await?;
    let blocker = realtime::blocker_delivery(Arc::new(ours.clone()), 100 * scale).await?;
    report.latency_table(&[
        ("raw put → watch (floor)", floor, None),
        ("push → inbox delivery", push, Some(floor)),
        ("blocker → orchestrator", blocker, Some(floor)),
    ]);
    let within = |s: Summary| verdict(s.p50 / floor.p50 <= 1.2 && s.p99 / floor.p99 <= 1.2);
    report.line(&format!(
        "\nVerdict: push p50 {:.2}× / p99 {:.2}× ({}); blocker p50 {:.2}× / p99 {:.2}× ({}); \
         push p95 {:.2} ms vs the seed's 10 ms.",
        push.p50 / floor.p50,
        push.p99 / floor.p99,
        within(push),
        blocker.p50 / floor.p50,
        blocker.p99 / floor.p99,
        within(blocker),
        push.p95 / 1000.0,
    ));

    report.section(
        "Scaling on etcd",
        "claim_task throughput and latency with concurrent claimers on etcd, each row in its \
         own namespace on the same etcd.",
    );
    let rows = claimer_scaling(report, "etcd", |claimers| {
        let per_claimer = (10 * scale * 64 / claimers).max(5 * scale);
        let store: Arc<dyn KvStore> = Arc::new(ours.clone());
        Ok((store, format!("claimers-{claimers}"), per_claimer))
    })
    .await?;
    Ok(curve(&rows))
}

/// claim_task vs a raw etcd CAS txn, interleaved; returns (claim, CAS).
async fn claim_vs_raw_cas(
    raw: &mut etcd_client::Client,
    store: Arc<dyn KvStore>,
    n: usize,
) -> Result<(Summary, Summary)> {
    let (c, _reaper) = seeded_coordinator(store, 1, n, "bench-cas").await?;
    interleave(
        n,
        async |i| match c.claim_task("s0", &format!("t{i}")).await? {
            ClaimOutcome::Claimed(_) => Ok(()),
            other => anyhow::bail!("claim t{i}: {other:?}"),
        },
        async |i| raw_cas(raw, ns(&format!("bench/claim-floor/{i}"))).await,
    )
    .await
}
