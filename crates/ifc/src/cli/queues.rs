//! `ifc queues`: queue depth at a glance (tasks by state, ready tasks by
//! capability set), like `celery inspect`.

use anyhow::Result;
use ifc_client::QueueCounts;

use super::Connection;
use super::output::finish;

/// `ifc queues`
#[derive(clap::Args)]
pub struct QueuesCommand {
    #[command(flatten)]
    conn: Connection,
}

/// Runs `ifc queues`.
pub async fn queues(cmd: QueuesCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd.conn).await)
}

async fn run(c: &Connection) -> Result<i32> {
    let counts = c.admin()?.queue_counts().await?;
    c.print(&counts, summary);
    Ok(0)
}

fn summary(counts: &QueueCounts) -> String {
    let s = &counts.states;
    let mut out = format!(
        "STATE      TASKS\nready      {}\nclaimed    {}\ncompleted  {}\ndead       {}\ncancelled  {}\n",
        s.ready, s.claimed, s.completed, s.dead, s.cancelled
    );
    out.push_str("\nREADY  CAPABILITIES\n");
    if counts.capability_sets.is_empty() {
        out.push_str("(nothing ready)");
    }
    for set in &counts.capability_sets {
        let caps = if set.capabilities.is_empty() {
            "(any swarm)".to_string()
        } else {
            set.capabilities.join(",")
        };
        out.push_str(&format!("{:<6} {caps}\n", set.ready));
    }
    out.trim_end().to_string()
}
