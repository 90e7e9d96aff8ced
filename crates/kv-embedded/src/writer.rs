//! The single writer thread: applies requests to the overlay's active layer.
//!
//! Every write goes through one channel to one thread. The thread takes whatever
//! is queued (up to [`MAX_BATCH`]), applies it request by request to the active
//! layer (each request that changes something takes the next revision), encodes
//! the batch's effects as one log payload as it goes, and hands the batch to the
//! syncer ([`crate::syncer`]), which makes it durable and only then answers and
//! publishes it. The writer does not wait for that: it applies the next batch
//! while the previous one is being fsynced, reading the layers at their newest
//! (not yet durable) state; a batch's answers never overtake an earlier batch's
//! fsync, so nothing a reply says is undone by a crash.
//!
//! On an idle store a txn skips both hand-offs: its caller takes the writer's
//! lock, applies it and makes it durable on its own thread ([`Writer::commit_now`])
//! when no other write call is under way and nothing is in flight to the log.
//! Thread wake-ups were most of what a lone durable write cost above the
//! disk's `fdatasync` (design.md, "Writes on the caller's thread").
//!
//! The writer also freezes the active layer (every `freeze_interval`, or after
//! `freeze_changes` changes, or at `layer_bytes`) when the flusher is free, and
//! waits for the flusher when the active layer is full and the frozen one is
//! still being committed (back-pressure). If any step fails, the store stops
//! (fail-stop): the in-memory state may be ahead of the disk, so the only safe
//! state is "closed until reopened".

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ifc_kv::apply::{self, ApplyError, KeySpace};
use ifc_kv::{
    KeyRange, KeyValue, KvError, Lease, LeaseId, Revision, TxnRequest, TxnResponse, WatchBatch,
};
use tokio::sync::oneshot;

use crate::codec::encode_events;
use crate::flusher::FlushControl;
use crate::overlay::{Layer, Snapshot};
use crate::syncer::{Group, Log, SyncItem, make_durable};
use crate::wal::payload;
use crate::{META_COMPACT, META_NEXT_LEASE, Shared};

/// The most requests one batch takes.
const MAX_BATCH: usize = 1024;
/// How often the writer looks again whether it may freeze, while the flusher
/// still holds the frozen layer.
const FLUSH_POLL: Duration = Duration::from_millis(5);

/// A request to the writer.
pub enum Command {
    Txn(TxnRequest, oneshot::Sender<Result<TxnResponse, KvError>>),
    LeaseGrant(i64, oneshot::Sender<Result<Lease, KvError>>),
    LeaseRevoke(LeaseId, oneshot::Sender<Result<Revision, KvError>>),
    Compact(Revision, oneshot::Sender<Result<(), KvError>>),
    /// No request: a txn applied on its caller's thread asks the writer to
    /// look again when to freeze the active layer.
    Tick,
}

/// An answer held back until the batch is on disk.
pub enum Reply {
    Txn(oneshot::Sender<Result<TxnResponse, KvError>>, Result<TxnResponse, KvError>),
    Lease(oneshot::Sender<Result<Lease, KvError>>, Result<Lease, KvError>),
    Revoke(oneshot::Sender<Result<Revision, KvError>>, Result<Revision, KvError>),
    Compact(oneshot::Sender<Result<(), KvError>>, Result<(), KvError>),
}

impl Reply {
    /// Sends the answer.
    pub fn send(self) {
        // A caller that gave up waiting is not an error: the write stands.
        match self {
            Reply::Txn(tx, r) => drop(tx.send(r)),
            Reply::Lease(tx, r) => drop(tx.send(r)),
            Reply::Revoke(tx, r) => drop(tx.send(r)),
            Reply::Compact(tx, r) => drop(tx.send(r)),
        }
    }

