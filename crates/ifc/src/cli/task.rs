//! `ifc task …`: create (one, or many: `task_batch.rs`), claim, complete, fail,
//! renew and inspect tasks.

use anyhow::Result;
use ifc_client::{Claim, ClaimOutcome, NewTask, TaskPage, TaskRecord, TaskState, TaskView};

use super::output::{finish, or_dash, shell_word};
use super::time::{rfc3339, when};
use super::{Connection, json_arg};

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
        /// The task's id, chosen by the caller (creating it again with the
        /// same content changes nothing).
        task_id: String,
        /// The task's type (free text a swarm dispatches on).
        #[arg(long = "type")]
        task_type: String,
        /// Metadata, JSON.
        #[arg(long, default_value = "null")]
        meta: String,
        /// A capability the claimer must hold (repeat for several).
        #[arg(long = "needs")]
        needs: Vec<String>,
        /// Higher runs first among ready tasks.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Attempts before the task is dead-lettered (default: the server's).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// The claim lease of this task in ms (1,000 to 86,400,000; default: the
        /// server's claim timeout). A claimer renews it while it works.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Creates many tasks from a file or stdin (admin): a JSON array of tasks,
    /// or one task per line, each as `POST /v1/tasks` takes it (`task_id`,
    /// `task_type`, `metadata`, `required_capabilities`, `priority`,
    /// `max_attempts`, `timeout_ms`). Sent in batches; prints how many were
    /// created, existed already (running again is safe) or failed, and why.
    ///
    /// Example: `ifc task create-many tasks.jsonl --batch-size 500`
    CreateMany {
        /// The file of tasks; stdin if absent or `-`.
        file: Option<std::path::PathBuf>,
        /// Tasks per request (1 ..= 1,000); a batch is also kept under 1 MiB.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
    /// Claims a task (as a swarm); prints `export IFC_CLAIM_TOKEN=…`. Exit 4 if
    /// another swarm holds it.
    ///
    /// `eval "$(ifc task claim …)"` hands the fencing token to the next
    /// `task complete` / `fail` / `renew` (they read IFC_CLAIM_TOKEN).
    ///
    /// Example: `ifc task claim review-pr-123 --swarm swarm-1 --swarm-token …`
    Claim {
        /// The task, from `ifc task list`.
        task_id: String,
    },
    /// Claims the best ready task this swarm can do (as a swarm); prints
    /// `export IFC_TASK_ID=… IFC_CLAIM_TOKEN=…`. Exit 3 if none.
    ///
    /// Example: `ifc task next --swarm swarm-1 --swarm-token …`
    Next,
    /// Completes a claimed task (as its holder).
    ///
    /// Example: `ifc task complete review-pr-123 --claim-token 42 --result '{"ok":true}'`
    Complete {
        /// The claimed task.
        task_id: String,
        /// The claim's fencing token, from `task claim` / `task next`.
        #[arg(long, env = "IFC_CLAIM_TOKEN")]
        claim_token: i64,
        /// Result, JSON.
        #[arg(long, default_value = "null")]
        result: String,
    },
    /// Fails a claimed task (as its holder): retried, or dead-lettered.
    ///
    /// Example: `ifc task fail review-pr-123 --claim-token 42 --error "missing numpy"`
    Fail {
        /// The claimed task.
        task_id: String,
        /// The claim's fencing token, from `task claim` / `task next`.
        #[arg(long, env = "IFC_CLAIM_TOKEN")]
        claim_token: i64,
        /// What went wrong, kept with the task.
        #[arg(long)]
        error: String,
    },
    /// Renews a claim (as its holder).
    ///
    /// Example: `ifc task renew review-pr-123 --claim-token 42`
    Renew {
        /// The claimed task.
        task_id: String,
        /// The claim's fencing token, from `task claim` / `task next`.
        #[arg(long, env = "IFC_CLAIM_TOKEN")]
        claim_token: i64,
    },
    /// Gives a claimed task back to the pool unfinished, without using an
    /// attempt (as its holder).
    ///
    /// Example: `ifc task release review-pr-123 --claim-token 42`
    Release {
        /// The claimed task.
        task_id: String,
        /// The claim's fencing token, from `task claim` / `task next`.
        #[arg(long, env = "IFC_CLAIM_TOKEN")]
        claim_token: i64,
    },
    /// Shows a task.
    ///
    /// Example: `ifc task get review-pr-123 -o json`
    Get {
        /// The task.
        task_id: String,
    },
    /// Prints the seed's owner string: unclaimed, a swarm, completed:<swarm>, dead, cancelled.
    ///
    /// Example: `ifc task owner review-pr-123`
    Owner {
        /// The task.
        task_id: String,
    },
    /// Lists tasks in a state (admin).
    ///
    /// Example: `ifc task list --state ready`
    List {
        /// ready, claimed, completed, dead or cancelled.
        #[arg(long, default_value = "ready")]
        state: TaskState,
        /// Start after this task id (the previous page's `--after` hint).
        #[arg(long)]
        after: Option<String>,
        /// Tasks per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Puts a dead task back to ready with its attempts reset (admin).
    ///
    /// Example: `ifc task retry review-pr-123`
    Retry {
        /// The dead task.
        task_id: String,
    },
    /// Cancels a task (admin).
    ///
    /// Example: `ifc task cancel review-pr-123`
    Cancel {
        /// The task.
        task_id: String,
    },
}

/// Runs `ifc task …`.
pub async fn task(cmd: TaskCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd.conn, cmd.command).await)
}

