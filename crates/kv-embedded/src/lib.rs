//! The embedded durable [`KvStore`]: one redb file and a two-segment write-ahead
//! log in a data directory, an in-memory overlay above redb, one writer thread,
//! a log thread with group commit, a flusher thread, and watchers that follow
//! the commits.
//!
//! Layout and rules are in `docs/design.md` ("Embedded store"). In short:
//! - `kv`: key → metadata + value; `history`: revision → that revision's events;
//!   `leases`: lease id → TTL; `meta`: compaction point, next lease id, the last
//!   log sequence redb holds (the revision is `history`'s last key).
//! - A write lands in the overlay ([`overlay`]) and is acknowledged and shown
//!   to readers only after the log record that holds it has been fsynced
//!   ([`syncer`]); concurrent writes share one record. Every 100 ms the overlay's
//!   layer is committed to redb in the background ([`flusher`]).
//! - After a failed write the store stops: every call answers
//!   [`KvError::Stopped`] until the directory is opened again.

#![deny(missing_docs)]

mod codec;
mod faults;
mod flusher;
mod leases;
mod on_caller;
mod overlay;
mod recovery;
mod syncer;
mod wal;
mod watch;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use ifc_kv::apply::{self, ApplyError, KeySpace};
use ifc_kv::validate::Limits;
use ifc_kv::{
    DeleteRequest, DeleteResponse, KeyRange, KeyValue, KvError, KvStore, Lease, LeaseId,
    LeaseStatus, PutRequest, PutResponse, RangeRequest, RangeResponse, Revision, TxnOp,
    TxnOpResponse, TxnRequest, TxnResponse, WatchBatch, WatchRequest, WatchStream,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

pub use faults::FaultSwitch;
pub use on_caller::WritePaths;
pub use wal::SEGMENT_FILES as WAL_FILES;

use crate::codec::decode_events;
use crate::flusher::FlushControl;
use crate::leases::LeaseTable;
use crate::on_caller::Writing;
use crate::overlay::{Overlay, Snapshot};
use crate::recovery::{load, lock_dir, replay};
use crate::watch::Hub;
use crate::writer::{Command, FreezeRule, Writer};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_COMPACT: &str = "compact_revision";
const META_NEXT_LEASE: &str = "next_lease";
/// The last write-ahead log sequence the B-tree holds.
const META_WAL_SEQ: &str = "wal_seq";

/// The data file's name inside the data directory.
pub const DATA_FILE: &str = "ifc.redb";
/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// The single-file write-ahead log of earlier versions: replayed at open, then
/// removed (the log is now [`WAL_FILES`]).
pub const LEGACY_WAL_FILE: &str = "wal.log";

/// How to open the store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Request size limits.
    pub limits: Limits,
    /// Revisions of watch history kept by automatic compaction; 0 keeps all.
    pub history_retention: i64,
    /// The overlay's active layer is frozen and committed to redb at least this
    /// often (when it holds anything).
    pub freeze_interval: Duration,
    /// ... or once it holds this many changes (key versions and history entries).
    pub freeze_changes: usize,
    /// ... or once it holds about this many bytes. If it reaches this size while
    /// the previous layer is still being committed, writes wait for that commit.
    pub layer_bytes: usize,
    /// For tests only: a switch that makes fsyncs fail or the log's slow.
    pub fault_switch: Option<FaultSwitch>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            limits: Limits::default(),
            history_retention: 100_000,
            freeze_interval: Duration::from_millis(100),
            freeze_changes: 20_000,
            layer_bytes: 64 << 20,
            fault_switch: None,
        }
    }
}

/// State shared by the API, the writer thread and the watchers.
struct Shared {
    db: Database,
    /// Writes not yet in redb, and the revision readers read at.
    overlay: Overlay,
    /// Lock order: `leases` is never held while taking `stopped`, and neither is
    /// held across an await or a commit.
    leases: Mutex<LeaseTable>,
    stopped: Mutex<Option<String>>,
    hub: Hub,
    /// The compaction point of the last durable batch, for watch start checks.
    compact_revision: AtomicI64,
    limits: Limits,
    /// redb ran a full repair when this store opened (see `open`).
    repaired_on_open: bool,
    /// Write calls under way (queued, applied, or waiting for their fsync). A
    /// txn is applied on its caller's thread only when it is the only one: a
    /// lone writer gains two thread hand-offs, while concurrent writers keep
    /// sharing the writer's batches and the log's fsyncs.
    writes: AtomicUsize,
    /// The writer thread is waiting for its lock: callers queue rather than
    /// take it first (std's mutex is not fair, and a caller looping on lone
    /// writes would otherwise keep it from freezing layers and expiring leases).
    writer_waiting: AtomicBool,
    /// Txns committed on their caller's thread, and through the writer thread.
    txns_on_caller: AtomicU64,
    txns_through_writer: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("revision", &self.hub.revision()).finish_non_exhaustive()
    }
}

