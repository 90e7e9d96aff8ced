//! The wire types of IF.coordinator: what the HTTP API sends and receives, what
//! the core stores, and the stable error codes. A leaf crate shared by the
//! core, the server and the client, so the three can never disagree.

#![deny(missing_docs)]

mod batch;
mod error;
pub mod ids;

pub use batch::{
    BatchCreated, BatchItemResult, BatchStatus, ClaimBatch, ClaimBatchRequest, DEFAULT_CLAIM_BATCH,
    MAX_BATCH_TASKS, MAX_CLAIM_BATCH, NewTasks,
};
pub use error::{ApiError, ErrorCode};

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A live swarm as the API shows it (never its token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Swarm {
    /// Its id.
    pub swarm_id: String,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// Free-form metadata given at registration.
    pub metadata: serde_json::Value,
    /// When it first registered (ms since the epoch).
    pub registered_at_ms: i64,
}

/// What a successful registration hands the swarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    /// The swarm's id.
    pub swarm_id: String,
    /// The owner token: present it (as a bearer token) for every operation of
    /// this swarm, and to re-register it.
    pub token: String,
    /// Seconds the swarm stays registered without a heartbeat.
    pub ttl_secs: i64,
}

/// A registration request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterSwarm {
    /// The swarm's id.
    pub swarm_id: String,
    /// What it can do.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Its owner token, to refresh a live registration.
    #[serde(default)]
    pub token: Option<String>,
}

/// A claim request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimRequest {
    /// The claiming swarm.
    pub swarm_id: String,
}

/// Renewing a claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RenewRequest {
    /// The holder.
    pub swarm_id: String,
    /// The claim's fencing token.
    pub token: i64,
}

/// Giving a claimed task back to the pool unfinished, without using an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRequest {
    /// The holder.
    pub swarm_id: String,
    /// The claim's fencing token.
    pub token: i64,
}

/// The new deadline of a renewed claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Renewed {
    /// The claim lapses no earlier than this (ms since the epoch).
    pub deadline_ms: i64,
}

/// Completing a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompleteRequest {
    /// The holder.
    pub swarm_id: String,
    /// The claim's fencing token.
    pub token: i64,
    /// The result.
    #[serde(default)]
    pub result: serde_json::Value,
}

/// Failing a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailRequest {
    /// The holder.
    pub swarm_id: String,
    /// The claim's fencing token.
    pub token: i64,
    /// What went wrong.
    pub error: String,
}

/// The seed's `get_task_owner` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Owner {
    /// `unclaimed`, the owner's id, `completed:<swarm>`, `dead` or `cancelled`.
    pub owner: String,
}

/// The answer to `claim_next`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NextClaim {
    /// The claim, or none if no ready task fits the swarm.
    pub claim: Option<Claim>,
}

/// A heartbeat's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// Seconds the swarm now stays registered without another heartbeat.
    pub ttl_secs: i64,
}

/// Listing tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTasks {
    /// The state to list (`ready`, `claimed`, `completed`, `dead`, `cancelled`).
    pub state: TaskState,
    /// Continue after this task id.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The result of verifying the witness log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// Whether every chain verified.
    pub ok: bool,
    /// The first problem of each chain that did not.
    pub problems: Vec<Tampering>,
    /// Chains checked.
    #[serde(default)]
    pub chains: u64,
    /// Records checked.
    #[serde(default)]
    pub records: u64,
    /// Where to resume (`from_chain`) when `max_chains` ended the walk early;
    /// absent once every chain was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_chain: Option<String>,
}

/// A task's stored state. `Claimed` is only *live* while the task's claim key and
/// its holder key both exist (see [`TaskView::state`]).
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a claim.
    Ready,
    /// Owned by a swarm.
    Claimed,
    /// Done; final.
    Completed,
    /// Out of attempts (dead-letter); final.
    Dead,
    /// Cancelled by the orchestrator; final.
    Cancelled,
}

impl TaskState {
    /// The name used in keys, JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Ready => "ready",
            TaskState::Claimed => "claimed",
            TaskState::Completed => "completed",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Whether nothing can happen to the task any more.
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Dead | TaskState::Cancelled)
    }

    /// Every state.
    pub const ALL: [TaskState; 5] = [
        TaskState::Ready,
        TaskState::Claimed,
        TaskState::Completed,
        TaskState::Dead,
        TaskState::Cancelled,
    ];
}

