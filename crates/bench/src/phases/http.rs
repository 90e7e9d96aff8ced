//! Through HTTP on the embedded store: an in-process server on loopback,
//! driven by the Rust client.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::realtime;
use crate::report::{Report, verdict};

pub async fn run(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    report.section(
        "Through HTTP, embedded",
        "An `ifc serve` router in this process on a loopback port, driven by the Rust client. \
         Targets: claim round trip p50 ≤ 0.5 ms with one client; ≥ 20,000 claims/s with 64 \
         clients; push → SSE delivery p99 ≤ 2 ms.",
    );
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("http"), EmbeddedOptions::default())?);
    let server = realtime::local_server(store, 20_000).await?;
    let rtt = realtime::http_claim_rtt(&server, 200 * scale).await?;
    let (rate, concurrent) = realtime::http_claims_concurrent(&server, 64, 20 * scale).await?;
    let push = realtime::http_push_sse(&server, 200 * scale).await?;
    let burst = realtime::http_push_burst_sse(&server, 20 * scale, 10).await?;
    report.latency_table(&[
        ("HTTP claim, 1 client", rtt, None),
        ("HTTP claim, 64 clients", concurrent, None),
        ("HTTP push → SSE delivery", push, None),
        ("HTTP 10 pushes at once → all on SSE", burst, None),
    ]);
    report.line(&format!(
        "\nVerdict: claim p50 {:.0} µs (≤ 500: {}); 64 clients {rate:.0} claims/s (≥ 20,000: {}); \
         push → SSE p99 {:.0} µs (≤ 2,000: {}).",
        rtt.p50,
        verdict(rtt.p50 <= 500.0),
        verdict(rate >= 20_000.0),
        push.p99,
        verdict(push.p99 <= 2000.0),
    ));
    Ok(())
}
