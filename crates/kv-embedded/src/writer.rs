//! The single writer thread and its group commit.
//!
//! Every write goes through one channel to one thread. The thread takes whatever
//! is queued (up to [`MAX_BATCH`]), applies it request by request inside one redb
//! write transaction (each request that changes something takes the next
//! revision), commits once with an fsync, and only then answers every request in
//! the batch and publishes the new revisions to watchers. If the commit fails,
//! nothing in the batch was acknowledged, and the store stops (fail-stop): the
//! in-memory lease table and revision may be ahead of the disk, so the only safe
//! state is "closed until reopened".

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use ifc_kv::apply::{self, ApplyError, KeySpace};
use ifc_kv::{
    KeyRange, KeyValue, KvError, Lease, LeaseId, Revision, TxnRequest, TxnResponse, WatchBatch,
};
use redb::{ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use crate::codec::{decode_kv, encode_events, encode_kv};
use crate::{HISTORY, KV, LEASES, META, META_COMPACT, META_NEXT_LEASE, Shared};

/// The most requests one commit takes.
const MAX_BATCH: usize = 1024;

/// A request to the writer.
pub enum Command {
    Txn(TxnRequest, oneshot::Sender<Result<TxnResponse, KvError>>),
    LeaseGrant(i64, oneshot::Sender<Result<Lease, KvError>>),
    LeaseRevoke(LeaseId, oneshot::Sender<Result<Revision, KvError>>),
    Compact(Revision, oneshot::Sender<Result<(), KvError>>),
}

/// An answer held back until the batch is on disk.
enum Reply {
    Txn(oneshot::Sender<Result<TxnResponse, KvError>>, Result<TxnResponse, KvError>),
    Lease(oneshot::Sender<Result<Lease, KvError>>, Result<Lease, KvError>),
    Revoke(oneshot::Sender<Result<Revision, KvError>>, Result<Revision, KvError>),
    Compact(oneshot::Sender<Result<(), KvError>>, Result<(), KvError>),
}

impl Reply {
    fn send(self) {
        // A caller that gave up waiting is not an error: the write stands.
        match self {
            Reply::Txn(tx, r) => drop(tx.send(r)),
            Reply::Lease(tx, r) => drop(tx.send(r)),
            Reply::Revoke(tx, r) => drop(tx.send(r)),
            Reply::Compact(tx, r) => drop(tx.send(r)),
        }
    }

    fn fail(self, e: KvError) {
        match self {
            Reply::Txn(tx, _) => drop(tx.send(Err(e))),
            Reply::Lease(tx, _) => drop(tx.send(Err(e))),
            Reply::Revoke(tx, _) => drop(tx.send(Err(e))),
            Reply::Compact(tx, _) => drop(tx.send(Err(e))),
        }
    }
}

/// Counters the writer keeps between batches.
pub struct WriterState {
    pub revision: Revision,
    pub compact_revision: Revision,
    pub next_lease: LeaseId,
    /// Auto-compaction keeps this many revisions of history (0: never compact).
    pub retention: i64,
}

/// The writer loop; returns when every sender is gone.
pub fn run(shared: Arc<Shared>, commands: Receiver<Command>, mut state: WriterState) {
    loop {
        let timeout =
            shared.leases().next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        let first = match timeout {
            Some(t) => match commands.recv_timeout(t) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            },
        };
        let mut batch: Vec<Command> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if let Err(e) = shared.check_running() {
            for command in batch {
                pending_reply(command).fail(e.clone());
            }
            continue;
        }
        let expired = shared.leases().expired(Instant::now());
        if batch.is_empty() && expired.is_empty() {
            continue;
        }
        commit_batch(&shared, &mut state, batch, expired);
    }
}

fn pending_reply(command: Command) -> Reply {
    let stopped = || KvError::Stopped(String::new());
    match command {
        Command::Txn(_, tx) => Reply::Txn(tx, Err(stopped())),
        Command::LeaseGrant(_, tx) => Reply::Lease(tx, Err(stopped())),
        Command::LeaseRevoke(_, tx) => Reply::Revoke(tx, Err(stopped())),
        Command::Compact(_, tx) => Reply::Compact(tx, Err(stopped())),
    }
}

