//! Retention: finished tasks (completed, dead, cancelled), their index keys
//! and their witness chains are removed once the chain's last record is older
//! than the retention period, so storage stays bounded.
//!
//! The audit trail survives: a pruned chain leaves a checkpoint (seq and hash
//! of its last record) from which `verify` proves whatever the chain gets
//! later, and, if an archive directory is set, the chain's records are first
//! appended there ([`crate::witness_archive`]) where `ifc witness verify
//! --archive` checks that they chain up to the checkpoint. Every node runs a
//! pruner; each removal is one txn guarded by the task record's and the
//! chain head's revisions, so racing nodes are harmless (the loser's archive
//! copy is a duplicate the check accepts).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ifc_api::TaskState;
use ifc_kv::{Compare, DeleteRequest, KvStore, PutRequest, RangeRequest, TxnOp, TxnRequest};
use tokio::task::JoinHandle;

use crate::codec::{decode, encode};
use crate::keys::{Key, task_chain};
use crate::paging::Pager;
use crate::task::TaskRecord;
use crate::witness::{Head, WitnessRecord};
use crate::{Coordinator, CoreError, now_ms, witness_archive};

/// Removals one node has in flight at once.
const PRUNES_IN_FLIGHT: usize = 16;

/// How long finished tasks are kept, and where pruned records go.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Age (since a task's last witness record) after which a finished task
    /// is removed. Zero keeps everything.
    pub keep: Duration,
    /// How often each node looks for tasks to remove.
    pub every: Duration,
    /// Directory the pruned witness records are appended to first, if any.
    pub archive: Option<PathBuf>,
}

/// A running pruner; dropping it stops it.
pub struct Pruner {
    task: JoinHandle<()>,
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pruner {
    /// Prunes every `retention.every` until dropped; `None` if retention is
    /// off (zero).
    pub fn spawn(coordinator: Arc<Coordinator>, retention: Retention) -> Option<Pruner> {
        if retention.keep.is_zero() {
            return None;
        }
        let task = tokio::spawn(async move {
            loop {
                match coordinator.prune_finished(&retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(tasks = n, "retention: pruned finished tasks"),
                    Err(e) => tracing::warn!(error = %e, "retention: prune pass failed"),
                }
                tokio::time::sleep(retention.every).await;
            }
        });
        Some(Pruner { task })
    }
}

/// A chain's records as stored (tokens not filled in, so hashes check), with
/// their revisions.
async fn chain_records(
    store: &dyn KvStore,
    prefix: String,
) -> Result<Vec<WitnessRecord>, CoreError> {
    let mut pager = Pager::prefix(prefix);
    let mut records = Vec::new();
    while let Some(page) = pager.next_page(store).await? {
        for kv in &page {
            let mut record: WitnessRecord = decode(kv)?;
            record.revision = kv.mod_revision;
            records.push(record);
        }
    }
    Ok(records)
}

impl Coordinator {
    /// One pass: removes every finished task whose last witness record is
    /// older than `retention.keep`. Returns how many this node removed.
    pub async fn prune_finished(&self, retention: &Retention) -> Result<u64, CoreError> {
        if retention.keep.is_zero() {
            return Ok(0);
        }
        let cutoff_ms = now_ms() - retention.keep.as_millis() as i64;
        let mut pruned = 0;
        for state in [TaskState::Completed, TaskState::Dead, TaskState::Cancelled] {
            let mut pager = Pager::prefix(self.keys.state_index(state.as_str()));
            while let Some(page) = pager.next_page(&*self.store).await? {
                // Several removals in flight, so a durable store commits them
                // together: one at a time, pruning falls behind a busy fleet.
                let task_ids: Vec<String> = page
                    .iter()
                    .filter_map(|kv| match self.keys.parse(&kv.key) {
                        Some(Key::State { task_id, .. }) => Some(task_id.to_string()),
                        _ => None,
                    })
                    .collect();
                let removed: Vec<bool> = futures::stream::iter(task_ids)
                    .map(|task_id| async move {
                        self.prune_task(&task_id, state, cutoff_ms, retention).await
                    })
                    .buffer_unordered(PRUNES_IN_FLIGHT)
                    .try_collect()
                    .await?;
                pruned += removed.into_iter().filter(|&r| r).count() as u64;
            }
        }
        Ok(pruned)
    }

    /// Removes one finished task if its chain ended before `cutoff_ms`.
    async fn prune_task(
        &self,
        task_id: &str,
        state: TaskState,
        cutoff_ms: i64,
        retention: &Retention,
    ) -> Result<bool, CoreError> {
        let (task_key, chain) = (self.keys.task(task_id), task_chain(task_id));
        let head_key = self.keys.witness_head(&chain);
        let task_kv = self.store.range(RangeRequest::key(task_key.clone())).await?.kvs.pop();
        let Some(task_kv) = task_kv else { return Ok(false) };
        let task: TaskRecord = decode(&task_kv)?;
        if task.state != state || !state.is_final() {
            return Ok(false);
        }
        // Most finished tasks a pass meets are still young: the last attempt's
        // end says so without reading the chain (its records come no earlier).
        let ended_at_ms = task.history.last().map_or(task.created_at_ms, |a| a.ended_at_ms);
        if ended_at_ms > cutoff_ms {
            return Ok(false);
        }
        let head_kv = self.store.range(RangeRequest::key(head_key.clone())).await?.kvs.pop();
        let records = chain_records(&*self.store, self.keys.witness_records(&chain)).await?;
        if records.last().map_or(task.created_at_ms, |r| r.at_ms) > cutoff_ms {
            return Ok(false);
        }
        let head = Head::from_kv(head_kv.as_ref())?;
        let archive = retention.archive.as_ref().filter(|_| !records.is_empty());
        if let Some(Err(e)) = archive.map(|dir| witness_archive::append(dir, &records)) {
            // Never forget what could not be archived.
            tracing::warn!(error = %e, task_id, "retention: cannot archive; task kept");
            return Ok(false);
        }
        let head_guard = match &head_kv {
            Some(kv) => Compare::mod_revision_is(head_key.clone(), kv.mod_revision),
            None => Compare::missing(head_key.clone()),
        };
        let txn = TxnRequest {
            compares: vec![Compare::mod_revision_is(task_key, task_kv.mod_revision), head_guard],
            success: vec![
                TxnOp::Delete(DeleteRequest::prefix(self.keys.task_dir(task_id))),
                TxnOp::Delete(DeleteRequest::key(self.keys.state_entry(state.as_str(), task_id))),
                TxnOp::Delete(DeleteRequest::prefix(self.keys.witness_records(&chain))),
                TxnOp::Delete(DeleteRequest::key(head_key)),
                TxnOp::Put(PutRequest::new(self.keys.witness_checkpoint(&chain), encode(&head)?)),
            ],
            failure: Vec::new(),
        };
        Ok(self.store.txn(txn).await?.succeeded)
    }
}

/// Parses a retention period: a whole number with a unit `s`, `m`, `h` or `d`
/// (`7d`, `12h`), or bare seconds; `0` keeps everything.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a period like 7d, 12h, 30m or 90s"))?;
    let unit_secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    n.checked_mul(unit_secs)
        .filter(|secs| *secs <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is longer than 100 years"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_period("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_period("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_period("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_period("0"), Ok(Duration::ZERO));
        assert!(parse_period("7w").is_err());
        assert!(parse_period("-1d").is_err());
        assert!(parse_period("").is_err());
        assert!(parse_period("99999999999d").is_err());
    }
}
