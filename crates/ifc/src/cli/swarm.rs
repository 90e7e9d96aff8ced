//! `ifc swarm …`: register, list, stats, heartbeat, unregister.

use anyhow::Result;
use ifc_client::{Client, RegisterSwarm, Registration, Swarm, SwarmStats};

use super::output::{finish, shell_word};
use super::time::span;
use super::{Connection, json_arg};

/// `ifc swarm …`
#[derive(clap::Args)]
pub struct SwarmCommand {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: SwarmOp,
}

#[derive(clap::Subcommand)]
enum SwarmOp {
    /// Registers a swarm (admin); prints `export IFC_SWARM=… IFC_SWARM_TOKEN=…` lines.
    ///
    /// `eval "$(ifc swarm register …)"` makes the following commands act as the swarm.
    ///
    /// Example: `ifc swarm register swarm-finance --cap code-analysis:python` (inside `eval "$(…)"`)
    Register {
        /// The swarm's id, chosen by the caller.
        swarm_id: String,
        /// A capability (repeat for several).
        #[arg(long = "cap")]
        caps: Vec<String>,
        /// Metadata, JSON.
        #[arg(long, default_value = "null")]
        meta: String,
    },
    /// Lists live swarms (admin).
    ///
    /// Example: `ifc swarm list`
    List,
    /// The seed's swarm stats.
    ///
    /// Example: `ifc swarm stats swarm-finance`
    Stats {
        /// The swarm.
        swarm_id: String,
    },
    /// Heartbeats once (as the swarm).
    ///
    /// Example: `ifc swarm heartbeat --swarm swarm-1 --swarm-token …`
    Heartbeat,
    /// Unregisters (as the swarm); its claims return to the pool at once.
    ///
    /// Example: `ifc swarm unregister --swarm swarm-1 --swarm-token …`
    Unregister,
}

/// Runs `ifc swarm …`.
pub async fn swarm(cmd: SwarmCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd.conn, cmd.command).await)
}

async fn run(c: &Connection, command: SwarmOp) -> Result<i32> {
    match command {
        SwarmOp::Register { swarm_id, caps, meta } => {
            let admin = c.admin()?;
            let request = RegisterSwarm {
                swarm_id: swarm_id.clone(),
                capabilities: caps,
                metadata: json_arg("meta", &meta)?,
                token: None,
            };
            let registration = register_once(&admin, &request).await?;
            c.print(&registration, registered);
        }
        SwarmOp::List => {
            let swarms = c.admin()?.list_swarms().await?;
            c.print(&swarms, |list| swarm_table(list));
        }
        SwarmOp::Stats { swarm_id } => {
            let client = if c.swarm.is_some() { c.swarm()? } else { c.admin()? };
            let stats = client.get_swarm_stats(&swarm_id).await?;
            c.print(&stats, swarm_stats);
        }
        SwarmOp::Heartbeat => {
            let ttl = c.swarm()?.heartbeat().await?;
            c.print(&serde_json::json!({"ttl_secs": ttl}), |_| format!("alive for {ttl} s"));
        }
        SwarmOp::Unregister => {
            c.swarm()?.unregister_swarm().await?;
            c.print(&serde_json::json!({"unregistered": true}), |_| "unregistered".into());
        }
    }
    Ok(0)
}

/// A registration without the background heartbeat (the CLI exits at once).
async fn register_once(admin: &Client, request: &RegisterSwarm) -> Result<Registration> {
    let swarm = admin
        .register_swarm(
            &request.swarm_id,
            &request.capabilities.iter().map(String::as_str).collect::<Vec<_>>(),
            request.metadata.clone(),
        )
        .await?;
    Ok(swarm.registration().clone())
}

/// The registration as shell: a comment, then the two `export` lines, so
/// `eval "$(ifc swarm register …)"` makes the next commands act as the swarm.
fn registered(r: &Registration) -> String {
    format!(
        "# registered {} (ttl {} s); eval this output to act as it\n\
         export IFC_SWARM={}\n\
         export IFC_SWARM_TOKEN={}",
        r.swarm_id,
        r.ttl_secs,
        shell_word(&r.swarm_id),
        shell_word(&r.token)
    )
}

fn swarm_table(list: &[Swarm]) -> String {
    let mut out = format!("{:<32} CAPABILITIES", "SWARM");
    for s in list {
        out.push_str(&format!("\n{:<32} {}", s.swarm_id, s.capabilities.join(", ")));
    }
    out
}

fn swarm_stats(s: &SwarmStats) -> String {
    format!(
        "swarm       {}\n\
         claims now  {}\n\
         claimed     {}\n\
         completed   {}\n\
         failed      {}\n\
         uptime      {}",
        s.swarm.swarm_id,
        s.current_claims.join(", "),
        s.tasks_claimed,
        s.task_count,
        s.tasks_failed,
        span(s.uptime_seconds.saturating_mul(1000))
    )
}
