//! The CLI commands that talk to a running server.
//!
//! Exit codes: 0 done; 1 other error; 2 bad usage; 3 not found; 4 refused
//! (conflict, fenced, not the owner, already claimed); 5 not allowed (auth);
//! 6 unavailable.

use anyhow::{Context, Result};
use ifc_client::{ClaimOutcome, Client, ClientError, ErrorCode, NewTask, TaskState};
use serde::Serialize;

use crate::DataDir;
use crate::serve::ADMIN_TOKEN_FILE;

/// How to reach the server, and as whom.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// The server.
    #[arg(long, env = "IFC_SERVER", default_value = "http://127.0.0.1:7400", global = true)]
    server: String,
    /// Admin token (default: `<data-dir>/admin.token` of a local server).
    #[arg(long, env = "IFC_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Act as this swarm (with `--swarm-token`).
    #[arg(long, env = "IFC_SWARM", global = true)]
    swarm: Option<String>,
    /// The swarm's token, from `ifc swarm register`.
    #[arg(long, env = "IFC_SWARM_TOKEN", global = true, hide_env_values = true)]
    swarm_token: Option<String>,
    /// Output: `table` for people, `json` for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(flatten)]
    data: DataDir,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

impl Connection {
    fn admin(&self) -> Result<Client> {
        let token = match &self.token {
            Some(token) => token.clone(),
            None => {
                let path = self.data.data_dir.join(ADMIN_TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!("no --token given and cannot read {}", path.display())
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Client::new(&self.server, &token))
    }

    fn swarm(&self) -> Result<Client> {
        let (Some(swarm), Some(token)) = (&self.swarm, &self.swarm_token) else {
            anyhow::bail!(
                "this command acts as a swarm: give --swarm and --swarm-token (IFC_SWARM, IFC_SWARM_TOKEN)"
            );
        };
        Ok(Client::new(&self.server, "").as_swarm(swarm, token))
    }

    fn print<T: Serialize>(&self, value: &T, table: impl FnOnce(&T) -> String) {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
            Output::Table => println!("{}", table(value)),
        }
    }
}

/// Maps a failure to the exit code documented above, printing it.
fn exit_code(e: &anyhow::Error) -> i32 {
    eprintln!("error: {e:#}");
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { error, .. }) => match error.code {
            ErrorCode::TaskNotFound | ErrorCode::SwarmNotRegistered | ErrorCode::NotFound => 3,
            ErrorCode::Conflict | ErrorCode::Fenced | ErrorCode::NotOwner => 4,
            ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::Incapable => 5,
            ErrorCode::Unavailable => 6,
            ErrorCode::InvalidArgument | ErrorCode::InvalidBody | ErrorCode::MalformedJson => 2,
            _ => 1,
        },
        Some(ClientError::Transport(_)) => 6,
        _ => 1,
    }
}

fn finish(result: Result<i32>) -> Result<i32> {
    Ok(result.unwrap_or_else(|e| exit_code(&e)))
}

/// `ifc task …`
#[derive(clap::Args)]
pub struct TaskCommand {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Task,
}

#[derive(clap::Subcommand)]
enum Task {
    /// Creates a task (admin).
    ///
    /// Example: `ifc task create review-pr-123 --type code-review --meta '{"language":"python"}'`
    Create {
        task_id: String,
        #[arg(long = "type")]
        task_type: String,
        /// Metadata, JSON.
        #[arg(long, default_value = "null")]
        meta: String,
        /// A capability the claimer must hold (repeat for several).
        #[arg(long = "needs")]
        needs: Vec<String>,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        #[arg(long)]
        max_attempts: Option<u32>,
    },
    /// Claims a task (as a swarm). Exit 4 if another swarm holds it.
    ///
    /// Example: `ifc task claim review-pr-123 --swarm swarm-1 --swarm-token …`
    Claim { task_id: String },
    /// Claims the best ready task this swarm can do (as a swarm). Exit 3 if none.
    ///
    /// Example: `ifc task next --swarm swarm-1 --swarm-token …`
    Next,
    /// Completes a claimed task (as its holder).
    ///
    /// Example: `ifc task complete review-pr-123 --claim-token 42 --result '{"ok":true}'`
    Complete {
        task_id: String,
        #[arg(long)]
        claim_token: i64,
        /// Result, JSON.
        #[arg(long, default_value = "null")]
        result: String,
    },
    /// Fails a claimed task (as its holder): retried, or dead-lettered.
    ///
    /// Example: `ifc task fail review-pr-123 --claim-token 42 --error "missing numpy"`
    Fail {
        task_id: String,
        #[arg(long)]
        claim_token: i64,
        #[arg(long)]
        error: String,
    },
    /// Renews a claim (as its holder).
    ///
    /// Example: `ifc task renew review-pr-123 --claim-token 42`
    Renew {
        task_id: String,
        #[arg(long)]
        claim_token: i64,
    },
    /// Shows a task.
    ///
    /// Example: `ifc task get review-pr-123 -o json`
    Get { task_id: String },
    /// Prints the seed's owner string: unclaimed, a swarm, completed:<swarm>, dead, cancelled.
    ///
    /// Example: `ifc task owner review-pr-123`
    Owner { task_id: String },
    /// Lists tasks in a state (admin).
    ///
    /// Example: `ifc task list --state ready`
    List {
        #[arg(long, default_value = "ready")]
        state: TaskState,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Cancels a task (admin).
    ///
    /// Example: `ifc task cancel review-pr-123`
    Cancel { task_id: String },
}

fn json_arg(name: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("--{name} is not JSON: {text}"))
}

