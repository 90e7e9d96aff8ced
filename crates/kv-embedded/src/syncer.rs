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

use std::sync::Arc;
use std::sync::mpsc::Receiver;

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

/// The log thread's loop; returns when the writer is gone.
pub fn run(shared: Arc<Shared>, items: Receiver<SyncItem>, mut wal: Wal, flush: Arc<FlushControl>) {
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
                flush.seal(layer, wal.next_seq - 1);
                wal.switch();
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
        if let Err(e) = shared.check_running() {
            groups.into_iter().for_each(|g| g.fail(&e));
            continue;
        }
        if let Err(e) = write(&mut wal, &groups) {
            let message = format!("cannot write the write-ahead log: {e}");
            tracing::error!(%message, "embedded store write failed; the store stops");
            shared.stop(message.clone());
            let e = KvError::Stopped(message);
            groups.into_iter().for_each(|g| g.fail(&e));
            continue;
        }
        let Some(last) = groups.last() else { continue };
        shared.overlay.publish(last.revision);
        shared.compact_revision.store(last.compact_revision, std::sync::atomic::Ordering::Release);
        let mut published = Vec::new();
        let mut replies = Vec::new();
        for group in groups {
            published.extend(group.published);
            replies.extend(group.replies);
        }
        shared.hub.publish(published);
        for reply in replies {
            reply.send();
        }
    }
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
