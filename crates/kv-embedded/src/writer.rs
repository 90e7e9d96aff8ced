//! The single writer thread and its group commit.
//!
//! Every write goes through one channel to one thread. The thread takes whatever
//! is queued (up to [`MAX_BATCH`]), applies it request by request inside one redb
//! write transaction (each request that changes something takes the next
//! revision), commits it without an fsync, appends the batch's effects to the
//! write-ahead log with one `fdatasync` (see [`crate::wal`]), and only then
//! answers every request in the batch and publishes the new revisions to
//! watchers. If any step fails, nothing in the batch was acknowledged, and the
//! store stops (fail-stop): the in-memory lease table and revision may be ahead
//! of the disk, so the only safe state is "closed until reopened".

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use ifc_kv::apply::{self, ApplyError, KeySpace};
use ifc_kv::{
    KeyRange, KeyValue, KvError, Lease, LeaseId, Revision, TxnRequest, TxnResponse, WatchBatch,
};
use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use crate::codec::{decode_kv, encode_events, encode_kv};
use crate::wal::{self, Mutation, Wal};
use crate::{HISTORY, KV, LEASES, META, META_COMPACT, META_NEXT_LEASE, META_WAL_SEQ, Shared};

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
    /// The write-ahead log.
    pub wal: Wal,
    /// When the B-tree was last made durable.
    pub last_checkpoint: Instant,
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
                Err(RecvTimeoutError::Disconnected) => return shutdown(&shared, &mut state),
            },
            None => match commands.recv_timeout(wal::CHECKPOINT_INTERVAL) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return shutdown(&shared, &mut state),
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
            // Idle: make the B-tree durable so the log does not have to be replayed.
            if !state.wal.is_empty()
                && state.last_checkpoint.elapsed() >= wal::CHECKPOINT_INTERVAL
                && let Err(message) = checkpoint(&shared, &mut state)
            {
                fail(&shared, message);
            }
            continue;
        }
        commit_batch(&shared, &mut state, batch, expired);
    }
}

fn fail(shared: &Shared, message: String) {
    tracing::error!(%message, "embedded store write failed; the store stops");
    shared.stop(message);
}

/// A clean stop: everything durable in the B-tree, the log empty.
fn shutdown(shared: &Shared, state: &mut WriterState) {
    if shared.check_running().is_ok()
        && let Err(message) = checkpoint(shared, state)
    {
        fail(shared, message);
    }
}

/// Makes every commit so far durable in the B-tree and restarts the log.
fn checkpoint(shared: &Shared, state: &mut WriterState) -> Result<(), String> {
    let mut txn = shared.db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let covered = state.wal.next_seq as i64 - 1;
        meta.insert(META_WAL_SEQ, covered).map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())?;
    state.wal.restart();
    state.last_checkpoint = Instant::now();
    Ok(())
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
        let seq = state.wal.next_seq;
        let mut txn = shared.db.begin_write().map_err(|e| e.to_string())?;
        // Durability comes from the log, not from this commit.
        txn.set_durability(Durability::None).map_err(|e| e.to_string())?;
        let mutations = {
            let mut tables = Tables::open(&txn)?;
            apply_batch(shared, state, &mut tables, batch, &expired, &mut replies, &mut published)?;
            tables.meta.insert(META_WAL_SEQ, seq as i64).map_err(|e| e.to_string())?;
            tables.log
        };
        txn.commit().map_err(|e| e.to_string())?;
        if mutations.is_empty() {
            return Ok(());
        }
        let payload = wal::encode(&mutations);
        if state.wal.fits(payload.len())
            && state.last_checkpoint.elapsed() < wal::CHECKPOINT_INTERVAL
        {
            state.wal.append(seq, &payload).map_err(|e| e.to_string())
        } else {
            // Log full or due: make this batch and all before it durable in the
            // B-tree at once, and start the log over.
            state.wal.next_seq = seq + 1;
            checkpoint(shared, state)
        }
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
            state.revision = start_revision;
            fail(shared, message.clone());
            for reply in replies {
                reply.fail(KvError::Stopped(message.clone()));
            }
        }
    }
}

