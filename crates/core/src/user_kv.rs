//! The user KV space behind the seed's `EventBus`: get, put, delete, txn and
//! watch on keys confined to `{namespace}/kv/` ([`Keys::user_kv`]).
//!
//! Confinement is by construction: every user key is the prefix followed by
//! the user's string, byte for byte. Stores keep keys as opaque bytes (no path
//! normalisation), so `..`, a leading `/` or an encoded slash is just part of
//! a key under the prefix, never a way out of it; and no coordinator key
//! starts with `kv/`.
//!
//! Not witnessed: these are the user's raw keys, not coordination state (the
//! seed's EventBus had no audit of raw puts either). A `kv` witness chain
//! would make every put a compare-and-swap on one chain head, serialising all
//! KV writers. What changed is visible in the KV watch, within the history
//! retention.
//!
//! Every request is checked against the store's limits here, before anything
//! is sent, so both backends refuse the same input with
//! [`CoreError::Invalid`] and nothing is written.

use std::sync::Arc;

use futures::StreamExt;
use ifc_kv::validate::Limits;
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, EventKind, KeyValue, KvError, KvStore,
    PutRequest, RangeRequest, TxnOp, TxnOpResponse, TxnRequest, WatchBatch, WatchRequest,
};

use crate::events::{CoreStream, stream_error};
use crate::{Coordinator, CoreError};

/// Most entries one read returns (and its default): bounds the answer's size.
pub const MAX_KV_PAGE: i64 = 1000;

/// One user key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    /// The key as the user gave it (without the prefix).
    pub key: String,
    /// The value.
    pub value: String,
    /// Revision that created the key.
    pub create_revision: i64,
    /// Revision of its last put.
    pub mod_revision: i64,
    /// Puts since creation.
    pub version: i64,
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvPage {
    /// The keys, in key order.
    pub entries: Vec<KvEntry>,
    /// Whether the limit left keys out.
    pub more: bool,
    /// The store revision the read saw.
    pub revision: i64,
}

/// What a compare looks at, and the value it compares with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCompareTarget {
    /// The value (a missing key never compares true).
    Value(String),
    /// The version (0 if missing).
    Version(i64),
    /// The create revision (0 if missing).
    CreateRevision(i64),
    /// The mod revision (0 if missing).
    ModRevision(i64),
}

/// One condition of a txn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCompare {
    /// The user key.
    pub key: String,
    /// How it compares.
    pub op: CompareOp,
    /// What it compares.
    pub target: KvCompareTarget,
}

/// One operation of a txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Writes a key.
    Put {
        /// The user key.
        key: String,
        /// The value.
        value: String,
    },
    /// Deletes a key.
    Delete {
        /// The user key.
        key: String,
    },
    /// Reads a key.
    Get {
        /// The user key.
        key: String,
    },
}

/// A transaction on user keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvTxn {
    /// Conditions, all of which must hold.
    pub compare: Vec<KvCompare>,
    /// Applied when they do.
    pub success: Vec<KvOp>,
    /// Applied otherwise.
    pub failure: Vec<KvOp>,
}

/// The answer to a txn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvTxnOutcome {
    /// Whether every compare held.
    pub succeeded: bool,
    /// The revision of the write, or the current one.
    pub revision: i64,
    /// One per `Get` of the branch that ran, in order: the entry, or `None`.
    pub responses: Vec<Option<KvEntry>>,
}

/// One change to a user key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvChange {
    /// Put or delete.
    pub kind: EventKind,
    /// The user key.
    pub key: String,
    /// The new value (puts only).
    pub value: Option<String>,
    /// The revision of the change.
    pub mod_revision: i64,
}

/// Every change under a watched prefix in one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvChanges {
    /// The revision.
    pub revision: i64,
    /// Its changes, in the order it applied them.
    pub events: Vec<KvChange>,
}

/// The user KV space of one coordinator's namespace.
#[derive(Clone)]
pub struct UserKv {
    store: Arc<dyn KvStore>,
    prefix: String,
    limits: Limits,
}

