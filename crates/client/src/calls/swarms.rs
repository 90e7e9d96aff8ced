//! Swarm calls: register, list, stats, heartbeat, unregister.

use ifc_api::{Heartbeat, RegisterSwarm, Registration, Swarm, SwarmStats};
use reqwest::Method;

use crate::client::encode;
use crate::error::check_id;
use crate::{Client, ClientError, SwarmClient};

impl Client {
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
