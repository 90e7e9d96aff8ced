//! Task records, their states, and what a reader sees.

use ifc_kv::KeyValue;
use serde::{Deserialize, Serialize};

/// A task's stored state. `Claimed` is only *live* while the task's claim key and
/// its holder key both exist (see [`TaskView::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// One finished attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The failure's error text, if any.
    pub error: Option<String>,
}

/// What a caller gives to create a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Attempts before dead-letter (default from the config).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// A task as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Finished attempts, oldest first.
    pub history: Vec<Attempt>,
    /// The result, once completed.
    pub result: Option<serde_json::Value>,
    /// The last failure's error.
    pub error: Option<String>,
    /// Not claimable before this time (retry backoff), ms since the epoch.
    pub not_before_ms: i64,
}

impl TaskRecord {
    /// Whether this record was created from `new` (idempotent create).
    pub fn same_spec(&self, new: &NewTask, max_attempts: u32, caps: &[String]) -> bool {
        self.task_type == new.task_type
            && self.metadata == new.metadata
            && self.required_capabilities == caps
            && self.priority == new.priority
            && self.max_attempts == max_attempts
    }
}

/// The claim key's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimValue {
    /// The claiming swarm.
    pub swarm_id: String,
    /// When the claim lapses at the latest, unless renewed (ms since the epoch).
    pub deadline_ms: i64,
}

/// A task as a reader sees it: the record, plus the live claim if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// The keys of one task, read together in one snapshot.
#[derive(Clone, Debug)]
pub(crate) struct TaskKeys {
    pub record: KeyValue,
    pub claim: Option<KeyValue>,
    pub holder: Option<KeyValue>,
}

impl TaskKeys {
    /// The live claim: the claim key and its holder, made by the same claim.
    pub fn live_claim(&self) -> Option<&KeyValue> {
        match (&self.claim, &self.holder) {
            (Some(claim), Some(holder)) if holder.create_revision == claim.create_revision => {
                Some(claim)
            }
            _ => None,
        }
    }
}
