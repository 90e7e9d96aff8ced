//! `ifc witness …`: list, export and verify the witness log.

use anyhow::Result;
use ifc_client::{Verification, WitnessRecord};

use super::Connection;
use super::output::finish;

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
    /// Verifies every hash chain (admin). Exit 4 if tampering is found.
    ///
    /// Example: `ifc witness verify`
    Verify,
}

/// Runs `ifc witness …`.
pub async fn witness(cmd: WitnessCommand) -> Result<i32> {
    finish(run(&cmd.conn, cmd.command).await)
}

async fn run(c: &Connection, command: WitnessOp) -> Result<i32> {
    match command {
        WitnessOp::List { task } => {
            let records = c.admin()?.witness(task.as_deref()).await?;
            c.print(&records, |list| witness_table(list));
        }
        WitnessOp::Export => super::output::print_out(&c.admin()?.export_witness().await?),
        WitnessOp::Verify => {
            let verification = c.admin()?.verify_witness().await?;
            c.print(&verification, verified);
            if !verification.ok {
                return Ok(4);
            }
        }
    }
    Ok(0)
}

fn witness_table(list: &[WitnessRecord]) -> String {
    let mut out = format!("{:>8} {:<28} {:<20} {:<24} OUTCOME", "REV", "CHAIN", "ACTOR", "OP");
    for r in list {
        out.push_str(&format!(
            "\n{:>8} {:<28} {:<20} {:<24} {}",
            r.revision, r.chain, r.actor, r.op, r.outcome
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
