//! What this node knows of tasks and swarms from following the namespace by
//! watch, so a claim, renew, complete or push can go straight to its
//! compare-and-swap txn without reading first (one round trip on etcd
//! instead of two).
//!
//! Nothing here has to be right for correctness. Every value a write decides
//! on is guarded by its txn: the record's and the swarm's mod revision, the
//! claim and holder keys (missing, or the fencing token's create revision).
//! The task's chain head is guarded through the record: every write that
//! seals a record on a task's chain rewrites the task's record in the same
//! txn, and retention removes the head with the record. So a stale entry only
//! makes the txn fail; the caller then reads the store, as it would have
//! without the cache, and refills the entry from that read. Negative answers
//! (not found, already claimed, fenced) are never given from the cache:
//! callers confirm them on a linearizable read.
//!
//! Staying current: one watch of the namespace (the reaper's) feeds
//! [`SnapshotCache::apply`] every revision in order, under the generation
//! [`SnapshotCache::start`] gave it, so a stopped or second feeder changes
//! nothing. An entry is complete from its `as_of` revision on: it was either
//! created by the task's creation event (a record at version 1: the task's
//! keys did not exist before) or filled by a read at `as_of` that no event of
//! the task has overtaken (the cache remembers which tasks recent events
//! touched). Events at or before `as_of` are skipped. When the watch breaks,
//! the cache is emptied and stays unused until a new watch runs.
//!
//! Tasks are bounded by bytes (keys and values), oldest entries out first;
//! swarm records are held whole (their number is bounded by `max_swarms`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ifc_kv::{EventKind, KeyValue, Revision, WatchBatch};

use crate::keys::{Key, Keys};

/// Recent events on tasks, remembered so a read racing them is not kept (a
/// read older than all of them is not kept either).
const TOUCHED_REMEMBERED: usize = 8192;
/// Rough bytes of an entry beyond its keys and values (maps, queue, Arcs).
const ENTRY_OVERHEAD: usize = 200;

/// A task as known: each of its keys, `None` when absent.
#[derive(Clone, Debug, Default)]
pub(crate) struct CachedTask {
    pub record: Option<Arc<KeyValue>>,
    pub claim: Option<Arc<KeyValue>>,
    pub holder: Option<Arc<KeyValue>>,
    pub head: Option<Arc<KeyValue>>,
    /// Events at or before this revision are already in it (set on insert).
    pub as_of: Revision,
    /// When it was inserted, to match its place in the eviction queue (set
    /// on insert).
    pub seq: u64,
}

impl CachedTask {
    fn bytes(&self) -> usize {
        let kv =
            |kv: &Option<Arc<KeyValue>>| kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len());
        ENTRY_OVERHEAD + kv(&self.record) + kv(&self.claim) + kv(&self.holder) + kv(&self.head)
    }
}

#[derive(Clone, Debug)]
struct CachedSwarm {
    kv: Arc<KeyValue>,
    as_of: Revision,
}

#[derive(Default)]
struct Inner {
    /// The feeder's generation; 0: nothing feeds the cache, nothing is served.
    generation: u64,
    /// The last revision the watch delivered (or the revision it started at).
    revision: Revision,
    tasks: HashMap<String, CachedTask>,
    /// (seq, task id) in insertion order, for eviction; stale pairs are skipped.
    order: VecDeque<(u64, String)>,
    next_seq: u64,
    /// Bytes the tasks hold (see [`CachedTask::bytes`]).
    bytes: usize,
    swarms: HashMap<String, CachedSwarm>,
    /// Tasks recent events touched: id → last revision, and the
    /// same in event order for forgetting; `touched_floor` is the newest
    /// revision forgotten (reads before it are not kept).
    touched: HashMap<String, Revision>,
    touched_order: VecDeque<(Revision, String)>,
    touched_floor: Revision,
}

/// See the module docs. `budget` bounds the bytes held (0: off).
pub(crate) struct SnapshotCache {
    keys: Keys,
    budget: usize,
    inner: Mutex<Inner>,
    generations: std::sync::atomic::AtomicU64,
}