    /// Answers with an error instead (the batch did not become durable).
    pub fn fail(self, e: KvError) {
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

/// A txn committed by [`Writer::commit_now`].
pub struct CommittedNow {
    pub answer: Result<TxnResponse, KvError>,
    pub wake_writer: bool,
}

/// When the active layer is frozen.
#[derive(Clone, Copy, Debug)]
pub struct FreezeRule {
    pub interval: Duration,
    pub changes: usize,
    pub bytes: usize,
}

/// The writer's state, behind the lock its thread and [`Writer::commit_now`]
/// share.
pub struct Writer {
    pub shared: Arc<Shared>,
    pub state: WriterState,
    pub freeze: FreezeRule,
    /// `None` once the writer has shut down.
    pub to_syncer: Option<SyncSender<SyncItem>>,
    pub log: Arc<Log>,
    pub flush: Arc<FlushControl>,
}

/// The threads the writer hands work to, joined at shutdown.
pub struct Helpers {
    pub syncer: JoinHandle<()>,
    pub flusher: JoinHandle<()>,
}

/// The writer thread takes its lock. It says so first, so callers queue
/// instead of taking the lock before it. A poisoned lock means a caller
/// panicked while applying a txn: the layer may hold changes no log record
/// has, so the store stops.
fn lock<'c>(core: &'c Mutex<Writer>, shared: &Shared) -> MutexGuard<'c, Writer> {
    shared.writer_waiting.store(true, Ordering::Release);
    let writer = core.lock().unwrap_or_else(|poisoned| {
        if shared.check_running().is_ok() {
            fail(shared, "a write panicked while it was applied".into());
        }
        poisoned.into_inner()
    });
    shared.writer_waiting.store(false, Ordering::Release);
    writer
}

/// The writer loop; returns when every sender is gone.
pub fn run(
    core: Arc<Mutex<Writer>>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    helpers: Helpers,
) {
    loop {
        // A stopped store neither freezes nor expires leases: its deadlines
        // stay in the past, so it only waits for requests (to refuse them).
        let wake =
            if shared.check_running().is_ok() { lock(&core, &shared).next_wake() } else { None };
        let first = match wake {
            Some(at) => match commands.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return shutdown(&core, &shared, helpers),
            },
            None => match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return shutdown(&core, &shared, helpers),
            },
        };
        let mut batch: Vec<Command> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        batch.retain(|c| !matches!(c, Command::Tick));
        let mut writer = lock(&core, &shared);
        if let Err(e) = writer.shared.check_running() {
            for command in batch {
                if let Some(reply) = pending_reply(command) {
                    reply.fail(e.clone());
                }
            }
            continue;
        }
        let expired = writer.shared.leases().expired(Instant::now());
        if !batch.is_empty() || !expired.is_empty() {
            writer.commit_batch(batch, &expired);
        }
        writer.maybe_freeze(false);
    }
}

/// A clean stop: everything in the B-tree, the log no longer needed.
fn shutdown(core: &Mutex<Writer>, shared: &Shared, helpers: Helpers) {
    let flush = {
        let mut writer = lock(core, shared);
        if shared.check_running().is_ok() {
            writer.maybe_freeze(true);
        }
        writer.to_syncer = None;
        writer.flush.clone()
    };
    let _ = helpers.syncer.join();
    flush.wait_flushed(shared);
    flush.close();
    let _ = helpers.flusher.join();
}

fn fail(shared: &Shared, message: String) {
    tracing::error!(%message, "embedded store write failed; the store stops");
    shared.stop(message);
}

fn pending_reply(command: Command) -> Option<Reply> {
    let stopped = || KvError::Stopped(String::new());
    Some(match command {
        Command::Txn(_, tx) => Reply::Txn(tx, Err(stopped())),
        Command::LeaseGrant(_, tx) => Reply::Lease(tx, Err(stopped())),
        Command::LeaseRevoke(_, tx) => Reply::Revoke(tx, Err(stopped())),
        Command::Compact(_, tx) => Reply::Compact(tx, Err(stopped())),
        Command::Tick => return None,
    })
}

impl Writer {
    /// When to wake without a request: the next lease deadline, or when the
    /// active layer is due to be frozen.
    fn next_wake(&self) -> Option<Instant> {
        let lease = self.shared.leases().next_deadline();
        let active = self.shared.overlay.layers().active;
        let first_change = active.read().first_change;
        let freeze = match first_change {
            None => None,
            Some(_) if self.flush.frozen() => Some(Instant::now() + FLUSH_POLL),
            Some(at) => Some(at + self.freeze.interval),
        };
        [lease, freeze].into_iter().flatten().min()
    }

    /// Freezes the active layer if it is due (or `force`d, at shutdown) and the
    /// flusher is free; waits for the flusher if the active layer is full.
    fn maybe_freeze(&mut self, force: bool) {
        let active = self.shared.overlay.layers().active;
        let (changes, bytes, held) = {
            let data = active.read();
            (data.changes, data.bytes, data.held_for(self.freeze.interval))
        };
        if changes == 0 {
            return;
        }
        let full = bytes >= self.freeze.bytes;
        let due = force || full || changes >= self.freeze.changes || held;
        if !due {
            return;
        }
        if self.flush.frozen() && !(force || full) {
            return;
        }
        if !self.flush.wait_flushed(&self.shared) {
            return;
        }
        let frozen = self.shared.overlay.freeze();
        self.flush.froze();
        if let Err(item) = self.hand_over(SyncItem::Seal(frozen)) {
            drop(item);
            fail(&self.shared, "the log thread is gone".into());
        }
    }

