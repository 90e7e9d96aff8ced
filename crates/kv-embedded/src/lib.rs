//! The embedded durable [`KvStore`]: one redb file in a data directory, one writer
//! thread with group commit, watchers that follow the commit log.
//!
//! Layout and rules are in `docs/design.md` ("Embedded store"). In short:
//! - `kv`: key → metadata + value; `history`: revision → that revision's events;
//!   `leases`: lease id → TTL; `meta`: compaction point, next lease id (the revision is `history`'s last key).
//! - A write is acknowledged only after the commit that holds it has been
//!   fsynced. Concurrent writes share one commit (see [`writer`]).
//! - After a failed commit the store stops: every call answers
//!   [`KvError::Stopped`] until the directory is opened again.

#![deny(missing_docs)]

mod codec;
mod faults;
mod leases;
mod wal;
mod watch;
mod writer;

use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use ifc_kv::apply::{self, ApplyError, KeySpace};
use ifc_kv::validate::Limits;
use ifc_kv::{
    DeleteRequest, DeleteResponse, KeyRange, KeyValue, KvError, KvStore, Lease, LeaseId,
    LeaseStatus, PutRequest, PutResponse, RangeRequest, RangeResponse, Revision, TxnOp,
    TxnOpResponse, TxnRequest, TxnResponse, WatchBatch, WatchRequest, WatchStream, prefix_end,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

pub use faults::FaultSwitch;

use crate::codec::{decode_events, decode_kv};
use crate::leases::LeaseTable;
use crate::watch::Hub;
use crate::writer::{Command, WriterState};

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
/// The write-ahead log's name inside the data directory.
pub const WAL_FILE: &str = "wal.log";

/// How to open the store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Request size limits.
    pub limits: Limits,
    /// Revisions of watch history kept by automatic compaction; 0 keeps all.
    pub history_retention: i64,
    /// Largest size of the write-ahead log, in bytes; when it is full the
    /// B-tree is made durable and the log starts over.
    pub wal_bytes: u64,
    /// For crash tests only: a switch that makes the file's fsync fail.
    pub fault_switch: Option<FaultSwitch>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            limits: Limits::default(),
            history_retention: 100_000,
            wal_bytes: 64 << 20,
            fault_switch: None,
        }
    }
}

/// State shared by the API, the writer thread and the watchers.
struct Shared {
    db: Database,
    /// Lock order: `leases` is never held while taking `stopped`, and neither is
    /// held across an await or a commit.
    leases: Mutex<LeaseTable>,
    stopped: Mutex<Option<String>>,
    hub: Hub,
    /// The compaction point of the last commit, for watch start checks.
    compact_revision: AtomicI64,
    limits: Limits,
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

    /// History from `from` to `to` inclusive, from disk.
    fn read_history(&self, from: Revision, to: Revision) -> Result<Vec<WatchBatch>, KvError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let compact = meta.get(META_COMPACT).map_err(backend)?.map_or(0, |v| v.value());
        if from < compact {
            return Err(KvError::Compacted { compact_revision: compact });
        }
        let history = txn.open_table(HISTORY).map_err(backend)?;
        let mut batches = Vec::new();
        for entry in history.range(from as u64..=to as u64).map_err(backend)? {
            let (revision, bytes) = entry.map_err(backend)?;
            let revision = revision.value() as Revision;
            let events = decode_events(revision, bytes.value()).map_err(backend)?;
            batches.push(WatchBatch { revision, events });
        }
        Ok(batches)
    }
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

/// Reads a range from any readable `kv` table (the writer's or a reader's).
fn scan(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: &KeyRange,
    limit: usize,
    count_all: bool,
) -> Result<(Vec<KeyValue>, usize), String> {
    let (start, end): (Bound<&[u8]>, Bound<Vec<u8>>) = match range {
        KeyRange::Key(k) => (Bound::Included(k), Bound::Included(k.clone())),
        KeyRange::Prefix(p) if p.is_empty() => (Bound::Unbounded, Bound::Unbounded),
        KeyRange::Prefix(p) => {
            let end = prefix_end(p);
            if end == [0] {
                (Bound::Included(p), Bound::Unbounded)
            } else {
                (Bound::Included(p), Bound::Excluded(end))
            }
        }
        KeyRange::Span { start, end } => (Bound::Included(start), Bound::Excluded(end.clone())),
    };
    let end_ref = match &end {
        Bound::Included(e) => Bound::Included(e.as_slice()),
        Bound::Excluded(e) => Bound::Excluded(e.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    };
    let mut kvs = Vec::new();
    let mut count = 0;
    for entry in table.range::<&[u8]>((start, end_ref)).map_err(|e| e.to_string())? {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        count += 1;
        if limit == 0 || kvs.len() < limit {
            kvs.push(decode_kv(key.value(), value.value()).map_err(|e| e.to_string())?);
        } else if !count_all {
            // One key past the limit says `more`; the rest is walked only to count.
            break;
        }
    }
    Ok((kvs, count))
}

/// The store's revision: the last key of `history`, or 1 for a store never
/// written. Compaction always keeps the newest revision's entry (it only drops
/// entries below a revision that is at most the current one), so this holds
/// for every store.
fn last_revision(history: &impl ReadableTable<u64, &'static [u8]>) -> Result<Revision, KvError> {
    Ok(history.last().map_err(backend)?.map_or(1, |(revision, _)| revision.value() as Revision))
}

/// Stops the writer when the last handle goes.
struct Inner {
    shared: Arc<Shared>,
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
    /// Opens (creating if needed) the store in `dir`. Fails with
    /// [`KvError::Locked`] if another process (or another handle in this one)
    /// has it open.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, KvError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| KvError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DATA_FILE);
        let db = match &options.fault_switch {
            Some(switch) => faults::open(&path, switch.clone()),
            None => Database::create(&path),
        }
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => KvError::Locked(path.display().to_string()),
            e => KvError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;
        let mut wal =
            wal::Wal::open(&dir.join(WAL_FILE), options.wal_bytes, options.fault_switch.clone())
                .map_err(|e| KvError::Backend(format!("cannot open the write-ahead log: {e}")))?;
        replay(&db, &mut wal)?;
        let (state, table) = load(&db, options.history_retention, wal)?;
        let shared = Arc::new(Shared {
            db,
            leases: Mutex::new(table),
            stopped: Mutex::new(None),
            hub: Hub::new(state.revision),
            compact_revision: AtomicI64::new(state.compact_revision),
            limits: options.limits,
        });
        let (tx, rx) = std_mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("ifc-kv-writer".into())
            .spawn(move || writer::run(writer_shared, rx, state))
            .map_err(|e| KvError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                shared,
                commands: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                _lock: lock,
            }),
        })
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
        let txn = shared.db.begin_read().map_err(backend)?;
        let revision = last_revision(&txn.open_table(HISTORY).map_err(backend)?)?;
        let table = txn.open_table(KV).map_err(backend)?;
        let mut space = SnapshotSpace(&table);
        match apply::apply_txn(&mut space, revision, req) {
            Ok(applied) => Ok(applied.response),
            Err(ApplyError::Rejected(e)) => Err(e),
            Err(ApplyError::Storage(e)) => Err(KvError::Backend(e)),
        }
    }
}