/// The four tables of one write transaction, and the log of every change made
/// through them (what the write-ahead log records).
pub struct Tables<'txn> {
    pub kv: Table<'txn, &'static [u8], &'static [u8]>,
    pub history: Table<'txn, u64, &'static [u8]>,
    pub leases: Table<'txn, i64, i64>,
    pub meta: Table<'txn, &'static str, i64>,
    pub log: Vec<Mutation>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, String> {
        let err = |e: redb::TableError| e.to_string();
        Ok(Tables {
            kv: txn.open_table(KV).map_err(err)?,
            history: txn.open_table(HISTORY).map_err(err)?,
            leases: txn.open_table(LEASES).map_err(err)?,
            meta: txn.open_table(META).map_err(err)?,
            log: Vec::new(),
        })
    }

    /// Applies one mutation (from a batch, or replayed from the log).
    pub fn apply(&mut self, m: Mutation) -> Result<(), String> {
        let err = |e: redb::StorageError| e.to_string();
        match &m {
            Mutation::KvPut(k, v) => drop(self.kv.insert(k.as_slice(), v.as_slice()).map_err(err)?),
            Mutation::KvDel(k) => drop(self.kv.remove(k.as_slice()).map_err(err)?),
            Mutation::HistPut(r, v) => drop(self.history.insert(*r, v.as_slice()).map_err(err)?),
            Mutation::HistDelBelow(r) => self.history.retain_in(..*r, |_, _| false).map_err(err)?,
            Mutation::LeasePut(id, ttl) => drop(self.leases.insert(*id, *ttl).map_err(err)?),
            Mutation::LeaseDel(id) => drop(self.leases.remove(*id).map_err(err)?),
            Mutation::Meta(name, value) => {
                drop(self.meta.insert(name.as_str(), *value).map_err(err)?)
            }
        }
        self.log.push(m);
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_batch(
    shared: &Shared,
    state: &mut WriterState,
    tables: &mut Tables<'_>,
    batch: Vec<Command>,
    expired: &[LeaseId],
    replies: &mut Vec<Reply>,
    published: &mut Vec<WatchBatch>,
) -> Result<(), String> {
    let (compact_before, next_lease_before) = (state.compact_revision, state.next_lease);

    let mut record = |state: &mut WriterState,
                      tables: &mut Tables<'_>,
                      events: Vec<ifc_kv::Event>|
     -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        state.revision += 1;
        tables.apply(Mutation::HistPut(state.revision as u64, encode_events(&events)))?;
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
                let mut space = TableSpace { tables: &mut *tables, shared };
                match apply::apply_txn(&mut space, state.revision, &req) {
                    Ok(applied) => {
                        record(state, tables, applied.events)?;
                        replies.push(Reply::Txn(reply, Ok(applied.response)));
                    }
                    Err(ApplyError::Rejected(e)) => replies.push(Reply::Txn(reply, Err(e))),
                    Err(ApplyError::Storage(e)) => return Err(e),
                }
            }
            Command::LeaseGrant(ttl, reply) => {
                let id = state.next_lease;
                state.next_lease += 1;
                tables.apply(Mutation::LeasePut(id, ttl))?;
                shared.leases().insert(id, ttl);
                replies.push(Reply::Lease(reply, Ok(Lease { id, ttl })));
            }
            Command::LeaseRevoke(id, reply) => {
                let result = match end_lease(shared, tables, state.revision, id)? {
                    Some(events) => {
                        record(state, tables, events)?;
                        Ok(state.revision)
                    }
                    None => Err(KvError::LeaseNotFound(id)),
                };
                replies.push(Reply::Revoke(reply, result));
            }
            Command::Compact(revision, reply) => {
                let result = compact(state, tables, revision)?;
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
        if let Some(events) = end_lease(shared, tables, state.revision, id)? {
            record(state, tables, events)?;
        }
    }
    if state.retention > 0 && state.revision - state.compact_revision > 2 * state.retention {
        let keep_from = state.revision - state.retention;
        compact(state, tables, keep_from)?.ok();
    }
    // The revision itself is not stored: it is the last key of `history`
    // (see `crate::last_revision`), so a commit touches `meta` only when the
    // compaction point or the lease counter moved: one B-tree fewer to write.
    if state.compact_revision != compact_before {
        tables.apply(Mutation::Meta(META_COMPACT.into(), state.compact_revision))?;
    }
    if state.next_lease != next_lease_before {
        tables.apply(Mutation::Meta(META_NEXT_LEASE.into(), state.next_lease))?;
    }
    Ok(())
}

/// Deletes a lease and its keys; `None` if it did not exist.
fn end_lease(
    shared: &Shared,
    tables: &mut Tables<'_>,
    revision: Revision,
    id: LeaseId,
) -> Result<Option<Vec<ifc_kv::Event>>, String> {
    let Some(keys) = shared.leases().remove(id) else {
        return Ok(None);
    };
    tables.apply(Mutation::LeaseDel(id))?;
    let mut space = TableSpace { tables, shared };
    apply::apply_lease_end(&mut space, revision, &keys).map(Some)
}

fn compact(
    state: &mut WriterState,
    tables: &mut Tables<'_>,
    revision: Revision,
) -> Result<Result<(), KvError>, String> {
    if revision > state.revision {
        return Ok(Err(KvError::FutureRevision { requested: revision, current: state.revision }));
    }
    if revision <= state.compact_revision {
        return Ok(Err(KvError::Compacted { compact_revision: state.compact_revision }));
    }
    tables.apply(Mutation::HistDelBelow(revision as u64))?;
    state.compact_revision = revision;
    Ok(Ok(()))
}

/// The `kv` table seen through [`KeySpace`]; writes go through the log.
struct TableSpace<'t, 'txn> {
    tables: &'t mut Tables<'txn>,
    shared: &'t Shared,
}

impl KeySpace for TableSpace<'_, '_> {
    type Error = String;

    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, String> {
        let Some(stored) = self.tables.kv.get(key).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        decode_kv(key, stored.value()).map(Some).map_err(|e| e.to_string())
    }

    fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), String> {
        crate::scan(&self.tables.kv, range, limit, count_all)
    }

    fn insert(&mut self, kv: &KeyValue) -> Result<(), String> {
        self.tables.apply(Mutation::KvPut(kv.key.clone(), encode_kv(kv)))
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), String> {
        self.tables.apply(Mutation::KvDel(key.to_vec()))
    }

    fn lease_exists(&mut self, id: LeaseId) -> bool {
        self.shared.leases().contains(id)
    }
}
