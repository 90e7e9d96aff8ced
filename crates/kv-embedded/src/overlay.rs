//! The in-memory overlay above the B-tree: where writes land, and what reads see
//! before the flusher has put them into redb.
//!
//! There are at most two layers: the *active* one, which the writer adds to, and
//! one *frozen* one, which the flusher is committing to redb. Each layer maps a
//! key to its versions (revision, state after; `None` for a delete), oldest first,
//! so a reader at revision `R` takes the newest version at or below `R` and never
//! sees a write that is not yet durable: the writer adds versions as it applies a
//! batch, but [`Overlay::visible`] moves only after the log's `fdatasync` (see
//! [`crate::syncer`]). A key a layer does not know at `R` is looked up in the
//! layer below, then in redb.
//!
//! Invariants:
//! 1. A layer is frozen only when no other frozen layer exists; the flusher
//!    removes the frozen layer from [`Layers`] only after the redb commit that
//!    holds it, so a reader that no longer sees a layer finds its data in redb.
//! 2. The flusher commits a frozen layer only after every version in it is
//!    visible (the syncer seals the layer behind its last record), so redb never
//!    holds a write that a reader may not see.
//! 3. [`Overlay::generation`] changes when a layer is frozen, when a flush
//!    commit starts and when the flushed layer is removed. A reader that reads
//!    the generation, the visible revision, the layers and opens its redb
//!    snapshot, then finds the generation unchanged, holds a consistent picture
//!    at that revision: no version at or below it is missing (no freeze moved
//!    writes to a layer it does not hold, and by 1 removed layers are in its
//!    redb snapshot), and redb holds nothing newer (by 2, a flush that started
//!    before it read the revision holds only versions at or below it).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use ifc_kv::{KeyRange, KeyValue, KvError, LeaseId, Revision, prefix_end};
use redb::{Database, ReadableDatabase};

use crate::codec::decode_kv;
use crate::{KV, backend};

/// A key's state as one revision left it: `None` if that revision deleted it.
pub type Version = (Revision, Option<Arc<KeyValue>>);

/// Per-version bookkeeping counted against a layer's size bound, beside the
/// key and value bytes.
const VERSION_OVERHEAD: usize = 64;
/// Keys a range read takes from a layer per lock.
const CHUNK: usize = 64;

/// What one layer holds.
#[derive(Debug, Default)]
pub struct LayerData {
    /// Every key written while the layer was active, its versions oldest first.
    pub keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// History entries (revision → encoded events) written in this layer.
    pub history: BTreeMap<u64, Vec<u8>>,
    /// Leases granted (`Some(ttl)`) or ended (`None`) in this layer, last state.
    pub leases: BTreeMap<LeaseId, Option<i64>>,
    /// The compaction point, if it moved in this layer.
    pub compact_revision: Option<Revision>,
    /// The next lease id, if it moved in this layer.
    pub next_lease: Option<LeaseId>,
    /// Versions and history entries added: what the freeze threshold counts.
    pub changes: usize,
    /// Approximate bytes held: what the size bound counts.
    pub bytes: usize,
    /// When the first change came in: the freeze interval counts from it, so a
    /// layer left empty for a while is not due at its first change.
    pub first_change: Option<Instant>,
}

impl LayerData {
    /// The key as revision `at` left it, if this layer knows it then:
    /// `Some(None)` is a delete, `None` means "look below".
    pub fn get(&self, key: &[u8], at: Revision) -> Option<Option<Arc<KeyValue>>> {
        newest(self.keys.get(key)?, at)
    }

    /// Adds the key's state after `revision`.
    pub fn put(&mut self, key: &[u8], revision: Revision, kv: Option<Arc<KeyValue>>) {
        self.changed();
        self.bytes += VERSION_OVERHEAD + kv.as_ref().map_or(0, |kv| kv.value.len() + kv.key.len());
        match self.keys.get_mut(key) {
            Some(versions) => {
                // One revision changes a key at most once (etcd's txn rule), but a
                // lease ending in the same revision would replace it: keep the last.
                if versions.last().is_some_and(|(r, _)| *r == revision) {
                    versions.pop();
                }
                versions.push((revision, kv));
            }
            None => {
                self.bytes += key.len();
                self.keys.insert(key.to_vec(), vec![(revision, kv)]);
            }
        }
    }

    fn changed(&mut self) {
        self.changes += 1;
        self.first_change.get_or_insert_with(Instant::now);
    }

    /// Whether the layer has held a change for `interval`.
    pub fn held_for(&self, interval: std::time::Duration) -> bool {
        self.first_change.is_some_and(|at| at.elapsed() >= interval)
    }

    /// Adds a history entry.
    pub fn put_history(&mut self, revision: u64, events: Vec<u8>) {
        self.changed();
        self.bytes += VERSION_OVERHEAD + events.len();
        self.history.insert(revision, events);
    }