/// A read snapshot of the `kv` table seen through [`KeySpace`]; only reads.
struct SnapshotSpace<'t>(&'t redb::ReadOnlyTable<&'static [u8], &'static [u8]>);

impl KeySpace for SnapshotSpace<'_> {
    type Error = String;

    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, String> {
        match self.0.get(key).map_err(|e| e.to_string())? {
            Some(stored) => decode_kv(key, stored.value()).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), String> {
        scan(self.0, range, limit, count_all)
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

fn lock_dir(dir: &Path) -> Result<File, KvError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| KvError::Backend(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(KvError::Locked(format!(
            "{} is in use by another process (lock file {})",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(KvError::Backend(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

/// Replays the write-ahead log into the B-tree and makes the result durable.
fn replay(db: &Database, wal: &mut wal::Wal) -> Result<(), KvError> {
    // Create the tables on first open so readers never meet a missing one.
    let txn = db.begin_write().map_err(backend)?;
    let applied = {
        txn.open_table(KV).map_err(backend)?;
        txn.open_table(HISTORY).map_err(backend)?;
        txn.open_table(LEASES).map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        meta.get(META_WAL_SEQ).map_err(backend)?.map_or(0, |v| v.value())
    };
    txn.commit().map_err(backend)?;
    let records = wal
        .recover(u64::try_from(applied).unwrap_or(0))
        .map_err(|e| KvError::Backend(format!("cannot read the write-ahead log: {e}")))?;
    let Some(last) = records.last().map(|(seq, _)| *seq) else {
        return Ok(());
    };
    tracing::info!(records = records.len(), "replaying the write-ahead log");
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut tables = writer::Tables::open(&txn).map_err(KvError::Backend)?;
        for (_, mutations) in records {
            for mutation in mutations {
                tables.apply(mutation).map_err(KvError::Backend)?;
            }
        }
        tables.meta.insert(META_WAL_SEQ, last as i64).map_err(backend)?;
    }
    txn.commit().map_err(backend)
}

/// Reads the counters and rebuilds the lease table.
fn load(
    db: &Database,
    retention: i64,
    wal: wal::Wal,
) -> Result<(WriterState, LeaseTable), KvError> {
    let txn = db.begin_read().map_err(backend)?;
    let meta = txn.open_table(META).map_err(backend)?;
    let get = |name: &str, default: i64| -> Result<i64, KvError> {
        Ok(meta.get(name).map_err(backend)?.map_or(default, |v| v.value()))
    };
    let state = WriterState {
        revision: last_revision(&txn.open_table(HISTORY).map_err(backend)?)?,
        compact_revision: get(META_COMPACT, 0)?,
        next_lease: get(META_NEXT_LEASE, 1)?,
        retention,
        wal,
        last_checkpoint: std::time::Instant::now(),
    };
    let mut table = LeaseTable::default();
    for entry in txn.open_table(LEASES).map_err(backend)?.iter().map_err(backend)? {
        let (id, ttl) = entry.map_err(backend)?;
        table.insert(id.value(), ttl.value());
    }
    for entry in txn.open_table(KV).map_err(backend)?.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let kv = decode_kv(key.value(), value.value()).map_err(backend)?;
        if kv.lease != 0 {
            table.attach(kv.lease, &kv.key);
        }
    }
    Ok((state, table))
}

#[async_trait]
impl KvStore for EmbeddedStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        let shared = self.shared();
        shared.check_running()?;
        shared.limits.check_range_request(&req)?;
        // Reads run on the caller's thread: a redb read transaction never waits
        // for the writer, and one key or a short prefix costs microseconds.
        let txn = shared.db.begin_read().map_err(backend)?;
        let revision = last_revision(&txn.open_table(HISTORY).map_err(backend)?)?;
        let table = txn.open_table(KV).map_err(backend)?;
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let (kvs, count) = scan(&table, &req.range, limit, req.count).map_err(KvError::Backend)?;
        Ok(RangeResponse { more: kvs.len() < count, count: count as i64, kvs, revision })
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
