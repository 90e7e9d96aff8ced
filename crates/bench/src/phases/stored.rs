//! Claim latency with 1k to 1M stored ready tasks on both backends: a claim
//! by id, claim_next from the head of the queue and a `list_tasks` page, each
//! of which should stay flat as the queue deepens; and the store's size on
//! disk per task.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ifc_core::{ClaimOutcome, Coordinator, CoreConfig, NewTask, TaskState};
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::etcd::{self, BenchEtcd, ns};
use crate::latency::{Summary, histogram, record, summary};
use crate::report::{Report, verdict};
use crate::workload::create_tasks;

/// etcd gets its own member with an 8 GiB backend quota: a million tasks come
/// close to etcd's default of 2 GiB.
pub async fn run(report: &mut Report, smoke: bool, work: &Path) -> Result<()> {
    let quota = if etcd::external_endpoints().is_some() {
        "etcd is the external cluster, with whatever backend quota it has."
    } else {
        "etcd runs with `--quota-backend-bytes` of 8 GiB: a million tasks come close to its \
         default of 2 GiB, and the quota is not what is measured."
    };
    report.section(
        "Claim latency with many stored tasks",
        &format!(
            "Latency after the store holds this many ready tasks (created through \
             `create_task`, so with their indexes and witness records), on both backends: \
             `claim_task` of a given task, `claim_next` from the head of the queue (tasks with \
             no required capabilities, priorities 0–6) and the first `list_tasks` page of 100 \
             ready tasks. Each should stay flat as the queue deepens (target: claim_next and \
             list p50 at 1M ≤ 1.3× p50 at 1k): none of them may walk the queue. {quota} \
             \"on disk per task\" is the store's file size divided by the tasks stored, after \
             the largest row."
        ),
    );
    let sizes: &[usize] = if smoke { &[1000] } else { &[1_000, 10_000, 100_000, 1_000_000] };
    let mut rows = String::from(
        "| backend | stored tasks | claim_task p50 / p99 µs | claim_next p50 / p99 µs | \
         list page p50 / p99 µs | on disk per task |\n|---|---|---|---|---|---|\n",
    );
    let mut verdicts = Vec::new();

    let dir = work.join("stored");
    let embedded: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(&dir, EmbeddedOptions::default())?);
    let results = claim_vs_stored(embedded.clone(), sizes, 1000, "ifc").await?;
    drop(embedded);
    // Closed, so the B-tree holds everything (the log's segments are
    // preallocated and reused, so only the B-tree counts).
    let embedded_bytes: u64 = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| !ifc_kv_embedded::WAL_FILES.iter().any(|wal| e.file_name() == *wal))
        .map(|e| file_size(&e.path()))
        .sum();
    add_rows(&mut rows, "embedded", "stored embedded", &results, Some(embedded_bytes));
    verdicts.extend(flatness("embedded", &results));

    let etcd = BenchEtcd::start(Some(8 << 30)).await;
    let store: Arc<dyn KvStore> = Arc::new(etcd.connect().await?);
    let results = claim_vs_stored(store, sizes, 1000, "stored").await?;
    // etcd's file only grows (freed pages are reused, not returned), so its size
    // now is the size after the largest row.
    let etcd_bytes = etcd.db_file().map(|db| file_size(&db));
    add_rows(&mut rows, "etcd", "stored on etcd", &results, etcd_bytes);
    verdicts.extend(flatness("etcd", &results));
    report.text.push_str(&rows);
    report.text.push('\n');
    for line in verdicts {
        report.line(&line);
    }
    Ok(())
}

/// The latencies probed at one size of the queue.
struct Probed {
    size: usize,
    claim_task: Summary,
    claim_next: Summary,
    list_page: Summary,
}

