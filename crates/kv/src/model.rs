//! An in-memory reference model of the contract, for property tests: it is not a
//! backend (no durability, no watch streams, no clock), only the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use crate::apply::{self, ApplyError, KeySpace};
use crate::validate::Limits;
use crate::{
    DeleteRequest, DeleteResponse, KeyRange, KeyValue, KvError, LeaseId, PutRequest, PutResponse,
    RangeRequest, RangeResponse, Revision, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
    WatchBatch,
};

/// The reference model. Lease ids are handed out as 1, 2, 3…; a test that compares
/// with a real backend maps them to the ids that backend gave.
#[derive(Debug, Default)]
pub struct ModelStore {
    keys: BTreeMap<Vec<u8>, KeyValue>,
    leases: BTreeMap<LeaseId, BTreeSet<Vec<u8>>>,
    revision: Revision,
    next_lease: LeaseId,
    history: Vec<WatchBatch>,
    limits: Limits,
}

struct MapSpace<'a>(&'a mut BTreeMap<Vec<u8>, KeyValue>, &'a BTreeMap<LeaseId, BTreeSet<Vec<u8>>>);

impl KeySpace for MapSpace<'_> {
    type Error = Infallible;

    fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, Infallible> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        count_all: bool,
    ) -> Result<(Vec<KeyValue>, usize), Infallible> {
        let matching: Vec<&KeyValue> =
            self.0.iter().filter(|(k, _)| range.contains(k)).map(|(_, v)| v).collect();
        let mut count = matching.len();
        if limit > 0 && !count_all {
            count = count.min(limit + 1);
        }
        let take = if limit == 0 { count } else { limit.min(count) };
        Ok((matching.into_iter().take(take).cloned().collect(), count))
    }

    fn insert(&mut self, kv: &KeyValue) -> Result<(), Infallible> {
        self.0.insert(kv.key.clone(), kv.clone());
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), Infallible> {
        self.0.remove(key);
        Ok(())
    }

    fn lease_exists(&mut self, id: LeaseId) -> bool {
        self.1.contains_key(&id)
    }
}

impl ModelStore {
    /// An empty model at revision 1, like a fresh etcd.
    pub fn new() -> Self {
        ModelStore { revision: 1, next_lease: 1, ..ModelStore::default() }
    }

    /// An empty model whose revision is `revision`: for comparing against a store
    /// that already holds other keys (the test then stays inside its own prefix).
    pub fn starting_at(revision: Revision) -> Self {
        ModelStore { revision, ..ModelStore::new() }
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// See [`crate::KvStore::range`].
    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        let txn = TxnRequest::new().and_then(TxnOp::Range(req.clone()));
        match self.txn(&txn)?.responses.pop() {
            Some(TxnOpResponse::Range(r)) => Ok(r),
            _ => unreachable!("a one-op txn answers with one op"),
        }
    }

    /// See [`crate::KvStore::put`].
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, KvError> {
        let txn = TxnRequest::new().and_then(TxnOp::Put(req.clone()));
        match self.txn(&txn)?.responses.pop() {
            Some(TxnOpResponse::Put(r)) => Ok(r),
            _ => unreachable!("a one-op txn answers with one op"),
        }
    }

    /// See [`crate::KvStore::delete`].
    pub fn delete(&mut self, req: &DeleteRequest) -> Result<DeleteResponse, KvError> {
        let txn = TxnRequest::new().and_then(TxnOp::Delete(req.clone()));
        match self.txn(&txn)?.responses.pop() {
            Some(TxnOpResponse::Delete(r)) => Ok(r),
            _ => unreachable!("a one-op txn answers with one op"),
        }
    }

    /// See [`crate::KvStore::txn`].
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        self.limits.check_txn(req)?;
        let mut space = MapSpace(&mut self.keys, &self.leases);
        let applied = match apply::apply_txn(&mut space, self.revision, req) {
            Ok(applied) => applied,
            Err(ApplyError::Rejected(e)) => return Err(e),
            Err(ApplyError::Storage(never)) => match never {},
        };
        self.record(applied.events);
        Ok(applied.response)
    }

    /// Grants a lease; returns the model's id for it.
    pub fn lease_grant(&mut self) -> LeaseId {
        let id = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(id, BTreeSet::new());
        id
    }

    /// Revokes (or expires) a lease, deleting its keys in one revision.
    pub fn lease_revoke(&mut self, id: LeaseId) -> Result<Revision, KvError> {
        let keys = self.leases.remove(&id).ok_or(KvError::LeaseNotFound(id))?;
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        let mut space = MapSpace(&mut self.keys, &self.leases);
        let Ok(events) = apply::apply_lease_end(&mut space, self.revision, &keys);
        self.record(events);
        Ok(self.revision)
    }

    /// The keys attached to a lease, ascending; `None` if it is gone.
    pub fn lease_keys(&self, id: LeaseId) -> Option<Vec<Vec<u8>>> {
        self.leases.get(&id).map(|keys| keys.iter().cloned().collect())
    }

    /// Every change since (and including) `revision`.
    pub fn history_from(&self, revision: Revision) -> impl Iterator<Item = &WatchBatch> {
        self.history.iter().filter(move |b| b.revision >= revision)
    }

    fn record(&mut self, events: Vec<crate::Event>) {
        if events.is_empty() {
            return;
        }
        self.revision += 1;
        let leases = std::cell::RefCell::new(&mut self.leases);
        apply::track_leases(
            &events,
            |lease, key| {
                if let Some(keys) = leases.borrow_mut().get_mut(&lease) {
                    keys.remove(key);
                }
            },
            |lease, key| {
                if let Some(keys) = leases.borrow_mut().get_mut(&lease) {
                    keys.insert(key.to_vec());
                }
            },
        );
        self.history.push(WatchBatch { revision: self.revision, events });
    }
}
