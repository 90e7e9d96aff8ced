//! Task calls: create (one or a batch), list, read, cancel, retry, queue depth.

use ifc_api::{
    BatchCreated, BatchItemResult, ErrorCode, NewTask, NewTasks, Owner, QueueCounts, TaskPage,
    TaskRecord, TaskState, TaskView,
};

use crate::client::encode;
use crate::error::check_id;
use crate::{Client, ClientError};

impl Client {
    /// The seed's `create_task` (admin).
    pub async fn create_task(&self, task: NewTask) -> Result<TaskRecord, ClientError> {
        check_id("task_id", &task.task_id)?;
        self.post("/v1/tasks", &task).await
    }

    /// Creates up to 1,000 tasks in one request (admin): one result per task,
    /// in order (`created`, `exists` for the same content already there, or
    /// `error`). A bad item refuses the whole batch with `invalid_argument`
    /// naming it ([`ApiError::index`](crate::ApiError::index)), and nothing
    /// is created. (Ids travel in the body here, not in a path, so the
    /// server checks them and names the item.)
    pub async fn create_tasks(
        &self,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<BatchItemResult>, ClientError> {
        let created: BatchCreated = self.post("/v1/tasks/batch", &NewTasks { tasks }).await?;
        Ok(created.results)
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
}
