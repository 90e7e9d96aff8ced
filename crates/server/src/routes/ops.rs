//! For operators: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ifc_api::{ApiError, ErrorCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::AppError;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The store answers with a quorum (on etcd: a majority of members, not one endpoint).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = String), (status = 503, body = ApiError)))]
async fn readyz(State(state): State<AppState>) -> Result<String, AppError> {
    let health = state.core.store().health().await;
    if !health.quorum {
        return Err(AppError::new(
            ErrorCode::Unavailable,
            format!("no quorum: {} of {} store members answer", health.answering, health.members),
        ));
    }
    Ok(format!("ready ({} of {} store members answer)", health.answering, health.members))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, body = String)))]
async fn metrics_text(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
