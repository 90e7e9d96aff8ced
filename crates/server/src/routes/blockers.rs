//! Blockers: raised by a swarm, streamed to the orchestrator as Server-Sent
//! Events, answered with a helper swarm, resolved.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use futures::Stream;
use ifc_api::{
    ApiError, AssignHelper, Blocker, BlockerEvent, BlockerInfo, BlockerRaised, InboxItem,
    ListBlockers, ResolveBlocker,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{Body, Id, Q};
use crate::sse::{StreamStart, resume_point, sse};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(raise_blocker))
        .routes(routes!(list_blockers))
        .routes(routes!(blocker_stream))
        .routes(routes!(get_blocker))
        .routes(routes!(assign_helper))
        .routes(routes!(resolve_blocker))
}

/// Raises a blocker (the swarm): it reaches the orchestrator's stream at once.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/blockers", tag = "blockers",
    params(("swarm_id" = String, Path)), request_body = BlockerInfo,
    responses((status = 201, body = BlockerRaised), (status = "4XX", body = ApiError)))]
async fn raise_blocker(
    State(state): State<AppState>,
    caller: Caller,
    Id(swarm_id): Id,
    Body(info): Body<BlockerInfo>,
) -> Result<(StatusCode, Json<BlockerRaised>), AppError> {
    caller.swarm(&swarm_id)?;
    let blocker_id = state.core.detect_blocker(&swarm_id, info).await?;
    Ok((StatusCode::CREATED, Json(BlockerRaised { blocker_id })))
}

/// Lists blockers (admin).
#[utoipa::path(get, path = "/v1/blockers", tag = "blockers", params(ListBlockers),
    responses((status = 200, body = Vec<Blocker>), (status = "4XX", body = ApiError)))]
async fn list_blockers(
    State(state): State<AppState>,
    caller: Caller,
    Q(query): Q<ListBlockers>,
) -> Answer<Vec<Blocker>> {
    caller.admin()?;
    Ok(Json(state.core.list_blockers(query.open).await?))
}

/// Blockers as they are raised, with helper candidates, as Server-Sent Events
/// (`event: blocker`) (admin).
#[utoipa::path(get, path = "/v1/blockers/stream", tag = "blockers", params(StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = BlockerEvent),
        (status = "4XX", body = ApiError)))]
async fn blocker_stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(query): Q<StreamStart>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.admin()?;
    let after = resume_point(&headers, &query)?;
    let items = state.core.blockers(after).await?;
    Ok(sse(
        state,
        items,
        ("blockers", "blocker"),
        |b: &BlockerEvent| b.revision,
        after.unwrap_or(0),
    ))
}

/// One blocker (admin).
#[utoipa::path(get, path = "/v1/blockers/{blocker_id}", tag = "blockers",
    params(("blocker_id" = String, Path)),
    responses((status = 200, body = Blocker), (status = "4XX", body = ApiError)))]
async fn get_blocker(
    State(state): State<AppState>,
    caller: Caller,
    Id(blocker_id): Id,
) -> Answer<Blocker> {
    caller.admin()?;
    Ok(Json(state.core.get_blocker(&blocker_id).await?))
}

/// Pushes a help task for the blocker to a helper swarm (admin).
#[utoipa::path(post, path = "/v1/blockers/{blocker_id}/assign", tag = "blockers",
    params(("blocker_id" = String, Path)), request_body = AssignHelper,
    responses((status = 200, body = InboxItem), (status = "4XX", body = ApiError)))]
async fn assign_helper(
    State(state): State<AppState>,
    caller: Caller,
    Id(blocker_id): Id,
    Body(req): Body<AssignHelper>,
) -> Answer<InboxItem> {
    caller.admin()?;
    Ok(Json(state.core.assign_helper(&blocker_id, &req.helper_swarm_id).await?))
}

/// Resolves a blocker (admin).
#[utoipa::path(post, path = "/v1/blockers/{blocker_id}/resolve", tag = "blockers",
    params(("blocker_id" = String, Path)), request_body = ResolveBlocker,
    responses((status = 200, body = Blocker), (status = "4XX", body = ApiError)))]
async fn resolve_blocker(
    State(state): State<AppState>,
    caller: Caller,
    Id(blocker_id): Id,
    Body(req): Body<ResolveBlocker>,
) -> Answer<Blocker> {
    caller.admin()?;
    Ok(Json(state.core.resolve_blocker(&blocker_id, &req.resolution).await?))
}
