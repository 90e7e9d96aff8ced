//! One HTTP/1.1 connection under the operator's limits: its request head must
//! arrive within the header timeout (else 408), its request body within the
//! body timeout (else 408, answered by the handler's extractor), and a
//! connection with nothing in flight closes after the idle timeout. An idle
//! connection may also be evicted to make room for a new one.

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::Limits;

/// What a connection is doing, as its watchdog needs to know.
///
/// Requests do not wake the watchdog (three wakes per request, each polling
/// the connection again, cost the HTTP claim path about a fifth of its
/// throughput): it wakes no later than any deadline that could have arisen
/// since it last looked, reads the state, and sleeps again (see
/// [`Activity::next`]). Only an eviction wakes it at once.
#[derive(Default)]
pub(super) struct Activity {
    state: Mutex<State>,
    evicted: Notify,
}

struct State {
    /// Requests whose response is not yet fully sent.
    in_flight: usize,
    /// When the first byte of a request head arrived (none in flight).
    head_started: Option<Instant>,
    /// When the connection last had nothing in flight and no head started.
    idle_since: Instant,
    /// Asked to close (when idle) to make room for a new connection.
    evict: bool,
}

impl Default for State {
    fn default() -> Self {
        State { in_flight: 0, head_started: None, idle_since: Instant::now(), evict: false }
    }
}

/// What the watchdog does next.
enum Next {
    /// Look again then: no deadline is due before it.
    Recheck(Instant),
    /// Part of a request head arrived and the rest is overdue: answer 408.
    HeadTimedOut,
    /// Nothing in flight past the idle timeout: close.
    IdleTimedOut,
    /// Idle and asked to make room.
    Evict,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data: a poisoned lock still holds a usable value.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived: if nothing is in flight, a request head has begun.
    fn bytes_read(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlightGuard {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_started = None;
        drop(state);
        InFlightGuard(self.clone())
    }

    /// Whether it is idle (nothing in flight, no head begun), and since when.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        let state = self.lock();
        (state.in_flight == 0 && state.head_started.is_none() && !state.evict)
            .then_some(state.idle_since)
    }

    /// Asks an idle connection to close.
    pub(super) fn evict(&self) {
        self.lock().evict = true;
        self.evicted.notify_one();
    }

    /// What is due at `now`. A deadline that arises after `now` is never
    /// earlier than `now` plus the shorter timeout (a head begun later is
    /// due a header timeout after it; a request ending later leaves the
    /// connection idle an idle timeout after that), so rechecking by then
    /// misses none.
    fn next(&self, limits: &Limits, now: Instant) -> Next {
        let state = self.lock();
        let soonest_new = now + limits.header_timeout.min(limits.idle_timeout);
        let due = match (state.in_flight, state.head_started) {
            (0, Some(started)) => started + limits.header_timeout,
            (0, None) if state.evict => return Next::Evict,
            (0, None) => state.idle_since + limits.idle_timeout,
            _ => return Next::Recheck(soonest_new),
        };
        match (due <= now, state.head_started.is_some()) {
            (true, true) => Next::HeadTimedOut,
            (true, false) => Next::IdleTimedOut,
            (false, _) => Next::Recheck(due.min(soonest_new)),
        }
    }
}

/// Held by a response body until it is sent (or dropped).
struct InFlightGuard(Arc<Activity>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// The socket, telling the connection's [`Activity`] when bytes arrive.
struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The request body did not arrive within the body timeout. The error
/// table answers it with 408 `request_timeout`.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(BODY_TIMED_OUT)
    }
}

impl std::error::Error for BodyTimedOut {}

/// [`BodyTimedOut`]'s message, also how it is recognised once a rejection
/// has flattened it to text.
pub(crate) const BODY_TIMED_OUT: &str = "the request body did not arrive within the body timeout";

/// A request body that must be complete by a deadline.
struct TimedBody {
    body: Incoming,
    deadline: Instant,
    // Made on the first wait only: most requests have no body.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that counts as in flight until it is sent or dropped.
struct InFlight {
    body: axum::body::Body,
    _guard: InFlightGuard,
}

impl Body for InFlight {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A complete HTTP/1.1 answer with a `{code, message}` body that closes the
/// connection: for the edge's own refusals, written before any router runs.
pub(super) fn canned(status: &str, code: &str, message: &str, extra: &str) -> Vec<u8> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves one connection until it closes, times out, is evicted, or (after
/// `shutdown`) finishes the request in flight.
pub(super) async fn drive<S>(
    io: S,
    router: Router,
    limits: Arc<Limits>,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let activity = activity.clone();
        let body_timeout = limits.body_timeout;
        let max_body_bytes = limits.max_body_bytes;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = activity.request_started();
            let too_large = max_body_bytes.is_some_and(|max| announced_length(&request) > max);
            let deadline = Instant::now() + body_timeout;
            let request = request
                .map(|body| axum::body::Body::new(TimedBody { body, deadline, timer: None }));
            let mut router = router.clone();
            async move {
                if too_large {
                    return Ok(too_large_response().map(|body| InFlight { body, _guard: guard }));
                }
                let response = match router.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| InFlight { body, _guard: guard }))
            }
        })
    };
    let io = hyper_util::rt::TokioIo::new(Watched { io, activity: activity.clone() });
    let mut conn = hyper::server::conn::http1::Builder::new()
        // The header timer here starts at the first byte (hyper's would start
        // while idle, and close without an answer).
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut stopping = *shutdown.borrow();
    if stopping {
        Pin::new(&mut conn).graceful_shutdown();
    }
    loop {
        let recheck = match activity.next(&limits, Instant::now()) {
            Next::Recheck(at) => at,
            Next::Evict | Next::IdleTimedOut => return,
            Next::HeadTimedOut => {
                // Answer 408, then close: the client learns why.
                let mut io = conn.into_parts().io.into_inner();
                let timed_out = canned(
                    "408 Request Timeout",
                    "request_timeout",
                    "the request head did not arrive within the header timeout",
                    "",
                );
                let answer = async {
                    io.io.write_all(&timed_out).await?;
                    io.io.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
                tracing::debug!("request head timed out: 408");
                return;
            }
        };
        tokio::select! {
            served = &mut conn => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.evicted.notified() => {}
            changed = shutdown.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(recheck) => {}
        }
    }
}

/// The body length a request's head announces (0 if none or unreadable: the
/// router's own limit still counts what arrives).
fn announced_length(request: &hyper::Request<Incoming>) -> u64 {
    request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// 413 before reading a body that is announced too large; the unread body
/// leaves the connection unusable, so it closes.
fn too_large_response() -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = crate::AppError::new(
        ifc_api::ErrorCode::PayloadTooLarge,
        "the request body is larger than the server accepts",
    )
    .into_response();
    response
        .headers_mut()
        .insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    response
}
