//! Witness calls: records, verification, export, checkpoints.

use ifc_api::{Verification, WitnessRecord};

use crate::client::encode;
use crate::error::check_id;
use crate::{Client, ClientError};

impl Client {
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
}
