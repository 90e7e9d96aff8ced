//! The coordinator on the embedded store: concurrent claimers and real-time
//! delivery in process.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use super::{claimer_scaling, curve};
use crate::realtime;
use crate::report::{Report, verdict};

/// Both embedded sections; returns the claimers curve (claimers, claims/s).
pub async fn run(report: &mut Report, scale: usize, work: &Path) -> Result<Vec<(f64, f64)>> {
    report.section(
        "Scaling, embedded",
        "claim_task throughput and latency with concurrent claimers on the embedded store, each \
         row on a fresh store. Target (issue 14): 64 claimers ≥ 25,000 claims/s with p99 ≤ 2 ms.",
    );
    let rows = claimer_scaling(report, "embedded", |claimers| {
        let dir = work.join(format!("claims-{claimers}"));
        let store: Arc<dyn KvStore> =
            Arc::new(EmbeddedStore::open(&dir, EmbeddedOptions::default())?);
        Ok((store, "ifc".to_string(), (50 * scale * 64 / claimers).max(10 * scale)))
    })
    .await?;
    let (rate_64, p99_64) = rows
        .iter()
        .find(|row| row.0 == 64)
        .map_or((0.0, f64::INFINITY), |&(_, rate, s)| (rate, s.p99));
    report.line(&format!(
        "\nVerdict: 64 claimers {rate_64:.0} claims/s, p99 {p99_64:.0} µs (target ≥ 25,000/s \
         and p99 ≤ 2 ms: {}).",
        verdict(rate_64 >= 25_000.0 && p99_64 <= 2000.0),
    ));

    report.section(
        "Real time in process, embedded",
        "`push_task_to_swarm` until the inbox stream yields it; `detect_blocker` until the \
         orchestrator's stream yields it. Target: p99 < 1 ms.",
    );
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("realtime"), EmbeddedOptions::default())?);
    let push = realtime::push_delivery(store.clone(), 200 * scale).await?;
    let blocker = realtime::blocker_delivery(store.clone(), 200 * scale).await?;
    report.latency_table(&[
        ("push → inbox delivery", push, None),
        ("blocker → orchestrator", blocker, None),
    ]);
    report.line(&format!(
        "\nVerdict: push p99 {:.0} µs, blocker p99 {:.0} µs (target < 1,000 µs: {}).",
        push.p99,
        blocker.p99,
        verdict(push.p99 < 1000.0 && blocker.p99 < 1000.0),
    ));
    Ok(curve(&rows))
}
