//! Queue depth for operators: tasks by state and ready tasks by capability set.

use axum::Json;
use axum::extract::State;
use ifc_api::{ApiError, QueueCounts};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(queues))
}

/// Tasks by state and ready tasks by capability set (admin).
#[utoipa::path(get, path = "/v1/queues", tag = "tasks",
    responses((status = 200, body = QueueCounts), (status = "4XX", body = ApiError)))]
async fn queues(State(state): State<AppState>, caller: Caller) -> Answer<QueueCounts> {
    caller.admin()?;
    Ok(Json(state.core.queue_counts().await?))
}
