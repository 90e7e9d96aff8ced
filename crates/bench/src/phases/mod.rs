//! The benchmark's phases, one file each; `main` runs them in order. Each
//! writes its sections into the report and returns the points its charts need.

pub mod dashboard;
pub mod embedded;
pub mod etcd;
pub mod http;
pub mod peers;
pub mod seed;
pub mod soak;
pub mod storage;
pub mod stored;
pub mod subscriptions;

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;
use ifc_kv::KvStore;

use crate::latency::Summary;
use crate::report::Report;
use crate::workload::concurrent_claims;

/// claim_task throughput and latency at 1, 16, 64 and 256 concurrent claimers,
/// as a table in the report. `setup(claimers)` gives each row its store,
/// namespace and claims per claimer. Returns (claimers, claims/s, latency) rows.
async fn claimer_scaling(
    report: &mut Report,
    backend: &str,
    mut setup: impl FnMut(usize) -> Result<(Arc<dyn KvStore>, String, usize)>,
) -> Result<Vec<(usize, f64, Summary)>> {
    let mut table = format!(
        "\n| concurrent claimers ({backend}, in process) | claims/s | p50 µs | p99 µs |\n\
         |---|---|---|---|\n"
    );
    let mut rows = Vec::new();
    for claimers in [1usize, 16, 64, 256] {
        let (store, namespace, per_claimer) = setup(claimers)?;
        let (rate, s) = concurrent_claims(store, claimers, per_claimer, &namespace).await?;
        let _ = writeln!(table, "| {claimers} | {rate:.0} | {:.0} | {:.0} |", s.p50, s.p99);
        println!(
            "{claimers:>4} claimers {backend}: {rate:>8.0} claims/s p50 {:.0}µs p99 {:.0}µs",
            s.p50, s.p99
        );
        rows.push((claimers, rate, s));
    }
    report.text.push_str(&table);
    Ok(rows)
}

/// A chart's curve from `claimer_scaling`'s rows: (claimers, claims/s).
fn curve(rows: &[(usize, f64, Summary)]) -> Vec<(f64, f64)> {
    rows.iter().map(|&(claimers, rate, _)| (claimers as f64, rate)).collect()
}
