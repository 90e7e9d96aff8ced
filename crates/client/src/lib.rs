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

use std::time::Duration;

pub use ifc_api::*;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

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
}

impl ClientError {
    /// The server's error code, if the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

/// A connection to a coordinator, as the orchestrator (admin token) or, via
/// [`Client::as_swarm`], as one swarm.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    swarm_id: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` with the admin token.
    pub fn new(base_url: &str, admin_token: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: base_url.trim_end_matches('/').to_string(),
            token: admin_token.to_string(),
            swarm_id: None,
        }
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
            request = request.header("x-ifc-swarm", swarm);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ClientError::Transport(e.to_string()))?;
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
        self.swarm_id.as_deref().ok_or_else(|| ClientError::Api {
            status: 403,
            error: ApiError::new(ErrorCode::Forbidden, "this call needs a swarm client (as_swarm)"),
        })
    }

    /// The seed's `register_swarm`: registers and returns a client acting as the
    /// swarm, heartbeating in the background.
    pub async fn register_swarm(
        &self,
        swarm_id: &str,
        capabilities: &[&str],
        metadata: serde_json::Value,
    ) -> Result<SwarmClient, ClientError> {
        let request = RegisterSwarm {
            swarm_id: swarm_id.into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            metadata,
            token: None,
        };
        let registration: Registration = self.post("/v1/swarms", &request).await?;
        let client = self.as_swarm(swarm_id, &registration.token);
        let beat = client.clone();
        let period = Duration::from_millis((registration.ttl_secs.max(1) as u64 * 1000) / 3);
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = beat.heartbeat().await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        });
        Ok(SwarmClient { client, registration, heartbeat })
    }

    /// Live swarms (admin).
    pub async fn list_swarms(&self) -> Result<Vec<Swarm>, ClientError> {
        self.get("/v1/swarms").await
    }

    /// The seed's `get_swarm_stats` (admin or the swarm itself).
    pub async fn get_swarm_stats(&self, swarm_id: &str) -> Result<SwarmStats, ClientError> {
        self.get(&format!("/v1/swarms/{}", encode(swarm_id))).await
    }

    /// The seed's `create_task` (admin).
    pub async fn create_task(&self, task: NewTask) -> Result<TaskRecord, ClientError> {
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
            path.push_str(&format!("&after={}", encode(after)));
        }
        self.get(&path).await
    }

    /// The whole task.
    pub async fn get_task(&self, task_id: &str) -> Result<TaskView, ClientError> {
        self.get(&format!("/v1/tasks/{}", encode(task_id))).await
    }

    /// The seed's `get_task_owner`: `None` if there is no such task.
    pub async fn get_task_owner(&self, task_id: &str) -> Result<Option<String>, ClientError> {
        match self.get::<Owner>(&format!("/v1/tasks/{}/owner", encode(task_id))).await {
            Ok(owner) => Ok(Some(owner.owner)),
            Err(e) if e.code() == Some(ErrorCode::TaskNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Cancels a task (admin).
    pub async fn cancel_task(&self, task_id: &str) -> Result<TaskRecord, ClientError> {
        self.post(&format!("/v1/tasks/{}/cancel", encode(task_id)), &()).await
    }

    /// Witness records (admin).
    pub async fn witness(&self, task_id: Option<&str>) -> Result<Vec<WitnessRecord>, ClientError> {
        match task_id {
            Some(id) => self.get(&format!("/v1/witness?task_id={}", encode(id))).await,
            None => self.get("/v1/witness").await,
        }
    }

    /// Verifies the witness log (admin).
    pub async fn verify_witness(&self) -> Result<Verification, ClientError> {
        self.get("/v1/witness/verify").await
    }

    /// The whole witness log as JSON Lines (admin).
    pub async fn export_witness(&self) -> Result<String, ClientError> {
        let response = self
            .http
            .get(format!("{}/v1/witness/export", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        if status >= 400 {
            let error = serde_json::from_str(&text)
                .unwrap_or_else(|_| ApiError::new(ErrorCode::Internal, text));
            return Err(ClientError::Api { status, error });
        }
        Ok(text)
    }

    /// The seed's `claim_task`, as this swarm.
    pub async fn claim_task(&self, task_id: &str) -> Result<ClaimOutcome, ClientError> {
        let request = ClaimRequest { swarm_id: self.me()?.into() };
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

/// A registered swarm: a [`Client`] acting as it, heartbeating in the
/// background until dropped or unregistered.
pub struct SwarmClient {
    client: Client,
    registration: Registration,
    heartbeat: JoinHandle<()>,
}

impl std::ops::Deref for SwarmClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for SwarmClient {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl SwarmClient {
    /// The registration (id, owner token, TTL).
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Unregisters and stops heartbeating.
    pub async fn unregister(self) -> Result<(), ClientError> {
        self.heartbeat.abort();
        self.client.unregister_swarm().await
    }
}

/// Percent-encodes a path segment (ids may hold any character but `/`).
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