    /// Sends an item to the log thread, counting it as in flight.
    fn hand_over(&mut self, item: SyncItem) -> Result<(), SyncItem> {
        let Some(to_syncer) = &self.to_syncer else { return Err(item) };
        self.log.handing_over();
        to_syncer.send(item).map_err(|e| {
            // Never reached the log thread, so never finishes there.
            self.log.finished_unsent();
            e.0
        })
    }

    fn commit_batch(&mut self, batch: Vec<Command>, expired: &[LeaseId]) {
        let Some(group) = self.apply_group(batch, expired) else { return };
        if let Err(item) = self.hand_over(SyncItem::Group(group)) {
            fail(&self.shared, "the log thread is gone".into());
            if let SyncItem::Group(group) = item {
                group.fail(&KvError::Stopped("the log thread is gone".into()));
            }
        }
    }

    /// Applies a batch to the active layer; `None` if applying failed (the
    /// store has stopped and every request has its answer).
    fn apply_group(&mut self, batch: Vec<Command>, expired: &[LeaseId]) -> Option<Group> {
        let start_revision = self.state.revision;
        let mut group = Group::default();
        let outcome = self.apply_batch(batch, expired, &mut group);
        group.revision = self.state.revision;
        group.compact_revision = self.state.compact_revision;
        match outcome {
            Ok(()) => Some(group),
            Err(message) => {
                self.state.revision = start_revision;
                fail(&self.shared, message.clone());
                group.fail(&KvError::Stopped(message));
                None
            }
        }
    }

    /// Whether the writer thread has work of its own now: the active layer is
    /// due to be frozen, or a lease to expire. A txn then goes through the
    /// queue, so the writer thread runs it and does that work.
    fn writer_work_due(&self) -> bool {
        let active = self.shared.overlay.layers().active;
        let layer_due = {
            let data = active.read();
            data.changes >= self.freeze.changes
                || data.bytes >= self.freeze.bytes
                || data.held_for(self.freeze.interval)
        };
        layer_due || self.shared.leases().next_deadline().is_some_and(|at| at <= Instant::now())
    }

    /// Applies one txn and makes it durable on the caller's thread, if nothing
    /// is in flight to the log and the writer thread has nothing due (else
    /// gives the request back, for the queue).
    /// The answer is the store's, as through the queue; `wake_writer` asks the
    /// caller to send [`Command::Tick`], so the writer's freeze timer sees the
    /// change.
    pub fn commit_now(&mut self, req: TxnRequest) -> Result<CommittedNow, TxnRequest> {
        if self.to_syncer.is_none() || !self.log.idle() || self.writer_work_due() {
            return Err(req);
        }
        if let Err(e) = self.shared.check_running() {
            return Ok(CommittedNow { answer: Err(e), wake_writer: false });
        }
        let changes_before = self.shared.overlay.layers().active.read().changes;
        let (tx, mut rx) = oneshot::channel();
        if let Some(group) = self.apply_group(vec![Command::Txn(req, tx)], &[]) {
            make_durable(&self.shared, &self.log, vec![group]).into_iter().for_each(Reply::send);
        }
        let answer = rx.try_recv().unwrap_or_else(|_| Err(KvError::Stopped("no answer".into())));
        // The writer sleeps without a deadline while the layer is empty.
        let wake_writer = changes_before == 0;
        Ok(CommittedNow { answer, wake_writer })
    }

