//! What this node knows of tasks and swarms from following the namespace by
//! watch, so a claim or a complete can go straight to its compare-and-swap
//! txn without reading first (one round trip on etcd instead of two).
//!
//! Nothing here has to be right for correctness. Every value a write decides
//! on is also a compare of its txn (the record's and the swarm's mod revision,
//! the claim and holder keys, the chain head), so a stale entry only makes the
//! txn fail; the caller then reads the store, as it would have without the
//! cache, and refills the entry from that read. Negative answers (not found,
//! already claimed, fenced) are never given from the cache: callers confirm
//! them on a linearizable read.
//!
//! Staying current: the reaper's watch of the namespace feeds [`SnapshotCache::apply`]
//! every revision in order. An entry is complete from its `as_of` revision on:
//! it was either filled by a read at `as_of` (allowed only when the watch has
//! not yet delivered past it, so no later event was missed) or created by the
//! task's creation event (a record at version 1: the task's keys did not exist
//! before). Events at or before `as_of` are skipped. When the watch breaks, the
//! cache is emptied and stays unused until a new watch runs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ifc_kv::{EventKind, KeyValue, Revision, WatchBatch};

use crate::keys::{Key, Keys};

/// A task as known: each of its keys, `None` when absent.
#[derive(Clone, Debug, Default)]
pub(crate) struct CachedTask {
    pub record: Option<KeyValue>,
    pub claim: Option<KeyValue>,
    pub holder: Option<KeyValue>,
    pub head: Option<KeyValue>,
    /// Events at or before this revision are already in it (set on insert).
    pub as_of: Revision,
}

#[derive(Clone, Debug)]
struct CachedSwarm {
    kv: KeyValue,
    as_of: Revision,
}

#[derive(Default)]
struct Inner {
    /// A watch is feeding the cache: only then is anything in it served.
    live: bool,
    /// The last revision the watch delivered (or the revision it started at).
    revision: Revision,
    tasks: HashMap<String, CachedTask>,
    /// Task ids in the order they were first known, for eviction.
    order: VecDeque<String>,
    swarms: HashMap<String, CachedSwarm>,
}

/// See the module docs. `capacity` bounds the tasks held (0: off).
pub(crate) struct SnapshotCache {
    keys: Keys,
    capacity: usize,
    inner: Mutex<Inner>,
}

/// Which of a task's keys an event touches.
enum TaskKey {
    Record,
    Claim,
    Holder,
    Head,
}

impl SnapshotCache {
    pub fn new(keys: Keys, capacity: usize) -> Self {
        SnapshotCache { keys, capacity, inner: Mutex::default() }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst stale entries, which
        // compares catch; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch starts feeding the cache; everything before `revision` (the
    /// store's revision read after the watch began) is unknown.
    pub fn start(&self, revision: Revision) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner();
        *inner = Inner { live: true, revision, ..Inner::default() };
    }

    /// Whether a watch feeds it.
    #[cfg(test)]
    pub fn is_live(&self) -> bool {
        self.inner().live
    }

    /// The watch broke: forget everything until [`start`](Self::start) again.
    pub fn stop(&self) {
        *self.inner() = Inner::default();
    }

    /// The task as known, if it is (never while no watch feeds the cache).
    pub fn task(&self, task_id: &str) -> Option<CachedTask> {
        let inner = self.inner();
        inner.tasks.get(task_id).filter(|_| inner.live).cloned()
    }

    /// The swarm's record as known, if it is.
    pub fn swarm(&self, swarm_id: &str) -> Option<KeyValue> {
        let inner = self.inner();
        inner.swarms.get(swarm_id).filter(|_| inner.live).map(|s| s.kv.clone())
    }

    /// Forgets a task (tests make a copy incomplete with it).
    #[cfg(test)]
    pub fn forget(&self, task_id: &str) {
        self.inner().tasks.remove(task_id);
    }

    /// Replaces what is known of a task (and a swarm, if one was read) with
    /// a read at `revision`: `None` means absent. A read older than what the
    /// watch delivered may have missed a change the watch already passed,
    /// so it only forgets: the caller read because the copy was missing or
    /// proved stale.
    pub fn fill(
        &self,
        revision: Revision,
        task_id: &str,
        task: Option<CachedTask>,
        swarm_id: Option<&str>,
        swarm: Option<&KeyValue>,
    ) {
        let mut inner = self.inner();
        if !inner.live {
            return;
        }
        let current = revision >= inner.revision;
        match task.filter(|t| t.record.is_some() && current) {
            Some(task) => {
                self.insert_task(&mut inner, task_id, CachedTask { as_of: revision, ..task })
            }
            None => drop(inner.tasks.remove(task_id)),
        }
        if let Some(swarm_id) = swarm_id {
            match swarm.filter(|_| current) {
                Some(kv) => {
                    let cached = CachedSwarm { kv: kv.clone(), as_of: revision };
                    inner.swarms.insert(swarm_id.to_string(), cached);
                }
                None => drop(inner.swarms.remove(swarm_id)),
            }
        }
    }

