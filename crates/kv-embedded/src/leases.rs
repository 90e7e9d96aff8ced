//! The in-memory lease table: deadlines and attached keys.
//!
//! Only the lease ids and TTLs are on disk (table `leases`); deadlines restart at
//! open (a lease gets its full TTL again) and the lease → keys index is rebuilt
//! from the `kv` table, so nothing here needs its own durability.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ifc_kv::LeaseId;

#[derive(Debug)]
struct Entry {
    ttl: i64,
    deadline: Instant,
    keys: BTreeSet<Vec<u8>>,
}

/// Every live lease. Guarded by a `std::sync::Mutex` in [`crate::Shared`]: every
/// critical section is a few map operations and never awaits.
#[derive(Debug, Default)]
pub struct LeaseTable {
    entries: HashMap<LeaseId, Entry>,
    by_deadline: BTreeSet<(Instant, LeaseId)>,
}

impl LeaseTable {
    /// Adds a lease with a full TTL from now.
    pub fn insert(&mut self, id: LeaseId, ttl: i64) {
        let deadline = Instant::now() + ttl_duration(ttl);
        self.entries.insert(id, Entry { ttl, deadline, keys: BTreeSet::new() });
        self.by_deadline.insert((deadline, id));
    }

    /// Whether a lease is live.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Restarts a lease's countdown; returns its TTL, `None` if it is gone.
    pub fn refresh(&mut self, id: LeaseId) -> Option<i64> {
        let entry = self.entries.get_mut(&id)?;
        self.by_deadline.remove(&(entry.deadline, id));
        entry.deadline = Instant::now() + ttl_duration(entry.ttl);
        self.by_deadline.insert((entry.deadline, id));
        Some(entry.ttl)
    }

    /// Removes a lease; returns its keys, `None` if it was gone.
    pub fn remove(&mut self, id: LeaseId) -> Option<Vec<Vec<u8>>> {
        let entry = self.entries.remove(&id)?;
        self.by_deadline.remove(&(entry.deadline, id));
        Some(entry.keys.into_iter().collect())
    }

    /// Granted TTL, whole seconds left (rounded down), and keys.
    pub fn status(&self, id: LeaseId) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let entry = self.entries.get(&id)?;
        let left = entry.deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
        Some((entry.ttl, left, entry.keys.iter().cloned().collect()))
    }

    /// Notes that `key` is attached to `id`.
    pub fn attach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.keys.insert(key.to_vec());
        }
    }

    /// Notes that `key` left `id`.
    pub fn detach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.keys.remove(key);
        }
    }

    /// The earliest deadline, if any lease is live.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Leases whose deadline has passed.
    pub fn expired(&self, now: Instant) -> Vec<LeaseId> {
        self.by_deadline.iter().take_while(|(d, _)| *d <= now).map(|(_, id)| *id).collect()
    }

    /// Whether a lease's deadline has passed (it may have been refreshed since
    /// [`Self::expired`] listed it).
    pub fn is_expired(&self, id: LeaseId, now: Instant) -> bool {
        self.entries.get(&id).is_some_and(|e| e.deadline <= now)
    }
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}