impl std::str::FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            format!("unknown task state {s:?} (ready, claimed, completed, dead, cancelled)")
        })
    }
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The swarm completed the task.
    Completed,
    /// The swarm reported a failure.
    Failed,
    /// The claim's lease ran out, or the swarm went away.
    Lapsed,
    /// The task was cancelled while claimed.
    Cancelled,
    /// The holder gave the task back unfinished (a worker stopping): it
    /// returned to the pool without using an attempt.
    Released,
}

/// One finished attempt.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct Attempt {
    /// Who held the claim.
    pub swarm_id: String,
    /// The claim's fencing token.
    pub token: i64,
    /// When the claim was made (ms since the epoch).
    pub claimed_at_ms: i64,
    /// When the attempt ended.
    pub ended_at_ms: i64,
    /// How.
    pub outcome: AttemptOutcome,
    /// The failure's error text, if any. The last failure's text is kept
    /// once, in the record's `error`, and left out here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The claim lease this attempt ran under, in ms.
    #[serde(default)]
    pub lease_ms: u64,
    /// Attempts used once this attempt ended (of the task's `max_attempts`).
    #[serde(default)]
    pub attempts_after: u32,
}

/// What a caller gives to create a task.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct NewTask {
    /// Its id.
    pub task_id: String,
    /// Its type (free-form, e.g. `code-review`).
    pub task_type: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Capabilities a swarm must all hold to claim it.
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    /// Higher goes first.
    #[serde(default)]
    pub priority: i32,
    /// Attempts before dead-letter (default from the config; at most 100).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The claim lease of this task in ms: a claim lapses this long after it
    /// was made or last renewed (default: the server's claim timeout;
    /// 1,000 ..= 86,400,000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// A task as stored.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct TaskRecord {
    /// Its id.
    pub task_id: String,
    /// Its type.
    pub task_type: String,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
    /// Capabilities needed, sorted and without duplicates.
    pub required_capabilities: Vec<String>,
    /// Higher goes first.
    pub priority: i32,
    /// Attempts before dead-letter.
    pub max_attempts: u32,
    /// The claim lease in ms (0 in records written before it was stored:
    /// the server's claim timeout applies).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Creation time, ms since the epoch (orders the ready queue).
    pub created_at_ms: i64,
    /// Stored state (see [`TaskView::state`] for the effective one).
    pub state: TaskState,
    /// The claiming swarm while claimed; the completing swarm once completed.
    pub owner: Option<String>,
    /// When the current claim was made.
    pub claimed_at_ms: Option<i64>,
    /// Attempts used (failed or lapsed claims).
    pub attempts: u32,
    /// The last finished attempts (at most 20), oldest first.
    pub history: Vec<Attempt>,
    /// The result, once completed.
    pub result: Option<serde_json::Value>,
    /// The last failure's error (at most 4 KiB; its attempt in `history`
    /// refers to it rather than repeating it).
    pub error: Option<String>,
    /// Not claimable before this time (retry backoff), ms since the epoch.
    pub not_before_ms: i64,
    /// Pushed to its owner and not yet acknowledged: if the push lapses, the
    /// task returns to the pool without using an attempt.
    #[serde(default)]
    pub awaiting_ack: bool,
    /// The token of the claim a push acknowledgement turned into a normal
    /// claim (the ack rewrites the record; otherwise the record's revision
    /// while claimed is the claim's token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_token: Option<i64>,
    /// When it reached a final state (completed, dead, cancelled), ms since
    /// the epoch; retention counts its age from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
}

impl TaskRecord {
    /// Whether this record was created from `new` (idempotent create).
    pub fn same_spec(&self, new: &NewTask, max_attempts: u32, caps: &[String]) -> bool {
        self.task_type == new.task_type
            && self.metadata == new.metadata
            && self.required_capabilities == caps
            && self.priority == new.priority
            && self.max_attempts == max_attempts
            && new.timeout_ms.is_none_or(|t| t == self.timeout_ms)
    }
}

