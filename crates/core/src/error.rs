//! The core's errors. Callers branch on the variant; the server maps each to one
//! HTTP status and stable code.

use ifc_api::TaskState;
use ifc_kv::KvError;

/// Every way a core operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A request field is malformed. Nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An item of a batch is malformed. Nothing of the batch was written.
    #[error("item {index}: invalid {field}: {reason}")]
    InvalidItem {
        /// The item's place in the batch, from 0.
        index: usize,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A batch holds more items than one call takes. Nothing was written.
    #[error("a batch holds at most {max} items, not {given}")]
    BatchTooLarge {
        /// The most one batch holds.
        max: usize,
        /// How many it held.
        given: usize,
    },
    /// The swarm is not registered (never was, left, or its lease lapsed).
    #[error("swarm {0} is not registered")]
    NotRegistered(String),
    /// The operation lost its compare-and-swap too many times to concurrent
    /// writers (or its lease was renewed under it). Nothing was changed; the
    /// same call may succeed if retried.
    #[error("{0} is too contended; retry")]
    Contended(String),
    /// The swarm id is registered and alive under another owner.
    #[error("swarm {0} is registered and alive under another owner")]
    SwarmTaken(String),
    /// A task with this id exists with different content.
    #[error("task {0} exists with different content")]
    TaskExists(String),
    /// The task is finished (completed, dead or cancelled) and cannot change.
    #[error("task {task_id} is {} and cannot change", state.as_str())]
    TaskFinished {
        /// The task.
        task_id: String,
        /// Its final state.
        state: TaskState,
    },
    /// The task is claimed, so it cannot be pushed.
    #[error("task {task_id} is claimed by {owner}")]
    TaskClaimed {
        /// The task.
        task_id: String,
        /// Who holds it.
        owner: String,
    },
    /// The pushed task was acknowledged already.
    #[error("task {0} was already acknowledged")]
    AlreadyAcknowledged(String),
    /// The blocker is resolved and takes no more changes.
    #[error("blocker {0} is resolved")]
    BlockerResolved(String),
    /// The caller's swarm token does not match the registered owner's.
    #[error("swarm {0}: token does not match the registered owner")]
    WrongToken(String),
    /// The deployment already has its maximum of live swarms.
    #[error("the maximum of {max} live swarms is reached (IF_COORDINATOR_MAX_SWARMS)")]
    TooManySwarms {
        /// The limit.
        max: usize,
    },
    /// No task has this id.
    #[error("task {0} not found")]
    TaskNotFound(String),
    /// The swarm lacks capabilities the task requires.
    #[error("swarm {swarm_id} lacks required capabilities {missing:?}")]
    Incapable {
        /// The swarm.
        swarm_id: String,
        /// What it lacks.
        missing: Vec<String>,
    },
    /// Another swarm holds the task's claim.
    #[error("task {task_id} is held by {owner}")]
    NotOwner {
        /// The task.
        task_id: String,
        /// Who holds it.
        owner: String,
    },
    /// The token is not the task's live claim (it lapsed, or a newer claim
    /// replaced it). Nothing was changed.
    #[error("task {task_id}: token {token} is not the live claim (fenced)")]
    Fenced {
        /// The task.
        task_id: String,
        /// The stale token.
        token: i64,
    },
    /// The caller's claim lapsed (its lease ran out or its swarm went away);
    /// the message says when, after what lease, and what became of the task.
    #[error("task {task_id}: claim {token} lapsed {detail}")]
    ClaimLapsed {
        /// The task.
        task_id: String,
        /// The lapsed claim's token.
        token: i64,
        /// When, after what lease, and the task's fate.
        detail: String,
    },
    /// A newer claim of the same swarm replaced the caller's.
    #[error("task {task_id}: claim {token} was replaced by a newer claim (token {current})")]
    ClaimReplaced {
        /// The task.
        task_id: String,
        /// The replaced claim's token.
        token: i64,
        /// The live claim's token.
        current: i64,
    },
    /// No claim with this token holds the task (never claimed, or not now).
    #[error("task {task_id} is not claimed with token {token}: {detail}")]
    NotClaimed {
        /// The task.
        task_id: String,
        /// The token given.
        token: i64,
        /// What the task is now.
        detail: String,
    },
    /// The task is not dead, so it cannot be retried.
    #[error("task {task_id} is {} (only a dead task can be retried)", state.as_str())]
    NotDead {
        /// The task.
        task_id: String,
        /// Its state.
        state: TaskState,
    },
    /// No blocker has this id.
    #[error("blocker {0} not found")]
    BlockerNotFound(String),
    /// A stream was asked to start before the oldest revision the store keeps.
    #[error(
        "history before revision {compact_revision} is compacted; resume from a newer revision"
    )]
    Compacted {
        /// The oldest revision still available.
        compact_revision: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] KvError),
    /// A stored record could not be read back: the data is damaged or was
    /// written by something else.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it could not be decoded.
        reason: String,
    },
}

impl CoreError {
    /// This error as the fault of item `index` of a batch: a malformed field
    /// becomes [`CoreError::InvalidItem`]; anything else stays as it is.
    pub(crate) fn at_item(self, index: usize) -> CoreError {
        match self {
            CoreError::Invalid { field, reason } => CoreError::InvalidItem { index, field, reason },
            other => other,
        }
    }
}
