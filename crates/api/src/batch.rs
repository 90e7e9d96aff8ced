//! The wire types of batches: creating many tasks in one request
//! (`POST /v1/tasks/batch`) and claiming several (`POST
//! /v1/swarms/{swarm_id}/claim-batch`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, Claim, NewTask, TaskRecord};

/// The most tasks one batch creates.
pub const MAX_BATCH_TASKS: usize = 1000;
/// The most tasks one claim-batch takes.
pub const MAX_CLAIM_BATCH: u32 = 100;
/// How many tasks a claim-batch takes when the request does not say.
pub const DEFAULT_CLAIM_BATCH: u32 = 32;

/// Tasks to create in one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewTasks {
    /// 1 ..= 1,000 tasks, each as `POST /v1/tasks` takes it; ids unique
    /// within the batch. One bad item refuses the whole batch (400, its
    /// `index` in the error) and nothing is created.
    pub tasks: Vec<NewTask>,
}

/// What became of one task of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Created now.
    Created,
    /// It existed already with the same content (a retried batch): nothing
    /// changed.
    Exists,
    /// Not created; `error` says why (`task_exists` with other content, or a
    /// store failure that another try may not meet).
    Error,
}

/// One task's answer in a batch, at the task's place in the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchItemResult {
    /// What became of it.
    pub status: BatchStatus,
    /// The task as it stands (`created` and `exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRecord>,
    /// Why it was not created (`error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// The answer to a batch create: one result per task, in request order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchCreated {
    /// One per task of the request, in its order.
    pub results: Vec<BatchItemResult>,
}

/// A claim-batch request (the body may be left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClaimBatchRequest {
    /// The most tasks to claim, 1 ..= 100 (default 32).
    #[serde(default)]
    pub max: Option<u32>,
}

/// The answer to a claim-batch: the claims made, best first (higher
/// priority, then older); fewer than asked, or none, when fewer are ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimBatch {
    /// Each its own claim: its own token (carry it on renew, complete, fail,
    /// release) and deadline.
    pub claims: Vec<Claim>,
}
