//! `ifc push …` (admin) and `ifc inbox …` (as a swarm): tasks pushed straight
//! to one swarm's inbox, followed, acknowledged or declined there.

use anyhow::Result;
use ifc_client::{InboxItem, NewTask, TaskRecord};

use super::output::finish;
use super::stream::follow;
use super::time::when;
use super::{Connection, json_arg};

/// `ifc push …`
#[derive(clap::Args)]
pub struct PushCommand {
    #[command(flatten)]
    conn: Connection,
    /// The swarm to push to.
    swarm_id: String,
    /// The task (created if new, taken if ready).
    task_id: String,
    /// The task's type.
    #[arg(long = "type", default_value = "task")]
    task_type: String,
    /// Metadata, JSON.
    #[arg(long, default_value = "null")]
    meta: String,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
}

/// Runs `ifc push …`.
pub async fn push(cmd: PushCommand) -> Result<i32> {
    finish(&cmd.conn, run_push(&cmd).await)
}

async fn run_push(cmd: &PushCommand) -> Result<i32> {
    let c = &cmd.conn;
    let task = NewTask {
        task_id: cmd.task_id.clone(),
        task_type: cmd.task_type.clone(),
        metadata: json_arg("meta", &cmd.meta)?,
        required_capabilities: Vec::new(),
        priority: cmd.priority,
        max_attempts: None,
        timeout_ms: None,
    };
    let item = c.admin()?.push_task_to_swarm(&cmd.swarm_id, task).await?;
    c.print(&item, |i| pushed(i, &cmd.swarm_id));
    Ok(0)
}

/// `ifc inbox …` (as a swarm)
#[derive(clap::Args)]
pub struct InboxCommand {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: InboxOp,
}

#[derive(clap::Subcommand)]
enum InboxOp {
    /// Prints pushed tasks as they arrive (Ctrl-C to stop); while the server is
    /// unreachable, says so on stderr and retries with backoff.
    ///
    /// Example: `ifc inbox follow --swarm swarm-1 --swarm-token … --after 0`
    Follow {
        /// Resume after this revision.
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Acknowledges a pushed task: the swarm takes it.
    ///
    /// Example: `ifc inbox ack urgent-review --claim-token 17`
    Ack {
        /// The pushed task.
        task_id: String,
        /// The push's token, from `inbox follow` or `ifc push`.
        #[arg(long)]
        claim_token: i64,
    },
    /// Declines a pushed task: it returns to the pool.
    ///
    /// Example: `ifc inbox decline urgent-review --claim-token 17`
    Decline {
        /// The pushed task.
        task_id: String,
        /// The push's token, from `inbox follow` or `ifc push`.
        #[arg(long)]
        claim_token: i64,
    },
}

/// Runs `ifc inbox …`.
pub async fn inbox(cmd: InboxCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd.conn, cmd.command).await)
}

async fn run(c: &Connection, command: InboxOp) -> Result<i32> {
    match command {
        InboxOp::Follow { after } => {
            let (client, notices) = c.swarm()?.with_stream_notices();
            return follow(c, client.inbox(after)?, notices, None, inbox_line).await;
        }
        InboxOp::Ack { task_id, claim_token } => {
            let deadline = c.swarm()?.ack_push(&task_id, claim_token).await?;
            c.print(&serde_json::json!({"deadline_ms": deadline}), |_| {
                format!("acknowledged; claim until {}", when(deadline))
            });
        }
        InboxOp::Decline { task_id, claim_token } => {
            let record = c.swarm()?.decline_push(&task_id, claim_token).await?;
            c.print(&record, declined);
        }
    }
    Ok(0)
}

fn pushed(i: &InboxItem, swarm_id: &str) -> String {
    format!(
        "pushed {} to {swarm_id} (token {}, ack by {})",
        i.task.task_id,
        i.token,
        when(i.ack_deadline_ms)
    )
}

/// One pushed task as it arrives: revision, task, token.
fn inbox_line(i: &InboxItem) -> String {
    format!("{}\t{}\ttoken {}", i.revision, i.task.task_id, i.token)
}

fn declined(r: &TaskRecord) -> String {
    format!("declined; {} is {}", r.task_id, r.state.as_str())
}
