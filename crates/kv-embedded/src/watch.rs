//! Watches: every watcher is a task that follows the committed revision and reads
//! the revisions it has not yet delivered, from a ring of recent revisions in
//! memory or, when it has fallen behind that ring, from the `history` table.
//!
//! So a slow watcher never holds the writer up and never makes memory grow: it
//! only falls back to disk (and, past the retention window, gets `Compacted`).
//! Every revision's events are read and sent as one batch, in order, once.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, Weak};

use ifc_kv::{Event, KeyRange, KvError, Revision, WatchBatch};
use tokio::sync::{mpsc, watch};

use crate::Shared;

/// How many recent revisions stay in memory for watchers that keep up.
const RECENT_REVISIONS: usize = 4096;
/// How many revisions a lagging watcher reads from disk at a time.
const DISK_CHUNK: usize = 512;
/// Batches buffered per watcher before it waits for its reader.
const WATCHER_BUFFER: usize = 64;

/// Publishes commits to watchers.
#[derive(Debug)]
pub struct Hub {
    /// The last committed revision; watchers wait on it.
    committed: watch::Sender<Revision>,
    /// Recent revisions, consecutive, oldest first. Every revision has events
    /// (a write that changes nothing does not take a revision).
    recent: RwLock<VecDeque<Arc<WatchBatch>>>,
}

impl Hub {
    pub fn new(revision: Revision) -> Self {
        Hub { committed: watch::Sender::new(revision), recent: RwLock::new(VecDeque::new()) }
    }

    /// Publishes committed revisions (ascending) and wakes watchers.
    pub fn publish(&self, batches: Vec<WatchBatch>) {
        let Some(last) = batches.last().map(|b| b.revision) else {
            return;
        };
        {
            let mut recent = self.recent.write().unwrap_or_else(|e| e.into_inner());
            for batch in batches {
                recent.push_back(Arc::new(batch));
            }
            while recent.len() > RECENT_REVISIONS {
                recent.pop_front();
            }
        }
        self.committed.send_replace(last);
    }

    /// Wakes every watcher without a new revision (the store stopped).
    pub fn wake_all(&self) {
        self.committed.send_modify(|_| {});
    }

    /// The last committed revision.
    pub fn revision(&self) -> Revision {
        *self.committed.borrow()
    }

    /// Recent revisions from `from` to `to`, if the ring still holds `from`.
    fn recent_span(&self, from: Revision, to: Revision) -> Option<Vec<Arc<WatchBatch>>> {
        let recent = self.recent.read().unwrap_or_else(|e| e.into_inner());
        let first = recent.front()?.revision;
        if from < first {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        Some(recent.iter().skip(skip).take_while(|b| b.revision <= to).cloned().collect())
    }
}

/// What one watcher delivers.
pub struct WatchSpec {
    pub range: KeyRange,
    pub next: Revision,
    pub prev_kv: bool,
}

/// Runs one watcher until its reader goes away or the store stops.
pub async fn run_watcher(shared: Weak<Shared>, spec: WatchSpec, tx: BatchSender) {
    let mut committed = match shared.upgrade() {
        Some(s) => s.hub.committed.subscribe(),
        None => return,
    };
    let mut next = spec.next;
    loop {
        let current = *committed.borrow_and_update();
        while next <= current {
            let Some(store) = shared.upgrade() else {
                return;
            };
            if let Err(e) = store.check_running() {
                let _ = tx.send(Err(e)).await;
                return;
            }
            let to = current.min(next + DISK_CHUNK as Revision - 1);
            let batches = match store.hub.recent_span(next, to) {
                Some(batches) => batches,
                None => match store.read_history(next, to) {
                    Ok(batches) => batches.into_iter().map(Arc::new).collect(),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                },
            };
            drop(store);
            for batch in batches {
                next = batch.revision + 1;
                let events: Vec<_> = batch
                    .events
                    .iter()
                    .filter(|e| spec.range.contains(&e.kv.key))
                    // The previous value is copied only for a watch that asked
                    // for it: most do not, and it is as large as the value.
                    .map(|e| Event {
                        kind: e.kind,
                        kv: e.kv.clone(),
                        prev_kv: if spec.prev_kv { e.prev_kv.clone() } else { None },
                    })
                    .collect();
                if !events.is_empty()
                    && tx.send(Ok(WatchBatch { revision: batch.revision, events })).await.is_err()
                {
                    return;
                }
            }
            // The ring and the disk hold every revision up to `current`; if a
            // read came back short, the next loop reads on from where it stopped.
            if next <= to {
                next = to + 1;
            }
        }
        if let Some(store) = shared.upgrade()
            && let Err(e) = store.check_running()
        {
            let _ = tx.send(Err(e)).await;
            return;
        }
        tokio::select! {
            changed = committed.changed() => {
                if changed.is_err() {
                    let _ = tx.send(Err(KvError::Stopped("store closed".into()))).await;
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// The sending side of one watcher's channel.
pub type BatchSender = mpsc::Sender<Result<WatchBatch, KvError>>;
/// The receiving side of one watcher's channel.
pub type BatchReceiver = mpsc::Receiver<Result<WatchBatch, KvError>>;

/// A watcher's channel, bounded: a reader that stops reading holds up only its
/// own watcher task.
pub fn channel() -> (BatchSender, BatchReceiver) {
    mpsc::channel(WATCHER_BUFFER)
}
