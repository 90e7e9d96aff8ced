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
mod routes;
mod sse;
mod state;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ifc_api::ErrorCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::Caller;
pub use error::AppError;
pub use extract::{Body, Id, Q};
pub use listen::{serve, serve_tls, tls_config};
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
        .merge(routes::witness::routes())
        .merge(routes::inbox::routes())
        .merge(routes::blockers::routes())
        .merge(routes::events::routes())
        .merge(routes::ops::routes())
        .merge(routes::kv::routes())
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16(), started.elapsed());
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

/// The whole service: routes, `/openapi.json`, errors for unknown routes, a body
/// limit, and metrics.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let (router, api) = routes().split_for_parts();
    let api = Arc::new(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { Json(api.as_ref().clone()) }),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}