/// Runs `ifc task …`.
pub async fn task(cmd: TaskCommand) -> Result<i32> {
    let c = &cmd.conn;
    finish(
        async {
            match cmd.command {
                Task::Create { task_id, task_type, meta, needs, priority, max_attempts } => {
                    let task = NewTask {
                        task_id,
                        task_type,
                        metadata: json_arg("meta", &meta)?,
                        required_capabilities: needs,
                        priority,
                        max_attempts,
                    };
                    let record = c.admin()?.create_task(task).await?;
                    c.print(&record, |r| format!("created {} ({})", r.task_id, r.state.as_str()));
                }
                Task::Claim { task_id } => match c.swarm()?.claim_task(&task_id).await? {
                    ClaimOutcome::Claimed(claim) => c.print(&*claim, |claim| {
                        format!("claimed {} token {} deadline_ms {}", claim.task.task_id, claim.token, claim.deadline_ms)
                    }),
                    other => {
                        c.print(&other, |o| format!("not claimed: {}", serde_json::to_string(o).unwrap_or_default()));
                        return Ok(4);
                    }
                },
                Task::Next => match c.swarm()?.claim_next().await? {
                    Some(claim) => c.print(&claim, |claim| {
                        format!("claimed {} token {} deadline_ms {}", claim.task.task_id, claim.token, claim.deadline_ms)
                    }),
                    None => {
                        eprintln!("no ready task for this swarm");
                        return Ok(3);
                    }
                },
                Task::Complete { task_id, claim_token, result } => {
                    let record = c.swarm()?.complete_task(&task_id, claim_token, json_arg("result", &result)?).await?;
                    c.print(&record, |r| format!("{} {}", r.task_id, r.state.as_str()));
                }
                Task::Fail { task_id, claim_token, error } => {
                    let record = c.swarm()?.fail_task(&task_id, claim_token, &error).await?;
                    c.print(&record, |r| format!("{} {} (attempts {}/{})", r.task_id, r.state.as_str(), r.attempts, r.max_attempts));
                }
                Task::Renew { task_id, claim_token } => {
                    let deadline = c.swarm()?.renew_claim(&task_id, claim_token).await?;
                    c.print(&serde_json::json!({"deadline_ms": deadline}), |_| format!("renewed until {deadline} ms"));
                }
                Task::Get { task_id } => {
                    let view = c.admin()?.get_task(&task_id).await?;
                    c.print(&view, |v| {
                        format!(
                            "task      {}\ntype      {}\nstate     {}\nowner     {}\ntoken     {}\nattempts  {}/{}\npriority  {}\nneeds     {}",
                            v.record.task_id,
                            v.record.task_type,
                            v.state.as_str(),
                            v.record.owner.clone().unwrap_or_else(|| "-".into()),
                            v.token.map_or("-".into(), |t| t.to_string()),
                            v.record.attempts,
                            v.record.max_attempts,
                            v.record.priority,
                            v.record.required_capabilities.join(", "),
                        )
                    });
                }
                Task::Owner { task_id } => match c.admin()?.get_task_owner(&task_id).await? {
                    Some(owner) => c.print(&serde_json::json!({"owner": owner}), |_| owner.clone()),
                    None => {
                        eprintln!("task {task_id} not found");
                        return Ok(3);
                    }
                },
                Task::List { state, after, limit } => {
                    let page = c.admin()?.list_tasks(state, after.as_deref(), limit).await?;
                    c.print(&page, |p| {
                        let mut out = format!("{:<32} {:<10} {:<20} {:>8}", "TASK", "STATE", "OWNER", "ATTEMPTS");
                        for t in &p.tasks {
                            out.push_str(&format!(
                                "\n{:<32} {:<10} {:<20} {:>8}",
                                t.record.task_id,
                                t.state.as_str(),
                                t.record.owner.clone().unwrap_or_else(|| "-".into()),
                                t.record.attempts
                            ));
                        }
                        if let Some(next) = &p.next_after {
                            out.push_str(&format!("\n(more: --after {next})"));
                        }
                        out
                    });
                }
                Task::Cancel { task_id } => {
                    let record = c.admin()?.cancel_task(&task_id).await?;
                    c.print(&record, |r| format!("{} {}", r.task_id, r.state.as_str()));
                }
            }
            Ok(0)
        }
        .await,
    )
}

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
    /// Registers a swarm (admin) and prints its token.
    ///
    /// Example: `ifc swarm register swarm-finance --cap code-analysis:python --cap integration:sip`
    Register {
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
    Stats { swarm_id: String },
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
    let c = &cmd.conn;
    finish(
        async {
            match cmd.command {
                SwarmOp::Register { swarm_id, caps, meta } => {
                    let admin = c.admin()?;
                    let request = ifc_client::RegisterSwarm {
                        swarm_id: swarm_id.clone(),
                        capabilities: caps,
                        metadata: json_arg("meta", &meta)?,
                        token: None,
                    };
                    let registration = register_once(&admin, &request).await?;
                    c.print(&registration, |r| {
                        format!("registered {} (ttl {} s)\nIFC_SWARM={}\nIFC_SWARM_TOKEN={}", r.swarm_id, r.ttl_secs, r.swarm_id, r.token)
                    });
                }
                SwarmOp::List => {
                    let swarms = c.admin()?.list_swarms().await?;
                    c.print(&swarms, |list| {
                        let mut out = format!("{:<32} CAPABILITIES", "SWARM");
                        for s in list {
                            out.push_str(&format!("\n{:<32} {}", s.swarm_id, s.capabilities.join(", ")));
                        }
                        out
                    });
                }
                SwarmOp::Stats { swarm_id } => {
                    let client = if c.swarm.is_some() { c.swarm()? } else { c.admin()? };
                    let stats = client.get_swarm_stats(&swarm_id).await?;
                    c.print(&stats, |s| {
                        format!(
                            "swarm       {}\nclaims now  {}\nclaimed     {}\ncompleted   {}\nfailed      {}\nuptime      {} s",
                            s.swarm.swarm_id,
                            s.current_claims.join(", "),
                            s.tasks_claimed,
                            s.task_count,
                            s.tasks_failed,
                            s.uptime_seconds
                        )
                    });
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
        .await,
    )
}

/// A registration without the background heartbeat (the CLI exits at once).
async fn register_once(
    admin: &Client,
    request: &ifc_client::RegisterSwarm,
) -> Result<ifc_client::Registration> {
    let swarm = admin
        .register_swarm(
            &request.swarm_id,
            &request.capabilities.iter().map(String::as_str).collect::<Vec<_>>(),
            request.metadata.clone(),
        )
        .await?;
    Ok(swarm.registration().clone())
}

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
    let c = &cmd.conn;
    finish(
        async {
            match cmd.command {
                WitnessOp::List { task } => {
                    let records = c.admin()?.witness(task.as_deref()).await?;
                    c.print(&records, |list| {
                        let mut out = format!(
                            "{:>8} {:<28} {:<20} {:<24} OUTCOME",
                            "REV", "CHAIN", "ACTOR", "OP"
                        );
                        for r in list {
                            out.push_str(&format!(
                                "\n{:>8} {:<28} {:<20} {:<24} {}",
                                r.revision, r.chain, r.actor, r.op, r.outcome
                            ));
                        }
                        out
                    });
                }
                WitnessOp::Export => print!("{}", c.admin()?.export_witness().await?),
                WitnessOp::Verify => {
                    let verification = c.admin()?.verify_witness().await?;
                    c.print(&verification, |v| {
                        if v.ok {
                            "every chain verifies".to_string()
                        } else {
                            v.problems
                                .iter()
                                .map(|p| format!("{} #{}: {}", p.chain, p.seq, p.problem))
                                .collect::<Vec<_>>()
                                .join("\n")
                        }
                    });
                    if !verification.ok {
                        return Ok(4);
                    }
                }
            }
            Ok(0)
        }
        .await,
    )
}