    fn insert_task(&self, inner: &mut Inner, task_id: &str, task: CachedTask) {
        if inner.tasks.insert(task_id.to_string(), task).is_none() {
            inner.order.push_back(task_id.to_string());
        }
        while inner.tasks.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.tasks.remove(&oldest);
        }
        // Ids of tasks already gone stay in `order` until popped; keep it bounded.
        if inner.order.len() > 2 * self.capacity.max(1) {
            let tasks = &inner.tasks;
            let order: VecDeque<String> =
                inner.order.iter().filter(|id| tasks.contains_key(*id)).cloned().collect();
            inner.order = order;
        }
    }

    /// One revision of the namespace, in order.
    pub fn apply(&self, batch: &WatchBatch) {
        let mut inner = self.inner();
        if !inner.live {
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
            let value = (event.kind == EventKind::Put).then(|| event.kv.clone());
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
                        None => {
                            inner.swarms.remove(swarm_id);
                        }
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
            let Some(task) = inner.tasks.get_mut(task_id) else { continue };
            if revision <= task.as_of {
                continue;
            }
            let gone = matches!(which, TaskKey::Record) && value.is_none();
            match which {
                TaskKey::Record => task.record = value,
                TaskKey::Claim => task.claim = value,
                TaskKey::Holder => task.holder = value,
                TaskKey::Head => task.head = value,
            }
            if gone {
                inner.tasks.remove(task_id);
            }
        }
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

    fn cache(capacity: usize) -> (SnapshotCache, Keys) {
        let keys = Keys::new("ns");
        let cache = SnapshotCache::new(keys.clone(), capacity);
        cache.start(10);
        (cache, keys)
    }

    #[test]
    fn a_task_created_under_the_watch_is_known_with_its_head() {
        let (cache, k) = cache(10);
        cache
            .apply(&batch(11, vec![put(k.task("t"), 11, 1), put(k.witness_head("task/t"), 11, 1)]));
        let task = cache.task("t").expect("known");
        assert_eq!(task.record.unwrap().mod_revision, 11);
        assert_eq!(task.head.unwrap().mod_revision, 11);
        assert!(task.claim.is_none() && task.holder.is_none());
        cache.apply(&batch(12, vec![put(k.task("t"), 12, 2), put(k.claim("t"), 12, 1)]));
        let task = cache.task("t").unwrap();
        assert_eq!(task.record.unwrap().mod_revision, 12);
        assert_eq!(task.claim.unwrap().mod_revision, 12);
        cache.apply(&batch(13, vec![delete(k.claim("t"), 13)]));
        assert!(cache.task("t").unwrap().claim.is_none());
        cache.apply(&batch(14, vec![delete(k.task("t"), 14)]));
        assert!(cache.task("t").is_none(), "a deleted task is forgotten");
    }

    #[test]
    fn a_task_that_existed_before_the_watch_is_unknown_until_read() {
        let (cache, k) = cache(10);
        // A rewrite of an older task: its claim or holder may exist unseen.
        cache.apply(&batch(11, vec![put(k.task("old"), 11, 3)]));
        assert!(cache.task("old").is_none());
        let read = CachedTask { record: Some(kv(k.task("old"), 11, 3)), ..CachedTask::default() };
        cache.fill(11, "old", Some(read), None, None);
        assert!(cache.task("old").is_some());
    }

    #[test]
    fn a_read_older_than_the_watch_is_not_kept_and_older_events_are_skipped() {
        let (cache, k) = cache(10);
        cache.apply(&batch(20, vec![]));
        let read = CachedTask { record: Some(kv(k.task("t"), 5, 1)), ..CachedTask::default() };
        cache.fill(19, "t", Some(read.clone()), None, None);
        assert!(cache.task("t").is_none(), "the watch may have passed a change");
        cache.fill(25, "t", Some(read), None, None);
        // An event the read already saw arrives late: skipped.
        cache.apply(&batch(23, vec![put(k.claim("t"), 23, 1)]));
        assert!(cache.task("t").unwrap().claim.is_none());
        cache.apply(&batch(26, vec![put(k.claim("t"), 26, 1)]));
        assert!(cache.task("t").unwrap().claim.is_some());
    }

    #[test]
    fn swarms_are_known_from_any_put_and_forgotten_on_delete() {
        let (cache, k) = cache(10);
        cache.apply(&batch(11, vec![put(k.task("t"), 11, 1), put(k.swarm("s"), 11, 1)]));
        assert!(cache.swarm("s").is_some());
        assert!(cache.swarm("other").is_none(), "an unknown swarm is a miss");
        cache.apply(&batch(12, vec![delete(k.swarm("s"), 12)]));
        assert!(cache.swarm("s").is_none());
    }

    #[test]
    fn nothing_is_served_before_a_watch_starts_or_after_it_breaks() {
        let keys = Keys::new("ns");
        let cache = SnapshotCache::new(keys.clone(), 10);
        cache.apply(&batch(11, vec![put(keys.task("t"), 11, 1)]));
        assert!(cache.task("t").is_none());
        cache.start(11);
        cache.apply(&batch(12, vec![put(keys.task("u"), 12, 1)]));
        assert!(cache.task("u").is_some());
        cache.stop();
        assert!(cache.task("u").is_none());
    }

    #[test]
    fn the_oldest_tasks_are_evicted_past_capacity() {
        let (cache, k) = cache(2);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let revision = 11 + i as Revision;
            cache.apply(&batch(revision, vec![put(k.task(id), revision, 1)]));
        }
        assert!(cache.task("a").is_none());
        assert!(cache.task("b").is_some() && cache.task("c").is_some());
    }

    #[test]
    fn an_off_cache_holds_nothing() {
        let keys = Keys::new("ns");
        let cache = SnapshotCache::new(keys.clone(), 0);
        cache.start(10);
        cache.apply(&batch(11, vec![put(keys.task("t"), 11, 1)]));
        assert!(cache.task("t").is_none());
    }
}
