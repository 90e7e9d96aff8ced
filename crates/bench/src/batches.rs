//! Batches through HTTP: tasks created 1,000 to a request and claimed 32 to
//! a request, by several clients at once.

use std::time::Instant;

use anyhow::Result;

use crate::latency::{Summary, histogram, record, summary};
use crate::realtime::{LocalServer, task};

/// `clients` orchestrators creating `total` tasks between them, `batch` to a
/// request. Returns (tasks/s, latency of one request).
pub async fn http_create_batches(
    server: &LocalServer,
    total: usize,
    batch: usize,
    clients: usize,
) -> Result<(f64, Summary)> {
    let batches = total.div_ceil(batch);
    let started = Instant::now();
    let mut senders = Vec::new();
    for client in 0..clients {
        let admin = server.admin.clone();
        senders.push(tokio::spawn(async move {
            let mut h = histogram();
            for b in (client..batches).step_by(clients) {
                let ids = b * batch..((b + 1) * batch).min(total);
                let tasks = ids.map(|i| task(format!("batch-{i:07}"))).collect();
                let sent = Instant::now();
                let results = admin.create_tasks(tasks).await?;
                record(&mut h, sent);
                if let Some(failed) = results.iter().find(|r| r.error.is_some()) {
                    anyhow::bail!("a batch create failed: {:?}", failed.error);
                }
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for sender in senders {
        all.add(sender.await??)?;
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), summary(&all)))
}

/// `clients` swarms claiming `batch` tasks to a request until the pool is
/// empty (`expected` tasks in all). Returns (tasks/s, latency of one request).
pub async fn http_claim_batches(
    server: &LocalServer,
    expected: usize,
    batch: u32,
    clients: usize,
) -> Result<(f64, Summary)> {
    let mut swarms = Vec::new();
    for w in 0..clients {
        let swarm = format!("batch-claimer-{w}");
        swarms.push(server.admin.register_swarm(&swarm, &[], serde_json::Value::Null).await?);
    }
    let started = Instant::now();
    let mut claimers = Vec::new();
    for swarm in swarms {
        claimers.push(tokio::spawn(async move {
            let (mut h, mut claimed) = (histogram(), 0);
            loop {
                let sent = Instant::now();
                // Guards renew until dropped; the bench only counts claims.
                let guards = swarm.claim_batch(batch).await?;
                record(&mut h, sent);
                if guards.is_empty() {
                    return anyhow::Ok((h, claimed));
                }
                claimed += guards.len();
            }
        }));
    }
    let (mut all, mut claimed) = (histogram(), 0);
    for claimer in claimers {
        let (h, n) = claimer.await??;
        all.add(h)?;
        claimed += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(claimed == expected, "claimed {claimed} of {expected} tasks");
    Ok((claimed as f64 / elapsed, summary(&all)))
}
