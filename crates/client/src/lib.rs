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

mod calls;
mod claim;
mod client;
mod error;
mod stream;
mod swarm;

pub use claim::ClaimGuard;
pub use client::Client;
pub use error::ClientError;
pub use stream::{ItemStream, StreamNotice};
pub use swarm::{SwarmClient, TaskCallback};

pub use ifc_api::*;

/// TLS in this crate uses rustls with the `ring` provider (no C toolchain
/// needed), installed as the process default. [`Client`] does this itself;
/// code that builds its own `reqwest` clients in the same process calls this
/// first. Calling it again does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