impl Shared {
    fn leases(&self) -> MutexGuard<'_, LeaseTable> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self, message: String) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        self.hub.wake_all();
    }

    fn check_running(&self) -> Result<(), KvError> {
        match &*self.stopped.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(message) => Err(KvError::Stopped(message.clone())),
            None => Ok(()),
        }
    }

    /// History from `from` to `to` inclusive, from the overlay and disk. History
    /// entries never change once written, so the layers taken before the redb
    /// snapshot, with it, hold every entry up to the visible revision.
    fn read_history(&self, from: Revision, to: Revision) -> Result<Vec<WatchBatch>, KvError> {
        let compact = self.compact_revision.load(Ordering::Acquire);
        if from < compact {
            return Err(KvError::Compacted { compact_revision: compact });
        }
        let (from, to) = (from as u64, to as u64);
        let layers = self.overlay.layers();
        let txn = self.db.begin_read().map_err(backend)?;
        let history = txn.open_table(HISTORY).map_err(backend)?;
        let mut entries = std::collections::BTreeMap::new();
        for entry in history.range(from..=to).map_err(backend)? {
            let (revision, bytes) = entry.map_err(backend)?;
            entries.insert(revision.value(), bytes.value().to_vec());
        }
        for layer in layers.frozen.iter().chain(std::iter::once(&layers.active)) {
            for (revision, bytes) in layer.read().history.range(from..=to) {
                entries.entry(*revision).or_insert_with(|| bytes.clone());
            }
        }
        let mut batches = Vec::new();
        for (revision, bytes) in entries {
            let revision = revision as Revision;
            let events = decode_events(revision, &bytes).map_err(backend)?;
            batches.push(WatchBatch { revision, events });
        }
        Ok(batches)
    }
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

/// Stops the writer when the last handle goes.
struct Inner {
    shared: Arc<Shared>,
    /// The writer's state, for txns applied on their caller's thread.
    core: Arc<Mutex<Writer>>,
    commands: Mutex<Option<std_mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    // Held for the store's life: the data directory's exclusive lock.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.commands.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// The embedded store. Cheap to clone; the last clone dropped closes the file.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("shared", &self.inner.shared).finish()
    }
}

impl EmbeddedStore {
    /// Whether redb ran a full repair (a walk of the whole file) when this
    /// store opened: only after a crash of a file whose last commit was made
    /// before quick repair.
    pub fn repaired_on_open(&self) -> bool {
        self.inner.shared.repaired_on_open
    }

