//! The flusher thread: commits each frozen layer into redb, durably, in the
//! background, so no request waits for a B-tree commit.
//!
//! One commit per layer (`Durability::Immediate`) writes each key's newest
//! version, the layer's history entries, lease changes, compaction and
//! `meta.wal_seq` = the last log sequence the layer holds; the layer's log
//! segment is then free. Keys rewritten many times in 100 ms (a witness chain's
//! head, a swarm's counters) cost one B-tree write per flush, not one per batch.
//! Recovery applies the log to redb the same way ([`Tables::apply`]).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redb::{Database, Durability, Table, WriteTransaction};

use crate::codec::encode_kv_into;
use crate::overlay::Layer;
use crate::wal::Mutation;
use crate::{HISTORY, KV, LEASES, META, META_COMPACT, META_NEXT_LEASE, META_WAL_SEQ, Shared};

/// How often a thread waiting on the flusher looks whether the store stopped.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How many milliseconds the flusher waits, at most, to hold the last handle of
/// a flushed layer.
const LAST_HANDLE_WAITS: usize = 100;

/// The hand-offs between the writer (freezes), the log thread (seals) and the
/// flusher (commits).
#[derive(Debug, Default)]
pub struct FlushControl {
    state: Mutex<FlushState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    /// A layer is frozen and not yet in redb.
    frozen: bool,
    /// The frozen layer, once every batch in it is durable, with the last log
    /// sequence it holds.
    sealed: Option<(Arc<Layer>, u64)>,
    /// The store is closing: the flusher ends when nothing is sealed.
    closing: bool,
}

impl FlushControl {
    fn lock(&self) -> MutexGuard<'_, FlushState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a frozen layer is still on its way to redb.
    pub fn frozen(&self) -> bool {
        self.lock().frozen
    }

    /// The writer froze a layer.
    pub fn froze(&self) {
        self.lock().frozen = true;
    }

    /// The log thread: every batch of `layer` is durable, up to sequence `seq`.
    pub fn seal(&self, layer: Arc<Layer>, seq: u64) {
        self.lock().sealed = Some((layer, seq));
        self.changed.notify_all();
    }

    /// The writer waits until no layer is frozen; `false` if the store stopped.
    pub fn wait_flushed(&self, shared: &Shared) -> bool {
        let mut state = self.lock();
        while state.frozen {
            if shared.check_running().is_err() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, STOP_POLL)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
        shared.check_running().is_ok()
    }

    /// The store is closing.
    pub fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_all();
    }

    /// The flusher's next layer; `None` when closing with nothing left.
    fn next_sealed(&self) -> Option<(Arc<Layer>, u64)> {
        let mut state = self.lock();
        loop {
            if let Some(sealed) = state.sealed.take() {
                return Some(sealed);
            }
            if state.closing {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn flushed(&self) {
        self.lock().frozen = false;
        self.changed.notify_all();
    }
}

/// The flusher's loop; returns when the store closes.
pub fn run(shared: Arc<Shared>, control: Arc<FlushControl>) {
    while let Some((layer, seq)) = control.next_sealed() {
        if shared.check_running().is_err() {
            // A stopped store may hold writes that never became durable: they
            // must not reach the B-tree.
            control.flushed();
            continue;
        }
        shared.overlay.flush_starting();
        match commit(&shared.db, &layer, seq) {
            Ok(()) => shared.overlay.flushed(),
            Err(message) => {
                tracing::error!(%message, "embedded store flush failed; the store stops");
                shared.stop(message);
            }
        }
        control.flushed();
        drop_here(layer);
    }
}

/// Frees a flushed layer on this thread. Readers and the writer may still hold
/// it for a moment (their snapshots are short); whoever drops the last handle
/// frees tens of thousands of entries, and that must not be the writer.
fn drop_here(layer: Arc<Layer>) {
    for _ in 0..LAST_HANDLE_WAITS {
        if Arc::strong_count(&layer) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(layer);
}

/// Commits one frozen layer durably, with `meta.wal_seq = seq`.
fn commit(db: &Database, layer: &Layer, seq: u64) -> Result<(), String> {
    let err = |e: redb::Error| e.to_string();
    let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
    txn.set_durability(Durability::Immediate).map_err(|e| err(e.into()))?;
    // Allocator state with every commit: a crash reopens without a full repair.
    txn.set_quick_repair(true);
    {
        let mut tables = Tables::open(&txn)?;
        let data = layer.read();
        let mut stored = Vec::new();
        for (key, versions) in &data.keys {
            match versions.last() {
                Some((_, Some(kv))) => {
                    stored.clear();
                    encode_kv_into(&mut stored, kv);
                    tables
                        .kv
                        .insert(key.as_slice(), stored.as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                Some((_, None)) => {
                    drop(tables.kv.remove(key.as_slice()).map_err(|e| err(e.into()))?)
                }
                None => {}
            }
        }
        for (revision, events) in &data.history {
            tables.history.insert(*revision, events.as_slice()).map_err(|e| err(e.into()))?;
        }
        if let Some(compact) = data.compact_revision {
            tables.apply(Mutation::HistDelBelow(compact as u64))?;
            tables.apply(Mutation::Meta(META_COMPACT.into(), compact))?;
        }
        for (id, ttl) in &data.leases {
            match ttl {
                Some(ttl) => tables.apply(Mutation::LeasePut(*id, *ttl))?,
                None => tables.apply(Mutation::LeaseDel(*id))?,
            }
        }
        if let Some(next_lease) = data.next_lease {
            tables.apply(Mutation::Meta(META_NEXT_LEASE.into(), next_lease))?;
        }
        tables.meta.insert(META_WAL_SEQ, seq as i64).map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))
}

/// The four tables of one write transaction.
pub struct Tables<'txn> {
    pub kv: Table<'txn, &'static [u8], &'static [u8]>,
    pub history: Table<'txn, u64, &'static [u8]>,
    pub leases: Table<'txn, i64, i64>,
    pub meta: Table<'txn, &'static str, i64>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, String> {
        let err = |e: redb::TableError| e.to_string();
        Ok(Tables {
            kv: txn.open_table(KV).map_err(err)?,
            history: txn.open_table(HISTORY).map_err(err)?,
            leases: txn.open_table(LEASES).map_err(err)?,
            meta: txn.open_table(META).map_err(err)?,
        })
    }

    /// Applies one mutation (replayed from the log, or a flush's).
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
        Ok(())
    }
}
