//! The IF.coordinator client: the seed's API, async, over HTTP.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ifc_client::ClientError> {
//! use ifc_client::Client;
//! let orchestrator = Client::new("http://127.0.0.1:7400", "admin-token");
//! let swarm = orchestrator.register_swarm("swarm-1", &["code-analysis:python"], serde_json::json!({})).await?;
//! orchestrator.create_task(ifc_client::NewTask {
//!     task_id: "review-pr-123".into(),
//!     task_type: "code-review".into(),
//!     metadata: serde_json::json!({"language": "python"}),
//!     required_capabilities: vec![],
//!     priority: 0,
//!     max_attempts: None,
//!     timeout_ms: None,
//! }).await?;
//! if let ifc_client::ClaimOutcome::Claimed(claim) = swarm.claim_task("review-pr-123").await? {
//!     swarm.complete_task("review-pr-123", claim.token, serde_json::json!({"status": "approved"})).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! A [`SwarmClient`] returned by [`Client::register_swarm`] heartbeats in the
//! background for as long as it lives.

#![deny(missing_docs)]

mod claim;
mod swarm;

pub use claim::ClaimGuard;
pub use swarm::{SwarmClient, TaskCallback};

pub use ifc_api::*;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every way a call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error; `error.code` is stable.
    #[error("{error} ({code:?}, HTTP {status})", code = error.code)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error.
        error: ApiError,
    },
    /// The server could not be reached.
    #[error("cannot reach the coordinator: {0}")]
    Transport(String),
    /// The server's answer could not be read.
    #[error("unexpected answer from the coordinator: {0}")]
    Decode(String),
    /// An id outside the one id grammar ([`ifc_api::ids::check`]); refused
    /// before anything was sent. Its [`ClientError::code`] is
    /// `invalid_argument`, as the server would answer.
    #[error("{field} {id:?} {reason}")]
    InvalidId {
        /// Which argument (`task_id`, `swarm_id`, `blocker_id`, ...).
        field: &'static str,
        /// The refused value.
        id: String,
        /// Why it is not an id.
        reason: ids::IdError,
    },
}

impl ClientError {
    /// The server's error code, if the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            ClientError::InvalidId { .. } => Some(ErrorCode::InvalidArgument),
            _ => None,
        }
    }
}

/// A transport failure, with its innermost cause ("Connection refused", a TLS
/// or DNS failure): reqwest's own message names only the URL.
fn transport(e: reqwest::Error) -> ClientError {
    let mut cause: &dyn std::error::Error = &e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let outer = e.to_string();
    let inner = cause.to_string();
    if inner == outer {
        ClientError::Transport(outer)
    } else {
        ClientError::Transport(format!("{outer}: {inner}"))
    }
}

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

/// A connection to a coordinator, as the orchestrator (admin token) or, via
/// [`Client::as_swarm`], as one swarm.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    swarm_id: Option<String>,
    notices: Option<tokio::sync::mpsc::UnboundedSender<StreamNotice>>,
}

