//! Every coordination event, as Server-Sent Events.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures::Stream;
use ifc_api::{ApiError, CoordinationEvent};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::Q;
use crate::sse::{StreamStart, resume_point, sse};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Every coordination event, as Server-Sent Events (`event: event`) (admin).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = CoordinationEvent),
        (status = "4XX", body = ApiError)))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(query): Q<StreamStart>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.admin()?;
    let after = resume_point(&headers, &query)?;
    let items = state.core.events(after).await?;
    Ok(sse(
        state,
        items,
        ("events", "event"),
        |e: &CoordinationEvent| e.revision,
        after.unwrap_or(0),
    ))
}
