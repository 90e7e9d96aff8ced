//! `ifc events …`: the coordination event stream.

use std::time::Duration;

use anyhow::Result;
use ifc_client::CoordinationEvent;

use super::Connection;
use super::output::finish;

/// `ifc events …`
#[derive(clap::Args)]
pub struct EventsCommand {
    #[command(flatten)]
    conn: Connection,
    /// Keep following; without it, prints what arrives within a second and stops.
    #[arg(long)]
    follow: bool,
    /// Resume after this revision (0: from the oldest kept; default: from now).
    #[arg(long)]
    after: Option<i64>,
}

/// Runs `ifc events …`.
pub async fn events(cmd: EventsCommand) -> Result<i32> {
    finish(run(&cmd).await)
}

async fn run(cmd: &EventsCommand) -> Result<i32> {
    let c = &cmd.conn;
    let mut stream = c.admin()?.events(cmd.after);
    loop {
        let next = futures::StreamExt::next(&mut stream);
        let event = if cmd.follow {
            next.await
        } else {
            match tokio::time::timeout(Duration::from_secs(1), next).await {
                Ok(event) => event,
                Err(_) => break,
            }
        };
        let Some(event) = event else { break };
        c.print(&event?, event_line);
    }
    Ok(0)
}

/// Revision, operation, actor, and the task or blocker it concerns.
fn event_line(e: &CoordinationEvent) -> String {
    format!(
        "{:>8} {:<22} {:<20} {}",
        e.revision,
        e.op,
        e.actor,
        e.task_id.clone().or(e.blocker_id.clone()).unwrap_or_default()
    )
}
