//! The coordinators the phases measure and the load they put on them: seeded
//! swarms and tasks, and concurrent claimers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ifc_core::{ClaimOutcome, Coordinator, CoreConfig, NewTask, Reaper};
use ifc_kv::KvStore;

use crate::etcd::ns;
use crate::latency::{Summary, histogram, record, summary};

/// A progress bar for a long step (drawn only on a terminal).
pub fn progress(len: usize, message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64).with_message(message);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A coordinator with `swarms` registered swarms and `tasks` ready tasks,
/// running its reaper as a node of `ifc serve` does (the reaper's watch also
/// feeds the node's snapshot cache); the reaper stops when dropped.
pub async fn seeded_coordinator(
    store: Arc<dyn KvStore>,
    swarms: usize,
    tasks: usize,
    namespace: &str,
) -> Result<(Arc<Coordinator>, Reaper)> {
    let config = CoreConfig {
        namespace: ns(namespace),
        max_swarms: swarms.max(1),
        claim_timeout_ms: 60_000,
        // Nothing heartbeats the bench's swarms; a day outlives any phase.
        swarm_ttl_secs: 86_400,
        ..CoreConfig::default()
    };
    let c = Arc::new(Coordinator::new(store, config));
    let reaper = Reaper::spawn(c.clone());
    for s in 0..swarms {
        c.register_swarm(&format!("s{s}"), Vec::new(), serde_json::Value::Null, None).await?;
    }
    let task = |t: usize| NewTask {
        task_id: format!("t{t}"),
        task_type: "bench".into(),
        metadata: serde_json::Value::Null,
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    };
    create_tasks(&c, 0..tasks, 16, format!("creating {tasks} tasks"), task).await?;
    Ok((c, reaper))
}

/// Creates the task `task(t)` for every `t` in `ids` through `create_task`,
/// `creators` at a time, with a progress bar.
pub async fn create_tasks(
    c: &Arc<Coordinator>,
    ids: std::ops::Range<usize>,
    creators: usize,
    message: String,
    task: fn(usize) -> NewTask,
) -> Result<()> {
    let bar = progress(ids.len(), message);
    let mut handles = Vec::new();
    for chunk in 0..creators {
        let (c, bar, ids) = (c.clone(), bar.clone(), ids.clone());
        handles.push(tokio::spawn(async move {
            for t in (ids.start + chunk..ids.end).step_by(creators) {
                c.create_task(task(t)).await?;
                bar.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    bar.finish_and_clear();
    Ok(())
}

/// `claimers` tasks each claiming `per_claimer` distinct tasks; returns
/// throughput (claims/s) and the latency summary.
pub async fn concurrent_claims(
    store: Arc<dyn KvStore>,
    claimers: usize,
    per_claimer: usize,
    namespace: &str,
) -> Result<(f64, Summary)> {
    let (c, _reaper) =
        seeded_coordinator(store, claimers, claimers * per_claimer, namespace).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..claimers {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            for i in 0..per_claimer {
                let t = Instant::now();
                match c.claim_task(&format!("s{w}"), &format!("t{}", w * per_claimer + i)).await? {
                    ClaimOutcome::Claimed(_) => {}
                    other => anyhow::bail!("unexpected {other:?}"),
                }
                record(&mut h, t);
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for task in tasks {
        all.add(task.await??)?;
    }
    Ok(((claimers * per_claimer) as f64 / started.elapsed().as_secs_f64(), summary(&all)))
}
