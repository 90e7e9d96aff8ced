//! A txn committed on its caller's thread when the store is idle (design.md,
//! "Writes on the caller's thread"): the count of write calls under way that
//! decides it, the runtime check, and the commit itself.

use std::sync::atomic::Ordering;

use ifc_kv::{KvError, TxnRequest, TxnResponse};

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

/// Whether this thread may block for a disk sync without holding up other
/// tasks: not inside a current-thread tokio runtime.
fn may_block_here() -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => matches!(handle.runtime_flavor(), tokio::runtime::RuntimeFlavor::MultiThread),
        Err(_) => true,
    }
}

/// Runs `f`, which blocks for a disk sync. On a tokio worker the worker's other
/// tasks are handed to another thread first (`block_in_place`), so work that is
/// not a write (requests being parsed, reads, streams) keeps running meanwhile:
/// "alone" counts only write calls. (In the HTTP bench phase the difference was
/// within run-to-run noise either way.) `may_block_here` has already excluded a
/// current-thread runtime, where `block_in_place` would panic.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() { tokio::task::block_in_place(f) } else { f() }
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
        if !writing.alone
            || !may_block_here()
            || self.shared().writer_waiting.load(Ordering::Acquire)
        {
            return Err(req);
        }
        // The lock is taken inside: should tokio refuse to block here (it
        // panics first), no lock is held, so none is poisoned.
        let committed = off_the_runtime(|| match self.inner.core.try_lock() {
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
