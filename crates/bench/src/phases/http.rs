//! Through HTTP on the embedded store: an in-process server on loopback,
//! driven by the Rust client.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::report::{Report, verdict};
use crate::{batches, python, realtime};

pub async fn run(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    report.section(
        "Through HTTP, embedded",
        "An `ifc serve` router in this process on a loopback port, driven by the Rust client. \
         Targets (issue 14): claim round trip p50 ≤ 0.5 ms with one client; ≥ 15,000 claims/s \
         with 64 clients; push → SSE delivery p99 ≤ 2 ms. The claim's floor is a bare \
         `GET /healthz` on the same server from a reqwest client (the library under the Rust \
         client), interleaved with the claims: an HTTP round trip that does no work. The Python row is \
         the seed's `IFCoordinator.claim_task` from the `ifc-client` package (a separate \
         Python process, httpx, one client) on the same server; its \"floor\" is the Rust \
         client's claim row, so the ratio is Python's cost over Rust's.",
    );
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("http"), EmbeddedOptions::default())?);
    let server = realtime::local_server(store, 20_000).await?;
    let (rtt, round_trip) = realtime::http_claim_rtt(&server, 200 * scale).await?;
    // A child process: waited for off the runtime, which also serves it.
    let url = server.url.clone();
    let python = tokio::task::spawn_blocking(move || {
        python::claim_latency(&url, "bench-admin", 200 * scale)
    })
    .await??;
    let (rate, concurrent) = realtime::http_claims_concurrent(&server, 64, 20 * scale).await?;
    let push = realtime::http_push_sse(&server, 200 * scale).await?;
    let burst = realtime::http_push_burst_sse(&server, 20 * scale, 10).await?;
    let mut rows = vec![
        ("HTTP round trip, GET /healthz (floor)", round_trip, None),
        ("HTTP claim, 1 client", rtt, Some(round_trip)),
    ];
    if let Some(python) = python {
        rows.push(("HTTP claim, 1 client, Python claim_task", python, Some(rtt)));
    }
    rows.extend([
        ("HTTP claim, 64 clients", concurrent, None),
        ("HTTP push → SSE delivery", push, None),
        ("HTTP 10 pushes at once → all on SSE", burst, None),
    ]);
    report.latency_table(&rows);
    if python.is_none() {
        report.line(&format!(
            "\nThe Python row is missing: the package's virtualenv is not made (`{}`).",
            python::MAKE_VENV
        ));
    }
    report.line(&format!(
        "\nVerdict: claim p50 {:.0} µs (≤ 500: {}); 64 clients {rate:.0} claims/s (≥ 15,000: {}); \
         push → SSE p99 {:.0} µs (≤ 2,000: {}).",
        rtt.p50,
        verdict(rtt.p50 <= 500.0),
        verdict(rate >= 15_000.0),
        push.p99,
        verdict(push.p99 <= 2000.0),
    ));
    batch_rows(report, scale, work).await
}

/// Batch rows, on a store of their own so the claims find only their tasks.
async fn batch_rows(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    const CREATE_CLIENTS: usize = 4;
    const CLAIM_CLIENTS: usize = 16;
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("http-batches"), EmbeddedOptions::default())?);
    let server = realtime::local_server(store, 1_000).await?;
    let total = 10_000 * scale;
    let (created, create) =
        batches::http_create_batches(&server, total, 1_000, CREATE_CLIENTS).await?;
    let (claimed, claim) = batches::http_claim_batches(&server, total, 32, CLAIM_CLIENTS).await?;
    report.line(&format!(
        "\nBatches ({total} tasks): created 1,000 to a request by {CREATE_CLIENTS} clients, \
         then claimed 32 to a request by {CLAIM_CLIENTS} swarms until none were left. \
         Latency is per request.\n"
    ));
    report.latency_table(&[
        ("HTTP create, batches of 1,000", create, None),
        ("HTTP claim, batches of 32", claim, None),
    ]);
    report.line(&format!(
        "\nVerdict: batch create {created:.0} tasks/s (≥ 100,000: {}); batch claim \
         {claimed:.0} tasks/s (≥ 50,000: {}).",
        verdict(created >= 100_000.0),
        verdict(claimed >= 50_000.0),
    ));
    Ok(())
}
