//! Opening a data directory: its exclusive lock, the write-ahead log replayed
//! into the B-tree, and the counters and lease table loaded from it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use ifc_kv::{KvError, Revision};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::codec::decode_kv;
use crate::leases::LeaseTable;
use crate::writer::WriterState;
use crate::{
    HISTORY, KV, LEASES, LOCK_FILE, META, META_COMPACT, META_NEXT_LEASE, META_WAL_SEQ, backend,
    flusher, wal,
};

/// The store's revision: the last key of `history`, or 1 for a store never
/// written. Compaction always keeps the newest revision's entry (it only drops
/// entries below a revision that is at most the current one), so this holds
/// for every store.
fn last_revision(history: &impl ReadableTable<u64, &'static [u8]>) -> Result<Revision, KvError> {
    Ok(history.last().map_err(backend)?.map_or(1, |(revision, _)| revision.value() as Revision))
}

pub(crate) fn lock_dir(dir: &Path) -> Result<File, KvError> {
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

/// Replays the write-ahead log into the B-tree and makes the result durable;
/// then a legacy `wal.log` is no longer needed.
pub(crate) fn replay(db: &Database, wal: &mut wal::Wal) -> Result<(), KvError> {
    // Create the tables on first open so readers never meet a missing one.
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_quick_repair(true);
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
    let remove_legacy = |wal: &mut wal::Wal| {
        wal.remove_legacy()
            .map_err(|e| KvError::Backend(format!("cannot remove the old write-ahead log: {e}")))
    };
    let Some(last) = records.last().map(|(seq, _)| *seq) else {
        return remove_legacy(wal);
    };
    tracing::info!(records = records.len(), "replaying the write-ahead log");
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_quick_repair(true);
    {
        let mut tables = flusher::Tables::open(&txn).map_err(KvError::Backend)?;
        for (_, mutations) in records {
            for mutation in mutations {
                tables.apply(mutation).map_err(KvError::Backend)?;
            }
        }
        tables.meta.insert(META_WAL_SEQ, last as i64).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    remove_legacy(wal)
}

/// Reads the counters and rebuilds the lease table.
pub(crate) fn load(db: &Database, retention: i64) -> Result<(WriterState, LeaseTable), KvError> {
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