    /// Appends to `out` up to [`CHUNK`] keys of `(from, end)` as revision `at`
    /// left them; returns the last key looked at, `None` if none was left.
    fn chunk(
        &self,
        from: Bound<&[u8]>,
        end: Bound<&[u8]>,
        at: Revision,
        out: &mut VecDeque<Entry>,
    ) -> Option<Vec<u8>> {
        if is_empty(from, end) {
            return None;
        }
        let mut last = None;
        for (key, versions) in self.keys.range::<[u8], _>((from, end)) {
            if let Some(state) = newest(versions, at) {
                out.push_back((key.clone(), state));
            }
            last = Some(key);
            if out.len() >= CHUNK {
                break;
            }
        }
        last.cloned()
    }
}

fn newest(versions: &[Version], at: Revision) -> Option<Option<Arc<KeyValue>>> {
    versions.iter().rev().find(|(revision, _)| *revision <= at).map(|(_, kv)| kv.clone())
}

/// Whether `(from, end)` holds no key (and so must not reach `BTreeMap::range`,
/// which panics on an inverted range).
fn is_empty(from: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (from, end) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
    }
}

/// One layer. Frozen layers are never written again; the lock is uncontended.
#[derive(Debug)]
pub struct Layer {
    data: RwLock<LayerData>,
}

impl Layer {
    fn new() -> Self {
        Layer { data: RwLock::new(LayerData::default()) }
    }

    /// Reads the layer.
    pub fn read(&self) -> RwLockReadGuard<'_, LayerData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the layer (the writer only, while it is active).
    pub fn write(&self) -> RwLockWriteGuard<'_, LayerData> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The layers a reader or the writer looks through, newest first.
#[derive(Clone, Debug)]
pub struct Layers {
    /// The layer the writer adds to.
    pub active: Arc<Layer>,
    /// The layer being committed to redb, if any.
    pub frozen: Option<Arc<Layer>>,
}

/// The overlay and what readers need to read it consistently (see the module
/// docs for the invariants).
#[derive(Debug)]
pub struct Overlay {
    layers: Mutex<Layers>,
    generation: AtomicU64,
    /// The last durable revision: what readers read at.
    visible: AtomicI64,
}

impl Overlay {
    /// An empty overlay over a B-tree at `revision`.
    pub fn new(revision: Revision) -> Self {
        Overlay {
            layers: Mutex::new(Layers { active: Arc::new(Layer::new()), frozen: None }),
            generation: AtomicU64::new(0),
            visible: AtomicI64::new(revision),
        }
    }

