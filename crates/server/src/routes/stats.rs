//! Numbers for the dashboard: throughput over the last hour and a blocker's
//! helper candidates.

use axum::Json;
use axum::extract::State;
use ifc_api::{ApiError, HelperCandidate};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::extract::Id;
use crate::state::AppState;
use crate::throughput::ThroughputReport;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(throughput)).routes(routes!(helper_candidates))
}

/// Claims and completions per minute over the last hour, as this node counted
/// them from the event stream since `since_ms` (admin or viewer).
#[utoipa::path(get, path = "/v1/stats/throughput", tag = "ops",
    responses((status = 200, body = ThroughputReport), (status = "4XX", body = ApiError)))]
async fn throughput(State(state): State<AppState>, caller: Caller) -> Answer<ThroughputReport> {
    caller.admin()?;
    Ok(Json(state.throughput.now()))
}

/// Live swarms that could help with a blocker, least loaded first (admin or
/// viewer).
#[utoipa::path(get, path = "/v1/blockers/{blocker_id}/candidates", tag = "blockers",
    params(("blocker_id" = String, Path)),
    responses((status = 200, body = Vec<HelperCandidate>), (status = "4XX", body = ApiError)))]
async fn helper_candidates(
    State(state): State<AppState>,
    caller: Caller,
    Id(blocker_id): Id,
) -> Answer<Vec<HelperCandidate>> {
    caller.admin()?;
    let blocker = state.core.get_blocker(&blocker_id).await?;
    Ok(Json(state.core.helper_candidates(&blocker).await?))
}