async fn run(c: &Connection, command: Task) -> Result<i32> {
    match command {
        Task::Create { task_id, task_type, meta, needs, priority, max_attempts, timeout_ms } => {
            let task = NewTask {
                task_id,
                task_type,
                metadata: json_arg("meta", &meta)?,
                required_capabilities: needs,
                priority,
                max_attempts,
                timeout_ms,
            };
            let record = c.admin()?.create_task(task).await?;
            c.print(&record, created);
        }
        Task::CreateMany { file, batch_size } => {
            return super::task_batch::create_many(c, file, batch_size).await;
        }
        Task::Claim { task_id } => match c.swarm()?.claim_task(&task_id).await? {
            ClaimOutcome::Claimed(claim) => c.print(&*claim, claimed),
            other => {
                c.print(&other, not_claimed);
                return Ok(4);
            }
        },
        Task::Next => match c.swarm()?.claim_next().await? {
            Some(claim) => c.print(&claim, claimed),
            None => {
                eprintln!("no ready task for this swarm");
                return Ok(3);
            }
        },
        Task::Complete { task_id, claim_token, result } => {
            let swarm = c.swarm()?;
            let result = json_arg("result", &result)?;
            let record = swarm.complete_task(&task_id, claim_token, result).await?;
            c.print(&record, state_line);
        }
        Task::Fail { task_id, claim_token, error } => {
            let record = c.swarm()?.fail_task(&task_id, claim_token, &error).await?;
            c.print(&record, failed);
        }
        Task::Renew { task_id, claim_token } => {
            let deadline = c.swarm()?.renew_claim(&task_id, claim_token).await?;
            let value = serde_json::json!({"deadline_ms": deadline});
            c.print(&value, |_| format!("renewed until {}", when(deadline)));
        }
        Task::Release { task_id, claim_token } => {
            let record = c.swarm()?.release_claim(&task_id, claim_token).await?;
            c.print(&record, |r| {
                format!(
                    "released {} (back to {}; attempts {}/{})",
                    r.task_id,
                    r.state.as_str(),
                    r.attempts,
                    r.max_attempts
                )
            });
        }
        Task::Get { task_id } => {
            let view = c.admin()?.get_task(&task_id).await?;
            c.print(&view, task_view);
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
            c.print(&page, task_table);
        }
        Task::Retry { task_id } => {
            let record = c.admin()?.retry_task(&task_id).await?;
            c.print(&record, state_line);
        }
        Task::Cancel { task_id } => {
            let record = c.admin()?.cancel_task(&task_id).await?;
            c.print(&record, state_line);
        }
    }
    Ok(0)
}

fn created(r: &TaskRecord) -> String {
    format!("created {} ({})", r.task_id, r.state.as_str())
}

/// A claim, as `task claim` and `task next` print it: a comment, then shell
/// `export` lines for `eval`.
fn claimed(claim: &Claim) -> String {
    format!(
        "# claimed {} (attempt {}/{}), lease until {}; renew, complete or fail it before then\n\
         export IFC_TASK_ID={}\n\
         export IFC_CLAIM_TOKEN={}",
        claim.task.task_id,
        claim.task.attempts + 1,
        claim.task.max_attempts,
        when(claim.deadline_ms),
        shell_word(&claim.task.task_id),
        claim.token
    )
}

fn not_claimed(outcome: &ClaimOutcome) -> String {
    format!("not claimed: {}", serde_json::to_string(outcome).unwrap_or_default())
}

/// `<task> <state>`, after complete and cancel.
fn state_line(r: &TaskRecord) -> String {
    format!("{} {}", r.task_id, r.state.as_str())
}

fn failed(r: &TaskRecord) -> String {
    format!("{} {} (attempts {}/{})", r.task_id, r.state.as_str(), r.attempts, r.max_attempts)
}

fn task_view(v: &TaskView) -> String {
    format!(
        "task      {}\n\
         type      {}\n\
         state     {}\n\
         owner     {}\n\
         token     {}\n\
         attempts  {}/{}\n\
         priority  {}\n\
         needs     {}\n\
         created   {}\n\
         lease     {}",
        v.record.task_id,
        v.record.task_type,
        v.state.as_str(),
        or_dash(v.record.owner.clone()),
        or_dash(v.token.map(|t| t.to_string())),
        v.record.attempts,
        v.record.max_attempts,
        v.record.priority,
        v.record.required_capabilities.join(", "),
        rfc3339(v.record.created_at_ms),
        or_dash(v.deadline_ms.map(|ms| format!("until {}", when(ms)))),
    )
}

fn task_table(p: &TaskPage) -> String {
    let mut out = format!("{:<32} {:<10} {:<20} {:>8}", "TASK", "STATE", "OWNER", "ATTEMPTS");
    for t in &p.tasks {
        out.push_str(&format!(
            "\n{:<32} {:<10} {:<20} {:>8}",
            t.record.task_id,
            t.state.as_str(),
            or_dash(t.record.owner.clone()),
            t.record.attempts
        ));
    }
    if let Some(next) = &p.next_after {
        out.push_str(&format!("\n(more: --after {next})"));
    }
    out
}
