//! The connection: the HTTP client, the caller's token and identity, and the
//! request helpers every call goes through.

use ifc_api::{ApiError, ErrorCode};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{check_id, transport};
use crate::{ClientError, StreamNotice, install_crypto_provider};

/// A connection to a coordinator, as the orchestrator (admin token) or, via
/// [`Client::as_swarm`], as one swarm.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) swarm_id: Option<String>,
    pub(crate) notices: Option<tokio::sync::mpsc::UnboundedSender<StreamNotice>>,
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

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
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

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) fn me(&self) -> Result<&str, ClientError> {
        let me = self.swarm_id.as_deref().ok_or_else(|| ClientError::Api {
            status: 403,
            error: ApiError::new(ErrorCode::Forbidden, "this call needs a swarm client (as_swarm)"),
        })?;
        check_id("swarm_id", me)?;
        Ok(me)
    }

    pub(crate) async fn get_chunks(
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
}

/// Percent-encodes a path segment.
pub(crate) fn encode(segment: &str) -> String {
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
