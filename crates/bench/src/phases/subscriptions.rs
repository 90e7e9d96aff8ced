//! Idle subscriptions and memory, measured first (before other phases free
//! memory the allocator would reuse), with every stream kept open until the
//! phase ends, so each row's growth is the cost of its own subscriptions.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::etcd::BenchEtcd;
use crate::realtime;
use crate::report::{Report, verdict};

/// The chart's curves, (subscriptions, MB of growth) each.
#[derive(Default)]
pub struct Curves {
    pub embedded: Vec<(f64, f64)>,
    pub etcd: Vec<(f64, f64)>,
    pub http: Vec<(f64, f64)>,
}

pub async fn run(report: &mut Report, smoke: bool, work: &Path, start_rss: u64) -> Result<Curves> {
    report.section(
        "Subscriptions and memory",
        "Resident memory of this benchmark process, and its growth per idle subscription, for \
         registered swarms each holding one inbox subscription, in process on the embedded store \
         and on etcd (one etcd watch each); then the resident memory of an `ifc serve` in its own \
         process (embedded store) holding idle inbox SSE streams, one per registered swarm, opened \
         by this process. Targets: 10,000 subscribed swarms ≤ 300 MB; idle server ≤ 30 MB.",
    );
    report.line(&format!("\nProcess RSS at start: {:.1} MB.", start_rss as f64 / 1e6));
    let (embedded, etcd) = in_process(report, smoke, work).await?;
    let http = sse_streams(report, smoke).await?;
    match realtime::idle_server_rss().await? {
        Some(rss) => report.line(&format!(
            "\nAn idle `ifc serve` (embedded store, its own process): {:.1} MB RSS (target ≤ 30 \
             MB: {}).",
            rss as f64 / 1e6,
            verdict(rss <= 30_000_000)
        )),
        None => report.line(
            "\nIdle `ifc serve` RSS: not measured (build `ifc` in release next to `ifc-bench` \
             first).",
        ),
    }
    Ok(Curves { embedded, etcd, http })
}

type Curve = Vec<(f64, f64)>;

/// In process, on the embedded store then on etcd; every subscription is kept
/// open until both are measured.
async fn in_process(report: &mut Report, smoke: bool, work: &Path) -> Result<(Curve, Curve)> {
    let mut rows = String::from(
        "\n| subscriptions | kind | RSS growth MB | per subscription KB |\n|---|---|---|---|\n",
    );
    let sizes: &[usize] = if smoke { &[100, 1000] } else { &[100, 1000, 10_000] };
    let mut kept = Vec::new();
    let embedded: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("subs"), EmbeddedOptions::default())?);
    let mut embedded_points = Vec::new();
    for (round, &count) in sizes.iter().enumerate() {
        let (growth, streams) =
            realtime::idle_subscriptions(embedded.clone(), count, round).await?;
        embedded_points.push(growth_row(&mut rows, count, "in process, embedded", growth));
        kept.push(streams);
    }
    let etcd = BenchEtcd::start(None).await;
    let etcd_store: Arc<dyn KvStore> = Arc::new(etcd.connect().await?);
    let mut etcd_points = Vec::new();
    for (round, &count) in sizes.iter().enumerate() {
        let measured = tokio::time::timeout(
            Duration::from_secs(300),
            realtime::idle_subscriptions(etcd_store.clone(), count, 100 + round),
        )
        .await;
        match measured {
            Ok(Ok((growth, streams))) => {
                etcd_points.push(growth_row(&mut rows, count, "in process, etcd", growth));
                kept.push(streams);
            }
            Ok(Err(e)) => {
                let _ = writeln!(rows, "| {count} | in process, etcd | failed: {e} | — |");
            }
            Err(_) => {
                let _ = writeln!(rows, "| {count} | in process, etcd | not reached in 300 s | — |");
            }
        }
    }
    report.text.push_str(&rows);
    report.line(&format!(
        "\nThis process's RSS with every in-process subscription open: {:.1} MB.",
        realtime::rss_bytes() as f64 / 1e6
    ));
    drop(kept);
    drop(etcd);
    Ok((embedded_points, etcd_points))
}

/// One in-process row; returns its chart point (subscriptions, MB).
fn growth_row(rows: &mut String, count: usize, kind: &str, growth: u64) -> (f64, f64) {
    let _ = writeln!(
        rows,
        "| {count} | {kind} | {:.1} | {:.1} |",
        growth as f64 / 1e6,
        growth as f64 / count as f64 / 1e3
    );
    println!("{count:>6} {kind}: +{:.1} MB", growth as f64 / 1e6);
    (count as f64, growth as f64 / 1e6)
}

/// SSE: the server in its own process, so its RSS is the server's alone.
async fn sse_streams(report: &mut Report, smoke: bool) -> Result<Curve> {
    let Some(server) = realtime::ChildServer::start(20_000).await? else {
        report.line(
            "\nSSE streams: not measured (build `ifc` next to `ifc-bench` first: \
             `cargo build --release -p ifc`).",
        );
        return Ok(Vec::new());
    };
    let mut http_points = Vec::new();
    let idle = server.rss()?;
    let mut rows = String::from(
        "\n| open SSE streams | server RSS MB | growth since the row above MB | per added stream \
         KB |\n|---|---|---|---|\n",
    );
    let _ = writeln!(rows, "| 0 | {:.1} | — | — |", idle as f64 / 1e6);
    // Totals: each row opens the streams that bring the count up to it.
    let sizes: &[usize] = if smoke { &[100] } else { &[100, 1000, 10_000] };
    let mut http_kept = Vec::new();
    let mut open = 0;
    for (round, &count) in sizes.iter().enumerate() {
        let added = count - open;
        let (growth, streams) =
            realtime::http_idle_streams(&server.url, &server.admin, || server.rss(), added, round)
                .await?;
        open = count;
        let total = server.rss()?;
        let _ = writeln!(
            rows,
            "| {count} | {:.1} | {:.1} | {:.1} |",
            total as f64 / 1e6,
            growth as f64 / 1e6,
            growth as f64 / added as f64 / 1e3
        );
        println!("{count:>6} SSE streams: server RSS {:.1} MB", total as f64 / 1e6);
        http_points.push((count as f64, total.saturating_sub(idle) as f64 / 1e6));
        http_kept.push(streams);
    }
    report.text.push_str(&rows);
    let total = server.rss()?;
    let streams: usize = http_kept.iter().map(Vec::len).sum();
    let met = if streams < 10_000 { "not reached" } else { verdict(total <= 300_000_000) };
    report.line(&format!(
        "\n`ifc serve` with {streams} open SSE streams: {:.1} MB RSS (target for 10,000: ≤ 300 \
         MB: {met}).",
        total as f64 / 1e6,
    ));
    Ok(http_points)
}
