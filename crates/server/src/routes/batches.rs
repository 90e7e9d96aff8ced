//! Batches: creating many tasks in one request, claiming several.
//!
//! `POST /v1/tasks/batch` is a static path beside `/v1/tasks/{task_id}`, and
//! the router matches a static segment before a parameter whatever the
//! method, so `GET /v1/tasks/batch` lands here too: it answers as `GET
//! /v1/tasks/{task_id}` does for the task whose id is `batch` (the id is
//! valid, and such a task stays readable).

use axum::Json;
use axum::extract::State;
use ifc_api::{
    ApiError, BatchCreated, BatchItemResult, BatchStatus, ClaimBatch, ClaimBatchRequest,
    DEFAULT_CLAIM_BATCH, NewTasks, TaskView,
};
use ifc_core::CreateOutcome;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{Body, BodyOrDefault, Id};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tasks))
        .route("/v1/tasks/batch", axum::routing::get(task_named_batch))
        .routes(routes!(claim_batch))
}

/// Creates up to 1,000 tasks in one request (admin). The batch is checked
/// whole first: a bad item refuses it (400 `invalid_argument` with the item's
/// `index`; more than 1,000 items: 413) and nothing is created. Then each task
/// is created as `POST /v1/tasks` would, and answered at its place: `created`,
/// `exists` (the same content was there: a retried batch is idempotent) or
/// `error` with its own `{code, message}`.
#[utoipa::path(post, path = "/v1/tasks/batch", tag = "tasks", request_body = NewTasks,
    responses((status = 200, body = BatchCreated), (status = "4XX", body = ApiError)))]
async fn create_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Body(batch): Body<NewTasks>,
) -> Answer<BatchCreated> {
    caller.admin()?;
    let answers = state.core.create_tasks(batch.tasks).await?;
    let results = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(CreateOutcome::Created(task)) => {
                BatchItemResult { status: BatchStatus::Created, task: Some(task), error: None }
            }
            Ok(CreateOutcome::Exists(task)) => {
                BatchItemResult { status: BatchStatus::Exists, task: Some(task), error: None }
            }
            Err(e) => BatchItemResult {
                status: BatchStatus::Error,
                task: None,
                error: Some(AppError::from(e).0),
            },
        })
        .collect();
    Ok(Json(BatchCreated { results }))
}

/// `GET /v1/tasks/batch`: the task whose id is `batch` (see the module doc).
async fn task_named_batch(State(state): State<AppState>, _caller: Caller) -> Answer<TaskView> {
    Ok(Json(state.core.get_task("batch").await?))
}

/// Claims up to `max` (1 ..= 100, default 32) of the best ready tasks the
/// swarm can do (the swarm), each its own claim with its own token and
/// deadline, best first; fewer, or none, when fewer are ready.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/claim-batch", tag = "tasks",
    params(("swarm_id" = String, Path)),
    request_body = ClaimBatchRequest,
    responses((status = 200, body = ClaimBatch), (status = "4XX", body = ApiError)))]
async fn claim_batch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    BodyOrDefault(req): BodyOrDefault<ClaimBatchRequest>,
) -> Answer<ClaimBatch> {
    caller.swarm(&id)?;
    let max = req.max.unwrap_or(DEFAULT_CLAIM_BATCH) as usize;
    Ok(Json(ClaimBatch { claims: state.core.claim_next_many(&id, max).await? }))
}