impl Coordinator {
    /// The user KV space (`{namespace}/kv/`), for the seed's `EventBus`.
    pub fn user_kv(&self) -> UserKv {
        UserKv { store: self.store.clone(), prefix: self.keys.user_kv(), limits: Limits::default() }
    }
}

fn invalid(reason: impl Into<String>) -> CoreError {
    CoreError::Invalid { field: "kv", reason: reason.into() }
}

/// The store's refusal of a request as the core's typed error.
fn refused(e: KvError) -> CoreError {
    match e {
        KvError::InvalidArgument(reason) => invalid(reason),
        e => CoreError::Store(e),
    }
}

impl UserKv {
    /// The stored key of a user key (which must not be empty).
    fn stored(&self, key: &str) -> Result<Vec<u8>, CoreError> {
        if key.is_empty() {
            return Err(invalid("empty key"));
        }
        self.stored_prefix(key)
    }

    /// The stored prefix of a user prefix (empty: every user key).
    fn stored_prefix(&self, prefix: &str) -> Result<Vec<u8>, CoreError> {
        let budget = self.limits.max_key_bytes.saturating_sub(self.prefix.len());
        if prefix.len() > budget {
            return Err(invalid(format!(
                "key of {} bytes exceeds the limit of {budget}",
                prefix.len()
            )));
        }
        Ok(format!("{}{prefix}", self.prefix).into_bytes())
    }

