//! `ifc worker`: makes any program a swarm. It registers, heartbeats, takes
//! work (claim_next and its push inbox), runs the given command once per task
//! under a renewed claim, and completes or fails the task from what the
//! command did. On SIGTERM/SIGINT it takes no more work, lets running tasks
//! finish within a grace period, releases the rest and unregisters.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use ifc_client::{ClaimGuard, Client, ErrorCode, SwarmClient, TaskRecord};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Connection;
use super::output::finish;
use super::stream::describe;

/// How much of a failed command's stderr goes into the task's error.
const STDERR_TAIL_BYTES: usize = 2048;

/// `ifc worker`
#[derive(clap::Args)]
pub struct WorkerCommand {
    #[command(flatten)]
    conn: Connection,
    /// The swarm this worker registers as (admin token needed).
    swarm_id: String,
    /// A capability (repeat for several).
    #[arg(long = "cap")]
    caps: Vec<String>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// After SIGTERM/SIGINT, how long running tasks may take to finish (ms)
    /// before they are killed and released; a second signal releases at once.
    #[arg(long, default_value_t = 30_000)]
    grace_ms: u64,
    /// How often to look for ready work while there is none (ms).
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    poll_ms: u64,
    /// The command run per task, after `--`: the task's JSON on stdin;
    /// IFC_TASK_ID, IFC_TASK_TYPE, IFC_CLAIM_TOKEN and IFC_ATTEMPT in its
    /// environment. Exit 0: stdout (JSON, or else wrapped as a JSON string) is
    /// the result. Any other exit fails the task with the tail of stderr.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs `ifc worker`.
pub async fn worker(cmd: WorkerCommand) -> Result<i32> {
    finish(&cmd.conn, run(&cmd).await)
}

async fn run(cmd: &WorkerCommand) -> Result<i32> {
    let mut signals = Signals::new()?;
    let admin = cmd.conn.admin()?;
    let caps: Vec<&str> = cmd.caps.iter().map(String::as_str).collect();
    let meta = serde_json::json!({"worker": cmd.command[0], "concurrency": cmd.concurrency});
    let swarm = admin.register_swarm(&cmd.swarm_id, &caps, meta).await?;
    eprintln!(
        "worker {}: registered (ttl {} s); running `{}`, up to {} at once",
        cmd.swarm_id,
        swarm.registration().ttl_secs,
        cmd.command.join(" "),
        cmd.concurrency
    );
    let command = Arc::new(cmd.command.clone());
    let slots = Arc::new(Semaphore::new(cmd.concurrency as usize));
    let (stop_tx, stop) = watch::channel(false);
    let mut running = JoinSet::new();
    let (notified, mut notices) = Client::clone(&swarm).with_stream_notices();
    let mut inbox = notified.inbox(0)?;
    let poll = Duration::from_millis(cmd.poll_ms);
    let mut next_poll = Instant::now();
    loop {
        tokio::select! {
            () = signals.next() => break,
            item = inbox.next() => {
                let item = item.context("the inbox stream ended")??;
                let task_id = item.task.task_id.clone();
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Full: hand the push back to the pool at once, without an attempt.
                    if let Err(e) = swarm.decline_push(&task_id, item.token).await {
                        eprintln!("task {task_id}: could not decline the push: {e}");
                    }
                    continue;
                };
                match swarm.ack_push(&task_id, item.token).await {
                    Ok(deadline_ms) => {
                        let guard = ClaimGuard::new(&swarm, &task_id, item.token, deadline_ms);
                        let job = Job { guard, task: item.task, command: command.clone() };
                        running.spawn(job.run(Client::clone(&swarm), stop.clone(), permit));
                    }
                    Err(e) => eprintln!("task {task_id}: could not acknowledge the push: {e}"),
                }
            }
            Some(notice) = notices.recv() => {
                eprintln!("worker {}: inbox: {}", cmd.swarm_id, describe(&notice, &cmd.conn.server));
            }
            () = tokio::time::sleep_until(next_poll) => {
                next_poll = Instant::now() + poll;
                let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
                match swarm.claim_next().await {
                    Ok(Some(claim)) => {
                        let guard = swarm.hold(&claim);
                        let job = Job { guard, task: claim.task, command: command.clone() };
                        running.spawn(job.run(Client::clone(&swarm), stop.clone(), permit));
                        next_poll = Instant::now();
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("worker {}: claim_next failed: {e}", cmd.swarm_id),
                }
            }
            Some(_) = running.join_next(), if !running.is_empty() => {
                next_poll = Instant::now();
            }
        }
    }
    drop(inbox);
    shut_down(swarm, running, stop_tx, signals, Duration::from_millis(cmd.grace_ms)).await
}

/// Waits up to `grace` for running tasks; then kills the rest and releases
/// their claims (back to the pool, no attempt used), and unregisters.
async fn shut_down(
    swarm: SwarmClient,
    mut running: JoinSet<()>,
    stop: watch::Sender<bool>,
    mut signals: Signals,
    grace: Duration,
) -> Result<i32> {
    let id = swarm.registration().swarm_id.clone();
    if !running.is_empty() {
        eprintln!(
            "worker {id}: stopping; {} running task(s) get {grace:?} to finish",
            running.len()
        );
    }
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    while !running.is_empty() {
        tokio::select! {
            _ = running.join_next() => {}
            () = &mut deadline => break,
            () = signals.next() => break,
        }
    }
    if !running.is_empty() {
        eprintln!("worker {id}: releasing {} unfinished task(s)", running.len());
        let _ = stop.send(true);
        while running.join_next().await.is_some() {}
    }
    swarm.unregister().await?;
    eprintln!("worker {id}: unregistered");
    Ok(0)
}

/// One task: its claim (renewed while the command runs) and the command.
struct Job {
    guard: ClaimGuard,
    task: TaskRecord,
    command: Arc<Vec<String>>,
}

/// How the command ended, unless it was stopped.
enum Ran {
    Exited(std::process::Output),
    CannotStart(String),
    Stopped(&'static str),
    /// The worker is stopping: give the task back.
    Released,
}

impl Job {
    async fn run(
        self,
        swarm: Client,
        mut stop: watch::Receiver<bool>,
        _slot: OwnedSemaphorePermit,
    ) {
        let task_id = self.task.task_id.clone();
        let ran = tokio::select! {
            ran = self.execute() => ran,
            reason = self.guard.until_lost() => {
                eprintln!("task {task_id}: claim lost ({reason}); command killed");
                Ran::Stopped("claim lost")
            }
            () = async {
                let _ = stop.wait_for(|stop| *stop).await;
            } => Ran::Released,
        };
        let finished = match ran {
            Ran::Exited(output) if output.status.success() => {
                let result = result_of(&output.stdout);
                let token = self.guard.token();
                match self.guard.complete(result).await {
                    Err(e) if refused_result(&e) => {
                        // The claim still holds: fail the task with why, rather than let it lapse.
                        let error = format!("the result was refused: {e}");
                        swarm.fail_task(&task_id, token, &error).await.map(|_| error)
                    }
                    other => other.map(|r| format!("completed ({})", r.state.as_str())),
                }
            }
            Ran::Exited(output) => {
                let error = failure_of(&output);
                self.guard.fail(&error).await.map(|r| {
                    format!(
                        "failed: {error} ({}, attempts {}/{})",
                        r.state.as_str(),
                        r.attempts,
                        r.max_attempts
                    )
                })
            }
            Ran::CannotStart(error) => self.guard.fail(&error).await.map(|_| error),
            Ran::Stopped(why) => Ok(why.to_string()),
            Ran::Released => self.guard.release().await.map(|r| {
                format!(
                    "released unfinished ({}, attempts {}/{})",
                    r.state.as_str(),
                    r.attempts,
                    r.max_attempts
                )
            }),
        };
        match finished {
            Ok(what) => eprintln!("task {task_id}: {what}"),
            Err(e) => eprintln!("task {task_id}: {e}"),
        }
    }

