//! A claim that keeps itself alive: [`ClaimGuard`] renews the claim in the
//! background at a third of what remains of its lease, so work that takes
//! minutes keeps the task, and stops renewing on complete, fail or drop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Claim, Client, ClientError, TaskRecord};

/// Renewing sooner than this gains nothing and loads the server.
const MIN_RENEW_WAIT: Duration = Duration::from_millis(100);

/// A held claim, renewed in the background until [`ClaimGuard::complete`],
/// [`ClaimGuard::fail`], [`ClaimGuard::release`] or drop. Dropping it lets the claim lapse at its
/// deadline (the task returns to the pool, using an attempt).
pub struct ClaimGuard {
    client: Client,
    task_id: String,
    token: i64,
    /// The task as claimed, when the guard was made from a claim.
    task: Option<TaskRecord>,
    lost: watch::Receiver<Option<String>>,
    renewer: JoinHandle<()>,
}

impl ClaimGuard {
    /// Starts renewing the claim on `task_id` with fencing `token`, whose lease
    /// currently ends at `deadline_ms` (ms since the epoch). `client` acts as
    /// the holding swarm.
    pub fn new(client: &Client, task_id: &str, token: i64, deadline_ms: i64) -> ClaimGuard {
        let (lost_tx, lost) = watch::channel(None);
        let renewer =
            tokio::spawn(renew(client.clone(), task_id.to_string(), token, deadline_ms, lost_tx));
        ClaimGuard {
            client: client.clone(),
            task_id: task_id.into(),
            token,
            task: None,
            lost,
            renewer,
        }
    }

    /// The task as it was claimed, for a guard made from a claim
    /// ([`Client::hold`], [`Client::claim_batch`]).
    pub fn task(&self) -> Option<&TaskRecord> {
        self.task.as_ref()
    }

    /// The claim's task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The claim's fencing token.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Why the claim was lost, once the server refused a renewal (lapsed,
    /// replaced, cancelled, …); `None` while it is held.
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Waits until the server refuses a renewal, and says why. Work running
    /// under the claim can stop early: its result would be refused.
    pub async fn until_lost(&self) -> String {
        let mut lost = self.lost.clone();
        let reason = lost.wait_for(Option::is_some).await.map(|reason| reason.clone());
        match reason {
            Ok(reason) => reason.unwrap_or_default(),
            // The renewer ended without a reason: it was stopped, never refused.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops renewing and completes the task with `result`.
    pub async fn complete(self, result: serde_json::Value) -> Result<TaskRecord, ClientError> {
        self.renewer.abort();
        self.client.complete_task(&self.task_id, self.token, result).await
    }

    /// Stops renewing and fails the task (retried or dead-lettered).
    pub async fn fail(self, error: &str) -> Result<TaskRecord, ClientError> {
        self.renewer.abort();
        self.client.fail_task(&self.task_id, self.token, error).await
    }
}

impl ClaimGuard {
    /// Stops renewing and gives the task back to the pool unfinished, without
    /// using an attempt.
    pub async fn release(self) -> Result<TaskRecord, ClientError> {
        self.renewer.abort();
        self.client.release_claim(&self.task_id, self.token).await
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl Client {
    /// Holds `claim` (won by this swarm) under a [`ClaimGuard`] that renews it.
    pub fn hold(&self, claim: &Claim) -> ClaimGuard {
        let mut guard = ClaimGuard::new(self, &claim.task.task_id, claim.token, claim.deadline_ms);
        guard.task = Some(claim.task.clone());
        guard
    }
}

/// Renews at a third of the remaining lease; a refusal ends it (reported on
/// `lost`), a transient failure is retried sooner as the deadline nears.
async fn renew(
    client: Client,
    task_id: String,
    token: i64,
    mut deadline_ms: i64,
    lost: watch::Sender<Option<String>>,
) {
    loop {
        let remaining = u64::try_from(deadline_ms - now_ms()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(remaining / 3).max(MIN_RENEW_WAIT)).await;
        match client.renew_claim(&task_id, token).await {
            Ok(deadline) => deadline_ms = deadline,
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, %task_id, "renewal failed; retrying");
            }
            Err(e) => {
                tracing::warn!(error = %e, %task_id, "claim lost");
                let _ = lost.send(Some(e.to_string()));
                return;
            }
        }
    }
}

/// Whether a failed call may succeed if repeated (nothing was refused).
fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, error } => *status >= 500 || error.code.is_retryable(),
        ClientError::Transport(_) | ClientError::Decode(_) => true,
        ClientError::InvalidId { .. } => false,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
