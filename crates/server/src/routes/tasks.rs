//! Tasks: creation, listing, claims and their outcomes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ifc_api::{
    ApiError, ClaimOutcome, ClaimRequest, CompleteRequest, ErrorCode, FailRequest, ListTasks,
    NewTask, NextClaim, Owner, ReleaseRequest, RenewRequest, Renewed, TaskPage, TaskRecord,
    TaskView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{Body, Id, Q};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(claim_next))
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(task_owner))
        .routes(routes!(claim_task))
        .routes(routes!(renew_claim))
        .routes(routes!(release_claim))
        .routes(routes!(complete_task))
        .routes(routes!(fail_task))
        .routes(routes!(cancel_task))
        .routes(routes!(retry_task))
}

/// Claims the best ready task the swarm can do (the swarm).
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/claim-next", tag = "tasks",
    params(("swarm_id" = String, Path)),
    responses((status = 200, body = NextClaim), (status = "4XX", body = ApiError)))]
async fn claim_next(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<NextClaim> {
    caller.swarm(&id)?;
    Ok(Json(NextClaim { claim: state.core.claim_next(&id).await? }))
}

/// Creates a task (admin). Idempotent for the same id and content.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = NewTask,
    responses((status = 201, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    Body(task): Body<NewTask>,
) -> Result<(StatusCode, Json<TaskRecord>), AppError> {
    caller.admin()?;
    Ok((StatusCode::CREATED, Json(state.core.create_task(task).await?)))
}

/// Lists tasks in one state, a page at a time (admin).
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListTasks),
    responses((status = 200, body = TaskPage), (status = "4XX", body = ApiError)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<ListTasks>,
) -> Answer<TaskPage> {
    caller.admin()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        let message = format!("limit is 1 ..= 100, not {limit}");
        return Err(crate::AppError::new(ifc_api::ErrorCode::InvalidArgument, message));
    }
    Ok(Json(state.core.list_tasks(q.state, q.after.as_deref(), limit).await?))
}

/// The whole task (admin or any swarm).
#[utoipa::path(get, path = "/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = String, Path)),
    responses((status = 200, body = TaskView), (status = "4XX", body = ApiError)))]
async fn get_task(State(state): State<AppState>, _caller: Caller, Id(id): Id) -> Answer<TaskView> {
    Ok(Json(state.core.get_task(&id).await?))
}

/// The seed's owner string (admin or any swarm).
#[utoipa::path(get, path = "/v1/tasks/{task_id}/owner", tag = "tasks",
    params(("task_id" = String, Path)),
    responses((status = 200, body = Owner), (status = "4XX", body = ApiError)))]
async fn task_owner(State(state): State<AppState>, _caller: Caller, Id(id): Id) -> Answer<Owner> {
    match state.core.get_task_owner(&id).await? {
        Some(owner) => Ok(Json(Owner { owner })),
        None => Err(AppError::new(ErrorCode::TaskNotFound, format!("task {id} not found"))),
    }
}

/// Claims a task (the swarm in the body). A lost race is a 200 with outcome
/// `already_claimed`.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/claim", tag = "tasks",
    params(("task_id" = String, Path)),
    request_body = ClaimRequest,
    responses((status = 200, body = ClaimOutcome), (status = "4XX", body = ApiError)))]
async fn claim_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<ClaimRequest>,
) -> Answer<ClaimOutcome> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(state.core.claim_task(&req.swarm_id, &id).await?))
}

/// Extends a claim (its holder).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/renew", tag = "tasks",
    params(("task_id" = String, Path)),
    request_body = RenewRequest,
    responses((status = 200, body = Renewed), (status = "4XX", body = ApiError)))]
async fn renew_claim(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<RenewRequest>,
) -> Answer<Renewed> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(Renewed { deadline_ms: state.core.renew_claim(&req.swarm_id, &id, req.token).await? }))
}

/// Gives a claimed task back to the pool unfinished, without using an attempt
/// (its holder, with the claim's token): a worker that stops.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/release", tag = "tasks",
    params(("task_id" = String, Path)),
    request_body = ReleaseRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn release_claim(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<ReleaseRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(state.core.release_claim(&req.swarm_id, &id, req.token).await?))
}

/// Completes a task (its holder, with the claim's token).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/complete", tag = "tasks",
    params(("task_id" = String, Path)),
    request_body = CompleteRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn complete_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<CompleteRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&req.swarm_id)?;
    let record = state.core.complete_task(&req.swarm_id, &id, req.token, req.result).await?;
    if let Some(attempt) = record.history.last() {
        state.metrics.completed(attempt.claimed_at_ms, attempt.ended_at_ms);
    }
    Ok(Json(record))
}

/// Fails a task (its holder): back to the pool, or to dead-letter.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/fail", tag = "tasks",
    params(("task_id" = String, Path)),
    request_body = FailRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn fail_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<FailRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(state.core.fail_task(&req.swarm_id, &id, req.token, req.error).await?))
}

/// Cancels a task (admin).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/cancel", tag = "tasks",
    params(("task_id" = String, Path)),
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<TaskRecord> {
    caller.admin()?;
    Ok(Json(state.core.cancel_task(&id).await?))
}

/// Puts a dead task back in the pool with its attempts reset (admin);
/// witnessed as `task_retried`. Any other state is 409 `not_dead`.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/retry", tag = "tasks",
    params(("task_id" = String, Path)),
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn retry_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<TaskRecord> {
    caller.admin()?;
    Ok(Json(state.core.retry_task(&id).await?))
}
