//! The retention soak: tasks flow through create → claim → complete with
//! retention on, and the store's size on disk is sampled as they go. With
//! retention the size must level off; without it, it grows with every task
//! (see "Claim latency with many stored tasks" for the size per stored task).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use ifc_core::{ClaimOutcome, Coordinator, CoreConfig, NewTask, Pruner, Retention};
use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};
use ifc_kv_etcd::{EtcdOptions, EtcdStore};

use crate::etcd::{self, BenchEtcd, ns};
use crate::report::{Report, verdict};
use crate::workload::progress;

/// Finished tasks are kept this long, then pruned.
const KEEP: Duration = Duration::from_secs(2);
/// Concurrent create → claim → complete loops.
const WORKERS: usize = 32;
/// Revisions of history both stores keep (etcd compacts every 5 s here).
const HISTORY: i64 = 20_000;

/// Which backends the soak runs on (both unless `--soak-on` says).
#[derive(Clone, Copy, Debug)]
pub struct Backends {
    pub embedded: bool,
    pub etcd: bool,
}

/// One backend's samples: (tasks completed, bytes on disk, finished tasks still stored).
pub type Samples = Vec<(usize, u64, i64)>;

/// Both backends; returns their size curves (thousands of tasks, MB) for the chart.
pub async fn run(
    report: &mut Report,
    smoke: bool,
    work: &Path,
    backends: Backends,
) -> Result<Vec<(&'static str, Vec<(f64, f64)>)>> {
    // A million on both, as the retention issue asks: etcd's soak is the long
    // pole (every task is four consensus writes, pruning included; about
    // 350 tasks/s on 2 cores, so ~50 min). `--only soak` reruns it alone.
    let (tasks, etcd_tasks) = if smoke { (3_000, 3_000) } else { (1_000_000, 1_000_000) };
    report.section(
        "Retention soak: storage levels off",
        &format!(
            "{} through create → claim → complete ({WORKERS} loops at once) with \
             retention on (finished tasks kept {}s, pruned every second). \
             The store's bytes on disk are sampled as the tasks go through: embedded is its \
             B-tree file (the write-ahead log is preallocated at a fixed 64 MiB), etcd is its member's backend file \
             (`member/snap/db`, which etcd never shrinks; freed pages are reused), with this \
             node compacting history to the last {HISTORY} revisions every 5 s \
             (`--etcd-owns-cluster`). Levelled off means: the size grew less than 20 % over \
             the second half of the run.",
            match (backends.embedded, backends.etcd) {
                (true, true) => {
                    format!("{tasks} tasks on the embedded store and {etcd_tasks} on etcd")
                }
                (true, false) => format!("{tasks} tasks on the embedded store (etcd not run)"),
                (false, _) => format!("{etcd_tasks} tasks on etcd (the embedded store not run)"),
            },
            KEEP.as_secs()
        ),
    );
    let mut rows = String::from(
        "| backend | tasks | final size | size at half-way | growth over 2nd half | \
         finished tasks still stored | tasks/s | levelled off |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut curves = Vec::new();

    // The soak's tasks/s per backend, for the pruner-alone table.
    let (mut embedded_soak, mut etcd_soak) = (None, None);
    if backends.embedded {
        let dir = work.join("soak");
        let options = EmbeddedOptions { history_retention: HISTORY, ..EmbeddedOptions::default() };
        let embedded: Arc<dyn KvStore> = Arc::new(EmbeddedStore::open(&dir, options)?);
        let size_dir = dir.clone();
        let (samples, rate) =
            soak(embedded, tasks, "soak", move || Some(dir_size(&size_dir))).await?;
        add_row(&mut rows, "embedded", tasks, &samples, rate);
        embedded_soak = Some(rate);
        curves.push(("embedded", curve(&samples)));
    }
    let etcd = BenchEtcd::start(None).await;
    if backends.etcd {
        let store: Arc<dyn KvStore> = Arc::new(connect_compacting(&etcd).await?);
        let db = etcd.db_file();
        let (samples, rate) =
            soak(store, etcd_tasks, &ns("soak"), move || db.as_deref().map(file_size)).await?;
        add_row(&mut rows, "etcd", etcd_tasks, &samples, rate);
        etcd_soak = Some(rate);
        curves.push(("etcd", curve(&samples)));
    }
    report.text.push_str(&rows);

    // Whether the pruner can keep up at all: one pass over finished tasks, timed.
    let alone = if smoke { 1_000 } else { 20_000 };
    let embedded: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(work.join("prune-alone"), EmbeddedOptions::default())?);
    let embedded_rate = prune_alone(embedded, alone, "prune-alone").await?;
    let etcd_rate =
        prune_alone(Arc::new(connect_compacting(&etcd).await?), alone, &ns("prune-alone")).await?;
    let _ = write!(
        report.text,
        "\nThe pruner alone: {alone} tasks finished with retention off, then one prune pass \
         over all of them, timed, with nothing else running (the soak's rate is with its 32 \
         loops and the pruner sharing the store). It keeps up while it prunes faster than \
         tasks finish.\n\n\
         | backend | tasks pruned/s, one pass | soak's tasks/s |\n|---|---|---|\n\
         | embedded | {embedded_rate:.0} | {} |\n| etcd | {etcd_rate:.0} | {} |\n",
        rate_or_dash(embedded_soak),
        rate_or_dash(etcd_soak),
    );
    println!("pruner alone: embedded {embedded_rate:.0} tasks/s, etcd {etcd_rate:.0} tasks/s");
    if etcd::external_endpoints().is_some() {
        report.line(
            "\netcd is an external cluster here: its file is not ours to measure, and this \
             node does not compact it (it may be shared).",
        );
    }
    Ok(curves)
}

