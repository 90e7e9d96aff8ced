//! Claim calls, as a swarm: claim, claim_next, claim_batch, renew, complete, fail.

use ifc_api::{
    Claim, ClaimBatch, ClaimBatchRequest, ClaimOutcome, ClaimRequest, CompleteRequest, FailRequest,
    NextClaim, ReleaseRequest, RenewRequest, Renewed, TaskRecord,
};

use crate::client::encode;
use crate::error::check_id;
use crate::{ClaimGuard, Client, ClientError};

impl Client {
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

    /// Claims up to `max` (1 ..= 100) of the best ready tasks this swarm can
    /// do in one request, best first, each held by its own [`ClaimGuard`]
    /// that renews it until complete, fail, release or drop. Fewer, or none,
    /// when fewer are ready.
    pub async fn claim_batch(&self, max: u32) -> Result<Vec<ClaimGuard>, ClientError> {
        let request = ClaimBatchRequest { max: Some(max) };
        let path = format!("/v1/swarms/{}/claim-batch", encode(self.me()?));
        let batch: ClaimBatch = self.post(&path, &request).await?;
        Ok(batch.claims.iter().map(|claim| self.hold(claim)).collect())
    }

    /// Extends a claim; returns the new deadline (ms since the epoch).
    pub async fn renew_claim(&self, task_id: &str, token: i64) -> Result<i64, ClientError> {
        let request = RenewRequest { swarm_id: self.me()?.into(), token };
        check_id("task_id", task_id)?;
        let renewed: Renewed =
            self.post(&format!("/v1/tasks/{}/renew", encode(task_id)), &request).await?;
        Ok(renewed.deadline_ms)
    }

    /// Gives a claimed task back to the pool unfinished, without using an
    /// attempt (a worker that stops before it could finish).
    pub async fn release_claim(
        &self,
        task_id: &str,
        token: i64,
    ) -> Result<TaskRecord, ClientError> {
        let request = ReleaseRequest { swarm_id: self.me()?.into(), token };
        check_id("task_id", task_id)?;
        self.post(&format!("/v1/tasks/{}/release", encode(task_id)), &request).await
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
}