/// Verdict lines: claim_next and the list page at the largest size against the
/// smallest (the target is ≤ 1.3×).
fn flatness(backend: &str, results: &[Probed]) -> Vec<String> {
    let (Some(small), Some(large)) = (results.first(), results.last()) else { return Vec::new() };
    if small.size == large.size {
        return Vec::new();
    }
    let line = |what: &str, at: fn(&Probed) -> &Summary| {
        let ratio = at(large).p50 / at(small).p50;
        format!(
            "Verdict ({backend}): {what} p50 at {} tasks is {ratio:.2}× p50 at {} (≤ 1.3: {}).",
            large.size,
            small.size,
            verdict(ratio <= 1.3)
        )
    };
    vec![line("claim_next", |p| &p.claim_next), line("list page", |p| &p.list_page)]
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// One row per size; the last (largest) also shows `bytes` per task stored.
fn add_rows(rows: &mut String, backend: &str, label: &str, results: &[Probed], bytes: Option<u64>) {
    for (i, p) in results.iter().enumerate() {
        let size = p.size;
        let disk = match bytes {
            Some(bytes) if i + 1 == results.len() => {
                format!("{:.1} KB", bytes as f64 / size as f64 / 1e3)
            }
            _ => "—".into(),
        };
        let pair = |s: &Summary| format!("{:.0} / {:.0}", s.p50, s.p99);
        let _ = writeln!(
            rows,
            "| {backend} | {size} | {} | {} | {} | {disk} |",
            pair(&p.claim_task),
            pair(&p.claim_next),
            pair(&p.list_page)
        );
        println!(
            "{size:>8} {label}: claim_task {} claim_next {} list {} (p50 / p99 µs)",
            pair(&p.claim_task),
            pair(&p.claim_next),
            pair(&p.list_page)
        );
    }
}

/// claim_task, claim_next and list_tasks latency after the store holds each
/// of `sizes` ready tasks.
async fn claim_vs_stored(
    store: Arc<dyn KvStore>,
    sizes: &[usize],
    probes: usize,
    namespace: &str,
) -> Result<Vec<Probed>> {
    let config = CoreConfig {
        namespace: ns(namespace),
        claim_timeout_ms: 600_000,
        // Nothing heartbeats the bench's swarms; a day outlives any phase.
        swarm_ttl_secs: 86_400,
        ..CoreConfig::default()
    };
    let c = Arc::new(Coordinator::new(store, config));
    c.register_swarm("prober", Vec::new(), serde_json::Value::Null, None).await?;
    let mut created = 0;
    let mut results = Vec::new();
    for (round, &size) in sizes.iter().enumerate() {
        let task = |t: usize| NewTask {
            task_id: format!("stored-{t}"),
            task_type: "bench".into(),
            metadata: serde_json::json!({"n": t}),
            required_capabilities: Vec::new(),
            priority: (t % 7) as i32,
            max_attempts: None,
            timeout_ms: None,
        };
        create_tasks(&c, created..size, 32, format!("seeding {size} tasks"), task).await?;
        created = size;
        // A quarter of the queue at most for each kind of claim, so the queue
        // is still deep (and a list page full) when it is probed.
        let claims = probes.min(size / 4).max(1);
        let mut h = histogram();
        for p in 0..claims {
            // Spread the probes over the whole key space with stride size/claims,
            // offset by the round, so a probe rarely meets a task claimed before
            // (one that was is answered AlreadyClaimed, also a full read).
            let id = format!("stored-{}", (p * (size / claims).max(1) + round) % size);
            let t = Instant::now();
            match c.claim_task("prober", &id).await? {
                ClaimOutcome::Claimed(_) | ClaimOutcome::AlreadyClaimed { .. } => {}
                other => anyhow::bail!("{other:?}"),
            }
            record(&mut h, t);
        }
        let claim_task = summary(&h);
        // Each claim_next takes the head of the queue: only its head moves.
        let mut h = histogram();
        for _ in 0..claims {
            let t = Instant::now();
            c.claim_next("prober").await?.ok_or_else(|| anyhow::anyhow!("queue empty"))?;
            record(&mut h, t);
        }
        let claim_next = summary(&h);
        let mut h = histogram();
        for _ in 0..probes / 5 {
            let t = Instant::now();
            let page = c.list_tasks(TaskState::Ready, None, 100).await?;
            record(&mut h, t);
            anyhow::ensure!(page.tasks.len() == 100, "a full page of ready tasks");
        }
        results.push(Probed { size, claim_task, claim_next, list_page: summary(&h) });
    }
    Ok(results)
}