    /// The current layers.
    pub fn layers(&self) -> Layers {
        self.layers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last durable revision.
    pub fn visible(&self) -> Revision {
        self.visible.load(Ordering::SeqCst)
    }

    /// Makes every version up to `revision` visible (after its fsync).
    pub fn publish(&self, revision: Revision) {
        self.visible.store(revision, Ordering::SeqCst);
    }

    /// Moves the active layer to frozen and starts a new one; returns the frozen
    /// layer. The caller made sure no layer was frozen.
    pub fn freeze(&self) -> Arc<Layer> {
        let mut layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        let frozen = std::mem::replace(&mut layers.active, Arc::new(Layer::new()));
        layers.frozen = Some(frozen.clone());
        self.generation.fetch_add(1, Ordering::SeqCst);
        frozen
    }

    /// Called by the flusher just before its redb commit becomes visible.
    pub fn flush_starting(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Called by the flusher after its redb commit: the frozen layer is in redb.
    pub fn flushed(&self) {
        let mut layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        layers.frozen = None;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// A consistent picture at the visible revision (see invariant 3).
    pub fn snapshot(&self, db: &Database) -> Result<Snapshot, KvError> {
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let at = self.visible();
            let layers = self.layers();
            let txn = db.begin_read().map_err(backend)?;
            let kv = txn.open_table(KV).map_err(backend)?;
            if self.generation.load(Ordering::SeqCst) == generation {
                return Ok(Snapshot { at, layers, kv });
            }
        }
    }

    /// The writer's picture: every version, durable or not. Only the writer
    /// freezes, and a flush only removes a layer once redb holds it, so the
    /// layers taken before the redb snapshot always cover what redb lacks.
    pub fn latest(&self, db: &Database) -> Result<Snapshot, String> {
        let layers = self.layers();
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let kv = txn.open_table(KV).map_err(|e| e.to_string())?;
        Ok(Snapshot { at: Revision::MAX, layers, kv })
    }
}

/// A key and its state in one layer (`None`: deleted).
type Entry = (Vec<u8>, Option<Arc<KeyValue>>);

/// The store as of revision `at`: the layers over a redb snapshot.
pub struct Snapshot {
    /// The revision this picture is at.
    pub at: Revision,
    layers: Layers,
    kv: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Snapshot {
    /// The active layer (the writer adds to it through this).
    pub fn active(&self) -> &Arc<Layer> {
        &self.layers.active
    }

    /// One key.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, String> {
        if let Some(state) = self.layers.active.read().get(key, self.at) {
            return Ok(state.map(|kv| (*kv).clone()));
        }
        if let Some(frozen) = &self.layers.frozen
            && let Some(state) = frozen.read().get(key, self.at)
        {
            return Ok(state.map(|kv| (*kv).clone()));
        }
        match self.kv.get(key).map_err(|e| e.to_string())? {
            Some(stored) => decode_kv(key, stored.value()).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// Keys in the range, ascending, at most `limit` of them (0: all), and how
    /// many matched: the layers merged over redb, newest first. Without
    /// `count_all` the walk stops one key past the limit (enough to say `more`).
    pub fn scan(
        &self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), String> {
        if let KeyRange::Key(key) = range {
            let kvs: Vec<KeyValue> = self.get(key)?.into_iter().collect();
            let count = kvs.len();
            return Ok((kvs, count));
        }
        let (start, end) = bounds(range);
        let mut active = LayerCursor::new(&self.layers.active, self.at, &start, &end);
        let mut frozen =
            self.layers.frozen.as_ref().map(|l| LayerCursor::new(l, self.at, &start, &end));
        let mut stored = self
            .kv
            .range::<&[u8]>((as_ref(&start), as_ref(&end)))
            .map_err(|e| e.to_string())?
            .peekable();
        let mut kvs = Vec::new();
        let mut count = 0;
        while count_all || limit == 0 || count <= limit {
            let (in_active, in_frozen, in_stored) = {
                let a = active.peek_key();
                let f = frozen.as_mut().and_then(LayerCursor::peek_key);
                let s = match stored.peek() {
                    Some(Ok((key, _))) => Some(key.value()),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => None,
                };
                let Some(least) = [a, f, s].into_iter().flatten().min() else { break };
                (a == Some(least), f == Some(least), s == Some(least))
            };
            // Every source holding the key moves past it; the newest decides.
            // Only a key that is returned is copied or decoded.
            let keep = limit == 0 || kvs.len() < limit;
            let mut present: Option<bool> = None;
            let take = |kv: Option<Arc<KeyValue>>, kvs: &mut Vec<KeyValue>| {
                let present = kv.is_some();
                if keep && let Some(kv) = kv {
                    kvs.push((*kv).clone());
                }
                Some(present)
            };
            if in_active && let Some((_, kv)) = active.pop() {
                present = take(kv, &mut kvs);
            }
            if in_frozen
                && let Some(cursor) = frozen.as_mut()
                && let Some((_, kv)) = cursor.pop()
                && present.is_none()
            {
                present = take(kv, &mut kvs);
            }
            if in_stored
                && let Some(entry) = stored.next()
                && present.is_none()
            {
                present = Some(true);
                if keep {
                    let (key, value) = entry.map_err(|e| e.to_string())?;
                    kvs.push(decode_kv(key.value(), value.value()).map_err(|e| e.to_string())?);
                }
            }
            if present == Some(true) {
                count += 1;
            }
        }
        Ok((kvs, count))
    }
}

/// Walks one layer's keys in a range, [`CHUNK`] at a time, so a long range
/// never holds the writer's lock for long.
struct LayerCursor<'a> {
    layer: &'a Layer,
    at: Revision,
    from: Bound<Vec<u8>>,
    end: &'a Bound<Vec<u8>>,
    buffer: VecDeque<Entry>,
    done: bool,
}

impl<'a> LayerCursor<'a> {
    fn new(
        layer: &'a Layer,
        at: Revision,
        start: &Bound<Vec<u8>>,
        end: &'a Bound<Vec<u8>>,
    ) -> Self {
        LayerCursor { layer, at, from: start.clone(), end, buffer: VecDeque::new(), done: false }
    }

    fn peek_key(&mut self) -> Option<&[u8]> {
        while self.buffer.is_empty() && !self.done {
            let last = self.layer.read().chunk(
                as_ref(&self.from),
                as_ref(self.end),
                self.at,
                &mut self.buffer,
            );
            match last {
                Some(key) => self.from = Bound::Excluded(key),
                None => self.done = true,
            }
        }
        self.buffer.front().map(|(key, _)| key.as_slice())
    }

    fn pop(&mut self) -> Option<Entry> {
        self.buffer.pop_front()
    }
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A key range as B-tree bounds.
pub fn bounds(range: &KeyRange) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    match range {
        KeyRange::Key(k) => (Bound::Included(k.clone()), Bound::Included(k.clone())),
        KeyRange::Prefix(p) if p.is_empty() => (Bound::Unbounded, Bound::Unbounded),
        KeyRange::Prefix(p) => {
            let end = prefix_end(p);
            if end == [0] {
                (Bound::Included(p.clone()), Bound::Unbounded)
            } else {
                (Bound::Included(p.clone()), Bound::Excluded(end))
            }
        }
        KeyRange::Span { start, end } => {
            (Bound::Included(start.clone()), Bound::Excluded(end.clone()))
        }
    }
}
