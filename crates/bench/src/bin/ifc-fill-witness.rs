//! `ifc-fill-witness`: writes N witness records straight into a store, as the
//! service would have written them, so `ifc witness verify` can be measured on
//! a log of any size without running the workload that makes it (the fault
//! suite's witness-scale phase, `tests/faults/witness_scale.py`).
//!
//! Each task gets one chain of `task_created` → `task_claimed` →
//! `task_completed`, sealed by the core's own [`Entry::seal`] (same hashing,
//! same keys, same head), each step its own committed txn, so records carry
//! increasing revisions and the completion carries the claim's revision as its
//! token, exactly as a claim's fencing token is made. When N is not a multiple
//! of 3 the last task stops early (created, or created and claimed): a task in
//! flight. Only the witness log is written (no task records or indexes): it is
//! all that verify reads.
//!
//! Example: `ifc-fill-witness --data-dir /tmp/d --records 1000000`
//! (or `--etcd http://127.0.0.1:2379 --namespace big`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use ifc_core::keys::{Keys, task_chain};
use ifc_core::witness::{Entry, Head, WitnessOp};
use ifc_kv::{KvStore, RangeRequest, TxnRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};
use serde_json::json;

/// Records per chain: created, claimed, completed.
const STEPS: u64 = 3;

/// Swarms the claims are spread over.
const SWARMS: u64 = 16;

/// The tasks' claim lease (`ifc serve`'s default).
const TIMEOUT_MS: i64 = 5000;

/// Flags named as `ifc serve`'s, reading the same environment variables.
#[derive(Parser)]
#[command(name = "ifc-fill-witness", about = "Writes N witness records into a store")]
struct Args {
    /// Data directory of the embedded store (used without `--etcd`).
    #[arg(long, env = "IFC_DATA_DIR", default_value = "./ifc-data")]
    data_dir: PathBuf,
    /// etcd endpoints, comma-separated; without it the embedded store is used.
    #[arg(long, env = "IFC_ETCD")]
    etcd: Option<String>,
    /// etcd connect and request timeout in seconds.
    #[arg(long, env = "ETCD_TIMEOUT", default_value_t = 10)]
    etcd_timeout: u64,
    /// Key prefix of the deployment to fill (must hold no witness log yet).
    #[arg(long, env = "IFC_NAMESPACE", default_value = "ifc")]
    namespace: String,
    /// Witness records to write.
    #[arg(long)]
    records: u64,
    /// Tasks per txn: each task's step is 2 puts (record and head), so 64
    /// tasks fill the 128-op cap of one txn.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=64))]
    batch: u64,
    /// Batches written at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    in_flight: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (store, described) = open(&args).await?;
    let keys = Keys::new(&args.namespace);
    let existing = store.range(RangeRequest::prefix(keys.witness_all()).with_limit(1)).await?;
    ensure!(
        existing.kvs.is_empty(),
        "namespace {:?} in the {described} already has a witness log; fill an empty one",
        args.namespace
    );

    let tasks = args.records.div_ceil(STEPS);
    let batches = tasks.div_ceil(args.batch);
    let started = Instant::now();
    let txns = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let filler = Filler { store: &*store, keys: &keys, records: args.records, txns: &txns };
    let progress = async {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            eprintln!(
                "{} of {tasks} tasks in {:.0} s",
                done.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
    };
    let fill = stream::iter(0..batches)
        .map(|b| {
            let first = b * args.batch;
            let last = (first + args.batch).min(tasks);
            let filler = &filler;
            let done = &done;
            async move {
                filler.batch(first..last).await?;
                done.fetch_add(last - first, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(usize::try_from(args.in_flight)?)
        .try_collect::<()>();
    tokio::select! {
        filled = fill => filled?,
        () = progress => unreachable!("progress never ends"),
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("wrote {} records ({tasks} tasks) into the {described}", args.records);
    // What was written, as one JSON line on stdout.
    let txns = txns.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({"records": args.records, "tasks": tasks, "txns": txns, "seconds": seconds})
    );
    // The last handle closes the embedded store (its writer checkpoints).
    drop(store);
    Ok(())
}

/// Opens the store the way `ifc serve` does for the same flags.
async fn open(args: &Args) -> Result<(Arc<dyn KvStore>, String)> {
    let endpoints: Vec<String> = args
        .etcd
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    if endpoints.is_empty() {
        let store =
            EmbeddedStore::open(&args.data_dir, EmbeddedOptions::default()).with_context(|| {
                format!("opening the embedded store in {}", args.data_dir.display())
            })?;
        return Ok((Arc::new(store), format!("embedded store in {}", args.data_dir.display())));
    }
    let mut options = ifc_kv_etcd::EtcdOptions::new(endpoints.clone());
    options.connect_timeout = Duration::from_secs(args.etcd_timeout);
    options.request_timeout = Duration::from_secs(args.etcd_timeout);
    let store = ifc_kv_etcd::EtcdStore::connect(options)
        .await
        .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
    Ok((Arc::new(store), format!("etcd at {}", endpoints.join(","))))
}

/// Writes the chains of a range of tasks.
struct Filler<'a> {
    store: &'a dyn KvStore,
    keys: &'a Keys,
    /// Records in all: the last task's chain stops where they run out.
    records: u64,
    txns: &'a AtomicU64,
}

impl Filler<'_> {
    /// Tasks `range` through their steps, one txn per step for all of them.
    async fn batch(&self, range: std::ops::Range<u64>) -> Result<()> {
        let mut heads: Vec<Head> = range.clone().map(|_| Head::empty()).collect();
        let mut claim_token = 0;
        for step in 0..STEPS {
            let mut txn = TxnRequest::new();
            for (task, head) in range.clone().zip(heads.iter_mut()) {
                if task * STEPS + step >= self.records {
                    continue;
                }
                let task_id = format!("fill-{task:09}");
                let swarm = format!("fill-swarm-{}", task % SWARMS);
                let (record, ops) = entry(step, &task_id, &swarm, claim_token).seal(
                    self.keys,
                    &task_chain(&task_id),
                    head,
                )?;
                *head = Head { seq: record.seq, hash: record.hash };
                txn.success.extend(ops);
            }
            if txn.success.is_empty() {
                break;
            }
            // The claim step's revision is its claims' fencing token.
            claim_token = self.store.txn(txn).await?.revision;
            self.txns.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The record the service writes at `step` of a task's life (the same fields
/// as `task.rs` and `claim.rs` fill in).
fn entry(step: u64, task_id: &str, swarm: &str, claim_token: i64) -> Entry {
    match step {
        0 => Entry {
            op: WitnessOp::TaskCreated,
            actor: "orchestrator".into(),
            task_id: Some(task_id.into()),
            swarm_id: None,
            token: None,
            outcome: "ready".into(),
            detail: json!({"task_type": "fill", "priority": 0,
                "required_capabilities": ["fill:work"], "max_attempts": 3, "timeout_ms": TIMEOUT_MS}),
        },
        1 => Entry {
            op: WitnessOp::TaskClaimed,
            actor: swarm.into(),
            task_id: Some(task_id.into()),
            swarm_id: Some(swarm.into()),
            // A claim's token is its own commit revision, filled in on read.
            token: None,
            outcome: "claimed".into(),
            detail: json!({"attempt": 1, "deadline_ms": now_ms() + TIMEOUT_MS}),
        },
        _ => Entry::by_holder(
            WitnessOp::TaskCompleted,
            swarm,
            task_id,
            claim_token,
            "completed",
            json!({"result_bytes": 2}),
        ),
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
