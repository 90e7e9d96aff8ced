//! Swarm registration, statistics and liveness.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ifc_api::{ApiError, ErrorCode, Heartbeat, RegisterSwarm, Registration, Swarm, SwarmStats};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::{Caller, bearer};
use crate::error::AppError;
use crate::extract::{Body, Id};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_swarm, list_swarms))
        .routes(routes!(swarm_stats, unregister_swarm))
        .routes(routes!(heartbeat))
}

/// Registers a swarm (admin), or refreshes it (with its own token in the body).
#[utoipa::path(post, path = "/v1/swarms", tag = "swarms", request_body = RegisterSwarm,
    responses((status = 201, body = Registration), (status = "4XX", body = ApiError)))]
async fn register_swarm(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<RegisterSwarm>,
) -> Result<(StatusCode, Json<Registration>), AppError> {
    caller.admin()?;
    let session = state
        .core
        .register_swarm(&req.swarm_id, req.capabilities, req.metadata, req.token.as_deref())
        .await?;
    let registration = Registration {
        swarm_id: session.swarm_id,
        token: session.token,
        ttl_secs: session.ttl_secs,
    };
    Ok((StatusCode::CREATED, Json(registration)))
}

/// Lists live swarms (admin).
#[utoipa::path(get, path = "/v1/swarms", tag = "swarms",
    responses((status = 200, body = Vec<Swarm>), (status = "4XX", body = ApiError)))]
async fn list_swarms(State(state): State<AppState>, caller: Caller) -> Answer<Vec<Swarm>> {
    caller.admin()?;
    Ok(Json(state.core.list_swarms().await?.iter().map(|s| s.public()).collect()))
}

/// A swarm's statistics (admin or the swarm).
#[utoipa::path(get, path = "/v1/swarms/{swarm_id}", tag = "swarms",
    params(("swarm_id" = String, Path)),
    responses((status = 200, body = SwarmStats), (status = "4XX", body = ApiError)))]
async fn swarm_stats(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<SwarmStats> {
    caller.admin_or_swarm(&id)?;
    match state.core.get_swarm_stats(&id).await? {
        Some(stats) => Ok(Json(stats)),
        None => Err(AppError::new(
            ErrorCode::SwarmNotRegistered,
            format!("swarm {id} is not registered"),
        )),
    }
}

/// Unregisters a swarm (the swarm, or the admin for any swarm); its claims
/// lapse at once.
#[utoipa::path(delete, path = "/v1/swarms/{swarm_id}", tag = "swarms",
    params(("swarm_id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ApiError)))]
async fn unregister_swarm(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id,
) -> Result<StatusCode, AppError> {
    caller.admin_or_swarm(&id)?;
    match caller {
        Caller::Admin | Caller::AdminFor(_) => state.core.evict_swarm(&id).await?,
        // The viewer never gets here (a DELETE); its token would not match.
        Caller::Swarm(_) | Caller::Viewer => {
            let token = bearer(&headers).unwrap_or_default();
            state.core.unregister_swarm(&id, token).await?
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps a swarm alive (the swarm).
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/heartbeat", tag = "swarms",
    params(("swarm_id" = String, Path)),
    responses((status = 200, body = Heartbeat), (status = "4XX", body = ApiError)))]
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id,
) -> Answer<Heartbeat> {
    caller.swarm(&id)?;
    let ttl_secs = match caller {
        Caller::AdminFor(_) => state.core.touch_swarm(&id).await?,
        _ => state.core.heartbeat(&id, bearer(&headers).unwrap_or_default()).await?,
    };
    Ok(Json(Heartbeat { ttl_secs }))
}