    /// Opens (creating if needed) the store in `dir`. Fails with
    /// [`KvError::Locked`] if another process (or another handle in this one)
    /// has it open.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, KvError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| KvError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DATA_FILE);
        // Every commit records redb's allocator state (quick repair), so a
        // crash needs no full repair, which walks the whole file; this
        // notices if one ran anyway (a file from before, or a redb change).
        let repaired = Arc::new(AtomicBool::new(false));
        let mut builder = Database::builder();
        let flag = repaired.clone();
        builder.set_repair_callback(move |_| flag.store(true, Ordering::Relaxed));
        let db = match &options.fault_switch {
            Some(switch) => faults::open(&builder, &path, switch.clone()),
            None => builder.create(&path),
        }
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => KvError::Locked(path.display().to_string()),
            e => KvError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;
        let mut wal = wal::Wal::open(dir, options.fault_switch.clone())
            .map_err(|e| KvError::Backend(format!("cannot open the write-ahead log: {e}")))?;
        replay(&db, &mut wal)?;
        let (state, table) = load(&db, options.history_retention)?;
        let shared = Arc::new(Shared {
            db,
            overlay: Overlay::new(state.revision),
            leases: Mutex::new(table),
            stopped: Mutex::new(None),
            hub: Hub::new(state.revision),
            compact_revision: AtomicI64::new(state.compact_revision),
            limits: options.limits,
            repaired_on_open: repaired.load(Ordering::Relaxed),
            writes: AtomicUsize::new(0),
            writer_waiting: AtomicBool::new(false),
            txns_on_caller: AtomicU64::new(0),
            txns_through_writer: AtomicU64::new(0),
        });
        if repaired.load(Ordering::Relaxed) {
            tracing::warn!(path = %path.display(), "the data file was not closed cleanly: repaired it");
        }
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| KvError::Backend(format!("cannot start the {name} thread: {e}")))
        };
        let flush = Arc::new(FlushControl::default());
        let (flusher_shared, flusher_control) = (shared.clone(), flush.clone());
        let flusher = spawn(
            "ifc-kv-flusher",
            Box::new(move || flusher::run(flusher_shared, flusher_control)),
        )?;
        // A few batches may wait for the log while the writer applies the next.
        let (to_syncer, syncer_items) = std_mpsc::sync_channel(8);
        let log = Arc::new(syncer::Log::new(wal));
        let (syncer_shared, syncer_log, syncer_control) =
            (shared.clone(), log.clone(), flush.clone());
        let syncer = spawn(
            "ifc-kv-log",
            Box::new(move || syncer::run(syncer_shared, syncer_items, syncer_log, syncer_control)),
        )?;
        let freeze = FreezeRule {
            interval: options.freeze_interval,
            changes: options.freeze_changes.max(1),
            bytes: options.layer_bytes.max(1),
        };
        let (tx, rx) = std_mpsc::channel();
        let core = Arc::new(Mutex::new(Writer {
            shared: shared.clone(),
            state,
            freeze,
            to_syncer: Some(to_syncer),
            log,
            flush,
        }));
        let helpers = writer::Helpers { syncer, flusher };
        let (writer_core, writer_shared) = (core.clone(), shared.clone());
        let writer = spawn(
            "ifc-kv-writer",
            Box::new(move || writer::run(writer_core, writer_shared, rx, helpers)),
        )?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                shared,
                core,
                commands: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                _lock: lock,
            }),
        })
    }

    /// How this store's writing txns were committed so far.
    pub fn write_paths(&self) -> WritePaths {
        let shared = self.shared();
        WritePaths {
            on_caller: shared.txns_on_caller.load(Ordering::Relaxed),
            through_writer: shared.txns_through_writer.load(Ordering::Relaxed),
        }
    }

    /// Changes (key versions and history entries) held in the overlay and not
    /// yet committed to the B-tree; 0 once the flusher has caught up.
    pub fn unflushed_changes(&self) -> usize {
        let layers = self.shared().overlay.layers();
        let frozen = layers.frozen.as_ref().map_or(0, |layer| layer.read().changes);
        layers.active.read().changes + frozen
    }

    /// The last committed revision.
    pub fn revision(&self) -> Revision {
        self.inner.shared.hub.revision()
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, KvError>>) -> Command,
    ) -> Result<T, KvError> {
        self.shared().check_running()?;
        let _writing = Writing::start(self.shared());
        let (tx, rx) = oneshot::channel();
        {
            let commands = self.inner.commands.lock().unwrap_or_else(|e| e.into_inner());
            let sender = commands.as_ref().ok_or_else(|| KvError::Stopped("closed".into()))?;
            sender.send(make(tx)).map_err(|_| KvError::Stopped("writer is gone".into()))?;
        }
        rx.await.map_err(|_| KvError::Stopped("writer is gone".into()))?
    }

    async fn single_op(&self, op: TxnOp) -> Result<TxnOpResponse, KvError> {
        let txn = TxnRequest { compares: Vec::new(), success: vec![op], failure: Vec::new() };
        let mut response = self.txn(txn).await?;
        response.responses.pop().ok_or_else(|| KvError::Backend("empty txn response".into()))
    }
}

impl EmbeddedStore {
    /// A txn with no writes, on a read snapshot.
    fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        let shared = self.shared();
        shared.check_running()?;
        let snapshot = shared.overlay.snapshot(&shared.db)?;
        let mut space = SnapshotSpace(&snapshot);
        match apply::apply_txn(&mut space, snapshot.at, req) {
            Ok(applied) => Ok(applied.response),
            Err(ApplyError::Rejected(e)) => Err(e),
            Err(ApplyError::Storage(e)) => Err(KvError::Backend(e)),
        }
    }
}