/// Pooled connections are dropped after this long unused: well inside the
/// server's idle timeout (60 s by default), so a request is not sent on a
/// connection the server is closing.
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Client {
    /// A client for the server at `base_url` (`http://` or `https://`, with the
    /// system's root certificates) with the admin token.
    pub fn new(base_url: &str, admin_token: &str) -> Self {
        install_crypto_provider();
        Client {
            http: reqwest::Client::builder()
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
            base: base_url.trim_end_matches('/').to_string(),
            token: admin_token.to_string(),
            swarm_id: None,
            notices: None,
        }
    }

    /// Like [`Client::new`], also trusting the CA certificate `ca_pem` (for a
    /// server with a private or self-signed certificate).
    pub fn with_ca(base_url: &str, admin_token: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| ClientError::Transport(format!("bad CA certificate: {e}")))?;
        let http = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .add_root_certificate(ca)
            .build()
            .map_err(transport)?;
        Ok(Client { http, ..Client::new(base_url, admin_token) })
    }

    /// The same client, whose streams also report here when they cannot
    /// connect and when they connect again (they retry by themselves either way).
    pub fn with_stream_notices(
        &self,
    ) -> (Client, tokio::sync::mpsc::UnboundedReceiver<StreamNotice>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Client { notices: Some(tx), ..self.clone() }, rx)
    }

    /// The same server, acting as `swarm_id` with its token.
    pub fn as_swarm(&self, swarm_id: &str, token: &str) -> Client {
        Client { token: token.into(), swarm_id: Some(swarm_id.into()), ..self.clone() }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(swarm) = &self.swarm_id {
            // A header cannot carry every string; the grammar says which.
            check_id("swarm_id", swarm)?;
            request = request.header("x-ifc-swarm", swarm);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| {
                ApiError::new(ErrorCode::Internal, String::from_utf8_lossy(&bytes).into_owned())
            });
            return Err(ClientError::Api { status: status.as_u16(), error });
        }
        if status == StatusCode::NO_CONTENT {
            return serde_json::from_slice(b"null").map_err(|e| ClientError::Decode(e.to_string()));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    fn me(&self) -> Result<&str, ClientError> {
        let me = self.swarm_id.as_deref().ok_or_else(|| ClientError::Api {
            status: 403,
            error: ApiError::new(ErrorCode::Forbidden, "this call needs a swarm client (as_swarm)"),
        })?;
        check_id("swarm_id", me)?;
        Ok(me)
    }

    /// The seed's `register_swarm`: registers and returns a client acting as the
    /// swarm, heartbeating in the background.
    pub async fn register_swarm(
        &self,
        swarm_id: &str,
        capabilities: &[&str],
        metadata: serde_json::Value,
    ) -> Result<SwarmClient, ClientError> {
        check_id("swarm_id", swarm_id)?;
        let request = RegisterSwarm {
            swarm_id: swarm_id.into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            metadata,
            token: None,
        };
        let registration: Registration = self.post("/v1/swarms", &request).await?;
        Ok(SwarmClient::start(self.as_swarm(swarm_id, &registration.token), registration))
    }

    /// Live swarms (admin).
    pub async fn list_swarms(&self) -> Result<Vec<Swarm>, ClientError> {
        self.get("/v1/swarms").await
    }

    /// The seed's `get_swarm_stats` (admin or the swarm itself).
    pub async fn get_swarm_stats(&self, swarm_id: &str) -> Result<SwarmStats, ClientError> {
        check_id("swarm_id", swarm_id)?;
        self.get(&format!("/v1/swarms/{}", encode(swarm_id))).await
    }

    /// The seed's `create_task` (admin).
    pub async fn create_task(&self, task: NewTask) -> Result<TaskRecord, ClientError> {
        check_id("task_id", &task.task_id)?;
        self.post("/v1/tasks", &task).await
    }

    /// Lists tasks in one state (admin).
    pub async fn list_tasks(
        &self,
        state: TaskState,
        after: Option<&str>,
        limit: usize,
    ) -> Result<TaskPage, ClientError> {
        let mut path = format!("/v1/tasks?state={}&limit={limit}", state.as_str());
        if let Some(after) = after {
            check_id("after", after)?;
            path.push_str(&format!("&after={}", encode(after)));
        }
        self.get(&path).await
    }

    /// The whole task.
    pub async fn get_task(&self, task_id: &str) -> Result<TaskView, ClientError> {
        check_id("task_id", task_id)?;
        self.get(&format!("/v1/tasks/{}", encode(task_id))).await
    }

    /// The seed's `get_task_owner`: `None` if there is no such task.
    pub async fn get_task_owner(&self, task_id: &str) -> Result<Option<String>, ClientError> {
        check_id("task_id", task_id)?;
        match self.get::<Owner>(&format!("/v1/tasks/{}/owner", encode(task_id))).await {
            Ok(owner) => Ok(Some(owner.owner)),
            Err(e) if e.code() == Some(ErrorCode::TaskNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Cancels a task (admin).
    pub async fn cancel_task(&self, task_id: &str) -> Result<TaskRecord, ClientError> {
        check_id("task_id", task_id)?;
        self.post(&format!("/v1/tasks/{}/cancel", encode(task_id)), &()).await
    }

    /// Puts a dead task back in the pool with its attempts reset (admin).
    pub async fn retry_task(&self, task_id: &str) -> Result<TaskRecord, ClientError> {
        check_id("task_id", task_id)?;
        self.post(&format!("/v1/tasks/{}/retry", encode(task_id)), &()).await
    }

    /// Queue depth: tasks by state, ready tasks by capability set (admin).
    pub async fn queue_counts(&self) -> Result<QueueCounts, ClientError> {
        self.get("/v1/queues").await
    }

    /// Witness records (admin).
    pub async fn witness(&self, task_id: Option<&str>) -> Result<Vec<WitnessRecord>, ClientError> {
        match task_id {
            Some(id) => {
                check_id("task_id", id)?;
                self.get(&format!("/v1/witness?task_id={}", encode(id))).await
            }
            None => self.get("/v1/witness").await,
        }
    }

    /// Verifies the witness log (admin).
    pub async fn verify_witness(&self) -> Result<Verification, ClientError> {
        self.get("/v1/witness/verify").await
    }

    /// One verification walk: at most `max_chains` chains from `from_chain`;
    /// `next_chain` in the answer says where to resume (admin).
    pub async fn verify_witness_from(
        &self,
        from_chain: Option<&str>,
        max_chains: u64,
    ) -> Result<Verification, ClientError> {
        let from = from_chain.map(|c| format!("&from_chain={}", encode(c))).unwrap_or_default();
        self.get(&format!("/v1/witness/verify?max_chains={max_chains}{from}")).await
    }

    /// The whole witness log as JSON Lines (admin). Holds it all in memory:
    /// see [`Client::export_witness_chunks`] for a long log.
    pub async fn export_witness(&self) -> Result<String, ClientError> {
        let mut text = Vec::new();
        self.export_witness_chunks(|chunk| text.extend_from_slice(chunk)).await?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// The whole witness log as JSON Lines, handed to `on_chunk` as it
    /// arrives (admin).
    pub async fn export_witness_chunks(
        &self,
        on_chunk: impl FnMut(&[u8]),
    ) -> Result<(), ClientError> {
        self.get_chunks("/v1/witness/export", on_chunk).await
    }

    /// Every pruned chain's checkpoint as JSON Lines `{chain, seq, hash}` (admin).
    pub async fn witness_checkpoints(&self) -> Result<String, ClientError> {
        let mut text = Vec::new();
        self.get_chunks("/v1/witness/checkpoints", |chunk| text.extend_from_slice(chunk)).await?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    async fn get_chunks(
        &self,
        path: &str,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<(), ClientError> {
        let mut response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status >= 400 {
            let text = response.text().await.map_err(transport)?;
            let error = serde_json::from_str(&text)
                .unwrap_or_else(|_| ApiError::new(ErrorCode::Internal, text));
            return Err(ClientError::Api { status, error });
        }
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            on_chunk(&chunk);
        }
        Ok(())
    }

    /// The seed's `claim_task`, as this swarm.
    pub async fn claim_task(&self, task_id: &str) -> Result<ClaimOutcome, ClientError> {
        let request = ClaimRequest { swarm_id: self.me()?.into() };
        check_id("task_id", task_id)?;
        self.post(&format!("/v1/tasks/{}/claim", encode(task_id)), &request).await
    }

    /// Claims the best ready task this swarm can do.
    pub async fn claim_next(&self) -> Result<Option<Claim>, ClientError> {
        let next: NextClaim =
            self.post(&format!("/v1/swarms/{}/claim-next", encode(self.me()?)), &()).await?;
        Ok(next.claim)
    }

    /// Extends a claim; returns the new deadline (ms since the epoch).
    pub async fn renew_claim(&self, task_id: &str, token: i64) -> Result<i64, ClientError> {
        let request = RenewRequest { swarm_id: self.me()?.into(), token };
        check_id("task_id", task_id)?;
        let renewed: Renewed =
            self.post(&format!("/v1/tasks/{}/renew", encode(task_id)), &request).await?;
        Ok(renewed.deadline_ms)
    }

    /// The seed's `complete_task`.
    pub async fn complete_task(
        &self,
        task_id: &str,
        token: i64,
        result: serde_json::Value,
    ) -> Result<TaskRecord, ClientError> {
        let request = CompleteRequest { swarm_id: self.me()?.into(), token, result };
        check_id("task_id", task_id)?;
        self.post(&format!("/v1/tasks/{}/complete", encode(task_id)), &request).await
    }

    /// The seed's `fail_task`.
    pub async fn fail_task(
        &self,
        task_id: &str,
        token: i64,
        error: &str,
    ) -> Result<TaskRecord, ClientError> {
        let request = FailRequest { swarm_id: self.me()?.into(), token, error: error.into() };
        check_id("task_id", task_id)?;
        self.post(&format!("/v1/tasks/{}/fail", encode(task_id)), &request).await
    }

    /// Keeps this swarm alive; returns its TTL.
    pub async fn heartbeat(&self) -> Result<i64, ClientError> {
        let beat: Heartbeat =
            self.post(&format!("/v1/swarms/{}/heartbeat", encode(self.me()?)), &()).await?;
        Ok(beat.ttl_secs)
    }

    /// The seed's `unregister_swarm`, as this swarm.
    pub async fn unregister_swarm(&self) -> Result<(), ClientError> {
        let path = format!("/v1/swarms/{}", encode(self.me()?));
        self.call::<(), ()>(Method::DELETE, &path, None).await
    }
}

/// A stream of server-sent items; it reconnects by itself (resuming with
/// `Last-Event-ID`) and ends only on an error it cannot recover from.
pub type ItemStream<T> = futures::stream::BoxStream<'static, Result<T, ClientError>>;

impl Client {
    /// The seed's `push_task_to_swarm` (admin): creates the task if new (or takes
    /// a ready one) and puts it in the swarm's durable inbox.
    pub async fn push_task_to_swarm(
        &self,
        swarm_id: &str,
        task: NewTask,
    ) -> Result<InboxItem, ClientError> {
        check_id("swarm_id", swarm_id)?;
        check_id("task_id", &task.task_id)?;
        self.post(&format!("/v1/swarms/{}/push", encode(swarm_id)), &task).await
    }

    /// Acknowledges a pushed task (as the swarm); returns the claim's deadline.
    pub async fn ack_push(&self, task_id: &str, token: i64) -> Result<i64, ClientError> {
        check_id("task_id", task_id)?;
        let path = format!("/v1/swarms/{}/inbox/{}/ack", encode(self.me()?), encode(task_id));
        let renewed: Renewed = self.post(&path, &AckRequest { token }).await?;
        Ok(renewed.deadline_ms)
    }

    /// Declines a pushed task (as the swarm): it returns to the pool at once.
    pub async fn decline_push(&self, task_id: &str, token: i64) -> Result<TaskRecord, ClientError> {
        check_id("task_id", task_id)?;
        let path = format!("/v1/swarms/{}/inbox/{}/decline", encode(self.me()?), encode(task_id));
        self.post(&path, &AckRequest { token }).await
    }

    /// The seed's `detect_blocker` (as the swarm); returns the blocker's id.
    pub async fn detect_blocker(&self, info: BlockerInfo) -> Result<String, ClientError> {
        if let Some(task_id) = &info.task_id {
            check_id("task_id", task_id)?;
        }
        let path = format!("/v1/swarms/{}/blockers", encode(self.me()?));
        let raised: BlockerRaised = self.post(&path, &info).await?;
        Ok(raised.blocker_id)
    }

    /// Blockers, all or only unresolved ones (admin).
    pub async fn list_blockers(&self, open_only: bool) -> Result<Vec<Blocker>, ClientError> {
        self.get(&format!("/v1/blockers?open={open_only}")).await
    }

    /// Pushes a help task for a blocker to a helper swarm (admin).
    pub async fn assign_helper(
        &self,
        blocker_id: &str,
        helper_swarm_id: &str,
    ) -> Result<InboxItem, ClientError> {
        check_id("blocker_id", blocker_id)?;
        check_id("helper_swarm_id", helper_swarm_id)?;
        let path = format!("/v1/blockers/{}/assign", encode(blocker_id));
        self.post(&path, &AssignHelper { helper_swarm_id: helper_swarm_id.into() }).await
    }

    /// Resolves a blocker (admin).
    pub async fn resolve_blocker(
        &self,
        blocker_id: &str,
        resolution: &str,
    ) -> Result<Blocker, ClientError> {
        check_id("blocker_id", blocker_id)?;
        let path = format!("/v1/blockers/{}/resolve", encode(blocker_id));
        self.post(&path, &ResolveBlocker { resolution: resolution.into() }).await
    }

    /// This swarm's inbox: every unacknowledged push after revision `after`,
    /// then each new one as it happens.
    pub fn inbox(&self, after: i64) -> Result<ItemStream<InboxItem>, ClientError> {
        let path = format!("/v1/swarms/{}/inbox", encode(self.me()?));
        Ok(self.event_stream(path, "task", Some(after), |i: &InboxItem| i.revision))
    }

    /// Blockers raised after revision `after` (`None`: from now), with helper
    /// candidates (admin).
    pub fn blockers(&self, after: Option<i64>) -> ItemStream<BlockerEvent> {
        self.event_stream("/v1/blockers/stream".into(), "blocker", after, |b: &BlockerEvent| {
            b.revision
        })
    }

    /// Every coordination event after revision `after` (`None`: from now) (admin).
    pub fn events(&self, after: Option<i64>) -> ItemStream<CoordinationEvent> {
        self.event_stream("/v1/events".into(), "event", after, |e: &CoordinationEvent| e.revision)
    }

    fn event_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        path: String,
        name: &'static str,
        after: Option<i64>,
        revision_of: fn(&T) -> i64,
    ) -> ItemStream<T> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(sse::follow(self.clone(), path, name, after, revision_of, tx));
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}

mod sse {
    //! A minimal Server-Sent Events reader with reconnect and `Last-Event-ID`.

    use std::time::Duration;

    use serde::de::DeserializeOwned;
    use tokio::sync::mpsc::Sender;

    use super::{ApiError, Client, ClientError, ErrorCode, StreamNotice};

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
    pub async fn follow<T: DeserializeOwned>(
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
                Err(e) => Err((super::transport(e).to_string(), true)),
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
}

/// TLS in this crate uses rustls with the `ring` provider (no C toolchain
/// needed), installed as the process default. [`Client`] does this itself;
/// code that builds its own `reqwest` clients in the same process calls this
/// first. Calling it again does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Percent-encodes a path segment (ids may hold any character but `/`).
/// Refuses an id outside the grammar the server uses, before sending.
fn check_id(field: &'static str, id: &str) -> Result<(), ClientError> {
    ids::check(id).map_err(|reason| ClientError::InvalidId { field, id: id.into(), reason })
}

fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
