//! Push, blockers and events over HTTP, with Server-Sent Events for the three
//! streams. SSE ids are store revisions: a client that reconnects with
//! `Last-Event-ID` resumes exactly after the last event it saw.
//!
//! Slow readers: each stream feeds a bounded buffer. If a reader leaves it full
//! for [`SLOW_READER_TIMEOUT`], the stream is cut: the buffer drains, then a
//! final `error` event with code `slow_consumer` names the revision to resume
//! after. Nothing grows without bound and no writer waits for a reader.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use ifc_api::{
    AckRequest, ApiError, AssignHelper, Blocker, BlockerEvent, BlockerInfo, BlockerRaised,
    CoordinationEvent, ErrorCode, InboxItem, ListBlockers, NewTask, Renewed, ResolveBlocker,
    TaskRecord,
};
use ifc_core::{CoreError, CoreStream};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::{Answer, AppError, AppState, Body, Caller, Id, Q};

/// How long a reader may leave its buffer full before it is cut off (by
/// default; see [`crate::AppState::with_slow_reader_timeout`]).
pub const SLOW_READER_TIMEOUT: Duration = Duration::from_secs(10);
/// Events buffered per stream.
const STREAM_BUFFER: usize = 256;

/// Where a stream starts: after `Last-Event-ID`, or after `?after=`; with
/// neither, the inbox starts with every pending push and the other streams
/// start now.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamStart {
    /// Resume after this revision (the `Last-Event-ID` header wins).
    #[serde(default)]
    pub after: Option<i64>,
}

/// Where a stream resumes: after `Last-Event-ID`, else after `?after=`; `None`
/// when neither is given.
fn resume_point(headers: &HeaderMap, query: &StreamStart) -> Result<Option<i64>, AppError> {
    let after = match headers.get("last-event-id") {
        Some(value) => {
            Some(value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).ok_or_else(
                || AppError::new(ErrorCode::InvalidArgument, "Last-Event-ID is not a revision"),
            )?)
        }
        None => query.after,
    };
    match after {
        Some(after) if after < 0 => {
            Err(AppError::new(ErrorCode::InvalidArgument, "a revision is ≥ 0"))
        }
        after => Ok(after),
    }
}

#[derive(Serialize)]
struct StreamEnd {
    code: &'static str,
    message: String,
    /// Reconnect with this as `Last-Event-ID` (0: nothing was delivered).
    resume_after: i64,
}

/// Turns a core stream into SSE: `event: <name>`, `id: <revision>`, JSON data.
fn sse<T: Serialize + Send + 'static>(
    state: AppState,
    items: CoreStream<T>,
    name: &'static str,
    revision_of: fn(&T) -> i64,
    start_after: i64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (metrics, slow_reader_timeout) = (state.metrics.clone(), state.slow_reader_timeout);
    let (tx, rx) = mpsc::channel::<Event>(STREAM_BUFFER);
    let last = Arc::new(AtomicI64::new(start_after));
    let ended: Arc<std::sync::Mutex<Option<StreamEnd>>> = Arc::default();
    let cut = Arc::new(AtomicBool::new(false));
    metrics.open_streams.fetch_add(1, Ordering::Relaxed);
    {
        let (last, ended) = (last.clone(), ended.clone());
        tokio::spawn(async move {
            let mut items = items;
            while let Some(item) = items.next().await {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => {
                        let (code, message) = match &e {
                            CoreError::Compacted { .. } => ("compacted", e.to_string()),
                            _ => ("unavailable", "the store stream ended; reconnect".to_string()),
                        };
                        *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(StreamEnd {
                            code,
                            message,
                            resume_after: last.load(Ordering::Relaxed),
                        });
                        break;
                    }
                };
                let revision = revision_of(&item);
                let data = serde_json::to_string(&item).unwrap_or_default();
                let event = Event::default().event(name).id(revision.to_string()).data(data);
                match tokio::time::timeout(slow_reader_timeout, tx.send(event)).await {
                    Ok(Ok(())) => last.store(revision, Ordering::Relaxed),
                    Ok(Err(_)) => break, // the reader went away
                    Err(_) => {
                        *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(StreamEnd {
                            code: "slow_consumer",
                            message: "the reader fell behind and was cut off; reconnect".into(),
                            resume_after: last.load(Ordering::Relaxed),
                        });
                        break;
                    }
                }
            }
        });
    }
    let body = futures::stream::unfold(
        (rx, ended, cut, metrics),
        |(mut rx, ended, cut, metrics)| async move {
            if let Some(event) = rx.recv().await {
                return Some((Ok(event), (rx, ended, cut, metrics)));
            }
            // The pump stopped: say why, once, then end.
            if cut.swap(true, Ordering::Relaxed) {
                metrics.open_streams.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            let end = ended.lock().unwrap_or_else(|e| e.into_inner()).take();
            match end {
                Some(end) => {
                    let data = serde_json::to_string(&end).unwrap_or_default();
                    Some((
                        Ok(Event::default().event("error").data(data)),
                        (rx, ended, cut, metrics),
                    ))
                }
                None => {
                    metrics.open_streams.fetch_sub(1, Ordering::Relaxed);
                    None
                }
            }
        },
    );
    Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
}