/// A read snapshot seen through [`KeySpace`]; only reads.
struct SnapshotSpace<'s>(&'s Snapshot);

impl KeySpace for SnapshotSpace<'_> {
    type Error = String;

    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, String> {
        self.0.get(key)
    }

    fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), String> {
        self.0.scan(range, limit, count_all)
    }

    fn insert(&mut self, _: &KeyValue) -> Result<(), String> {
        Err("write in a read-only txn".into())
    }

    fn remove(&mut self, _: &[u8]) -> Result<(), String> {
        Err("write in a read-only txn".into())
    }

    fn lease_exists(&mut self, _: LeaseId) -> bool {
        false
    }
}

#[async_trait]
impl KvStore for EmbeddedStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        let shared = self.shared();
        shared.check_running()?;
        shared.limits.check_range_request(&req)?;
        // Reads run on the caller's thread: the overlay and a redb read
        // transaction never wait for the writer, and one key or a short prefix
        // costs microseconds.
        let snapshot = shared.overlay.snapshot(&shared.db)?;
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let (kvs, count) = snapshot.scan(&req.range, limit, req.count).map_err(KvError::Backend)?;
        Ok(RangeResponse {
            more: kvs.len() < count,
            count: count as i64,
            kvs,
            revision: snapshot.at,
        })
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, KvError> {
        self.shared().limits.check_put(&req)?;
        match self.single_op(TxnOp::Put(req)).await? {
            TxnOpResponse::Put(r) => Ok(r),
            other => Err(KvError::Backend(format!("unexpected answer {other:?}"))),
        }
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, KvError> {
        self.shared().limits.check_delete(&req)?;
        match self.single_op(TxnOp::Delete(req)).await? {
            TxnOpResponse::Delete(r) => Ok(r),
            other => Err(KvError::Backend(format!("unexpected answer {other:?}"))),
        }
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, KvError> {
        self.shared().limits.check_txn(&req)?;
        let read_only = |ops: &[TxnOp]| ops.iter().all(|op| matches!(op, TxnOp::Range(_)));
        if read_only(&req.success) && read_only(&req.failure) {
            // Nothing to write: answer from a snapshot, without queueing behind
            // the writer's fsync.
            return self.read_txn(&req);
        }
        let req = match self.commit_now(req) {
            Ok(answer) => {
                self.shared().txns_on_caller.fetch_add(1, Ordering::Relaxed);
                return answer;
            }
            Err(req) => req,
        };
        self.shared().txns_through_writer.fetch_add(1, Ordering::Relaxed);
        self.send(|tx| Command::Txn(req, tx)).await
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, KvError> {
        let shared = self.shared();
        shared.check_running()?;
        shared.limits.check_range(&req.range)?;
        if req.start_revision < 0 {
            return Err(KvError::InvalidArgument("negative start revision".into()));
        }
        let next =
            if req.start_revision == 0 { shared.hub.revision() + 1 } else { req.start_revision };
        let compact_revision = shared.compact_revision.load(Ordering::Acquire);
        if next < compact_revision {
            let compacted = Err(KvError::Compacted { compact_revision });
            return Ok(Box::pin(futures::stream::once(async move { compacted })));
        }
        let (tx, rx) = watch::channel();
        let spec = watch::WatchSpec { range: req.range, next, prev_kv: req.prev_kv };
        tokio::spawn(watch::run_watcher(Arc::downgrade(&self.inner.shared), spec, tx));
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease, KvError> {
        self.shared().limits.check_ttl(ttl_secs)?;
        self.send(|tx| Command::LeaseGrant(ttl_secs, tx)).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, KvError> {
        self.shared().check_running()?;
        self.shared().leases().refresh(id).ok_or(KvError::LeaseNotFound(id))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<Revision, KvError> {
        self.send(|tx| Command::LeaseRevoke(id, tx)).await
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<LeaseStatus>, KvError> {
        self.shared().check_running()?;
        Ok(self.shared().leases().status(id).map(|(granted_ttl, remaining_ttl, keys)| {
            LeaseStatus { id, granted_ttl, remaining_ttl, keys }
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        self.send(|tx| Command::Compact(revision, tx)).await
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<WatchBatch, KvError>>,
) -> impl futures::Stream<Item = Result<WatchBatch, KvError>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