/// Which of a task's keys an event touches.
enum TaskKey {
    Record,
    Claim,
    Holder,
    Head,
}

impl SnapshotCache {
    pub fn new(keys: Keys, budget: usize) -> Self {
        SnapshotCache {
            keys,
            budget,
            inner: Mutex::default(),
            generations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst stale entries, which
        // compares catch; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch starts feeding the cache; everything before `revision` (the
    /// store's revision read after the watch began) is unknown. Returns the
    /// generation the feeder must pass to [`apply`](Self::apply) and
    /// [`stop`](Self::stop); a later `start` supersedes it.
    pub fn start(&self, revision: Revision) -> u64 {
        let generation = 1 + self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.budget > 0 {
            // Events before `revision` were never seen: no read before it is kept.
            let touched_floor = revision;
            *self.inner() = Inner { generation, revision, touched_floor, ..Inner::default() };
        }
        generation
    }

    /// That feeder's watch broke or it stopped: forget everything until a
    /// new [`start`](Self::start).
    pub fn stop(&self, generation: u64) {
        let mut inner = self.inner();
        if inner.generation == generation {
            *inner = Inner::default();
        }
    }

    /// Whether a watch feeds it.
    #[cfg(test)]
    pub fn is_live(&self) -> bool {
        self.inner().generation != 0
    }

    /// The task as known, if it is (never while no watch feeds the cache).
    pub fn task(&self, task_id: &str) -> Option<CachedTask> {
        let inner = self.inner();
        inner.tasks.get(task_id).filter(|_| inner.generation != 0).cloned()
    }

    /// The swarm's record as known, if it is.
    pub fn swarm(&self, swarm_id: &str) -> Option<Arc<KeyValue>> {
        let inner = self.inner();
        inner.swarms.get(swarm_id).filter(|_| inner.generation != 0).map(|s| s.kv.clone())
    }

    /// Forgets a task (tests make a copy incomplete with it).
    #[cfg(test)]
    pub fn forget(&self, task_id: &str) {
        let mut inner = self.inner();
        if let Some(gone) = inner.tasks.remove(task_id) {
            inner.bytes -= gone.bytes();
        }
    }

    /// Replaces what is known of a task (and a swarm, if one was read) with
    /// a read at `revision`: `None` means absent (not kept). A read that an
    /// event of the same key may have overtaken only forgets: the caller read
    /// because the copy was missing or proved stale.
    pub fn fill(
        &self,
        revision: Revision,
        task_id: &str,
        task: Option<CachedTask>,
        swarm_id: Option<&str>,
        swarm: Option<&KeyValue>,
    ) {
        let mut inner = self.inner();
        if inner.generation == 0 {
            return;
        }
        let current = revision >= inner.revision
            || (revision >= inner.touched_floor
                && inner.touched.get(task_id).is_none_or(|&touched| touched <= revision));
        self.remove_task(&mut inner, task_id);
        if let Some(task) = task.filter(|t| t.record.is_some() && current) {
            self.insert_task(&mut inner, task_id, CachedTask { as_of: revision, ..task });
        }
        if let Some(swarm_id) = swarm_id {
            // Swarms change rarely; only a read no older than the watch is kept.
            match swarm.filter(|_| revision >= inner.revision) {
                Some(kv) => {
                    let cached = CachedSwarm { kv: Arc::new(kv.clone()), as_of: revision };
                    inner.swarms.insert(swarm_id.to_string(), cached);
                }
                None => drop(inner.swarms.remove(swarm_id)),
            }
        }
    }

    fn remove_task(&self, inner: &mut Inner, task_id: &str) {
        if let Some(gone) = inner.tasks.remove(task_id) {
            inner.bytes -= gone.bytes();
        }
    }

    fn insert_task(&self, inner: &mut Inner, task_id: &str, mut task: CachedTask) {
        self.remove_task(inner, task_id);
        inner.next_seq += 1;
        task.seq = inner.next_seq;
        inner.bytes += task.bytes();
        inner.order.push_back((task.seq, task_id.to_string()));
        inner.tasks.insert(task_id.to_string(), task);
        self.evict(inner);
    }

    /// Drops the oldest entries while over budget; sheds queue pairs whose
    /// entry is gone or was re-inserted since.
    fn evict(&self, inner: &mut Inner) {
        while inner.bytes > self.budget {
            let Some((seq, id)) = inner.order.pop_front() else { break };
            if inner.tasks.get(&id).is_some_and(|t| t.seq == seq) {
                self.remove_task(inner, &id);
            }
        }
        if inner.order.len() > 2 * inner.tasks.len() + 64 {
            let Inner { order, tasks, .. } = inner;
            order.retain(|(seq, id)| tasks.get(id).is_some_and(|t| t.seq == *seq));
        }
    }

    /// Remembers that an event touched a task (held or not), so a read older
    /// than the event is not kept.
    fn touch(inner: &mut Inner, task_id: &str, revision: Revision) {
        inner.touched.insert(task_id.to_string(), revision);
        inner.touched_order.push_back((revision, task_id.to_string()));
        while inner.touched_order.len() > TOUCHED_REMEMBERED {
            let Some((old, id)) = inner.touched_order.pop_front() else { break };
            inner.touched_floor = inner.touched_floor.max(old);
            if inner.touched.get(&id) == Some(&old) {
                inner.touched.remove(&id);
            }
        }
    }

    /// One revision of the namespace, in order, from the feeder of `generation`.
    pub fn apply(&self, generation: u64, batch: &WatchBatch) {
        let mut inner = self.inner();
        if inner.generation == 0 || inner.generation != generation {
            return;
        }
        let revision = batch.revision;
        inner.revision = inner.revision.max(revision);
        // A task created in this revision: its keys did not exist before it.
        for event in &batch.events {
            if event.kind == EventKind::Put
                && event.kv.version == 1
                && let Some(Key::Task(task_id)) = self.keys.parse(&event.kv.key)
                && !inner.tasks.contains_key(task_id)
            {
                let fresh = CachedTask { as_of: revision - 1, ..CachedTask::default() };
                self.insert_task(&mut inner, task_id, fresh);
            }
        }
        for event in &batch.events {
            let value = (event.kind == EventKind::Put).then(|| Arc::new(event.kv.clone()));
            let (task_id, which) = match self.keys.parse(&event.kv.key) {
                Some(Key::Swarm(swarm_id)) => {
                    // A put carries the whole record, so any put makes it known.
                    if inner.swarms.get(swarm_id).is_some_and(|s| s.as_of >= revision) {
                        continue;
                    }
                    match value {
                        Some(kv) => {
                            let cached = CachedSwarm { kv, as_of: revision - 1 };
                            inner.swarms.insert(swarm_id.to_string(), cached);
                        }
                        None => drop(inner.swarms.remove(swarm_id)),
                    }
                    continue;
                }
                Some(Key::Task(task_id)) => (task_id, TaskKey::Record),
                Some(Key::Claim(task_id)) => (task_id, TaskKey::Claim),
                Some(Key::Holder(task_id)) => (task_id, TaskKey::Holder),
                Some(Key::WitnessHead { chain }) => match chain.strip_prefix("task/") {
                    Some(task_id) => (task_id, TaskKey::Head),
                    None => continue,
                },
                _ => continue,
            };
            let inner = &mut *inner;
            Self::touch(inner, task_id, revision);
            let Some(task) = inner.tasks.get_mut(task_id) else { continue };
            if revision <= task.as_of {
                continue;
            }
            let before = task.bytes();
            let gone = matches!(which, TaskKey::Record) && value.is_none();
            match which {
                TaskKey::Record => task.record = value,
                TaskKey::Claim => task.claim = value,
                TaskKey::Holder => task.holder = value,
                TaskKey::Head => task.head = value,
            }
            let after = task.bytes();
            inner.bytes = inner.bytes - before + after;
            if gone {
                self.remove_task(inner, task_id);
            }
        }
        self.evict(&mut inner);
    }
}

#[cfg(test)]
mod tests {
    use ifc_kv::Event;

    use super::*;

    fn kv(key: String, mod_revision: Revision, version: i64) -> KeyValue {
        KeyValue {
            key: key.into_bytes(),
            value: b"v".to_vec(),
            create_revision: mod_revision - version + 1,
            mod_revision,
            version,
            lease: 0,
        }
    }

    fn put(key: String, revision: Revision, version: i64) -> Event {
        Event { kind: EventKind::Put, kv: kv(key, revision, version), prev_kv: None }
    }

    fn delete(key: String, revision: Revision) -> Event {
        let kv = KeyValue { mod_revision: revision, ..kv(key, revision, 1) };
        Event { kind: EventKind::Delete, kv: KeyValue { value: Vec::new(), ..kv }, prev_kv: None }
    }

    fn batch(revision: Revision, events: Vec<Event>) -> WatchBatch {
        WatchBatch { revision, events }
    }

    fn cache(budget: usize) -> (SnapshotCache, Keys) {
        let keys = Keys::new("ns");
        let cache = SnapshotCache::new(keys.clone(), budget);
        assert_eq!(cache.start(10), 1);
        (cache, keys)
    }

    #[test]
    fn a_task_created_under_the_watch_is_known_with_its_head() {
        let (cache, k) = cache(1 << 20);
        cache.apply(
            1,
            &batch(11, vec![put(k.task("t"), 11, 1), put(k.witness_head("task/t"), 11, 1)]),
        );
        let task = cache.task("t").expect("known");
        assert_eq!(task.record.unwrap().mod_revision, 11);
        assert_eq!(task.head.unwrap().mod_revision, 11);
        assert!(task.claim.is_none() && task.holder.is_none());
        cache.apply(1, &batch(12, vec![put(k.task("t"), 12, 2), put(k.claim("t"), 12, 1)]));
        let task = cache.task("t").unwrap();
        assert_eq!(task.record.unwrap().mod_revision, 12);
        assert_eq!(task.claim.unwrap().mod_revision, 12);
        cache.apply(1, &batch(13, vec![delete(k.claim("t"), 13)]));
        assert!(cache.task("t").unwrap().claim.is_none());
        cache.apply(1, &batch(14, vec![delete(k.task("t"), 14)]));
        assert!(cache.task("t").is_none(), "a deleted task is forgotten");
    }

    #[test]
    fn a_task_that_existed_before_the_watch_is_unknown_until_read() {
        let (cache, k) = cache(1 << 20);
        // A rewrite of an older task: its claim or holder may exist unseen.
        cache.apply(1, &batch(11, vec![put(k.task("old"), 11, 3)]));
        assert!(cache.task("old").is_none());
        let read = CachedTask {
            record: Some(Arc::new(kv(k.task("old"), 11, 3))),
            ..CachedTask::default()
        };
        cache.fill(11, "old", Some(read), None, None);
        assert!(cache.task("old").is_some());
    }

    #[test]
    fn a_read_older_than_the_watch_start_is_not_kept_and_older_events_are_skipped() {
        let (cache, k) = cache(1 << 20);
        cache.apply(1, &batch(20, vec![]));
        let read =
            CachedTask { record: Some(Arc::new(kv(k.task("t"), 5, 1))), ..CachedTask::default() };
        cache.fill(9, "t", Some(read.clone()), None, None);
        assert!(cache.task("t").is_none(), "events before the watch began are unknown");
        cache.fill(25, "t", Some(read), None, None);
        // An event the read already saw arrives late: skipped.
        cache.apply(1, &batch(23, vec![put(k.claim("t"), 23, 1)]));
        assert!(cache.task("t").unwrap().claim.is_none());
        cache.apply(1, &batch(26, vec![put(k.claim("t"), 26, 1)]));
        assert!(cache.task("t").unwrap().claim.is_some());
    }

    #[test]
    fn swarms_are_known_from_any_put_and_forgotten_on_delete() {
        let (cache, k) = cache(1 << 20);
        cache.apply(1, &batch(11, vec![put(k.task("t"), 11, 1), put(k.swarm("s"), 11, 1)]));
        assert!(cache.swarm("s").is_some());
        assert!(cache.swarm("other").is_none(), "an unknown swarm is a miss");
        cache.apply(1, &batch(12, vec![delete(k.swarm("s"), 12)]));
        assert!(cache.swarm("s").is_none());
    }

    #[test]
    fn nothing_is_served_before_a_watch_starts_or_after_it_breaks() {
        let keys = Keys::new("ns");
        let cache = SnapshotCache::new(keys.clone(), 1 << 20);
        cache.apply(1, &batch(11, vec![put(keys.task("t"), 11, 1)]));
        assert!(cache.task("t").is_none());
        let generation = cache.start(11);
        cache.apply(generation, &batch(12, vec![put(keys.task("u"), 12, 1)]));
        assert!(cache.task("u").is_some());
        // A superseded feeder changes nothing, and its stop does not stop the new one.
        let newer = cache.start(12);
        cache.apply(generation, &batch(13, vec![put(keys.task("v"), 13, 1)]));
        assert!(cache.task("v").is_none());
        cache.stop(generation);
        cache.apply(newer, &batch(13, vec![put(keys.task("v"), 13, 1)]));
        assert!(cache.task("v").is_some());
        cache.stop(newer);
        assert!(cache.task("v").is_none());
    }

    #[test]
    fn the_oldest_tasks_are_evicted_past_the_byte_budget() {
        // Room for two of these entries (overhead, a record and its key).
        let entry = ENTRY_OVERHEAD + Keys::new("ns").task("a").len() + 1;
        let (cache, k) = cache(2 * entry + entry / 2);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let revision = 11 + i as Revision;
            cache.apply(1, &batch(revision, vec![put(k.task(id), revision, 1)]));
        }
        assert!(cache.task("a").is_none());
        assert!(cache.task("b").is_some() && cache.task("c").is_some());
    }

    #[test]
    fn an_off_cache_holds_nothing() {
        let keys = Keys::new("ns");
        let cache = SnapshotCache::new(keys.clone(), 0);
        let generation = cache.start(10);
        cache.apply(generation, &batch(11, vec![put(keys.task("t"), 11, 1)]));
        assert!(cache.task("t").is_none());
    }

    #[test]
    fn a_read_older_than_the_watch_is_kept_unless_an_event_of_its_task_overtook_it() {
        let (cache, k) = cache(1 << 20);
        let record = |r| CachedTask {
            record: Some(Arc::new(kv(k.task("t"), r, 1))),
            ..CachedTask::default()
        };
        cache.apply(1, &batch(20, vec![put(k.task("other"), 20, 3)]));
        cache.fill(15, "t", Some(record(5)), None, None);
        assert!(cache.task("t").is_some(), "no event of t since the read");
        cache.apply(1, &batch(21, vec![put(k.claim("t"), 21, 1)]));
        cache.fill(19, "t", Some(record(5)), None, None);
        assert!(cache.task("t").is_none(), "the claim at 21 overtook the read at 19");
    }

    #[test]
    fn a_refilled_task_keeps_its_place_in_the_eviction_order() {
        let entry = ENTRY_OVERHEAD + Keys::new("ns").task("a").len() + 1;
        let (cache, k) = cache(2 * entry + entry / 2);
        let record = |id, r| CachedTask {
            record: Some(Arc::new(kv(k.task(id), r, 1))),
            ..CachedTask::default()
        };
        cache.fill(11, "a", Some(record("a", 11)), None, None);
        cache.fill(11, "b", Some(record("b", 11)), None, None);
        // a read again: now the newest; b is the one to go.
        cache.fill(11, "a", Some(record("a", 11)), None, None);
        cache.fill(11, "c", Some(record("c", 11)), None, None);
        assert!(cache.task("b").is_none());
        assert!(cache.task("a").is_some() && cache.task("c").is_some());
    }
}
