//! The `KvStore` contract: the part of etcd v3's API that IF.coordinator stands on.
//!
//! Every backend (the embedded durable store, etcd) implements [`KvStore`] with the
//! same observable behaviour; the conformance suite in `ifc-testkit` checks that by
//! running one set of tests against each. Where this contract is silent, etcd's
//! behaviour is the rule. The few places where we are stricter than etcd (an
//! inverted range is an error, not an empty answer) are checked here, in
//! [`validate`], before a request reaches any backend, so both backends refuse the
//! same requests with the same error.
//!
//! Revision rules (etcd's):
//! - the store has one revision counter; it starts at 1 on an empty store;
//! - every write that changes something (a put, or a delete that removed at
//!   least one key, or a txn whose chosen branch did either) commits at
//!   `revision + 1`, and all its changes share that revision;
//! - a request that changes nothing (a read, a delete of nothing, a txn whose
//!   branch only reads) leaves the revision alone and reports the current one;
//! - a key's `create_revision` is the revision that created it (since it last did
//!   not exist), `mod_revision` the last revision that put it, and `version`
//!   counts puts since creation (1 after creation). A deleted key is gone: a later
//!   put creates it anew with version 1.

#![deny(missing_docs)]

pub mod apply;
mod model;
mod types;
pub mod validate;

pub use model::ModelStore;
pub use types::*;

use async_trait::async_trait;
use futures::stream::BoxStream;

/// A stream of watch batches: each item holds every matching event of exactly one
/// revision, in increasing revision order. It ends after yielding an error.
pub type WatchStream = BoxStream<'static, Result<WatchBatch, KvError>>;

/// The storage contract. Every method is atomic and, once it returns `Ok`, durable
/// (the embedded store has fsynced; etcd has committed through raft).
///
/// Implementations must be cheap to share: callers hold them in an `Arc`.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// Reads one key, a prefix or a span. Keys come back in ascending byte order;
    /// `limit` (if non-zero) caps how many, with `more` telling whether any were
    /// left out and `count` giving the total that matched.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError>;

    /// Writes one key, optionally attached to a lease (which must exist: else
    /// [`KvError::LeaseNotFound`] and nothing is written).
    async fn put(&self, req: PutRequest) -> Result<PutResponse, KvError>;

    /// Deletes one key, a prefix or a span. Deleting nothing is not an error and
    /// does not advance the revision.
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, KvError>;

    /// If every compare holds, applies `success`, else `failure`, atomically and in
    /// order (a range after a put in the same branch sees the put). A compare on a
    /// missing key sees version, create_revision, mod_revision and lease as 0, and
    /// a value compare on a missing key is always false (etcd's rule).
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, KvError>;

    /// Watches a key or a prefix from `start_revision` (0: from the next revision).
    /// The stream is ordered, has no duplicates and no gaps, and never splits one
    /// revision's events across items. If `start_revision` is older than the
    /// compaction point, the stream's first item is [`KvError::Compacted`].
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, KvError>;

    /// Grants a lease that lives `ttl_secs` seconds unless kept alive.
    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease, KvError>;

    /// Restarts a lease's countdown; returns the TTL granted. A lease that expired
    /// or was revoked gives [`KvError::LeaseNotFound`].
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, KvError>;

    /// Revokes a lease: every key attached to it is deleted in one revision.
    async fn lease_revoke(&self, id: LeaseId) -> Result<Revision, KvError>;

    /// A lease's granted and remaining TTL and its keys; `None` if it is gone.
    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<LeaseStatus>, KvError>;

    /// Drops watch history older than `revision`: a watch may then start at
    /// `revision` or later. A revision in the future gives
    /// [`KvError::FutureRevision`]; one at or below the current compaction point
    /// gives [`KvError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<(), KvError>;

    /// Probes whether the store can serve requests now (for a readiness check).
    /// The default makes one current read: a store of one member.
    async fn health(&self) -> StoreHealth {
        let answers = self.range(RangeRequest::key("\0").with_limit(1)).await.is_ok();
        StoreHealth { members: 1, answering: usize::from(answers), quorum: answers }
    }
}