/// A task as a reader sees it: the record, plus the live claim if any.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct TaskView {
    /// The stored record.
    pub record: TaskRecord,
    /// The effective state: a `Claimed` record whose claim lapsed reads as
    /// `Ready` (or `Dead` if that was its last attempt) until a node records it.
    pub state: TaskState,
    /// The live claim's fencing token.
    pub token: Option<i64>,
    /// The live claim's deadline.
    pub deadline_ms: Option<i64>,
    /// Whether the record says claimed but the claim has lapsed.
    pub lapsed: bool,
    /// The record's mod revision.
    pub revision: i64,
}

/// A won claim.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct Claim {
    /// The task, as it now stands.
    pub task: TaskRecord,
    /// The fencing token: carry it on renew, complete and fail.
    pub token: i64,
    /// The claim lapses no earlier than this (ms since the epoch) unless renewed.
    pub deadline_ms: i64,
}

/// The answer to a claim: a win, or why not (none of these is an error; the
/// seed's `claim_task` answers `False`).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// This swarm holds the task now.
    Claimed(Box<Claim>),
    /// Another swarm holds it.
    AlreadyClaimed {
        /// Who.
        owner: String,
    },
    /// It is completed, dead or cancelled.
    Finished {
        /// Which.
        state: TaskState,
    },
    /// It failed recently and waits out its retry backoff.
    BackingOff {
        /// Claimable from this time (ms since the epoch).
        ready_at_ms: i64,
    },
}

/// Tasks by state (as indexed: a lapsed claim counts as claimed until a node
/// records the lapse).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize, ToSchema)]
pub struct StateCounts {
    /// Waiting to be claimed.
    pub ready: i64,
    /// Held by a swarm.
    pub claimed: i64,
    /// Done.
    pub completed: i64,
    /// Out of attempts (dead-lettered).
    pub dead: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// Ready tasks needing one set of capabilities.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize, ToSchema)]
pub struct CapabilitySetCount {
    /// The capabilities, sorted.
    pub capabilities: Vec<String>,
    /// Ready tasks that need exactly these.
    pub ready: i64,
}

/// Queue depth: `GET /v1/queues`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueCounts {
    /// Tasks by state.
    pub states: StateCounts,
    /// Ready tasks by the capability set they need.
    pub capability_sets: Vec<CapabilitySetCount>,
}

/// A swarm's statistics, computed from the store (every node answers the same).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct SwarmStats {
    /// The swarm.
    pub swarm: Swarm,
    /// Tasks it holds now.
    pub current_claims: Vec<String>,
    /// Claims won over its life.
    pub tasks_claimed: i64,
    /// Tasks completed.
    pub task_count: i64,
    /// Tasks failed.
    pub tasks_failed: i64,
    /// Seconds since it first registered.
    pub uptime_seconds: i64,
}

/// One page of tasks.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct TaskPage {
    /// The tasks, by id.
    pub tasks: Vec<TaskView>,
    /// Pass as `after` for the next page; `None` at the end.
    pub next_after: Option<String>,
}

/// What to select from the witness log.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WitnessQuery {
    /// Only this task's records.
    pub task_id: Option<String>,
    /// Only records naming this swarm (as actor or subject).
    pub swarm_id: Option<String>,
    /// Only records at or after this time (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Only records before this time.
    pub to_ms: Option<i64>,
}

