//! etcd's txn semantics, written once over an abstract key space.
//!
//! The embedded store applies requests to redb tables through this module, and
//! [`crate::ModelStore`] applies them to a `BTreeMap`; the property test checks
//! the model against a real etcd, which pins these semantics to etcd's.

use crate::{
    DeleteResponse, Event, EventKind, KeyRange, KeyValue, KvError, LeaseId, PutResponse,
    RangeRequest, RangeResponse, Revision, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};

/// The storage a txn is applied to. Reads see earlier writes of the same txn.
pub trait KeySpace {
    /// A failure of the storage itself (I/O); it aborts the whole txn.
    type Error;

    /// One key, if present.
    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, Self::Error>;
    /// Keys in the range, ascending, at most `limit` of them (0: all), and how
    /// many matched: all of them when `count_all`, else the walk stops once a
    /// key past the limit is seen (so the count is at most `limit + 1`).
    fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), Self::Error>;
    /// Stores a key (insert or replace).
    fn insert(&mut self, kv: &KeyValue) -> Result<(), Self::Error>;
    /// Removes a key.
    fn remove(&mut self, key: &[u8]) -> Result<(), Self::Error>;
    /// Whether a lease exists.
    fn lease_exists(&mut self, id: LeaseId) -> bool;
}

/// Why applying failed.
#[derive(Debug)]
pub enum ApplyError<E> {
    /// A request-level error: nothing was changed.
    Rejected(KvError),
    /// The storage failed; the caller must discard the partial work.
    Storage(E),
}

impl<E> From<E> for ApplyError<E> {
    fn from(e: E) -> Self {
        ApplyError::Storage(e)
    }
}

/// The outcome of an applied txn.
#[derive(Debug)]
pub struct Applied {
    /// What the caller gets back.
    pub response: TxnResponse,
    /// The changes, each with its previous state (always filled here: watchers
    /// that did not ask for it get it stripped). Empty if nothing changed, in
    /// which case the revision did not advance.
    pub events: Vec<Event>,
}

/// Applies a validated txn at `current` (the store's revision before it). If the
/// branch that runs changes anything, all changes carry `current + 1`.
pub fn apply_txn<S: KeySpace>(
    space: &mut S,
    current: Revision,
    req: &TxnRequest,
) -> Result<Applied, ApplyError<S::Error>> {
    let mut succeeded = true;
    for compare in &req.compares {
        let kv = space.get(&compare.key)?;
        if !compare.holds(kv.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let branch = if succeeded { &req.success } else { &req.failure };

    // Check every lease first, so a missing one rejects the txn before any write.
    for op in branch {
        if let TxnOp::Put(put) = op
            && put.lease != 0
            && !space.lease_exists(put.lease)
        {
            return Err(ApplyError::Rejected(KvError::LeaseNotFound(put.lease)));
        }
    }

    let next = current + 1;
    let mut events = Vec::new();
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let response = match op {
            TxnOp::Range(r) => TxnOpResponse::Range(read(space, r)?),
            TxnOp::Put(put) => {
                let prev = space.get(&put.key)?;
                let kv = KeyValue {
                    key: put.key.clone(),
                    value: put.value.clone(),
                    create_revision: prev.as_ref().map_or(next, |p| p.create_revision),
                    mod_revision: next,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                    lease: put.lease,
                };
                space.insert(&kv)?;
                let prev_kv = if put.prev_kv { prev.clone() } else { None };
                events.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
                TxnOpResponse::Put(PutResponse { revision: 0, prev_kv })
            }
            TxnOp::Delete(del) => {
                let (doomed, _) = space.scan(&del.range, 0, false)?;
                for kv in &doomed {
                    space.remove(&kv.key)?;
                    events.push(delete_event(kv.clone(), next));
                }
                TxnOpResponse::Delete(DeleteResponse {
                    revision: 0,
                    deleted: doomed.len() as i64,
                    prev_kvs: if del.prev_kv { doomed } else { Vec::new() },
                })
            }
        };
        responses.push(response);
    }

    let revision = if events.is_empty() { current } else { next };
    for response in &mut responses {
        match response {
            TxnOpResponse::Range(r) => r.revision = revision,
            TxnOpResponse::Put(p) => p.revision = revision,
            TxnOpResponse::Delete(d) => d.revision = revision,
        }
    }
    Ok(Applied { response: TxnResponse { succeeded, responses, revision }, events })
}

/// Deletes the given keys (those still present) at `current + 1`: a lease's end.
pub fn apply_lease_end<S: KeySpace>(
    space: &mut S,
    current: Revision,
    keys: &[Vec<u8>],
) -> Result<Vec<Event>, S::Error> {
    let mut events = Vec::new();
    for key in keys {
        if let Some(kv) = space.get(key)? {
            space.remove(key)?;
            events.push(delete_event(kv, current + 1));
        }
    }
    Ok(events)
}

/// A read on the key space.
pub fn read<S: KeySpace>(space: &mut S, req: &RangeRequest) -> Result<RangeResponse, S::Error> {
    let limit = usize::try_from(req.limit).unwrap_or(0);
    let (kvs, count) = space.scan(&req.range, limit, req.count)?;
    Ok(RangeResponse { more: kvs.len() < count, count: count as i64, kvs, revision: 0 })
}

fn delete_event(prev: KeyValue, revision: Revision) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue { key: prev.key.clone(), mod_revision: revision, ..KeyValue::default() },
        prev_kv: Some(prev),
    }
}

/// How a set of events moves keys between leases: calls `detach(lease, key)` for
/// every key that left a lease and `attach(lease, key)` for every key that joined
/// one, so a backend can keep its lease → keys index in step with the data.
pub fn track_leases(
    events: &[Event],
    mut detach: impl FnMut(LeaseId, &[u8]),
    mut attach: impl FnMut(LeaseId, &[u8]),
) {
    for event in events {
        if let Some(prev) = &event.prev_kv
            && prev.lease != 0
        {
            detach(prev.lease, &prev.key);
        }
        if event.kv.lease != 0 {
            attach(event.kv.lease, &event.kv.key);
        }
    }
}
