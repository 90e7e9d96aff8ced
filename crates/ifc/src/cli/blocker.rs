//! `ifc blocker …`: raise, list, assign a helper, resolve, follow.

use anyhow::Result;
use ifc_client::{Blocker, BlockerEvent, BlockerInfo, ClientError, ErrorCode};

use super::Connection;
use super::output::finish;
use super::stream::follow;

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
    Assign {
        /// The blocker, from `blocker raise` or `blocker list`.
        blocker_id: String,
        /// The swarm that helps (a candidate from `blocker follow`).
        helper_swarm_id: String,
    },
    /// Resolves a blocker (admin).
    ///
    /// Example: `ifc blocker resolve blk-… --resolution "installed the SDK"`
    Resolve {
        /// The blocker, from `blocker raise` or `blocker list`.
        blocker_id: String,
        #[arg(long)]
        resolution: String,
    },
    /// Prints blockers raised (from the oldest kept, then as they are
    /// raised), with helper candidates (admin); while the server is
    /// unreachable, says so on stderr and retries with backoff.
    ///
    /// Example: `ifc blocker follow`
    Follow {
        /// Resume after this revision (default: from the oldest kept).
        #[arg(long)]
        after: Option<i64>,
    },
}

/// Runs `ifc blocker …`.
pub async fn blocker(cmd: BlockerCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd.conn, cmd.command).await)
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
            let (client, notices) = c.admin()?.with_stream_notices();
            let from = Some(after.unwrap_or(0));
            match follow(c, client.blockers(from), notices, None, blocker_event_line).await {
                // By default from the oldest kept; if the store compacted that
                // history away, from now rather than not at all.
                Err(e) if after.is_none() && compacted(&e) => {
                    eprintln!("ifc: the blocker history is compacted; following from now");
                    let (client, notices) = c.admin()?.with_stream_notices();
                    return follow(c, client.blockers(None), notices, None, blocker_event_line)
                        .await;
                }
                other => return other,
            }
        }
    }
    Ok(0)
}

fn compacted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ClientError>().and_then(ClientError::code) == Some(ErrorCode::Compacted)
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
