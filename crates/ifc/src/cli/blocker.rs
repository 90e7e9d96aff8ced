//! `ifc blocker …`: raise, list, assign a helper, resolve, follow.

use anyhow::Result;
use ifc_client::{Blocker, BlockerEvent, BlockerInfo};

use super::Connection;
use super::output::finish;

/// `ifc blocker …`
#[derive(clap::Args)]
pub struct BlockerCommand {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: BlockerOp,
}

#[derive(clap::Subcommand)]
enum BlockerOp {
    /// Raises a blocker (as the stuck swarm).
    ///
    /// Example: `ifc blocker raise --type missing_dependency --description "no NDI SDK"
    /// --needs integration:ndi`
    Raise {
        #[arg(long = "type")]
        blocker_type: String,
        #[arg(long)]
        description: String,
        #[arg(long, default_value = "high")]
        severity: String,
        /// A capability a helper must hold (repeat for several).
        #[arg(long = "needs")]
        needs: Vec<String>,
        /// The blocked task.
        #[arg(long)]
        task: Option<String>,
    },
    /// Lists blockers (admin).
    ///
    /// Example: `ifc blocker list --open`
    List {
        #[arg(long)]
        open: bool,
    },
    /// Pushes a help task to a helper swarm (admin).
    ///
    /// Example: `ifc blocker assign blk-… swarm-infra`
    Assign { blocker_id: String, helper_swarm_id: String },
    /// Resolves a blocker (admin).
    ///
    /// Example: `ifc blocker resolve blk-… --resolution "installed the SDK"`
    Resolve {
        blocker_id: String,
        #[arg(long)]
        resolution: String,
    },
    /// Prints blockers as they are raised, with helper candidates (admin).
    ///
    /// Example: `ifc blocker follow`
    Follow {
        /// Resume after this revision (default: from now).
        #[arg(long)]
        after: Option<i64>,
    },
}

/// Runs `ifc blocker …`.
pub async fn blocker(cmd: BlockerCommand) -> Result<i32> {
    finish(run(&cmd.conn, cmd.command).await)
}

async fn run(c: &Connection, command: BlockerOp) -> Result<i32> {
    match command {
        BlockerOp::Raise { blocker_type, description, severity, needs, task } => {
            let info = BlockerInfo {
                blocker_type,
                description,
                severity,
                required_capabilities: needs,
                task_id: task,
            };
            let id = c.swarm()?.detect_blocker(info).await?;
            c.print(&serde_json::json!({"blocker_id": id}), |_| format!("raised {id}"));
        }
        BlockerOp::List { open } => {
            let blockers = c.admin()?.list_blockers(open).await?;
            c.print(&blockers, |list| blocker_table(list));
        }
        BlockerOp::Assign { blocker_id, helper_swarm_id } => {
            let item = c.admin()?.assign_helper(&blocker_id, &helper_swarm_id).await?;
            c.print(&item, |i| format!("pushed {} to {helper_swarm_id}", i.task.task_id));
        }
        BlockerOp::Resolve { blocker_id, resolution } => {
            let blocker = c.admin()?.resolve_blocker(&blocker_id, &resolution).await?;
            c.print(&blocker, |b| format!("{} resolved", b.blocker_id));
        }
        BlockerOp::Follow { after } => {
            let mut stream = c.admin()?.blockers(after);
            while let Some(event) = futures::StreamExt::next(&mut stream).await {
                c.print(&event?, blocker_event_line);
            }
        }
    }
    Ok(0)
}

fn blocker_table(list: &[Blocker]) -> String {
    let mut out =
        format!("{:<32} {:<10} {:<20} {:<20} HELPERS", "BLOCKER", "STATE", "REPORTER", "TYPE");
    for b in list {
        // The state's wire name (`open`, `assigned`, …), as JSON output shows it.
        let state = serde_json::to_value(b.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n{:<32} {:<10} {:<20} {:<20} {}",
            b.blocker_id,
            state,
            b.swarm_id,
            b.info.blocker_type,
            b.helpers.join(",")
        ));
    }
    out
}

/// A raised blocker with its helper candidates and their current claims.
fn blocker_event_line(e: &BlockerEvent) -> String {
    let helpers: Vec<_> =
        e.candidates.iter().map(|h| format!("{}({})", h.swarm_id, h.current_claims)).collect();
    format!(
        "{}\t{}\tfrom {}\t{}\thelpers: {}",
        e.revision,
        e.blocker.blocker_id,
        e.blocker.swarm_id,
        e.blocker.info.description,
        helpers.join(" ")
    )
}
