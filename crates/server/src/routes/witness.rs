//! The witness log: queries, export, verification and checkpoints. Export,
//! checkpoints and verification read the store a page at a time, so their
//! memory stays flat however long the log is.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use ifc_api::{ApiError, Verification, WitnessQuery, WitnessRecord};
use ifc_core::CoreError;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
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
        .routes(routes!(witness_checkpoints))
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

/// The whole witness log as JSON Lines, streamed chain by chain; each record's
/// `revision` gives the commit order across chains (admin).
#[utoipa::path(get, path = "/v1/witness/export", tag = "witness",
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = "4XX", body = ApiError)))]
async fn witness_export(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, AppError> {
    caller.admin()?;
    json_lines(state.core.witness_export_stream()).await
}

/// Every pruned chain's checkpoint as JSON Lines `{chain, seq, hash}`: an
/// archive of the pruned records must end there (admin).
#[utoipa::path(get, path = "/v1/witness/checkpoints", tag = "witness",
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = "4XX", body = ApiError)))]
async fn witness_checkpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, AppError> {
    caller.admin()?;
    json_lines(state.core.witness_checkpoints()).await
}

/// Streams `items` as JSON Lines. The first item is awaited before the
/// status is sent, so a store that is down answers with its error code; a
/// failure later cuts the body short (the client sees a truncated stream).
async fn json_lines<T: Serialize + Send + 'static>(
    items: impl Stream<Item = Result<T, CoreError>> + Send + 'static,
) -> Result<Response, AppError> {
    let mut items = Box::pin(items);
    let first = items.try_next().await?;
    let line = |item: T| {
        let mut line = serde_json::to_vec(&item).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    let body = stream::iter(first.map(Ok)).chain(items).map_ok(line);
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    Ok((headers, Body::from_stream(body)).into_response())
}

/// Where a verification walk starts and how far it goes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VerifyQuery {
    /// First chain to check (a previous answer's `next_chain`); the first chain if absent.
    from_chain: Option<String>,
    /// Most chains to check in this request; every remaining chain if absent.
    max_chains: Option<u64>,
}

/// Verifies witness chains chain by chain from `from_chain`, at most
/// `max_chains` of them; `next_chain` says where to resume (admin).
#[utoipa::path(get, path = "/v1/witness/verify", tag = "witness", params(VerifyQuery),
    responses((status = 200, body = Verification), (status = "4XX", body = ApiError)))]
async fn witness_verify(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<VerifyQuery>,
) -> Answer<Verification> {
    caller.admin()?;
    let max_chains = q.max_chains.unwrap_or(u64::MAX).max(1);
    let page = state.core.verify_witness_from(q.from_chain.as_deref(), max_chains).await?;
    Ok(Json(Verification {
        ok: page.problems.is_empty(),
        problems: page.problems,
        chains: page.chains,
        records: page.records,
        next_chain: page.next_chain,
    }))
}