    fn entry(&self, kv: &KeyValue) -> KvEntry {
        KvEntry {
            key: self.user_key(&kv.key),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }

    fn user_key(&self, stored: &[u8]) -> String {
        let key = stored.strip_prefix(self.prefix.as_bytes()).unwrap_or(stored);
        String::from_utf8_lossy(key).into_owned()
    }

    /// One key (`limit` ignored).
    pub async fn get(&self, key: &str) -> Result<KvPage, CoreError> {
        let answer =
            self.store.range(RangeRequest::key(self.stored(key)?)).await.map_err(refused)?;
        Ok(self.page(answer))
    }

    /// Every key under `prefix`, in key order, at most `limit` (1 ..=
    /// [`MAX_KV_PAGE`], default the maximum).
    pub async fn list(&self, prefix: &str, limit: Option<i64>) -> Result<KvPage, CoreError> {
        let limit = limit.unwrap_or(MAX_KV_PAGE);
        if !(1..=MAX_KV_PAGE).contains(&limit) {
            return Err(invalid(format!("limit must be 1..={MAX_KV_PAGE}, not {limit}")));
        }
        let request = RangeRequest::prefix(self.stored_prefix(prefix)?).with_limit(limit);
        Ok(self.page(self.store.range(request).await.map_err(refused)?))
    }

    fn page(&self, answer: ifc_kv::RangeResponse) -> KvPage {
        KvPage {
            entries: answer.kvs.iter().map(|kv| self.entry(kv)).collect(),
            more: answer.more,
            revision: answer.revision,
        }
    }

    /// Writes `value` under `key`; the revision of the write.
    pub async fn put(&self, key: &str, value: &str) -> Result<i64, CoreError> {
        let request = PutRequest::new(self.stored(key)?, value.as_bytes());
        self.limits.check_put(&request).map_err(refused)?;
        Ok(self.store.put(request).await.map_err(refused)?.revision)
    }

    /// Deletes `key`: how many keys went (0 or 1) and the revision.
    pub async fn delete(&self, key: &str) -> Result<(i64, i64), CoreError> {
        let answer =
            self.store.delete(DeleteRequest::key(self.stored(key)?)).await.map_err(refused)?;
        Ok((answer.deleted, answer.revision))
    }

    /// Runs a transaction on user keys.
    pub async fn txn(&self, txn: &KvTxn) -> Result<KvTxnOutcome, CoreError> {
        let request = self.txn_request(txn)?;
        let answer = self.store.txn(request).await.map_err(refused)?;
        let responses = answer
            .responses
            .iter()
            .filter_map(|r| match r {
                TxnOpResponse::Range(r) => Some(r.kvs.first().map(|kv| self.entry(kv))),
                _ => None,
            })
            .collect();
        Ok(KvTxnOutcome { succeeded: answer.succeeded, revision: answer.revision, responses })
    }

    /// The store txn of a user txn, checked against every limit.
    fn txn_request(&self, txn: &KvTxn) -> Result<TxnRequest, CoreError> {
        let max_ops = self.limits.max_txn_ops;
        // etcd counts compares against --max-txn-ops too.
        if txn.compare.len() > max_ops {
            return Err(invalid(format!(
                "txn has {} compares, more than the limit of {max_ops}",
                txn.compare.len()
            )));
        }
        // One txn is one store request: its keys and values together stay
        // inside the value limit, which is inside etcd's request limit.
        let bytes: usize =
            txn.compare.iter().map(|c| c.key.len() + compare_bytes(c)).sum::<usize>()
                + txn.success.iter().chain(&txn.failure).map(op_bytes).sum::<usize>();
        if bytes > self.limits.max_value_bytes {
            return Err(invalid(format!(
                "txn carries {bytes} bytes of keys and values, more than the limit of {}",
                self.limits.max_value_bytes
            )));
        }
        let mut request = TxnRequest::new();
        for c in &txn.compare {
            let target = match &c.target {
                KvCompareTarget::Value(v) => CompareTarget::Value(v.clone().into_bytes()),
                KvCompareTarget::Version(v) => CompareTarget::Version(*v),
                KvCompareTarget::CreateRevision(r) => CompareTarget::CreateRevision(*r),
                KvCompareTarget::ModRevision(r) => CompareTarget::ModRevision(*r),
            };
            request.compares.push(Compare::new(self.stored(&c.key)?, c.op, target));
        }
        request.success = self.branch(&txn.success)?;
        request.failure = self.branch(&txn.failure)?;
        self.limits.check_txn(&request).map_err(refused)?;
        Ok(request)
    }

    fn branch(&self, ops: &[KvOp]) -> Result<Vec<TxnOp>, CoreError> {
        ops.iter()
            .map(|op| {
                Ok(match op {
                    KvOp::Put { key, value } => {
                        TxnOp::Put(PutRequest::new(self.stored(key)?, value.as_bytes()))
                    }
                    KvOp::Delete { key } => TxnOp::Delete(DeleteRequest::key(self.stored(key)?)),
                    KvOp::Get { key } => TxnOp::Range(RangeRequest::key(self.stored(key)?)),
                })
            })
            .collect()
    }

    /// Every change under `prefix` after revision `after` (`None`: from now),
    /// one item per revision. A revision older than the store's history ends
    /// the stream with [`CoreError::Compacted`].
    pub async fn watch(
        &self,
        prefix: &str,
        after: Option<i64>,
    ) -> Result<CoreStream<KvChanges>, CoreError> {
        let from = after.map_or(0, |after| after.saturating_add(1));
        let request = WatchRequest::prefix(self.stored_prefix(prefix)?).from_revision(from);
        let watch = self.store.watch(request).await.map_err(refused)?;
        let space = self.clone();
        Ok(watch
            .map(move |batch| batch.map(|batch| space.changes(batch)).map_err(stream_error))
            .boxed())
    }

    fn changes(&self, batch: WatchBatch) -> KvChanges {
        let events = batch
            .events
            .iter()
            .map(|e| KvChange {
                kind: e.kind,
                key: self.user_key(&e.kv.key),
                value: (e.kind == EventKind::Put)
                    .then(|| String::from_utf8_lossy(&e.kv.value).into_owned()),
                mod_revision: e.kv.mod_revision,
            })
            .collect();
        KvChanges { revision: batch.revision, events }
    }
}

fn compare_bytes(c: &KvCompare) -> usize {
    match &c.target {
        KvCompareTarget::Value(v) => v.len(),
        _ => 8,
    }
}

fn op_bytes(op: &KvOp) -> usize {
    match op {
        KvOp::Put { key, value } => key.len() + value.len(),
        KvOp::Delete { key } | KvOp::Get { key } => key.len(),
    }
}
