//! The coordinator on etcd against raw etcd: claim against a raw CAS, push and
//! blocker delivery against put → watch, and concurrent claimers.

use std::sync::Arc;

use anyhow::Result;
use ifc_core::ClaimOutcome;
use ifc_kv::KvStore;

use super::{claimer_scaling, curve};
use crate::etcd::{BenchEtcd, ns};
use crate::floors::{TxnShape, prepare_shape, raw_cas, raw_txn_of_shape};
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
        "On etcd, `claim_task` of a task the node's snapshot cache knows (one \
         compare-and-swap txn that writes the claim, the record, the indexes and the witness \
         record) is interleaved with a raw etcd-client CAS txn (one compare, one key) on the \
         same etcd. Target (issue 14): claim p50 ≤ 1.3× the raw CAS. A second floor, a raw \
         txn of the claim's shape (as many compares, puts of the same key and value sizes on \
         leases as the claim's, as many deletes; the sizes read back from a claim the run \
         just made), interleaved with the CAS in the same way, splits the gap: what etcd \
         charges for the claim's txn, and what our code adds. Every node watches its namespace \
         (the reaper and the snapshot cache that makes the claim one round trip), so etcd also \
         delivers each claim's events to that watch: the last rows repeat the shaped txn with a \
         prefix watch of its keys open in this process, drained as it comes. The seed promises \
         p95 < 5 ms.",
    );
    let (claim, cas, shape) =
        claim_vs_raw_cas(&mut raw, Arc::new(ours.clone()), 200 * scale).await?;
    let (shaped, shape_cas) = shaped_vs_raw_cas(&mut raw, &shape, Watched::No, 200 * scale).await?;
    let (watched, watched_cas) =
        shaped_vs_raw_cas(&mut raw, &shape, Watched::Yes, 200 * scale).await?;
    report.latency_table(&[
        ("raw etcd-client CAS txn (floor)", cas, None),
        ("claim_task on etcd", claim, Some(cas)),
        ("raw CAS txn, paired with the row below", shape_cas, None),
        ("raw txn of a claim's shape", shaped, Some(shape_cas)),
        ("raw CAS txn, paired with the row below", watched_cas, None),
        ("raw txn of a claim's shape, its keys watched", watched, Some(watched_cas)),
    ]);
    let p50_ratio = claim.p50 / cas.p50;
    let shape_ratio = shaped.p50 / shape_cas.p50;
    let watched_ratio = watched.p50 / watched_cas.p50;
    report.line(&format!(
        "\nThe claim's shape: {shape}.\n\nVerdict: claim on etcd p50 {p50_ratio:.2}× the raw \
         CAS (target ≤ 1.3×: {}), p99 {:.2}×; a raw txn of the claim's shape alone is \
         {shape_ratio:.2}× at p50, and {watched_ratio:.2}× with a watch of its keys open, so our \
         code adds about {:.0} % on top of the watched one; p95 {:.2} ms vs the seed's 5 ms.",
        verdict(p50_ratio <= 1.3),
        claim.p99 / cas.p99,
        (p50_ratio / watched_ratio - 1.0) * 100.0,
        claim.p95 / 1000.0,
    ));

    report.section(
        "Real time on etcd: push and blocker delivery",
        "Floor: a raw etcd-client put, timed until the same client's watch sees it. Ours: \
         `push_task_to_swarm` until the swarm's inbox stream yields the task, and \
         `detect_blocker` until the orchestrator's stream yields it with helper candidates. \
         Target (issue 14): push p50 ≤ 1.5× the floor (the seed promises p95 < 10 ms); the \
         blocker row has no ratio target. The last row is a raw txn of the push's shape (its \
         compares, puts of its key and value sizes on leases as its, its deletes; read back \
         from the first push of the run), timed until a watch of its keys sees it (all of \
         them; the inbox stream watches one): what etcd charges for the push's txn and its \
         delivery. The floor, the push and that row are interleaved; the blocker row runs \
         after them.",
    );
    let (push, shaped_push, floor, push_shape) =
        realtime::push_vs_floors(Arc::new(ours.clone()), &mut raw, 100 * scale).await?;
    let blocker = realtime::blocker_delivery(Arc::new(ours.clone()), 100 * scale).await?;
    report.latency_table(&[
        ("raw put → watch (floor)", floor, None),
        ("push → inbox delivery", push, Some(floor)),
        ("blocker → orchestrator", blocker, Some(floor)),
        ("raw txn of a push's shape → watch", shaped_push, Some(floor)),
    ]);
    let (push_ratio, shape_ratio) = (push.p50 / floor.p50, shaped_push.p50 / floor.p50);
    report.line(&format!(
        "\nThe push's shape: {push_shape}.\n\nVerdict: push p50 {push_ratio:.2}× the floor \
         (target ≤ 1.5×: {}), p99 {:.2}×; a raw txn of the push's shape → watch alone is \
         {shape_ratio:.2}× at p50, so our code adds about {:.0} % on top of it; blocker p50 \
         {:.2}×, p99 {:.2}×; push p95 {:.2} ms vs the seed's 10 ms.",
        verdict(push_ratio <= 1.5),
        push.p99 / floor.p99,
        (push_ratio / shape_ratio - 1.0) * 100.0,
        blocker.p50 / floor.p50,
        blocker.p99 / floor.p99,
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

/// claim_task vs a raw etcd CAS txn, interleaved; returns (claim, CAS, the
/// shape of the first claim's txn).
async fn claim_vs_raw_cas(
    raw: &mut etcd_client::Client,
    store: Arc<dyn KvStore>,
    n: usize,
) -> Result<(Summary, Summary, TxnShape)> {
    let namespace = "bench-cas";
    let (c, _reaper) = seeded_coordinator(store, 1, n, namespace).await?;
    let mut first_token = None;
    let (claim, cas) = interleave(
        n,
        async |i| match c.claim_task("s0", &format!("t{i}")).await? {
            ClaimOutcome::Claimed(claim) => {
                first_token.get_or_insert(claim.token);
                Ok(())
            }
            other => anyhow::bail!("claim t{i}: {other:?}"),
        },
        async |i| raw_cas(raw, ns(&format!("bench/claim-floor/{i}"))).await,
    )
    .await?;
    let token = first_token.ok_or_else(|| anyhow::anyhow!("no claim was made"))?;
    // A claim's txn compares the task's record, claim and holder keys and the
    // swarm's record (`claim.rs`); its puts and deletes are read back.
    let shape = TxnShape::read_back(raw, &format!("{}/", ns(namespace)), token, 4).await?;
    Ok((claim, cas, shape))
}

/// Whether a watch of the shaped txns' keys is open while they run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watched {
    No,
    Yes,
}

/// A raw txn of `shape` vs a raw etcd CAS txn, interleaved; returns (shaped, CAS).
async fn shaped_vs_raw_cas(
    raw: &mut etcd_client::Client,
    shape: &TxnShape,
    watched: Watched,
    n: usize,
) -> Result<(Summary, Summary)> {
    let lease = raw.lease_grant(600, None).await?.id();
    // Short, so that padded keys come out as long as the claim's; a run of
    // its own, so no row meets another's keys.
    let run = match watched {
        Watched::No => "cs",
        Watched::Yes => "cw",
    };
    let prefix = |i: usize| ns(&format!("{run}/{i}"));
    for i in 0..n {
        prepare_shape(raw, &prefix(i), shape).await?;
    }
    // Opened after the keys the txns delete were written, as a node's watch
    // is open before its claims; drained as it comes, as the reaper does.
    let _drain = match watched {
        Watched::No => None,
        Watched::Yes => Some(DrainedWatch::open(raw, ns(&format!("{run}/"))).await?),
    };
    let mut shaped_client = raw.clone();
    let timed = interleave(
        n,
        async |i| raw_txn_of_shape(&mut shaped_client, &prefix(i), shape, lease).await,
        async |i| raw_cas(raw, ns(&format!("bench/claim-shape-floor/{i}"))).await,
    )
    .await;
    // Now, untimed, rather than at its expiry under a later row.
    raw.lease_revoke(lease).await?;
    timed
}

/// A prefix watch read to its end in a task of its own, until dropped.
struct DrainedWatch(tokio::task::JoinHandle<()>);

impl DrainedWatch {
    async fn open(raw: &mut etcd_client::Client, prefix: String) -> Result<DrainedWatch> {
        let options = etcd_client::WatchOptions::new().with_prefix();
        let mut stream = raw.watch(prefix, Some(options)).await?;
        Ok(DrainedWatch(tokio::spawn(
            async move { while let Ok(Some(_)) = stream.message().await {} },
        )))
    }
}

impl Drop for DrainedWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}