fn rate_or_dash(rate: Option<f64>) -> String {
    rate.map_or_else(|| "— (not run)".into(), |r| format!("{r:.0}"))
}

/// Spawns the create → claim → complete loops for `tasks` tasks, counting
/// each finished task in `done`.
fn finish_tasks(
    c: &Arc<Coordinator>,
    tasks: usize,
    done: &Arc<AtomicUsize>,
    bar: &indicatif::ProgressBar,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..WORKERS)
        .map(|w| {
            let (c, done, bar) = (c.clone(), done.clone(), bar.clone());
            tokio::spawn(async move {
                let swarm = format!("soak-{w}");
                for t in (w..tasks).step_by(WORKERS) {
                    let id = format!("soak-{t}");
                    c.create_task(NewTask {
                        task_id: id.clone(),
                        task_type: "soak".into(),
                        metadata: serde_json::json!({"n": t, "prompt": "summarise the document"}),
                        required_capabilities: Vec::new(),
                        priority: 0,
                        max_attempts: None,
                        timeout_ms: None,
                    })
                    .await?;
                    let ClaimOutcome::Claimed(claim) = c.claim_task(&swarm, &id).await? else {
                        anyhow::bail!("task {id} was not claimable");
                    };
                    c.complete_task(&swarm, &id, claim.token, serde_json::json!({"ok": true}))
                        .await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                }
                anyhow::Ok(())
            })
        })
        .collect()
}

/// A coordinator on `namespace` with the loops' swarms registered; claims
/// and swarms that cannot lapse during a run.
async fn coordinator(store: Arc<dyn KvStore>, namespace: &str) -> Result<Arc<Coordinator>> {
    let config = CoreConfig {
        namespace: namespace.into(),
        claim_timeout_ms: 600_000,
        // Nothing heartbeats these swarms, and a million tasks on etcd take
        // over an hour on 2 cores: a day, so no run outlives its swarms.
        swarm_ttl_secs: 86_400,
        ..CoreConfig::default()
    };
    let c = Arc::new(Coordinator::new(store, config));
    for w in 0..WORKERS {
        c.register_swarm(&format!("soak-{w}"), Vec::new(), serde_json::Value::Null, None).await?;
    }
    Ok(c)
}

/// The pruner alone: `tasks` tasks finished with retention off, then one
/// timed prune pass over all of them. Returns tasks pruned per second, which
/// the soak's rate must stay under for the pruner to keep up.
async fn prune_alone(store: Arc<dyn KvStore>, tasks: usize, namespace: &str) -> Result<f64> {
    let c = coordinator(store, namespace).await?;
    let keep = Duration::from_secs(1);
    let retention = Retention { keep, every: keep, archive: None };
    // A first pass on the empty namespace marks its finished-time index
    // complete, as a running pruner has long since; otherwise the timed pass
    // would first walk every finished task to index it.
    c.prune_finished(&retention).await?;
    let bar = progress(tasks, format!("pruner alone: finishing {tasks} tasks"));
    for l in finish_tasks(&c, tasks, &Arc::new(AtomicUsize::new(0)), &bar) {
        l.await??;
    }
    bar.finish_and_clear();
    tokio::time::sleep(keep + Duration::from_millis(100)).await;
    let started = Instant::now();
    let pruned = c.prune_finished(&retention).await? as usize;
    let rate = pruned as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(pruned == tasks, "one prune pass removed {pruned} of {tasks} finished tasks");
    Ok(rate)
}

