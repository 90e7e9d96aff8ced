//! The log thread: makes the writer's batches durable, then answers and
//! publishes them, in order.
//!
//! It takes every batch the writer has queued (group commit across batches:
//! while one `fdatasync` runs, the writer applies the next batches, and they
//! share the next one), writes their payloads as one record and fdatasyncs it.
//! Only then does it move the readers' visible revision, publish the batches to
//! watchers and send the answers. A batch that changed nothing has no payload,
//! but its answers still wait for every earlier batch (they may have read its
//! writes). When the writer freezes a layer, a seal follows that layer's last
//! batch: once everything before it is durable, the thread hands the layer to
//! the flusher with the last log sequence it holds, and switches segments.
//!
//! The log itself is shared ([`Log`]): when nothing is in flight here, a txn
//! applied on its caller's thread is made durable there with the same
//! [`make_durable`] (see `crate::writer`'s `commit_now`), saving two thread
//! hand-offs on an idle store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use ifc_kv::{KvError, Revision, WatchBatch};

use crate::Shared;
use crate::flusher::FlushControl;
use crate::overlay::Layer;
use crate::wal::Wal;
use crate::writer::Reply;

/// One batch as the writer hands it over.
#[derive(Default)]
pub struct Group {
    /// The log payload (empty if the batch changed nothing).
    pub payload: Vec<u8>,
    pub replies: Vec<Reply>,
    pub published: Vec<WatchBatch>,
    /// The revision and compaction point after the batch.
    pub revision: Revision,
    pub compact_revision: Revision,
}

impl Group {
    /// Answers every request with `e` (the batch will never be durable).
    pub fn fail(self, e: &KvError) {
        for reply in self.replies {
            reply.fail(e.clone());
        }
    }
}

/// What the writer sends the log thread.
pub enum SyncItem {
    Group(Group),
    /// The layer just frozen; every batch of it came before.
    Seal(Arc<Layer>),
}

/// The write-ahead log and what is in flight towards it.
pub struct Log {
    wal: Mutex<Wal>,
    /// Items handed to the log thread and not yet finished (durable and
    /// published, or sealed). Only the writer, under its lock, adds to it;
    /// so a writer that reads 0 knows every earlier batch is answered, and that
    /// it stays so while it holds its lock.
    pending: AtomicUsize,
}

impl Log {
    pub fn new(wal: Wal) -> Self {
        Log { wal: Mutex::new(wal), pending: AtomicUsize::new(0) }
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an item about to be handed to the log thread.
    pub fn handing_over(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the log thread has finished everything handed to it.
    pub fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    fn finished(&self, items: usize) {
        self.pending.fetch_sub(items, Ordering::Release);
    }

    /// Uncounts an item the log thread never received.
    pub fn finished_unsent(&self) {
        self.finished(1);
    }
}

/// The log thread's loop; returns when the writer is gone.
pub fn run(
    shared: Arc<Shared>,
    items: Receiver<SyncItem>,
    log: Arc<Log>,
    flush: Arc<FlushControl>,
) {
    let mut next: Option<SyncItem> = None;
    loop {
        let first = match next.take() {
            Some(item) => item,
            None => match items.recv() {
                Ok(item) => item,
                Err(_) => return,
            },
        };
        let mut groups = match first {
            SyncItem::Seal(layer) => {
                // Everything before is durable: the layer may go to redb.
                {
                    let mut wal = log.wal();
                    flush.seal(layer, wal.next_seq - 1);
                    wal.switch();
                }
                log.finished(1);
                continue;
            }
            SyncItem::Group(group) => vec![group],
        };
        while let Ok(item) = items.try_recv() {
            match item {
                SyncItem::Group(group) => groups.push(group),
                seal @ SyncItem::Seal(_) => {
                    next = Some(seal);
                    break;
                }
            }
        }
        let handed = groups.len();
        let replies = make_durable(&shared, &log, groups);
        // Finished before the answers go out: a caller woken by its answer
        // then finds the log idle (until it is answered, its own write call
        // keeps every other caller from committing on its thread).
        log.finished(handed);
        replies.into_iter().for_each(Reply::send);
    }
}

/// Writes the groups as one log record and fdatasyncs it; then moves the
/// visible revision and publishes the groups to watchers, in order. Returns
/// their answers, to be sent next. If the write fails the store stops and
/// every group fails (those answers are sent here).
#[must_use]
pub fn make_durable(shared: &Shared, log: &Log, groups: Vec<Group>) -> Vec<Reply> {
    if let Err(e) = shared.check_running() {
        groups.into_iter().for_each(|g| g.fail(&e));
        return Vec::new();
    }
    let written = write(&mut log.wal(), &groups);
    if let Err(e) = written {
        let message = format!("cannot write the write-ahead log: {e}");
        tracing::error!(%message, "embedded store write failed; the store stops");
        shared.stop(message.clone());
        let e = KvError::Stopped(message);
        groups.into_iter().for_each(|g| g.fail(&e));
        return Vec::new();
    }
    let Some(last) = groups.last() else { return Vec::new() };
    shared.overlay.publish(last.revision);
    shared.compact_revision.store(last.compact_revision, Ordering::Release);
    let mut published = Vec::new();
    let mut replies = Vec::new();
    for group in groups {
        published.extend(group.published);
        replies.extend(group.replies);
    }
    shared.hub.publish(published);
    replies
}

/// Writes the groups' payloads as one record (none if all are empty).
fn write(wal: &mut Wal, groups: &[Group]) -> std::io::Result<()> {
    match groups {
        [] => Ok(()),
        [one] if one.payload.is_empty() => Ok(()),
        [one] => wal.append(&one.payload).map(drop),
        many => {
            let mut payload = Vec::with_capacity(many.iter().map(|g| g.payload.len()).sum());
            for group in many {
                payload.extend_from_slice(&group.payload);
            }
            if payload.is_empty() { Ok(()) } else { wal.append(&payload).map(drop) }
        }
    }
}