fn commit_batch(
    shared: &Shared,
    state: &mut WriterState,
    batch: Vec<Command>,
    expired: Vec<LeaseId>,
) {
    let start_revision = state.revision;
    let mut replies = Vec::with_capacity(batch.len());
    let mut published = Vec::new();
    let outcome = (|| -> Result<(), String> {
        let txn = shared.db.begin_write().map_err(|e| e.to_string())?;
        apply_batch(shared, state, &txn, batch, &expired, &mut replies, &mut published)?;
        txn.commit().map_err(|e| e.to_string())
    })();
    match outcome {
        Ok(()) => {
            shared
                .compact_revision
                .store(state.compact_revision, std::sync::atomic::Ordering::Release);
            shared.hub.publish(published);
            for reply in replies {
                reply.send();
            }
        }
        Err(message) => {
            tracing::error!(%message, "embedded store commit failed; the store stops");
            state.revision = start_revision;
            shared.stop(message.clone());
            for reply in replies {
                reply.fail(KvError::Stopped(message.clone()));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_batch(
    shared: &Shared,
    state: &mut WriterState,
    txn: &WriteTransaction,
    batch: Vec<Command>,
    expired: &[LeaseId],
    replies: &mut Vec<Reply>,
    published: &mut Vec<WatchBatch>,
) -> Result<(), String> {
    let err = |e: redb::Error| e.to_string();
    let mut kv = txn.open_table(KV).map_err(|e| err(e.into()))?;
    let mut history = txn.open_table(HISTORY).map_err(|e| err(e.into()))?;
    let mut leases = txn.open_table(LEASES).map_err(|e| err(e.into()))?;
    let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
    let (compact_before, next_lease_before) = (state.compact_revision, state.next_lease);

    let mut record = |state: &mut WriterState,
                      history: &mut Table<u64, &[u8]>,
                      events: Vec<ifc_kv::Event>|
     -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        state.revision += 1;
        history
            .insert(state.revision as u64, encode_events(&events).as_slice())
            .map_err(|e| err(e.into()))?;
        {
            let mut table = shared.leases();
            let table = std::cell::RefCell::new(&mut *table);
            apply::track_leases(
                &events,
                |lease, key| table.borrow_mut().detach(lease, key),
                |lease, key| table.borrow_mut().attach(lease, key),
            );
        }
        published.push(WatchBatch { revision: state.revision, events });
        Ok(())
    };

    for command in batch {
        match command {
            Command::Txn(req, reply) => {
                let mut space = TableSpace { table: &mut kv, shared };
                match apply::apply_txn(&mut space, state.revision, &req) {
                    Ok(applied) => {
                        record(state, &mut history, applied.events)?;
                        replies.push(Reply::Txn(reply, Ok(applied.response)));
                    }
                    Err(ApplyError::Rejected(e)) => replies.push(Reply::Txn(reply, Err(e))),
                    Err(ApplyError::Storage(e)) => return Err(e),
                }
            }
            Command::LeaseGrant(ttl, reply) => {
                let id = state.next_lease;
                state.next_lease += 1;
                leases.insert(id, ttl).map_err(|e| err(e.into()))?;
                shared.leases().insert(id, ttl);
                replies.push(Reply::Lease(reply, Ok(Lease { id, ttl })));
            }
            Command::LeaseRevoke(id, reply) => {
                let result = match end_lease(shared, &mut kv, &mut leases, state.revision, id)? {
                    Some(events) => {
                        record(state, &mut history, events)?;
                        Ok(state.revision)
                    }
                    None => Err(KvError::LeaseNotFound(id)),
                };
                replies.push(Reply::Revoke(reply, result));
            }
            Command::Compact(revision, reply) => {
                let result = compact(state, &mut history, revision)?;
                replies.push(Reply::Compact(reply, result));
            }
        }
    }
    let now = Instant::now();
    for &id in expired {
        // A keep-alive may have come in since the writer listed the lease.
        if !shared.leases().is_expired(id, now) {
            continue;
        }
        if let Some(events) = end_lease(shared, &mut kv, &mut leases, state.revision, id)? {
            record(state, &mut history, events)?;
        }
    }
    if state.retention > 0 && state.revision - state.compact_revision > 2 * state.retention {
        let keep_from = state.revision - state.retention;
        compact(state, &mut history, keep_from)?.ok();
    }
    // The revision itself is not stored: it is the last key of `history`
    // (see `crate::last_revision`), so a commit touches `meta` only when the
    // compaction point or the lease counter moved: one B-tree fewer to write.
    if state.compact_revision != compact_before {
        meta.insert(META_COMPACT, state.compact_revision).map_err(|e| err(e.into()))?;
    }
    if state.next_lease != next_lease_before {
        meta.insert(META_NEXT_LEASE, state.next_lease).map_err(|e| err(e.into()))?;
    }
    Ok(())
}

/// Deletes a lease and its keys; `None` if it did not exist.
fn end_lease(
    shared: &Shared,
    kv: &mut Table<&[u8], &[u8]>,
    leases: &mut Table<i64, i64>,
    revision: Revision,
    id: LeaseId,
) -> Result<Option<Vec<ifc_kv::Event>>, String> {
    let Some(keys) = shared.leases().remove(id) else {
        return Ok(None);
    };
    leases.remove(id).map_err(|e| e.to_string())?;
    let mut space = TableSpace { table: kv, shared };
    apply::apply_lease_end(&mut space, revision, &keys).map(Some)
}

fn compact(
    state: &mut WriterState,
    history: &mut Table<u64, &[u8]>,
    revision: Revision,
) -> Result<Result<(), KvError>, String> {
    if revision > state.revision {
        return Ok(Err(KvError::FutureRevision { requested: revision, current: state.revision }));
    }
    if revision <= state.compact_revision {
        return Ok(Err(KvError::Compacted { compact_revision: state.compact_revision }));
    }
    history.retain_in(..revision as u64, |_, _| false).map_err(|e| e.to_string())?;
    state.compact_revision = revision;
    Ok(Ok(()))
}

/// The `kv` table seen through [`KeySpace`].
struct TableSpace<'t, 'txn> {
    table: &'t mut Table<'txn, &'static [u8], &'static [u8]>,
    shared: &'t Shared,
}

impl KeySpace for TableSpace<'_, '_> {
    type Error = String;

    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, String> {
        let Some(stored) = self.table.get(key).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        decode_kv(key, stored.value()).map(Some).map_err(|e| e.to_string())
    }

    fn scan(&mut self, range: &KeyRange, limit: usize) -> Result<(Vec<KeyValue>, usize), String> {
        crate::scan(&*self.table, range, limit)
    }

    fn insert(&mut self, kv: &KeyValue) -> Result<(), String> {
        self.table
            .insert(kv.key.as_slice(), encode_kv(kv).as_slice())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), String> {
        self.table.remove(key).map(drop).map_err(|e| e.to_string())
    }

    fn lease_exists(&mut self, id: LeaseId) -> bool {
        self.shared.leases().contains(id)
    }
}
