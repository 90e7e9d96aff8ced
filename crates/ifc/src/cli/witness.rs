//! `ifc witness …`: list, export and verify the witness log.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use ifc_client::{Verification, WitnessRecord};
use ifc_core::witness::Checkpoint;
use ifc_core::witness_archive::{self, ArchiveReport};

use super::Connection;
use super::output::finish;
use super::time::rfc3339;

/// `ifc witness …`
#[derive(clap::Args)]
pub struct WitnessCommand {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: WitnessOp,
}

#[derive(clap::Subcommand)]
enum WitnessOp {
    /// Lists records in commit order (admin).
    ///
    /// Example: `ifc witness list --task review-pr-123`
    List {
        #[arg(long)]
        task: Option<String>,
    },
    /// Prints the whole log as JSON Lines (admin).
    ///
    /// Example: `ifc witness export > audit.jsonl`
    Export,
    /// Verifies every hash chain, chain by chain, with progress on stderr
    /// (admin). Exit 4 if tampering is found.
    ///
    /// Example: `ifc witness verify --archive /var/lib/ifc/archive`
    Verify {
        /// Resume from this chain (a progress line's `next`).
        #[arg(long)]
        from_chain: Option<String>,
        /// Chains per request.
        #[arg(long, default_value_t = 2000)]
        batch: u64,
        /// Also check the pruned records archived in this directory against
        /// the store's checkpoints.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
}

/// Runs `ifc witness …`.
pub async fn witness(cmd: WitnessCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd.conn, cmd.command).await)
}

async fn run(c: &Connection, command: WitnessOp) -> Result<i32> {
    match command {
        WitnessOp::List { task } => {
            let records = c.admin()?.witness(task.as_deref()).await?;
            c.print(&records, |list| witness_table(list));
        }
        WitnessOp::Export => {
            let mut out = std::io::stdout().lock();
            let mut written = Ok(());
            c.admin()?
                .export_witness_chunks(|chunk| {
                    if written.is_ok() {
                        written = out.write_all(chunk);
                    }
                })
                .await?;
            written?;
            out.flush()?;
        }
        WitnessOp::Verify { from_chain, batch, archive } => {
            let mut verification = verify_store(c, from_chain, batch).await?;
            if let Some(dir) = archive {
                let report = verify_archive(c, &dir).await?;
                verification.problems.extend(report.problems);
                verification.ok = verification.problems.is_empty();
            }
            c.print(&verification, verified);
            if !verification.ok {
                return Ok(4);
            }
        }
    }
    Ok(0)
}

/// Walks every chain `batch` at a time, printing progress (and where to
/// resume) on stderr.
async fn verify_store(c: &Connection, from: Option<String>, batch: u64) -> Result<Verification> {
    let client = c.admin()?;
    let mut total =
        Verification { ok: true, problems: Vec::new(), chains: 0, records: 0, next_chain: None };
    let mut from = from;
    loop {
        let page = client.verify_witness_from(from.as_deref(), batch.max(1)).await?;
        total.chains += page.chains;
        total.records += page.records;
        total.problems.extend(page.problems);
        match page.next_chain {
            Some(next) => {
                eprintln!(
                    "verified {} chains, {} records, {} problems; next: --from-chain {next}",
                    total.chains,
                    total.records,
                    total.problems.len()
                );
                from = Some(next);
            }
            None => break,
        }
    }
    total.ok = total.problems.is_empty();
    eprintln!("verified {} chains, {} records", total.chains, total.records);
    Ok(total)
}

/// Checks the archive in `dir` against the store's checkpoints.
async fn verify_archive(c: &Connection, dir: &Path) -> Result<ArchiveReport> {
    let mut checkpoints = HashMap::new();
    for line in c.admin()?.witness_checkpoints().await?.lines() {
        let checkpoint: Checkpoint = serde_json::from_str(line)?;
        checkpoints.insert(checkpoint.chain.clone(), checkpoint);
    }
    let report = witness_archive::verify(dir, &checkpoints)?;
    eprintln!(
        "archive: {} files, {} chains, {} records, {} problems",
        report.files,
        report.chains,
        report.records,
        report.problems.len()
    );
    Ok(report)
}

fn witness_table(list: &[WitnessRecord]) -> String {
    let mut out =
        format!("{:<20} {:>8} {:<28} {:<20} {:<24} OUTCOME", "TIME", "REV", "CHAIN", "ACTOR", "OP");
    for r in list {
        out.push_str(&format!(
            "\n{:<20} {:>8} {:<28} {:<20} {:<24} {}",
            rfc3339(r.at_ms),
            r.revision,
            r.chain,
            r.actor,
            r.op,
            r.outcome
        ));
    }
    out
}

/// "every chain verifies", or one line per problem found.
fn verified(v: &Verification) -> String {
    if v.ok {
        "every chain verifies".to_string()
    } else {
        v.problems
            .iter()
            .map(|p| format!("{} #{}: {}", p.chain, p.seq, p.problem))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
