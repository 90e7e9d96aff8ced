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
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use ifc_api::ErrorCode;
use ifc_core::{CoreError, CoreStream};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use utoipa::IntoParams;

use crate::error::AppError;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Events buffered per stream.
const STREAM_BUFFER: usize = 256;

/// How often an idle stream sends a comment: it keeps proxies from closing the
/// connection, and a write to a dead socket is how a vanished client is found.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
        // The stream starts at `after + 1`, which must fit.
        Some(after) if !(0..i64::MAX).contains(&after) => Err(AppError::new(
            ErrorCode::InvalidArgument,
            format!("a revision is 0 ..= {}", i64::MAX - 1),
        )),
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

/// Tells every open stream to end (on shutdown): each sends a final `error`
/// event with code `shutting_down` and its resume point, then closes, so a
/// graceful shutdown is not held open by streams that never finish.
#[derive(Clone)]
pub(crate) struct StreamsClosing(Arc<watch::Sender<bool>>);

impl Default for StreamsClosing {
    fn default() -> Self {
        StreamsClosing(Arc::new(watch::channel(false).0))
    }
}

impl StreamsClosing {
    pub(crate) fn close_all(&self) {
        self.0.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Counts one open stream in `ifc_open_streams{kind}` for as long as it lives,
/// however it ends (finished, cut off, or dropped when its client left).
struct OpenStream {
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl OpenStream {
    fn new(metrics: Arc<Metrics>, kind: &'static str) -> Self {
        metrics.stream_opened(kind);
        OpenStream { metrics, kind }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.metrics.stream_closed(self.kind);
    }
}

/// Turns a core stream into SSE: `event: <name>`, `id: <revision>`, JSON data.
/// `kind` labels the stream in `ifc_open_streams`.
///
/// The pump ends (and drops the store watcher) when the reader leaves, even if
/// no item comes: it waits on the channel's closing as well as on the store.
pub(crate) fn sse<T: Serialize + Send + 'static>(
    state: AppState,
    items: CoreStream<T>,
    (kind, name): (&'static str, &'static str),
    revision_of: fn(&T) -> i64,
    start_after: i64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let slow_reader_timeout = state.slow_reader_timeout;
    let open = OpenStream::new(state.metrics.clone(), kind);
    let (tx, rx) = mpsc::channel::<Event>(STREAM_BUFFER);
    let ended: Arc<std::sync::Mutex<Option<StreamEnd>>> = Arc::default();
    let mut closing = state.streams_closing.subscribe();
    {
        let ended = ended.clone();
        tokio::spawn(async move {
            let mut items = items;
            let mut last = start_after;
            let end = |code, message: &str, last| {
                Some(StreamEnd { code, message: message.to_string(), resume_after: last })
            };
            let why = loop {
                let item = tokio::select! {
                    item = items.next() => item,
                    () = tx.closed() => break None, // the reader went away
                    _ = closing.wait_for(|c| *c) => {
                        break end("shutting_down", "the server is shutting down; reconnect", last);
                    }
                };
                let item = match item {
                    Some(Ok(item)) => item,
                    Some(Err(e @ CoreError::Compacted { .. })) => {
                        break end("compacted", &e.to_string(), last);
                    }
                    _ => break end("unavailable", "the store stream ended; reconnect", last),
                };
                let revision = revision_of(&item);
                let data = serde_json::to_string(&item).unwrap_or_default();
                let event = Event::default().event(name).id(revision.to_string()).data(data);
                tokio::select! {
                    sent = tokio::time::timeout(slow_reader_timeout, tx.send(event)) => match sent {
                        Ok(Ok(())) => last = revision,
                        Ok(Err(_)) => break None,
                        Err(_) => break end(
                            "slow_consumer",
                            "the reader fell behind and was cut off; reconnect",
                            last,
                        ),
                    },
                    _ = closing.wait_for(|c| *c) => {
                        break end("shutting_down", "the server is shutting down; reconnect", last);
                    }
                }
            };
            *ended.lock().unwrap_or_else(|e| e.into_inner()) = why;
            // Dropping `items` here drops the store watcher.
        });
    }
    let body =
        futures::stream::unfold((rx, ended, Some(open)), |(mut rx, ended, open)| async move {
            // `open` is dropped with the stream, whenever the stream goes.
            let open = open?;
            if let Some(event) = rx.recv().await {
                return Some((Ok(event), (rx, ended, Some(open))));
            }
            // The pump stopped: say why, once, then end.
            let end = ended.lock().unwrap_or_else(|e| e.into_inner()).take()?;
            let data = serde_json::to_string(&end).unwrap_or_default();
            Some((Ok(Event::default().event("error").data(data)), (rx, ended, None)))
        });
    Sse::new(body).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}
