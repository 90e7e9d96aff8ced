//! Retention: finished tasks (completed, dead, cancelled), their index keys
//! and their witness chains are removed once the chain's last record is older
//! than the retention period, so storage stays bounded.
//!
//! The work list is the finished-time index (`finished/{ms}/{task}`, written
//! in the txn that finishes a task): a pass reads only the entries older than
//! the cutoff, oldest first, so its cost follows what is due, not how many
//! finished tasks are kept. Removals go [`PRUNE_BATCH`] tasks to a txn, each
//! task guarded by its record's revision (the index entry's, while the record
//! stays as it was finished) and its chain head's, so racing nodes are
//! harmless (the loser's archive copy is a duplicate the check accepts).
//!
//! The audit trail survives where it is kept: with an archive directory set,
//! a chain's records are first appended there ([`crate::witness_archive`])
//! and the pruned chain leaves a checkpoint (seq and hash of its last record)
//! against which `ifc witness verify --archive` checks that the archived
//! records chain up to it (so a truncated archive shows). Without an archive
//! nothing of the task stays: a task's chain is pruned whole, so a checkpoint
//! would prove nothing that remains, and one per task forever was the one
//! thing that still grew. (An older checkpoint of a reused id is left alone:
//! the archive's copy of that chain ends at it.) The archive is configured on
//! every node or none: a chain removed by a node without one leaves no
//! checkpoint for a copy another node archived before losing the race.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ifc_api::TaskState;
use ifc_kv::{
    Compare, DeleteRequest, KeyValue, PutRequest, RangeRequest, Revision, TxnOp, TxnRequest,
};
use tokio::task::JoinHandle;

use crate::codec::{decode, encode};
use crate::keys::{Key, task_chain};
use crate::paging::Pager;
use crate::task::TaskRecord;
use crate::witness::{Head, WitnessRecord};
use crate::{Coordinator, CoreError, now_ms, witness_archive};

/// Chain reads one node has in flight.
const READS_IN_FLIGHT: usize = 64;

/// Removal txns one node has in flight.
const REMOVALS_IN_FLIGHT: usize = 8;

/// Tasks removed in one txn: two compares and six ops each, inside the
/// 128-op cap both stores share.
const PRUNE_BATCH: usize = 16;

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

/// A finished-index entry due for removal.
struct Due {
    task_id: String,
    state: TaskState,
    /// The index entry: its key, and its mod revision (the record's, while
    /// the record stays as it was finished).
    entry: KeyValue,
}

/// A due task whose chain is old enough, read and ready to remove.
struct Removal {
    due: Due,
    head_key: String,
    /// The head's mod revision (`None`: the chain has no head).
    head_revision: Option<Revision>,
    head: Head,
    /// The chain's records as stored (tokens not filled in, so hashes check).
    records: Vec<WitnessRecord>,
}

impl Coordinator {
    /// One pass: removes every finished task whose last witness record is
    /// older than `retention.keep`. Returns how many this node removed.
    pub async fn prune_finished(&self, retention: &Retention) -> Result<u64, CoreError> {
        if retention.keep.is_zero() {
            return Ok(0);
        }
        self.complete_finished_index().await?;
        let cutoff_ms = now_ms() - retention.keep.as_millis() as i64;
        // Entries finished before the cutoff: `finished/{cutoff}/` sorts after
        // every one of them and before any entry at or after the cutoff.
        let mut pager =
            Pager::span(self.keys.finished_index(), self.keys.finished_entry(cutoff_ms.max(0), ""));
        let mut pruned = 0;
        while let Some(page) = pager.next_page(&*self.store).await? {
            let due: Vec<Due> = page.into_iter().filter_map(|kv| self.due(kv)).collect();
            let removals: Vec<Removal> = futures::stream::iter(due)
                .map(|due| self.read_removal(due, cutoff_ms))
                .buffer_unordered(READS_IN_FLIGHT)
                .try_filter_map(|removal| async move { Ok(removal) })
                .try_collect()
                .await?;
            // Batches go out together: both stores commit concurrent txns in
            // one sync, so a pass costs a few syncs per page, not one per batch
            // (on etcd, one at a time fell behind 114 tasks/s).
            let batches: Vec<_> =
                removals.chunks(PRUNE_BATCH).map(|batch| self.remove(batch, retention)).collect();
            let removed: Vec<u64> = futures::stream::iter(batches)
                .buffer_unordered(REMOVALS_IN_FLIGHT)
                .try_collect()
                .await?;
            pruned += removed.iter().sum::<u64>();
        }
        Ok(pruned)
    }