    fn apply_batch(
        &mut self,
        batch: Vec<Command>,
        expired: &[LeaseId],
        group: &mut Group,
    ) -> Result<(), String> {
        let shared = self.shared.clone();
        let state = &mut self.state;
        let (compact_before, next_lease_before) = (state.compact_revision, state.next_lease);
        let snapshot = shared.overlay.latest(&shared.db)?;
        let active = snapshot.active().clone();
        let out = &mut group.payload;

        let record = |state: &mut WriterState,
                      out: &mut Vec<u8>,
                      published: &mut Vec<WatchBatch>,
                      events: Vec<ifc_kv::Event>| {
            if events.is_empty() {
                return;
            }
            state.revision += 1;
            let encoded = encode_events(&events);
            payload::hist_put(out, state.revision as u64, &encoded);
            active.write().put_history(state.revision as u64, encoded);
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
        };

        for command in batch {
            match command {
                Command::Txn(req, reply) => {
                    let mut space = WriterSpace {
                        snapshot: &snapshot,
                        next: state.revision + 1,
                        out,
                        shared: &shared,
                    };
                    match apply::apply_txn(&mut space, state.revision, &req) {
                        Ok(applied) => {
                            record(state, out, &mut group.published, applied.events);
                            group.replies.push(Reply::Txn(reply, Ok(applied.response)));
                        }
                        Err(ApplyError::Rejected(e)) => {
                            group.replies.push(Reply::Txn(reply, Err(e)));
                        }
                        Err(ApplyError::Storage(e)) => return Err(e),
                    }
                }
                Command::LeaseGrant(ttl, reply) => {
                    let id = state.next_lease;
                    state.next_lease += 1;
                    payload::lease_put(out, id, ttl);
                    active.write().leases.insert(id, Some(ttl));
                    shared.leases().insert(id, ttl);
                    group.replies.push(Reply::Lease(reply, Ok(Lease { id, ttl })));
                }
                Command::LeaseRevoke(id, reply) => {
                    let result = match end_lease(&shared, &snapshot, out, state.revision, id)? {
                        Some(events) => {
                            record(state, out, &mut group.published, events);
                            Ok(state.revision)
                        }
                        None => Err(KvError::LeaseNotFound(id)),
                    };
                    group.replies.push(Reply::Revoke(reply, result));
                }
                Command::Compact(revision, reply) => {
                    let result = compact(state, &active, out, revision);
                    group.replies.push(Reply::Compact(reply, result));
                }
                Command::Tick => {}
            }
        }
        let now = Instant::now();
        for &id in expired {
            // A keep-alive may have come in since the writer listed the lease.
            if !shared.leases().is_expired(id, now) {
                continue;
            }
            if let Some(events) = end_lease(&shared, &snapshot, out, state.revision, id)? {
                record(state, out, &mut group.published, events);
            }
        }
        if state.retention > 0 && state.revision - state.compact_revision > 2 * state.retention {
            let keep_from = state.revision - state.retention;
            compact(state, &active, out, keep_from).ok();
        }
        // The revision itself is not stored: it is the last key of `history`
        // (see `crate::last_revision`).
        if state.compact_revision != compact_before {
            payload::meta(out, META_COMPACT, state.compact_revision);
        }
        if state.next_lease != next_lease_before {
            payload::meta(out, META_NEXT_LEASE, state.next_lease);
            active.write().next_lease = Some(state.next_lease);
        }
        Ok(())
    }
}

/// Deletes a lease and its keys; `None` if it did not exist.
fn end_lease(
    shared: &Shared,
    snapshot: &Snapshot,
    out: &mut Vec<u8>,
    revision: Revision,
    id: LeaseId,
) -> Result<Option<Vec<ifc_kv::Event>>, String> {
    let Some(keys) = shared.leases().remove(id) else {
        return Ok(None);
    };
    payload::lease_del(out, id);
    snapshot.active().write().leases.insert(id, None);
    let mut space = WriterSpace { snapshot, next: revision + 1, out, shared };
    apply::apply_lease_end(&mut space, revision, &keys).map(Some)
}

fn compact(
    state: &mut WriterState,
    active: &Layer,
    out: &mut Vec<u8>,
    revision: Revision,
) -> Result<(), KvError> {
    if revision > state.revision {
        return Err(KvError::FutureRevision { requested: revision, current: state.revision });
    }
    if revision <= state.compact_revision {
        return Err(KvError::Compacted { compact_revision: state.compact_revision });
    }
    payload::hist_del_below(out, revision as u64);
    active.write().compact_revision = Some(revision);
    state.compact_revision = revision;
    Ok(())
}

/// The store at its newest state seen through [`KeySpace`]: reads go through the
/// layers to redb, writes go to the active layer and the batch's log payload.
struct WriterSpace<'s> {
    snapshot: &'s Snapshot,
    /// The revision this txn's changes take.
    next: Revision,
    out: &'s mut Vec<u8>,
    shared: &'s Shared,
}

impl KeySpace for WriterSpace<'_> {
    type Error = String;

    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, String> {
        self.snapshot.get(key)
    }

    fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), String> {
        self.snapshot.scan(range, limit, count_all)
    }

    fn insert(&mut self, kv: &KeyValue) -> Result<(), String> {
        payload::kv_put(self.out, kv);
        self.snapshot.active().write().put(&kv.key, self.next, Some(Arc::new(kv.clone())));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), String> {
        payload::kv_del(self.out, key);
        self.snapshot.active().write().put(key, self.next, None);
        Ok(())
    }

    fn lease_exists(&mut self, id: LeaseId) -> bool {
        self.shared.leases().contains(id)
    }
}
