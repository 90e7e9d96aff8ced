//! The stores against their floors: the embedded store against the disk's
//! fsync, and our etcd store against raw etcd-client on the same etcd.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ifc_kv::{KvStore, PutRequest, RangeRequest, TxnOp, TxnRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::etcd::{BenchEtcd, ns};
use crate::floors::{disk_fsync, raw_cas, raw_put};
use crate::latency::{Summary, histogram, interleave, record, summary};
use crate::report::{Report, verdict};

/// Both storage sections.
pub async fn run(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    embedded(report, scale, work).await?;
    etcd(report, scale).await
}

async fn embedded(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    report.section(
        "Storage: embedded store (redb, group commit)",
        "Floor: this disk's 4 KiB `pwrite` + `fdatasync`, same directory as the store. \
         Target: single-writer durable txn p50 ≤ 1.5× the floor; 64 concurrent writers ≥ 30,000 \
         durable txn/s.",
    );
    let fsync = disk_fsync(work, 500 * scale)?;
    let store = Arc::new(EmbeddedStore::open(work.join("store"), EmbeddedOptions::default())?);
    let single = single_writer(store.as_ref(), 300 * scale).await?;
    report.latency_table(&[
        ("disk 4 KiB write + fdatasync (floor)", fsync, None),
        ("embedded put, 1 writer (durable)", single, Some(fsync)),
    ]);
    let mut rows =
        String::from("\n| concurrent writers | txn/s | p50 µs | p99 µs |\n|---|---|---|---|\n");
    let mut at_64 = 0.0;
    for writers in [1usize, 16, 64, 256] {
        let per_writer = (200 * scale * 64 / writers).max(20 * scale);
        let (rate, s) = concurrent_writers(store.clone(), writers, per_writer).await?;
        if writers == 64 {
            at_64 = rate;
        }
        let _ = writeln!(rows, "| {writers} | {rate:.0} | {:.0} | {:.0} |", s.p50, s.p99);
        println!("{writers:>4} writers: {rate:>8.0} txn/s  p50 {:.0}µs p99 {:.0}µs", s.p50, s.p99);
    }
    report.text.push_str(&rows);
    report.line(&format!(
        "\nVerdict: single-writer p50 ratio {:.2}× (target ≤ 1.5×: {}); 64 writers {:.0} txn/s \
         (target ≥ 30,000: {}).",
        single.p50 / fsync.p50,
        verdict(single.p50 / fsync.p50 <= 1.5),
        at_64,
        verdict(at_64 >= 30_000.0),
    ));
    Ok(())
}

async fn etcd(report: &mut Report, scale: usize) -> Result<()> {
    report.section(
        "Storage: etcd store vs raw etcd-client",
        "One etcd spawned on loopback (its data on the same disk). Each row interleaves a raw \
         etcd-client call and the same call through our `KvStore`, so both see the same \
         conditions. Target: the contract adds ≤ 5% to p50 and p99.",
    );
    let etcd = BenchEtcd::start(None).await;
    let ours = etcd.connect().await?;
    let mut raw = ours.client();
    // Warm both paths up.
    for _ in 0..50 {
        ours.range(RangeRequest::key("warm")).await?;
    }
    let key = |i: usize| ns(&format!("bench/put/{}", i % 100));
    let (our_put, raw_put) = interleave(
        300 * scale,
        async |i| Ok(ours.put(PutRequest::new(key(i), "v")).await.map(drop)?),
        async |i| raw_put(&mut raw, key(i)).await,
    )
    .await?;
    let (our_cas, raw_cas) = interleave(
        300 * scale,
        async |i| {
            let key = ns(&format!("bench/cas-ours/{i}"));
            let txn = TxnRequest::new()
                .when(ifc_kv::Compare::missing(key.clone()))
                .and_then(TxnOp::Put(PutRequest::new(key, "owner")));
            Ok(ours.txn(txn).await.map(drop)?)
        },
        async |i| raw_cas(&mut raw, ns(&format!("bench/cas/{i}"))).await,
    )
    .await?;
    report.latency_table(&[
        ("raw etcd-client put (floor)", raw_put, None),
        ("KvStore put on etcd", our_put, Some(raw_put)),
        ("raw etcd-client CAS txn (floor)", raw_cas, None),
        ("KvStore CAS txn on etcd", our_cas, Some(raw_cas)),
    ]);
    let worst = [
        our_put.p50 / raw_put.p50,
        our_put.p99 / raw_put.p99,
        our_cas.p50 / raw_cas.p50,
        our_cas.p99 / raw_cas.p99,
    ]
    .into_iter()
    .fold(0.0f64, f64::max);
    report.line(&format!(
        "\nVerdict: worst overhead ratio {worst:.3}× (target ≤ 1.05×: {}).",
        verdict(worst <= 1.05)
    ));
    Ok(())
}

async fn single_writer(store: &dyn KvStore, n: usize) -> Result<Summary> {
    let mut h = histogram();
    for i in 0..n {
        let started = Instant::now();
        store.put(PutRequest::new(format!("bench/single/{}", i % 1000), "x".repeat(100))).await?;
        record(&mut h, started);
    }
    Ok(summary(&h))
}

/// Runs `writers` tasks, each doing `per_writer` single-key txns; returns
/// throughput (txn/s) and the latency summary.
async fn concurrent_writers(
    store: Arc<dyn KvStore>,
    writers: usize,
    per_writer: usize,
) -> Result<(f64, Summary)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            for i in 0..per_writer {
                let t = Instant::now();
                let txn = TxnRequest::new().and_then(TxnOp::Put(PutRequest::new(
                    format!("bench/conc/{w}/{}", i % 100),
                    "v",
                )));
                store.txn(txn).await?;
                record(&mut h, t);
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for task in tasks {
        all.add(task.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(((writers * per_writer) as f64 / elapsed, summary(&all)))
}
