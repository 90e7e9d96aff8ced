//! Peers in the same run: our claim_next over HTTP (embedded store) beside a
//! Postgres `SKIP LOCKED` queue and a Redis `BLMOVE` queue on this machine,
//! at 1 and 64 clients, each claim durable when answered.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::latency::{Summary, histogram, record, summary};
use crate::peers::{postgres, redis};
use crate::realtime::{self, LocalServer};
use crate::report::Report;

pub async fn run(report: &mut Report, scale: usize, work: &Path) -> Result<()> {
    report.section(
        "Peers: what a user would pick instead",
        "The same job, \"take the next ready job, durably\", on this machine in this run: our \
         `claim_next` through HTTP on the embedded store (the Rust client); Postgres (the \
         River/Oban/graphile-worker design: `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP \
         LOCKED LIMIT 1) RETURNING`, autocommit, default `fsync` and `synchronous_commit`); \
         Redis (BullMQ's primitive: `BLMOVE wait active`, `appendonly yes`, `appendfsync \
         always`). Each is a real server on a loopback port; clients are async connections in \
         this process. \"Ours ÷ peer\" is our p50 over theirs at 1 client (below 1: we answer \
         sooner) and our claims/s over theirs at 64 clients (above 1: we do more).",
    );
    let (one, many) = (100 * scale, 10 * scale);
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("peers"), EmbeddedOptions::default())?);
    let server = realtime::local_server(store, 1_000).await?;
    let (_, ours_one) = our_claims(&server, "one", 1, one).await?;
    let (ours_rate, ours_many) = our_claims(&server, "many", 64, many).await?;
    println!("peers: ours 1 client p50 {:.0}µs; 64 clients {ours_rate:.0}/s", ours_one.p50);

    let mut table = String::from(
        "\n| system | 1 client p50 µs | 1 client p99 µs | 64 clients claims/s | 64 clients p99 µs \
         | ours ÷ peer, 1 client p50 | ours ÷ peer, 64 clients claims/s |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    table.push_str(&format!(
        "| IF.coordinator (HTTP, embedded) | {:.0} | {:.0} | {ours_rate:.0} | {:.0} | – | – |\n",
        ours_one.p50, ours_one.p99, ours_many.p99
    ));
    let mut missing = Vec::new();
    match postgres::Postgres::start().await? {
        Some(pg) => {
            let (_, p_one) = pg.claims(1, one).await?;
            let (p_rate, p_many) = pg.claims(64, many).await?;
            println!("peers: postgres 1 client p50 {:.0}µs; 64 clients {p_rate:.0}/s", p_one.p50);
            table.push_str(&peer_row(
                "Postgres SKIP LOCKED",
                (p_one, p_rate, p_many),
                (ours_one, ours_rate),
            ));
        }
        None => missing.push(postgres::INSTALL),
    }
    match redis::Redis::start().await? {
        Some(r) => {
            let (_, r_one) = r.claims(1, one).await?;
            let (r_rate, r_many) = r.claims(64, many).await?;
            println!("peers: redis 1 client p50 {:.0}µs; 64 clients {r_rate:.0}/s", r_one.p50);
            table.push_str(&peer_row(
                "Redis BLMOVE, appendfsync always",
                (r_one, r_rate, r_many),
                (ours_one, ours_rate),
            ));
        }
        None => missing.push(redis::INSTALL),
    }
    report.text.push_str(&table);
    if !missing.is_empty() {
        report.line(&format!(
            "\nMissing peers (rows left out): install with `{}` (`scripts/bench.sh` does).",
            missing.join("`, `")
        ));
    }
    Ok(())
}

fn peer_row(name: &str, peer: (Summary, f64, Summary), ours: (Summary, f64)) -> String {
    let (one, rate, many) = peer;
    format!(
        "| {name} | {:.0} | {:.0} | {rate:.0} | {:.0} | {:.2} | {:.2} |\n",
        one.p50,
        one.p99,
        many.p99,
        ours.0.p50 / one.p50,
        ours.1 / rate
    )
}

/// `clients` swarms each taking `per_client` tasks with `claim_next`, from a
/// queue filled with exactly that many. Returns (claims/s, latency).
async fn our_claims(
    server: &LocalServer,
    tag: &str,
    clients: usize,
    per_client: usize,
) -> Result<(f64, Summary)> {
    let mut swarms = Vec::new();
    for w in 0..clients {
        let id = format!("peers-{tag}-{w}");
        swarms.push(server.admin.register_swarm(&id, &[], serde_json::Value::Null).await?);
    }
    let total = clients * per_client;
    let mut creators = Vec::new();
    for lane in 0..16 {
        let (admin, tag) = (server.admin.clone(), tag.to_string());
        creators.push(tokio::spawn(async move {
            for t in (lane..total).step_by(16) {
                admin.create_task(realtime::task(format!("peers-{tag}-task-{t}"))).await?;
            }
            anyhow::Ok(())
        }));
    }
    for creator in creators {
        creator.await??;
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for swarm in &swarms {
        let client = (**swarm).clone();
        workers.push(tokio::spawn(async move {
            let mut h = histogram();
            for _ in 0..per_client {
                let t = Instant::now();
                if client.claim_next().await?.is_none() {
                    bail!("ours: the queue ran dry");
                }
                record(&mut h, t);
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for worker in workers {
        all.add(worker.await??)?;
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), summary(&all)))
}