    /// What a finished-index entry names, if it is one.
    fn due(&self, entry: KeyValue) -> Option<Due> {
        let Some(Key::Finished { task_id, .. }) = self.keys.parse(&entry.key) else {
            return None;
        };
        let state: TaskState = std::str::from_utf8(&entry.value).ok()?.parse().ok()?;
        Some(Due { task_id: task_id.to_string(), state, entry })
    }

    /// Reads a due task's chain; `None` if its last record is younger than the
    /// cutoff (a record written after the task finished).
    async fn read_removal(&self, due: Due, cutoff_ms: i64) -> Result<Option<Removal>, CoreError> {
        let chain = task_chain(&due.task_id);
        let head_key = self.keys.witness_head(&chain);
        let mut pager = Pager::prefix(self.keys.witness_chain(&chain));
        let (mut head_kv, mut records) = (None, Vec::new());
        while let Some(page) = pager.next_page(&*self.store).await? {
            for kv in page {
                match self.keys.parse(&kv.key) {
                    Some(Key::WitnessHead { .. }) => head_kv = Some(kv),
                    Some(Key::WitnessRecord { .. }) => {
                        let mut record: WitnessRecord = decode(&kv)?;
                        record.revision = kv.mod_revision;
                        records.push(record);
                    }
                    _ => {}
                }
            }
        }
        if records.last().is_some_and(|r| r.at_ms > cutoff_ms) {
            return Ok(None);
        }
        let head = Head::from_kv(head_kv.as_ref())?;
        let head_revision = head_kv.map(|kv| kv.mod_revision);
        Ok(Some(Removal { due, head_key, head_revision, head, records }))
    }

    /// Removes a batch in one txn; if any task in it changed meanwhile, each
    /// alone. Returns how many went.
    async fn remove(&self, batch: &[Removal], retention: &Retention) -> Result<u64, CoreError> {
        if let Some(dir) = &retention.archive {
            let records: Vec<WitnessRecord> =
                batch.iter().flat_map(|r| r.records.iter().cloned()).collect();
            let dir = dir.clone();
            // Blocking file I/O and an fsync: off the async workers.
            let appended =
                tokio::task::spawn_blocking(move || witness_archive::append(&dir, &records))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = appended {
                // Never forget what could not be archived.
                tracing::warn!(error = %e, "retention: cannot archive; tasks kept");
                return Ok(0);
            }
        }
        let checkpoint = retention.archive.is_some();
        if batch.len() > 1 && self.store.txn(self.removal_txn(batch, checkpoint)?).await?.succeeded
        {
            return Ok(batch.len() as u64);
        }
        let mut removed = 0;
        for removal in batch {
            let alone = self.removal_txn(std::slice::from_ref(removal), checkpoint)?;
            if self.store.txn(alone).await?.succeeded {
                removed += 1;
            } else {
                self.mend_entry(&removal.due).await?;
            }
        }
        Ok(removed)
    }

    /// One txn removing every task of `batch`, each guarded; each chain
    /// leaves a checkpoint if `checkpoint` (its records were archived).
    fn removal_txn(&self, batch: &[Removal], checkpoint: bool) -> Result<TxnRequest, CoreError> {
        let mut txn = TxnRequest { compares: Vec::new(), success: Vec::new(), failure: Vec::new() };
        for removal in batch {
            self.add_removal(removal, checkpoint, &mut txn)?;
        }
        Ok(txn)
    }

    /// Adds one task's guarded removal to `txn`.
    fn add_removal(
        &self,
        removal: &Removal,
        checkpoint: bool,
        txn: &mut TxnRequest,
    ) -> Result<(), CoreError> {
        let (task_id, state) = (removal.due.task_id.as_str(), removal.due.state);
        let chain = task_chain(task_id);
        let task_key = self.keys.task(task_id);
        txn.compares.push(Compare::mod_revision_is(task_key, removal.due.entry.mod_revision));
        txn.compares.push(match removal.head_revision {
            Some(revision) => Compare::mod_revision_is(removal.head_key.clone(), revision),
            None => Compare::missing(removal.head_key.clone()),
        });
        txn.success.extend([
            TxnOp::Delete(DeleteRequest::prefix(self.keys.task_dir(task_id))),
            TxnOp::Delete(DeleteRequest::key(self.keys.state_entry(state.as_str(), task_id))),
            TxnOp::Delete(DeleteRequest::key(removal.due.entry.key.clone())),
            TxnOp::Delete(DeleteRequest::prefix(self.keys.witness_records(&chain))),
            TxnOp::Delete(DeleteRequest::key(removal.head_key.clone())),
        ]);
        // Without an archive an earlier checkpoint of this id (pruned with
        // one, then used again) stays: the archive's copy must end at it.
        if checkpoint {
            txn.success.push(TxnOp::Put(PutRequest::new(
                self.keys.witness_checkpoint(&chain),
                encode(&removal.head)?,
            )));
        }
        Ok(())
    }