/// An etcd store that compacts history itself, as `--etcd-owns-cluster` does;
/// never on an external cluster, which may be shared.
async fn connect_compacting(etcd: &BenchEtcd) -> Result<EtcdStore> {
    let mut options = EtcdOptions::new(etcd.endpoints().to_vec());
    options.owns_cluster = etcd::external_endpoints().is_none();
    options.history_retention = Some(HISTORY);
    options.compaction_interval = Duration::from_secs(5);
    Ok(EtcdStore::connect(options).await?)
}

/// Runs `tasks` tasks through with retention on, sampling `size` (bytes on
/// disk, if measurable) about 50 times; returns the samples and tasks/s.
async fn soak(
    store: Arc<dyn KvStore>,
    tasks: usize,
    namespace: &str,
    size: impl Fn() -> Option<u64> + Send + 'static,
) -> Result<(Samples, f64)> {
    let c = coordinator(store, namespace).await?;
    let retention = Retention { keep: KEEP, every: Duration::from_secs(1), archive: None };
    let _pruner = Pruner::spawn(c.clone(), retention);
    let done = Arc::new(AtomicUsize::new(0));
    let bar = progress(tasks, format!("soak: {tasks} tasks with retention"));
    let started = Instant::now();
    let loops = finish_tasks(&c, tasks, &done, &bar);
    let mut samples = Samples::new();
    let step = (tasks / 50).max(1);
    let mut next = 0;
    while loops.iter().any(|l| !l.is_finished()) {
        let now = done.load(Ordering::Relaxed);
        if now >= next {
            let stored = c.task_counts().await?.completed;
            samples.push((now, size().unwrap_or(0), stored));
            next = now + step;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in loops {
        l.await??;
    }
    let rate = tasks as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // One more retention period, so the last sample shows what retention leaves.
    tokio::time::sleep(KEEP + Duration::from_secs(2)).await;
    samples.push((tasks, size().unwrap_or(0), c.task_counts().await?.completed));
    let problems = c.verify_witness().await?;
    anyhow::ensure!(problems.is_empty(), "witness verify after the soak: {problems:?}");
    Ok((samples, rate))
}

fn add_row(rows: &mut String, backend: &str, tasks: usize, samples: &Samples, rate: f64) {
    let (_, last, stored) = *samples.last().expect("at least the final sample");
    let half = samples.iter().find(|s| s.0 >= tasks / 2).map_or(last, |s| s.1);
    let growth = if half == 0 { 0.0 } else { (last as f64 - half as f64) / half as f64 };
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let measured = last > 0;
    let _ = writeln!(
        rows,
        "| {backend} | {tasks} | {} | {} | {} | {stored} | {rate:.0} | {} |",
        if measured { mb(last) } else { "—".into() },
        if measured { mb(half) } else { "—".into() },
        if measured { format!("{:+.0} %", growth * 100.0) } else { "—".into() },
        if measured { verdict(growth < 0.2) } else { "not measured" },
    );
    println!(
        "soak {backend}: {tasks} tasks at {rate:.0}/s, {} on disk ({:+.0} % over the second \
         half), {stored} finished tasks still stored",
        mb(last),
        growth * 100.0
    );
}

/// (thousands of tasks, MB) for the chart.
fn curve(samples: &Samples) -> Vec<(f64, f64)> {
    samples.iter().map(|&(t, b, _)| (t as f64 / 1e3, b as f64 / 1e6)).collect()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Every file in `dir` but the write-ahead log, which is preallocated at a
/// fixed size (not recursive: the embedded store keeps nothing deeper).
fn dir_size(dir: &PathBuf) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with("wal"))
        .map(|e| file_size(&e.path()))
        .sum()
}
