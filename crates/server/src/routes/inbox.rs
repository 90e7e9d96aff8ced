//! Push: a task sent to one swarm's durable inbox, streamed to it as
//! Server-Sent Events, and acknowledged (a normal claim) or declined.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use futures::Stream;
use ifc_api::{AckRequest, ApiError, InboxItem, NewTask, Renewed, TaskRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{Body, Id, Ids, Q};
use crate::sse::{StreamStart, resume_point, sse};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push_task))
        .routes(routes!(inbox))
        .routes(routes!(ack))
        .routes(routes!(decline))
}

/// Pushes a task to one swarm (admin): created if new, taken if ready, and put
/// in the swarm's durable inbox.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/push", tag = "push",
    params(("swarm_id" = String, Path)),
    request_body = NewTask,
    responses((status = 201, body = InboxItem), (status = "4XX", body = ApiError)))]
async fn push_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(swarm_id): Id,
    Body(task): Body<NewTask>,
) -> Result<(StatusCode, Json<InboxItem>), AppError> {
    caller.admin()?;
    Ok((StatusCode::CREATED, Json(state.core.push_task_to_swarm(&swarm_id, task).await?)))
}

/// The swarm's inbox as Server-Sent Events (`event: task`, `id: <revision>`);
/// reconnect with `Last-Event-ID` to resume (the swarm).
#[utoipa::path(get, path = "/v1/swarms/{swarm_id}/inbox", tag = "push",
    params(("swarm_id" = String, Path), StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = InboxItem),
        (status = "4XX", body = ApiError)))]
async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(swarm_id): Id,
    Q(query): Q<StreamStart>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.swarm(&swarm_id)?;
    let after = resume_point(&headers, &query)?.unwrap_or(0);
    let items = state.core.inbox(&swarm_id, after).await?;
    Ok(sse(state, items, ("inbox", "task"), |i: &InboxItem| i.revision, after))
}

/// Acknowledges a pushed task (the swarm): it becomes a normal claim.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/inbox/{task_id}/ack", tag = "push",
    params(("swarm_id" = String, Path), ("task_id" = String, Path)), request_body = AckRequest,
    responses((status = 200, body = Renewed), (status = "4XX", body = ApiError)))]
async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Ids(swarm_id, task_id): Ids,
    Body(req): Body<AckRequest>,
) -> Answer<Renewed> {
    caller.swarm(&swarm_id)?;
    Ok(Json(Renewed { deadline_ms: state.core.ack_push(&swarm_id, &task_id, req.token).await? }))
}

/// Declines a pushed task (the swarm): it returns to the pool at once.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/inbox/{task_id}/decline", tag = "push",
    params(("swarm_id" = String, Path), ("task_id" = String, Path)), request_body = AckRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    Ids(swarm_id, task_id): Ids,
    Body(req): Body<AckRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&swarm_id)?;
    Ok(Json(state.core.decline_push(&swarm_id, &task_id, req.token).await?))
}
