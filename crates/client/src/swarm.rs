//! A registered swarm: [`SwarmClient`] heartbeats at a third of the swarm's
//! TTL for as long as it lives, and [`SwarmClient::on_task`] runs a callback
//! per pushed task under a renewed claim.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};

use crate::{ClaimGuard, Client, ClientError, InboxItem, Registration};

/// A registered swarm: a [`Client`] acting as it, heartbeating in the
/// background until dropped or unregistered.
pub struct SwarmClient {
    client: Client,
    registration: Registration,
    heartbeat: JoinHandle<()>,
}

impl SwarmClient {
    /// Acts as the registered swarm and starts heartbeating every TTL/3.
    pub(crate) fn start(client: Client, registration: Registration) -> SwarmClient {
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
        SwarmClient { client, registration, heartbeat }
    }

    /// The registration (id, owner token, TTL).
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The seed's `task_callback`: for every pushed task, in push order and
    /// each once (resuming after reconnects), acknowledges it on receipt, then
    /// runs `callback` while a [`ClaimGuard`] renews the claim, and completes
    /// the task with the callback's `Ok` value or fails it with its `Err`.
    /// Callbacks run concurrently, one per acknowledged push. Runs until the
    /// returned handle is dropped, which also stops running callbacks (their
    /// claims then lapse).
    pub fn on_task<F, Fut, E>(&self, callback: F) -> TaskCallback
    where
        F: Fn(InboxItem) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let client = self.client.clone();
        let callback = Arc::new(callback);
        let task = tokio::spawn(async move {
            let mut inbox = match client.inbox(0) {
                Ok(inbox) => inbox,
                Err(_) => return,
            };
            let mut running = JoinSet::new();
            while let Some(item) = futures::StreamExt::next(&mut inbox).await {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => {
                        tracing::warn!(error = %e, "inbox stream ended");
                        break;
                    }
                };
                let (task_id, token) = (item.task.task_id.clone(), item.token);
                // Acknowledge first: the push timeout is for delivery, not for the work.
                let deadline_ms = match client.ack_push(&task_id, token).await {
                    Ok(deadline_ms) => deadline_ms,
                    Err(e) => {
                        tracing::warn!(error = %e, %task_id, "ack failed; skipping the push");
                        continue;
                    }
                };
                let guard = ClaimGuard::new(&client, &task_id, token, deadline_ms);
                let work = callback(item);
                running.spawn(async move {
                    let finished = match work.await {
                        Ok(result) => guard.complete(result).await,
                        Err(e) => guard.fail(&e.to_string()).await,
                    };
                    if let Err(e) = finished {
                        tracing::warn!(error = %e, %task_id, "could not finish the task");
                    }
                });
                while running.try_join_next().is_some() {}
            }
            // The stream ended: let the callbacks already running finish.
            while running.join_next().await.is_some() {}
        });
        TaskCallback(task)
    }

    /// Unregisters and stops heartbeating.
    pub async fn unregister(self) -> Result<(), ClientError> {
        self.heartbeat.abort();
        self.client.unregister_swarm().await
    }
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

/// A running [`SwarmClient::on_task`] callback; dropping it stops it.
pub struct TaskCallback(JoinHandle<()>);

impl Drop for TaskCallback {
    fn drop(&mut self) {
        self.0.abort();
    }
}
