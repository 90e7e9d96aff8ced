//! The seed's latency table beside ours: the same operations on both
//! backends, in process and through HTTP.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::etcd::BenchEtcd;
use crate::latency::Summary;
use crate::realtime;
use crate::report::Report;

/// The seed's published latencies in ms: p50, p95, p99, max.
const SEED_MS: [(&str, [f64; 4]); 5] = [
    ("claim_task", [2.0, 5.0, 8.0, 10.0]),
    ("push_task_to_swarm (→ delivered)", [3.0, 7.0, 9.0, 12.0]),
    ("create_task", [2.0, 4.0, 6.0, 8.0]),
    ("complete_task", [2.0, 4.0, 6.0, 8.0]),
    ("detect_blocker (→ orchestrator)", [3.0, 6.0, 8.0, 10.0]),
];

pub async fn run(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    report.section(
        "The seed's table, ours",
        "The seed's published latencies (ms) beside ours, for the same operations, in process \
         and through HTTP (the Rust client against an in-process server on loopback), on both \
         backends (etcd spawned on loopback). Push and blocker rows run until the swarm's inbox \
         / the orchestrator's stream delivers. \"beats\" compares p95.",
    );
    let n = 100 * scale;
    let mut rows = String::from(
        "| operation | where | p50 ms | p95 ms | p99 ms | max ms | seed p50/p95/p99/max ms \
         | beats the seed at p95 |\n|---|---|---|---|---|---|---|---|\n",
    );
    let open = |name: &str| -> Result<Arc<dyn KvStore>> {
        Ok(Arc::new(EmbeddedStore::open(work.join(name), EmbeddedOptions::default())?))
    };
    let embedded = open("seed-embedded")?;
    add_rows(&mut rows, "embedded, in process", realtime::seed_table(embedded, n, "e").await?);
    let server = realtime::local_server(open("seed-embedded-http")?, 100).await?;
    let results = realtime::seed_table_http(&server, n, "eh").await?;
    add_rows(&mut rows, "embedded, HTTP", results);
    let etcd = BenchEtcd::start(None).await;
    let etcd_store: Arc<dyn KvStore> = Arc::new(etcd.connect().await?);
    let results = realtime::seed_table(etcd_store.clone(), n, "t").await?;
    add_rows(&mut rows, "etcd, in process", results);
    let server = realtime::local_server(etcd_store, 100).await?;
    add_rows(&mut rows, "etcd, HTTP", realtime::seed_table_http(&server, n, "th").await?);
    report.text.push_str(&rows);
    Ok(())
}

/// One row per operation measured at `place`, beside the seed's figures.
fn add_rows(rows: &mut String, place: &str, results: Vec<(&'static str, Summary)>) {
    for (name, s) in results {
        let seed = SEED_MS.iter().find(|(n, _)| *n == name).map_or([0.0; 4], |(_, v)| *v);
        let p95_ms = s.p95 / 1000.0;
        let _ = writeln!(
            rows,
            "| {name} | {place} | {:.2} | {p95_ms:.2} | {:.2} | {:.2} | {}/{}/{}/{} | {} \
             ({:.1}×) |",
            s.p50 / 1000.0,
            s.p99 / 1000.0,
            s.max / 1000.0,
            seed[0],
            seed[1],
            seed[2],
            seed[3],
            if p95_ms < seed[1] { "yes" } else { "no" },
            seed[1] / p95_ms.max(0.001),
        );
        println!("{name:<36} {place:<22} p50 {:.2} ms p95 {p95_ms:.2} ms", s.p50 / 1000.0);
    }
}