    /// Runs the command to its end (dropping this future kills it).
    async fn execute(&self) -> Ran {
        let Some((program, args)) = self.command.split_first() else {
            return Ran::CannotStart("no command".into());
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("IFC_TASK_ID", &self.task.task_id)
            .env("IFC_TASK_TYPE", &self.task.task_type)
            .env("IFC_CLAIM_TOKEN", self.guard.token().to_string())
            .env("IFC_ATTEMPT", (self.task.attempts + 1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group: a Ctrl-C at the terminal stops the worker
        // (which then gives running tasks their grace), not the tasks.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return Ran::CannotStart(format!("cannot run `{program}`: {e}")),
        };
        let input = serde_json::to_vec(&self.task).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin is fine: ignore the broken pipe.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        match child.wait_with_output().await {
            Ok(output) => Ran::Exited(output),
            Err(e) => Ran::CannotStart(format!("running `{program}`: {e}")),
        }
    }
}

/// The command's stdout as the task's result: JSON as is, anything else as a
/// JSON string (trailing newline trimmed).
fn result_of(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim_end_matches(['\n', '\r']);
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// `exit status N: <stderr tail>` (or the signal that killed it).
fn failure_of(output: &std::process::Output) -> String {
    let status = match output.status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("killed ({})", output.status),
    };
    let stderr = &output.stderr[output.stderr.len().saturating_sub(STDERR_TAIL_BYTES)..];
    let tail = String::from_utf8_lossy(stderr);
    let tail = tail.trim();
    if tail.is_empty() { status } else { format!("{status}: {tail}") }
}

/// Whether the server refused the result itself (too large, not storable).
fn refused_result(e: &ifc_client::ClientError) -> bool {
    matches!(e.code(), Some(ErrorCode::PayloadTooLarge | ErrorCode::InvalidArgument))
}

/// SIGTERM and SIGINT, each delivery once.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
