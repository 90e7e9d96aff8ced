//! A txn committed on its caller's thread when the store is idle (design.md,
//! "Writes on the caller's thread"): the count of write calls under way that
//! decides it, the runtime check, and the commit itself.

use std::sync::atomic::Ordering;

use ifc_kv::{KvError, TxnRequest, TxnResponse};
use tokio::runtime::RuntimeFlavor;

use crate::writer::Command;
use crate::{EmbeddedStore, Shared};

/// Counts of writing txns by the path that committed them (see
/// [`EmbeddedStore::write_paths`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WritePaths {
    /// Applied and made durable on the caller's thread: no other write was
    /// under way, on a multi-threaded runtime or outside one.
    pub on_caller: u64,
    /// Queued for the writer thread, batched, and fsynced by the log thread.
    pub through_writer: u64,
}

/// One write call under way, counted in `Shared::writes` until dropped (also
/// when its future is dropped unfinished).
pub(crate) struct Writing<'s> {
    shared: &'s Shared,
    /// No other write call was under way when this one started.
    alone: bool,
}

impl<'s> Writing<'s> {
    pub(crate) fn start(shared: &'s Shared) -> Self {
        let before = shared.writes.fetch_add(1, Ordering::AcqRel);
        Writing { shared, alone: before == 0 }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.shared.writes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How this thread may block for a disk sync without holding up other tasks.
enum Blocking {
    /// Outside tokio: just block.
    Here,
    /// On a multi-threaded runtime: inside `block_in_place`, so the worker's
    /// other tasks move to another thread meanwhile and work that is not a
    /// write (requests being parsed, reads, streams) keeps running: "alone"
    /// counts only write calls. (In the HTTP bench phase the difference was
    /// within run-to-run noise either way.)
    InPlace,
}

impl Blocking {
    /// `None` inside a current-thread runtime: blocking would stall every
    /// task and lose group commit (and `block_in_place` panics there).
    fn here() -> Option<Blocking> {
        match tokio::runtime::Handle::try_current() {
            Err(_) => Some(Blocking::Here),
            Ok(handle) => matches!(handle.runtime_flavor(), RuntimeFlavor::MultiThread)
                .then_some(Blocking::InPlace),
        }
    }

    fn run<T>(self, f: impl FnOnce() -> T) -> T {
        match self {
            Blocking::Here => f(),
            Blocking::InPlace => tokio::task::block_in_place(f),
        }
    }
}

impl EmbeddedStore {
    /// Commits a txn on this thread when the store is idle: no other write call
    /// under way, the writer's lock free and not awaited by the writer thread,
    /// nothing in flight to the log, no layer due to be frozen and no lease
    /// due to expire (those are the writer thread's). Gives
    /// the request back otherwise. It blocks for one `fdatasync`, so it runs
    /// only where a blocked thread does not stop other tasks: outside tokio, or
    /// on a multi-threaded runtime (a current-thread runtime would stall every
    /// task and lose group commit).
    pub(crate) fn commit_now(
        &self,
        req: TxnRequest,
    ) -> Result<Result<TxnResponse, KvError>, TxnRequest> {
        let writing = Writing::start(self.shared());
        if !writing.alone || self.shared().writer_waiting.load(Ordering::Acquire) {
            return Err(req);
        }
        let Some(blocking) = Blocking::here() else { return Err(req) };
        // The lock is taken inside: should tokio refuse to block here (it
        // panics first), no lock is held, so none is poisoned.
        let committed = blocking.run(|| match self.inner.core.try_lock() {
            Ok(mut writer) => writer.commit_now(req),
            Err(_) => Err(req),
        })?;
        if committed.wake_writer {
            let commands = self.inner.commands.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(sender) = commands.as_ref() {
                let _ = sender.send(Command::Tick);
            }
        }
        Ok(committed.answer)
    }
}
