//! Push calls: push to a swarm, acknowledge, decline, and the inbox stream.

use ifc_api::{AckRequest, InboxItem, NewTask, Renewed, TaskRecord};

use crate::client::encode;
use crate::error::check_id;
use crate::{Client, ClientError, ItemStream};

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

    /// This swarm's inbox: every unacknowledged push after revision `after`,
    /// then each new one as it happens.
    pub fn inbox(&self, after: i64) -> Result<ItemStream<InboxItem>, ClientError> {
        let path = format!("/v1/swarms/{}/inbox", encode(self.me()?));
        Ok(self.event_stream(path, "task", Some(after), |i: &InboxItem| i.revision))
    }
}
