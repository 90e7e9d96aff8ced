//! `ifc-bench`: measures our figures beside the floor under them, in one run, and
//! writes the report to `docs/BENCHMARKS.md`.
//!
//! Floors: the disk's own 4 KiB write + fdatasync, and raw etcd-client calls on
//! the same etcd. Every figure of ours is printed with its floor and the ratio.
//! `--smoke` runs a few seconds (CI runs it so the harness cannot rot).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;

mod batches;
mod chart;
mod etcd;
mod floors;
mod latency;
mod machine;
mod peers;
mod phases;
mod python;
mod realtime;
mod report;
mod workload;

use report::Report;

#[derive(Parser)]
#[command(name = "ifc-bench", about = "IF.coordinator benchmarks against their floors")]
struct Args {
    /// A few seconds in all; for CI.
    #[arg(long)]
    smoke: bool,
    /// Where to write the Markdown report (nothing is written if absent).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory for the embedded store and the fsync probe (same disk as data).
    #[arg(long, default_value = "target/bench-data")]
    work_dir: PathBuf,
    /// Run the etcd phases against this cluster (repeatable, one URL per
    /// member) instead of spawning a member on loopback per phase. Each phase
    /// writes under a prefix of its own (`ifc-bench-<time>-<phase>-`); the
    /// million-task phase needs a backend quota above etcd's default 2 GiB.
    #[arg(long = "etcd", value_name = "URL")]
    etcd: Vec<String>,
    /// Run only these phases (repeatable). With `--out`, the report holds
    /// just these phases and names the command, and its charts are written
    /// beside the full report's under names of their own (`<report>-*.svg`),
    /// so a partial rerun never overwrites the full run's charts.
    #[arg(long, value_enum)]
    only: Vec<Phase>,
    /// The soak on these backends only (repeatable; default both).
    #[arg(long, value_enum)]
    soak_on: Vec<Backend>,
}

/// A store backend, for `--soak-on`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Backend {
    Embedded,
    Etcd,
}

/// The benchmark's phases, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Phase {
    /// Idle subscriptions and memory (runs first, before other phases grow the heap).
    Subscriptions,
    /// The seed's latency table on both backends, in process and over HTTP.
    Seed,
    /// The stores against the disk's fsync and raw etcd-client.
    Storage,
    /// claim, push and blocker on etcd against raw etcd, and etcd claimers.
    Etcd,
    /// Embedded claimers and real-time delivery.
    Embedded,
    /// Through HTTP on the embedded store.
    Http,
    /// Our claim_next beside Postgres SKIP LOCKED and Redis BLMOVE.
    Peers,
    /// The dashboard's first load and its memory cost.
    Dashboard,
    /// Claim latency with many stored tasks, on both backends.
    Stored,
    /// Tasks through create → claim → complete with retention on: size over time.
    Soak,
}

impl Args {
    fn runs(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.etcd.is_empty() {
        etcd::use_external(args.etcd.clone());
    }
    let start_rss = realtime::rss_bytes();
    ifc_client::install_crypto_provider();
    let scale = if args.smoke { 1 } else { 10 };
    std::fs::create_dir_all(&args.work_dir)?;
    let work = tempfile::tempdir_in(&args.work_dir).context("work directory")?;
    let work = work.path();
    // The command as given, so the report names exactly what produced it.
    let given: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("scripts/bench.sh {}", given.join(" "));
    let mut machine = machine::describe();
    if let Some(endpoints) = etcd::external_endpoints() {
        machine.push_str(&machine::external_etcd(endpoints).await?);
    }
    let mut report = Report::new(command.trim_end(), &machine::now_utc(), &machine);

    let rss_curves = if args.runs(Phase::Subscriptions) {
        phases::subscriptions::run(&mut report, args.smoke, work, start_rss).await?
    } else {
        Default::default()
    };
    if args.runs(Phase::Seed) {
        phases::seed::run(&mut report, scale, work).await?;
    }
    if args.runs(Phase::Storage) {
        phases::storage::run(&mut report, scale, work).await?;
    }
    let etcd_curve =
        if args.runs(Phase::Etcd) { phases::etcd::run(&mut report, scale).await? } else { vec![] };
    let claim_curve = if args.runs(Phase::Embedded) {
        phases::embedded::run(&mut report, scale, work).await?
    } else {
        vec![]
    };
    if args.runs(Phase::Http) {
        phases::http::run(&mut report, scale, work).await?;
    }
    if args.runs(Phase::Peers) {
        phases::peers::run(&mut report, scale, work).await?;
    }
    if args.runs(Phase::Dashboard) {
        phases::dashboard::run(&mut report, args.smoke).await?;
    }
    if args.runs(Phase::Stored) {
        phases::stored::run(&mut report, args.smoke, work).await?;
    }
    let soak_curves = if args.runs(Phase::Soak) {
        let on = |b| args.soak_on.is_empty() || args.soak_on.contains(&b);
        let backends =
            phases::soak::Backends { embedded: on(Backend::Embedded), etcd: on(Backend::Etcd) };
        phases::soak::run(&mut report, args.smoke, work, backends).await?
    } else {
        vec![]
    };

    if let Some(out) = &args.out {
        let dir = out.parent().unwrap_or(Path::new(".")).join("bench");
        std::fs::create_dir_all(&dir)?;
        // The full report's charts keep their names; a partial one's are prefixed.
        let partial = !args.only.is_empty() || !args.soak_on.is_empty();
        let prefix = match (partial, out.file_stem()) {
            (true, Some(stem)) => format!("{}-", stem.to_string_lossy().to_lowercase()),
            _ => String::new(),
        };
        let mut charts = String::from("\n## Charts\n");
        let mut add = |title: &str, name: &str| {
            let file = format!("{prefix}{name}.svg");
            charts.push_str(&format!("\n![{title}](bench/{file})\n"));
            dir.join(file)
        };
        if args.runs(Phase::Embedded) || args.runs(Phase::Etcd) {
            chart::line_chart(
                &add("claims vs concurrency", "claims-vs-concurrency"),
                "Embedded claims/s vs concurrent claimers",
                "concurrent claimers",
                "claims per second",
                &[("embedded", claim_curve), ("etcd", etcd_curve)],
            )?;
        }
        if args.runs(Phase::Subscriptions) {
            chart::line_chart(
                &add("RSS vs subscriptions", "rss-vs-subscriptions"),
                "RSS growth vs idle subscriptions",
                "subscriptions",
                "MB",
                &[
                    ("in process, embedded", rss_curves.embedded),
                    ("in process, etcd", rss_curves.etcd),
                    ("SSE, ifc serve over idle", rss_curves.http),
                ],
            )?;
        }
        if args.runs(Phase::Soak) {
            chart::linear_chart(
                &add("Store size with retention on", "size-under-retention"),
                "Store size on disk with retention on",
                "tasks completed (thousands)",
                "MB on disk",
                &soak_curves,
            )?;
        }
        report.text.push_str(&charts);
    }
    report.text.push_str(report::READING_NOTES);

    if let Some(out) = &args.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &report.text).with_context(|| format!("writing {}", out.display()))?;
        println!("\nreport written to {}", out.display());
    }
    Ok(())
}
