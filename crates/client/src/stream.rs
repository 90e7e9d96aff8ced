//! Server-sent event streams: a minimal reader with reconnect, capped
//! backoff and `Last-Event-ID`, and what it tells a caller while it retries.

use std::time::Duration;

use ifc_api::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::Sender;

use crate::error::transport;
use crate::{Client, ClientError};

/// What a stream does while it cannot deliver, for a caller that tells its
/// user (see [`Client::with_stream_notices`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamNotice {
    /// The stream could not connect, or the server answered 5xx: it tries
    /// again after `retry_in`, resuming after revision `after`.
    Retrying {
        /// Why it could not stream.
        cause: String,
        /// When it tries again.
        retry_in: std::time::Duration,
        /// The revision it resumes after (`None`: from now).
        after: Option<i64>,
    },
    /// Streaming (again), after revision `after` (`None`: from now).
    Connected {
        /// The revision it resumed after.
        after: Option<i64>,
    },
}

/// A stream of server-sent items; it reconnects by itself (resuming with
/// `Last-Event-ID`) and ends only on an error it cannot recover from.
pub type ItemStream<T> = futures::stream::BoxStream<'static, Result<T, ClientError>>;

impl Client {
    /// `path`'s `name` events as a stream, followed by a background task that
    /// ends when the stream is dropped; `revision_of` gives each item's resume
    /// point.
    pub(crate) fn event_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        path: String,
        name: &'static str,
        after: Option<i64>,
        revision_of: fn(&T) -> i64,
    ) -> ItemStream<T> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(follow(self.clone(), path, name, after, revision_of, tx));
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}

#[derive(serde::Deserialize)]
struct StreamEnd {
    code: String,
    message: String,
}

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn notify(client: &Client, notice: StreamNotice) {
    if let Some(notices) = &client.notices {
        let _ = notices.send(notice);
    }
}

/// Follows `path`, sending each `name` event's data, reconnecting after
/// drops from the last revision delivered. Stops when the receiver is gone
/// or the server refuses the stream.
async fn follow<T: DeserializeOwned>(
    client: Client,
    path: String,
    name: &'static str,
    mut after: Option<i64>,
    revision_of: fn(&T) -> i64,
    tx: Sender<Result<T, ClientError>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut request =
            client.http.get(format!("{}{path}", client.base)).bearer_auth(&client.token);
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        if let Some(swarm) = &client.swarm_id {
            request = request.header("x-ifc-swarm", swarm);
        }
        let cause = match request.send().await {
            Ok(response) if response.status().is_success() => {
                notify(&client, StreamNotice::Connected { after });
                Ok(response)
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let error = serde_json::from_str::<ApiError>(&text)
                    .unwrap_or_else(|_| ApiError::new(ErrorCode::Internal, text));
                if status < 500 {
                    let _ = tx.send(Err(ClientError::Api { status, error })).await;
                    return;
                }
                Err((format!("{} (HTTP {status})", error.message), false))
            }
            Err(e) => Err((transport(e).to_string(), true)),
        };
        let response = match cause {
            Ok(response) => response,
            Err((cause, unreachable)) => {
                notify(&client, StreamNotice::Retrying { cause, retry_in: backoff, after });
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = tx.closed() => return,
                }
                // A server that answers (busy, catching up) is asked again
                // soon; one that cannot be reached, less and less often.
                if unreachable {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let chunk = tokio::select! {
                chunk = futures::StreamExt::next(&mut body) => chunk,
                () = tx.closed() => return,
            };
            let Some(Ok(chunk)) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(newline) = buffer.find('\n') {
                let line = buffer[..newline].trim_end_matches('\r').to_string();
                buffer.drain(..=newline);
                if line.is_empty() {
                    if event == name {
                        match serde_json::from_str::<T>(&data) {
                            Ok(item) => {
                                after = Some(revision_of(&item));
                                if tx.send(Ok(item)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(ClientError::Decode(e.to_string()))).await;
                                return;
                            }
                        }
                    } else if event == "error"
                        && let Ok(end) = serde_json::from_str::<StreamEnd>(&data)
                        && end.code == "compacted"
                    {
                        let error = ApiError::new(ErrorCode::Compacted, end.message);
                        let _ = tx.send(Err(ClientError::Api { status: 410, error })).await;
                        return;
                    }
                    event.clear();
                    data.clear();
                } else if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
        }
        // Dropped or cut off: reconnect from `after`.
    }
}