    /// After a refused removal: an entry whose task is gone or no longer
    /// finished is dropped; one whose record was rewritten since it finished
    /// is written again with the record, in one txn, so their revisions match
    /// again and guard the next pass (the entry alone would never match the
    /// record, and the task would never be pruned). An entry still matching
    /// its record stays as it is: its chain's head moved, and the next pass
    /// reads the chain again. Each only if the entry is still as read.
    async fn mend_entry(&self, due: &Due) -> Result<(), CoreError> {
        let task_kv = self.store.range(RangeRequest::key(self.keys.task(&due.task_id))).await?;
        let record = match task_kv.kvs.first() {
            Some(kv) => Some(decode::<TaskRecord>(kv)?),
            None => None,
        };
        let entry_key = due.entry.key.clone();
        let still_due = record.as_ref().is_some_and(|r| {
            r.state == due.state
                && r.finished_at_ms.is_some_and(|at| {
                    self.keys.finished_entry(at, &due.task_id).as_bytes() == entry_key
                })
        });
        let mut compares =
            vec![Compare::mod_revision_is(entry_key.clone(), due.entry.mod_revision)];
        let success = match task_kv.kvs.first() {
            Some(kv) if still_due => {
                if kv.mod_revision == due.entry.mod_revision {
                    return Ok(());
                }
                compares.push(Compare::mod_revision_is(kv.key.clone(), kv.mod_revision));
                vec![
                    TxnOp::Put(PutRequest::new(kv.key.clone(), kv.value.clone())),
                    TxnOp::Put(PutRequest::new(entry_key, due.entry.value.clone())),
                ]
            }
            _ => vec![TxnOp::Delete(DeleteRequest::key(entry_key))],
        };
        self.store.txn(TxnRequest { compares, success, failure: Vec::new() }).await?;
        Ok(())
    }

    /// Gives every finished task written before the finished-time index
    /// existed its entry (finished at its last attempt's end), once per
    /// namespace; afterwards a marker makes this one read.
    async fn complete_finished_index(&self) -> Result<(), CoreError> {
        let marker = self.keys.finished_index_complete();
        if !self.store.range(RangeRequest::key(marker.clone())).await?.kvs.is_empty() {
            return Ok(());
        }
        let mut added = 0u64;
        for state in [TaskState::Completed, TaskState::Dead, TaskState::Cancelled] {
            let mut pager = Pager::prefix(self.keys.state_index(state.as_str()));
            while let Some(page) = pager.next_page(&*self.store).await? {
                for kv in page {
                    let Some(Key::State { task_id, .. }) = self.keys.parse(&kv.key) else {
                        continue;
                    };
                    added += u64::from(self.index_finished(task_id, state).await?);
                }
            }
        }
        if added > 0 {
            tracing::info!(tasks = added, "retention: indexed tasks finished before the index");
        }
        self.store.put(PutRequest::new(marker, b"1".to_vec())).await?;
        Ok(())
    }

    /// Adds one older finished task to the finished-time index.
    async fn index_finished(&self, task_id: &str, state: TaskState) -> Result<bool, CoreError> {
        let task_key = self.keys.task(task_id);
        let Some(kv) = self.store.range(RangeRequest::key(task_key.clone())).await?.kvs.pop()
        else {
            return Ok(false);
        };
        let mut record: TaskRecord = decode(&kv)?;
        if record.state != state || record.finished_at_ms.is_some() {
            return Ok(false);
        }
        let finished_at_ms = record.history.last().map_or(record.created_at_ms, |a| a.ended_at_ms);
        record.finished_at_ms = Some(finished_at_ms);
        let txn = TxnRequest {
            compares: vec![Compare::mod_revision_is(task_key.clone(), kv.mod_revision)],
            success: vec![
                TxnOp::Put(PutRequest::new(task_key, encode(&record)?)),
                TxnOp::Put(PutRequest::new(
                    self.keys.finished_entry(finished_at_ms, task_id),
                    state.as_str(),
                )),
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