/// Pushes a task to one swarm (admin): created if new, taken if ready, and put
/// in the swarm's durable inbox.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/push", tag = "push", params(("swarm_id" = String, Path)),
    request_body = NewTask,
    responses((status = 201, body = InboxItem), (status = "4XX", body = ApiError)))]
pub async fn push_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(swarm_id): Id,
    Body(task): Body<NewTask>,
) -> Result<(StatusCode, Json<InboxItem>), AppError> {
    caller.admin()?;
    Ok((StatusCode::CREATED, Json(state.core.push_task_to_swarm(&swarm_id, task).await?)))
}

/// The swarm's inbox as Server-Sent Events (`event: task`, `id: <revision>`);
/// reconnect with `Last-Event-ID` to resume (the swarm).
#[utoipa::path(get, path = "/v1/swarms/{swarm_id}/inbox", tag = "push",
    params(("swarm_id" = String, Path), StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = InboxItem), (status = "4XX", body = ApiError)))]
pub async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(swarm_id): Id,
    Q(query): Q<StreamStart>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.swarm(&swarm_id)?;
    let after = resume_point(&headers, &query)?.unwrap_or(0);
    let items = state.core.inbox(&swarm_id, after).await?;
    Ok(sse(state.clone(), items, "task", |i: &InboxItem| i.revision, after))
}

/// Two path parameters.
pub struct Ids(pub String, pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ids {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, AppError> {
        axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path((a, b))| Ids(a, b))
            .map_err(|e| AppError::new(ErrorCode::InvalidArgument, e.body_text()))
    }
}

/// Acknowledges a pushed task (the swarm): it becomes a normal claim.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/inbox/{task_id}/ack", tag = "push",
    params(("swarm_id" = String, Path), ("task_id" = String, Path)), request_body = AckRequest,
    responses((status = 200, body = Renewed), (status = "4XX", body = ApiError)))]
pub async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Ids(swarm_id, task_id): Ids,
    Body(req): Body<AckRequest>,
) -> Answer<Renewed> {
    caller.swarm(&swarm_id)?;
    Ok(Json(Renewed { deadline_ms: state.core.ack_push(&swarm_id, &task_id, req.token).await? }))
}

/// Declines a pushed task (the swarm): it returns to the pool at once.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/inbox/{task_id}/decline", tag = "push",
    params(("swarm_id" = String, Path), ("task_id" = String, Path)), request_body = AckRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
pub async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    Ids(swarm_id, task_id): Ids,
    Body(req): Body<AckRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&swarm_id)?;
    Ok(Json(state.core.decline_push(&swarm_id, &task_id, req.token).await?))
}

/// Raises a blocker (the swarm): it reaches the orchestrator's stream at once.
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/blockers", tag = "blockers",
    params(("swarm_id" = String, Path)), request_body = BlockerInfo,
    responses((status = 201, body = BlockerRaised), (status = "4XX", body = ApiError)))]
pub async fn raise_blocker(
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
pub async fn list_blockers(
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
    responses((status = 200, content_type = "text/event-stream", body = BlockerEvent), (status = "4XX", body = ApiError)))]
pub async fn blocker_stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(query): Q<StreamStart>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.admin()?;
    let after = resume_point(&headers, &query)?;
    let items = state.core.blockers(after).await?;
    Ok(sse(state.clone(), items, "blocker", |b: &BlockerEvent| b.revision, after.unwrap_or(0)))
}

/// One blocker (admin).
#[utoipa::path(get, path = "/v1/blockers/{blocker_id}", tag = "blockers", params(("blocker_id" = String, Path)),
    responses((status = 200, body = Blocker), (status = "4XX", body = ApiError)))]
pub async fn get_blocker(
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
pub async fn assign_helper(
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
pub async fn resolve_blocker(
    State(state): State<AppState>,
    caller: Caller,
    Id(blocker_id): Id,
    Body(req): Body<ResolveBlocker>,
) -> Answer<Blocker> {
    caller.admin()?;
    Ok(Json(state.core.resolve_blocker(&blocker_id, &req.resolution).await?))
}

/// Every coordination event, as Server-Sent Events (`event: event`) (admin).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(StreamStart),
    responses((status = 200, content_type = "text/event-stream", body = CoordinationEvent), (status = "4XX", body = ApiError)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(query): Q<StreamStart>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.admin()?;
    let after = resume_point(&headers, &query)?;
    let items = state.core.events(after).await?;
    Ok(sse(state.clone(), items, "event", |e: &CoordinationEvent| e.revision, after.unwrap_or(0)))
}
