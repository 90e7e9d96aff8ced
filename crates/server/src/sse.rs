//! Server-Sent Events for the three streams (inbox, blockers, events). SSE ids
//! are store revisions: a client that reconnects with `Last-Event-ID` resumes
//! exactly after the last event it saw.
//!
//! Slow readers: each stream feeds a bounded buffer. If a reader leaves it full
//! for the state's timeout ([`SLOW_READER_TIMEOUT`](crate::SLOW_READER_TIMEOUT)
//! by default), the stream is cut: the buffer drains, then a final `error`
//! event with code `slow_consumer` names the revision to resume after. Nothing
//! grows without bound and no writer waits for a reader.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use ifc_api::ErrorCode;
use ifc_core::{CoreError, CoreStream};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::error::AppError;
use crate::state::AppState;

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
pub(crate) fn resume_point(
    headers: &HeaderMap,
    query: &StreamStart,
) -> Result<Option<i64>, AppError> {
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
pub(crate) fn sse<T: Serialize + Send + 'static>(
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