/// One audit record.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize, ToSchema)]
pub struct WitnessRecord {
    /// The chain: `task/<id>` or `swarm/<id>`.
    pub chain: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// What happened: `task_created`, `task_claimed`, `task_completed`, …
    pub op: String,
    /// Who did it: a swarm id, `orchestrator`, or `coordinator` (lease-driven).
    pub actor: String,
    /// The task concerned, if any.
    pub task_id: Option<String>,
    /// The swarm concerned, if any.
    pub swarm_id: Option<String>,
    /// The fencing token the operation carried or ended. For `task_claimed` the
    /// stored record has none (the token is the claim's revision, unknown until
    /// commit); the logger and queries fill it in from the record's revision.
    pub token: Option<i64>,
    /// The outcome, e.g. the task's new state.
    pub outcome: String,
    /// Details (result size, error text, …).
    pub detail: serde_json::Value,
    /// Wall-clock time of the write, ms since the epoch.
    pub at_ms: i64,
    /// The previous record's hash (the genesis hash for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
    /// The store revision that committed it (from the store, not hashed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A problem verification found.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize, ToSchema)]
pub struct Tampering {
    /// The chain.
    pub chain: String,
    /// The sequence number where it shows (the head's, for a removed tail).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// A pushed task as it reaches the swarm's inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// The push's store revision: the SSE event id, and where a reconnecting
    /// subscriber resumes (`Last-Event-ID`).
    pub revision: i64,
    /// The task, claimed for this swarm.
    pub task: TaskRecord,
    /// The claim's fencing token (ack, decline, renew, complete and fail carry it).
    pub token: i64,
    /// Ack before this time (ms since the epoch), or the task returns to the pool.
    pub ack_deadline_ms: i64,
    /// The blocker this is help for, if it is a help task.
    pub blocker_id: Option<String>,
}

/// Acknowledging or declining a pushed task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AckRequest {
    /// The push's fencing token.
    pub token: i64,
}

/// What a stuck swarm reports (the seed's `blocker_info`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockerInfo {
    /// Kind of blocker, e.g. `missing_dependency`.
    #[serde(rename = "type")]
    pub blocker_type: String,
    /// What is wrong.
    pub description: String,
    /// `low`, `medium`, `high`, `critical` (free-form).
    #[serde(default)]
    pub severity: String,
    /// Capabilities a helper must all hold.
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    /// The task it blocks, if any (it keeps its owner and its attempts).
    #[serde(default)]
    pub task_id: Option<String>,
}

/// Where a blocker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockerState {
    /// Raised, nobody assigned.
    Open,
    /// At least one helper assigned.
    Assigned,
    /// Resolved; final.
    Resolved,
}

/// A blocker as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Blocker {
    /// Its id.
    pub blocker_id: String,
    /// The swarm that raised it.
    pub swarm_id: String,
    /// What it reported.
    pub info: BlockerInfo,
    /// Where it stands.
    pub state: BlockerState,
    /// Helpers assigned so far, with the help task pushed to each.
    pub helpers: Vec<String>,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// When it was raised (ms since the epoch).
    pub raised_at_ms: i64,
}

/// A live swarm that could help with a blocker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HelperCandidate {
    /// The swarm.
    pub swarm_id: String,
    /// Its capabilities (a superset of the blocker's required ones).
    pub capabilities: Vec<String>,
    /// Tasks it holds now (candidates come least loaded first).
    pub current_claims: usize,
}

/// A blocker as it reaches the orchestrator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockerEvent {
    /// The revision that raised it (the SSE event id).
    pub revision: i64,
    /// The blocker.
    pub blocker: Blocker,
    /// Live swarms holding every required capability, least loaded first, the
    /// reporter excluded.
    pub candidates: Vec<HelperCandidate>,
}

/// The answer to raising a blocker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockerRaised {
    /// The new blocker's id.
    pub blocker_id: String,
}

/// Assigning a helper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignHelper {
    /// The helper swarm.
    pub helper_swarm_id: String,
}

/// Resolving a blocker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResolveBlocker {
    /// How it was resolved.
    pub resolution: String,
}

/// One coordination event: a witnessed change, or a claim renewal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoordinationEvent {
    /// The store revision (the SSE event id; resume after it).
    pub revision: i64,
    /// What happened (`task_claimed`, `task_renewed`, `blocker_raised`, …).
    pub op: String,
    /// Who did it.
    pub actor: String,
    /// The task, if any.
    pub task_id: Option<String>,
    /// The swarm, if any.
    pub swarm_id: Option<String>,
    /// The blocker, if any.
    pub blocker_id: Option<String>,
    /// The fencing token involved, if any.
    pub token: Option<i64>,
    /// The outcome.
    pub outcome: String,
    /// Details.
    pub detail: serde_json::Value,
    /// Wall-clock time, ms since the epoch.
    pub at_ms: i64,
}

/// Listing blockers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListBlockers {
    /// Only open (not resolved) blockers.
    #[serde(default)]
    pub open: bool,
}
