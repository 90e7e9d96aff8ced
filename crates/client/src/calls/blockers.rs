//! Blocker calls: raise, list, assign a helper, resolve, and the blocker stream.

use ifc_api::{
    AssignHelper, Blocker, BlockerEvent, BlockerInfo, BlockerRaised, InboxItem, ResolveBlocker,
};

use crate::client::encode;
use crate::error::check_id;
use crate::{Client, ClientError, ItemStream};

impl Client {
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

    /// Blockers raised after revision `after` (`None`: from now), with helper
    /// candidates (admin).
    pub fn blockers(&self, after: Option<i64>) -> ItemStream<BlockerEvent> {
        self.event_stream("/v1/blockers/stream".into(), "blocker", after, |b: &BlockerEvent| {
            b.revision
        })
    }
}
