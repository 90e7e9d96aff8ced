//! Creating many tasks in one call (BullMQ's `addBulk`, River's
//! `InsertMany`): up to [`MAX_BATCH_TASKS`], checked whole before anything is
//! written, then created several to a txn, each exactly as a single create
//! builds it ([`Coordinator::prepare_create`]) and settles it
//! ([`Coordinator::create_together`]).

use std::collections::HashMap;

use futures::future::join_all;
use ifc_api::MAX_BATCH_TASKS;
use ifc_kv::validate::Limits;

use crate::task::{CreateOutcome, NewTask, PreparedTask};
use crate::txn::TXN_BYTES;
use crate::{Coordinator, CoreError};

/// One task's answer in a batch.
pub type BatchAnswer = Result<CreateOutcome, CoreError>;

impl Coordinator {
    /// Creates up to [`MAX_BATCH_TASKS`] tasks. Every item is checked before
    /// anything is written: a bad one is [`CoreError::InvalidItem`] naming its
    /// index (an id given twice is one), and nothing is created. Then each
    /// item is created as [`Coordinator::create_task`] would: one answer per
    /// item, in order — created, the same task already there (an idempotent
    /// retry of the batch), or its own error (different content, or a store
    /// failure of its txn; other items are not undone).
    ///
    /// Tasks go several to a txn (as many as the store's ops-per-txn limit
    /// and [`TXN_BYTES`] allow: 25 small ones), and the txns are sent at once,
    /// so the embedded store commits a whole batch in a few fsyncs.
    pub async fn create_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<BatchAnswer>, CoreError> {
        if tasks.is_empty() {
            let reason = "a batch holds at least one task".to_string();
            return Err(CoreError::Invalid { field: "tasks", reason });
        }
        if tasks.len() > MAX_BATCH_TASKS {
            return Err(CoreError::BatchTooLarge { max: MAX_BATCH_TASKS, given: tasks.len() });
        }
        let mut first_index: HashMap<String, usize> = HashMap::with_capacity(tasks.len());
        let mut prepared = Vec::with_capacity(tasks.len());
        for (index, new) in tasks.into_iter().enumerate() {
            if let Some(first) = first_index.insert(new.task_id.clone(), index) {
                let reason = format!("{:?} is also item {first}'s id", new.task_id);
                return Err(CoreError::InvalidItem { index, field: "task_id", reason });
            }
            prepared.push(self.prepare_create(new).map_err(|e| e.at_item(index))?);
        }
        let txns = pack(prepared, Limits::default().max_txn_ops);
        let answers = join_all(txns.into_iter().map(|txn| self.create_together(txn))).await;
        Ok(answers.into_iter().flatten().collect())
    }
}

/// Splits `tasks`, in order, into txns of at most `max_ops` ops per branch
/// (and as many compares) and [`TXN_BYTES`] bytes, counting one capability-set
/// put per set per txn.
fn pack(tasks: Vec<PreparedTask>, max_ops: usize) -> Vec<Vec<PreparedTask>> {
    let mut txns = Vec::new();
    let mut txn: Vec<PreparedTask> = Vec::new();
    let (mut ops, mut bytes) = (0, 0);
    for task in tasks {
        let new_capset = !txn.iter().any(|t| t.capset.0 == task.capset.0);
        let task_ops = task.ops.len() + usize::from(new_capset);
        let full = ops + task_ops > max_ops || bytes + task.bytes > TXN_BYTES;
        if full && !txn.is_empty() {
            txns.push(std::mem::take(&mut txn));
            (ops, bytes) = (0, 0);
        }
        // A fresh txn always has the set to put.
        ops += task.ops.len() + usize::from(txn.is_empty() || new_capset);
        bytes += task.bytes;
        txn.push(task);
    }
    if !txn.is_empty() {
        txns.push(txn);
    }
    txns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreConfig;
    use ifc_testkit::{Backend, TestStore};

    fn task(id: String, caps: &[String], metadata_bytes: usize) -> NewTask {
        NewTask {
            task_id: id,
            task_type: "t".into(),
            metadata: serde_json::Value::String("x".repeat(metadata_bytes)),
            required_capabilities: caps.to_vec(),
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
        }
    }

    fn sizes(txns: &[Vec<PreparedTask>]) -> Vec<usize> {
        txns.iter().map(Vec::len).collect()
    }

    /// Packing only builds ops; the store is there because a coordinator needs one.
    #[tokio::test]
    async fn txns_stay_inside_the_ops_and_bytes_limits() {
        let store = TestStore::start(Backend::Embedded).await;
        let c = Coordinator::new(store.kv(), CoreConfig::default());
        let prepare = |id: String, caps: &[String], bytes| c.prepare_create(task(id, caps, bytes));

        let small: Vec<_> = (0..100).map(|i| prepare(format!("s{i}"), &[], 10).unwrap()).collect();
        assert_eq!(small[0].ops.len(), 5);
        // One capability set: 25 tasks of 5 ops and the set's put fill 126 of 128.
        assert_eq!(sizes(&pack(small, 128)), vec![25, 25, 25, 25]);

        let mixed: Vec<_> =
            (0..30).map(|i| prepare(format!("m{i}"), &[format!("c{i}")], 10).unwrap()).collect();
        // Each task its own set: 6 ops each, so 21 to a txn.
        assert_eq!(sizes(&pack(mixed, 128)), vec![21, 9]);

        let large: Vec<_> =
            (0..5).map(|i| prepare(format!("l{i}"), &[], 400_000).unwrap()).collect();
        let txns = pack(large, 128);
        assert!(txns.iter().all(|t| t.iter().map(|t| t.bytes).sum::<usize>() <= TXN_BYTES));
        assert_eq!(sizes(&txns), vec![2, 2, 1]);
    }
}
