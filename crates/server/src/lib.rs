//! The IF.coordinator HTTP/JSON service.
//!
//! Handlers are thin: extract (auth, path, body) → one core call → wire type.
//! Errors go through the one table in [`error`]. The OpenAPI document is
//! generated from the same route definitions that build the router, so the two
//! cannot drift.
//!
//! Where things are: [`state`] (what handlers share), [`auth`] (who is calling
//! and what they may do), [`extract`] (extractors whose rejections are
//! [`AppError`]s), [`routes`] (the handlers, one file per resource), [`sse`]
//! (the event streams), [`listen`] (plain and TLS listeners), [`metrics`]; this
//! file puts the router and its OpenAPI document together.

#![deny(missing_docs)]

mod auth;
mod error;
mod extract;
mod listen;
mod metrics;
pub mod openapi;
mod process;
mod routes;
mod sse;
mod state;
mod throughput;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ifc_api::ErrorCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::Caller;
pub use error::AppError;
pub use extract::{Body, Id, Q};
pub use listen::{BodyTimedOut, Limits, serve, serve_tls, serve_with, tls_config};
pub use metrics::{MeteredStore, Metrics};
pub use state::{AppState, SLOW_READER_TIMEOUT};

#[derive(OpenApi)]
#[openapi(info(
    title = "IF.coordinator",
    description = "Coordination for fleets of agent swarms."
))]
struct ApiDoc;

/// The routes and their OpenAPI document, from one definition.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::swarms::routes())
        .merge(routes::tasks::routes())
        .merge(routes::batches::routes())
        .merge(routes::witness::routes())
        .merge(routes::inbox::routes())
        .merge(routes::blockers::routes())
        .merge(routes::events::routes())
        .merge(routes::ops::routes())
        .merge(routes::queues::routes())
        .merge(routes::kv::routes())
        .merge(routes::stats::routes())
}

/// The OpenAPI document: the routes' annotations completed by [`openapi`]
/// (version, security, the swarm header, error responses).
pub fn openapi() -> serde_json::Value {
    document(routes().split_for_parts().1)
}

fn document(api: utoipa::openapi::OpenApi) -> serde_json::Value {
    openapi::complete(serde_json::to_value(api).unwrap_or_default())
}

/// Times and counts every request, logs it (one line at debug; auth refusals at
/// info; server errors at error), and closes the connection after a refused
/// request that carried a body the handler may not have read.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    // The swarm a request acts as: an id, never a token.
    let swarm = request
        .headers()
        .get("x-ifc-swarm")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let started = Instant::now();
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state.metrics.request(method.as_str(), &route, status.as_u16(), elapsed);
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    if status.is_server_error() {
        tracing::error!(%method, %route, status = status.as_u16(), latency_ms, swarm, "server error");
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        tracing::info!(%method, %route, status = status.as_u16(), swarm, "refused");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), latency_ms, swarm, "request");
    }
    // A refusal may come before the body is read; an unread body leaves the
    // connection unusable, so say it will close instead of letting the next
    // request on it fail with a broken pipe.
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        return AppError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
            .into_response();
    }
    response
}

/// The whole service: routes, `/openapi.json` (also `/v1/openapi.json`), errors for unknown routes, a body
/// limit, and metrics.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    metrics::spawn_task_gauge(&state);
    throughput::spawn(&state.core, &state.throughput);
    let (router, api) = routes().split_for_parts();
    let api = Arc::new(document(api));
    let served = api.clone();
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { Json(served.as_ref().clone()) }),
        )
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { Json(api.as_ref().clone()) }),
        )
        .merge(ui::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), auth::mark_admin_acting))
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}
