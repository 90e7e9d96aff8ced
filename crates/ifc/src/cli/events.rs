//! `ifc events …`: the coordination event stream.

use anyhow::Result;
use ifc_client::CoordinationEvent;

use super::Connection;
use super::output::finish;
use super::stream::{QUIET, follow};
use super::time::rfc3339;

/// `ifc events …`
#[derive(clap::Args)]
pub struct EventsCommand {
    #[command(flatten)]
    conn: Connection,
    /// Keep following (retrying with backoff while the server is unreachable);
    /// without it, prints what arrives within a second and stops (exit 6 if
    /// the server cannot be reached).
    #[arg(long)]
    follow: bool,
    /// Resume after this revision (0: from the oldest kept; default: from now).
    #[arg(long)]
    after: Option<i64>,
}

/// Runs `ifc events …`.
pub async fn events(cmd: EventsCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd).await)
}

async fn run(cmd: &EventsCommand) -> Result<i32> {
    let c = &cmd.conn;
    let (client, notices) = c.admin()?.with_stream_notices();
    let quiet_after = if cmd.follow { None } else { Some(QUIET) };
    follow(c, client.events(cmd.after), notices, quiet_after, event_line).await
}

/// Time, revision, operation, actor, and the task or blocker it concerns.
fn event_line(e: &CoordinationEvent) -> String {
    format!(
        "{} {:>8} {:<22} {:<20} {}",
        rfc3339(e.at_ms),
        e.revision,
        e.op,
        e.actor,
        e.task_id.clone().or(e.blocker_id.clone()).unwrap_or_default()
    )
}
