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
    /// CA certificate (PEM) to trust for an https server with a private certificate.
    #[arg(long, env = "IFC_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
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
        self.client(&token)
    }

    fn client(&self, token: &str) -> Result<Client> {
        match &self.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading --ca-cert {}", path.display()))?;
                Ok(Client::with_ca(&self.server, token, &pem)?)
            }
            None => Ok(Client::new(&self.server, token)),
        }
    }

    fn swarm(&self) -> Result<Client> {
        let (Some(swarm), Some(token)) = (&self.swarm, &self.swarm_token) else {
            anyhow::bail!(
                "this command acts as a swarm: give --swarm and --swarm-token (IFC_SWARM, IFC_SWARM_TOKEN)"
            );
        };
        Ok(self.client("")?.as_swarm(swarm, token))
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

/// `ifc push …`
#[derive(clap::Args)]
pub struct PushCommand {
    #[command(flatten)]
    conn: Connection,
    /// The swarm to push to.
    swarm_id: String,
    /// The task (created if new, taken if ready).
    task_id: String,
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
    let c = &cmd.conn;
    finish(
        async {
            let task = NewTask {
                task_id: cmd.task_id.clone(),
                task_type: cmd.task_type.clone(),
                metadata: json_arg("meta", &cmd.meta)?,
                required_capabilities: Vec::new(),
                priority: cmd.priority,
                max_attempts: None,
            };
            let item = c.admin()?.push_task_to_swarm(&cmd.swarm_id, task).await?;
            c.print(&item, |i| {
                format!(
                    "pushed {} to {} (token {}, ack by {} ms)",
                    i.task.task_id, cmd.swarm_id, i.token, i.ack_deadline_ms
                )
            });
            Ok(0)
        }
        .await,
    )
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
    /// Prints pushed tasks as they arrive (Ctrl-C to stop).
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
        task_id: String,
        #[arg(long)]
        claim_token: i64,
    },
    /// Declines a pushed task: it returns to the pool.
    ///
    /// Example: `ifc inbox decline urgent-review --claim-token 17`
    Decline {
        task_id: String,
        #[arg(long)]
        claim_token: i64,
    },
}

/// Runs `ifc inbox …`.
pub async fn inbox(cmd: InboxCommand) -> Result<i32> {
    let c = &cmd.conn;
    finish(
        async {
            match cmd.command {
                InboxOp::Follow { after } => {
                    let mut stream = c.swarm()?.inbox(after)?;
                    while let Some(item) = futures::StreamExt::next(&mut stream).await {
                        let item = item?;
                        c.print(&item, |i| {
                            format!("{}\t{}\ttoken {}", i.revision, i.task.task_id, i.token)
                        });
                    }
                }
                InboxOp::Ack { task_id, claim_token } => {
                    let deadline = c.swarm()?.ack_push(&task_id, claim_token).await?;
                    c.print(&serde_json::json!({"deadline_ms": deadline}), |_| {
                        format!("acknowledged; claim until {deadline} ms")
                    });
                }
                InboxOp::Decline { task_id, claim_token } => {
                    let record = c.swarm()?.decline_push(&task_id, claim_token).await?;
                    c.print(&record, |r| {
                        format!("declined; {} is {}", r.task_id, r.state.as_str())
                    });
                }
            }
            Ok(0)
        }
        .await,
    )
}

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
    /// Example: `ifc blocker raise --type missing_dependency --description "no NDI SDK" --needs integration:ndi`
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
    let c = &cmd.conn;
    finish(
        async {
            match cmd.command {
                BlockerOp::Raise { blocker_type, description, severity, needs, task } => {
                    let info = ifc_client::BlockerInfo {
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
                    c.print(&blockers, |list| {
                        let mut out = format!(
                            "{:<32} {:<10} {:<20} {:<20} HELPERS",
                            "BLOCKER", "STATE", "REPORTER", "TYPE"
                        );
                        for b in list {
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
                    });
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
                        let event = event?;
                        c.print(&event, |e| {
                            let helpers: Vec<_> = e
                                .candidates
                                .iter()
                                .map(|h| format!("{}({})", h.swarm_id, h.current_claims))
                                .collect();
                            format!(
                                "{}\t{}\tfrom {}\t{}\thelpers: {}",
                                e.revision,
                                e.blocker.blocker_id,
                                e.blocker.swarm_id,
                                e.blocker.info.description,
                                helpers.join(" ")
                            )
                        });
                    }
                }
            }
            Ok(0)
        }
        .await,
    )
}

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
    let c = &cmd.conn;
    finish(
        async {
            let mut stream = c.admin()?.events(cmd.after);
            loop {
                let next = futures::StreamExt::next(&mut stream);
                let event = if cmd.follow {
                    next.await
                } else {
                    match tokio::time::timeout(std::time::Duration::from_secs(1), next).await {
                        Ok(event) => event,
                        Err(_) => break,
                    }
                };
                let Some(event) = event else { break };
                let event = event?;
                c.print(&event, |e| {
                    format!(
                        "{:>8} {:<22} {:<20} {}",
                        e.revision,
                        e.op,
                        e.actor,
                        e.task_id.clone().or(e.blocker_id.clone()).unwrap_or_default()
                    )
                });
            }
            Ok(0)
        }
        .await,
    )
}
