//! The witness log: queries, export and verification.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ifc_api::{ApiError, Tampering, Verification, WitnessQuery, WitnessRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::Q;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(witness))
        .routes(routes!(witness_export))
        .routes(routes!(witness_verify))
}

/// Witness records in commit order (admin).
#[utoipa::path(get, path = "/v1/witness", tag = "witness", params(WitnessQuery),
    responses((status = 200, body = Vec<WitnessRecord>), (status = "4XX", body = ApiError)))]
async fn witness(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<WitnessQuery>,
) -> Answer<Vec<WitnessRecord>> {
    caller.admin()?;
    Ok(Json(state.core.witness(&q).await?))
}

/// The whole witness log as JSON Lines (admin).
#[utoipa::path(get, path = "/v1/witness/export", tag = "witness",
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = "4XX", body = ApiError)))]
async fn witness_export(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, AppError> {
    caller.admin()?;
    let body = state.core.export_witness().await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Verifies every witness chain (admin).
#[utoipa::path(get, path = "/v1/witness/verify", tag = "witness",
    responses((status = 200, body = Verification), (status = "4XX", body = ApiError)))]
async fn witness_verify(State(state): State<AppState>, caller: Caller) -> Answer<Verification> {
    caller.admin()?;
    let problems: Vec<Tampering> = state.core.verify_witness().await?;
    Ok(Json(Verification { ok: problems.is_empty(), problems }))
}
