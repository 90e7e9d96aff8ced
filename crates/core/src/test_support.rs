//! What the crate's own tests share: a store that counts what calls ask of
//! the real store beneath it (reads and txns of the calls run inside
//! [`COUNTED`], and lost races), and a plain task to create.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use ifc_kv::{
    DeleteRequest, DeleteResponse, KvError, KvStore, Lease, LeaseId, LeaseStatus, PutRequest,
    PutResponse, RangeRequest, RangeResponse, Revision, StoreHealth, TxnOp, TxnRequest,
    TxnResponse, WatchRequest, WatchStream,
};

tokio::task_local! {
    /// Set around the one call whose store requests are counted (the
    /// reaper's own reads, on its own task, are not).
    pub(crate) static COUNTED: ();
}

fn counted() -> bool {
    COUNTED.try_with(|_| ()).is_ok()
}

/// The test store, counting the reads and txns of [`COUNTED`] calls.
pub(crate) struct Counting {
    inner: Arc<dyn KvStore>,
    reads: AtomicUsize,
    txns: AtomicUsize,
    /// Reads and txns of everything else (the reaper's).
    pub others: AtomicUsize,
    /// Txns whose compares failed, counted or not: races lost.
    pub lost: AtomicUsize,
    /// Reads (ranges, and range ops in txns) of counted calls that asked for
    /// a linearizable answer: on etcd each costs a consensus round.
    pub linearizable: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn KvStore>) -> Self {
        let zero = AtomicUsize::new;
        Counting {
            inner,
            reads: zero(0),
            txns: zero(0),
            others: zero(0),
            lost: zero(0),
            linearizable: zero(0),
        }
    }

    fn count(&self, counter: &AtomicUsize) {
        let counter = if counted() { counter } else { &self.others };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn count_linearizable<'r>(&self, reads: impl IntoIterator<Item = &'r RangeRequest>) {
        let linearizable = reads.into_iter().filter(|r| !r.serializable).count();
        if counted() {
            self.linearizable.fetch_add(linearizable, Ordering::SeqCst);
        }
    }

    /// (reads, txns) of counted calls since the last take.
    pub fn take(&self) -> (usize, usize) {
        (self.reads.swap(0, Ordering::SeqCst), self.txns.swap(0, Ordering::SeqCst))
    }
}

#[async_trait]
impl KvStore for Counting {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        self.count(&self.reads);
        self.count_linearizable([&req]);
        self.inner.range(req).await
    }
    async fn put(&self, req: PutRequest) -> Result<PutResponse, KvError> {
        self.inner.put(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, KvError> {
        self.inner.delete(req).await
    }
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, KvError> {
        self.count(&self.txns);
        self.count_linearizable(req.success.iter().chain(&req.failure).filter_map(|op| match op {
            TxnOp::Range(range) => Some(range),
            _ => None,
        }));
        let resp = self.inner.txn(req).await;
        if resp.as_ref().is_ok_and(|r| !r.succeeded) {
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
        resp
    }
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, KvError> {
        self.inner.watch(req).await
    }
    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease, KvError> {
        self.inner.lease_grant(ttl_secs).await
    }
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, KvError> {
        self.inner.lease_keep_alive(id).await
    }
    async fn lease_revoke(&self, id: LeaseId) -> Result<Revision, KvError> {
        self.inner.lease_revoke(id).await
    }
    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<LeaseStatus>, KvError> {
        self.inner.lease_time_to_live(id).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        self.inner.compact(revision).await
    }
    async fn health(&self) -> StoreHealth {
        self.inner.health().await
    }
}

/// A ready task of type `review` with no required capabilities.
pub(crate) fn task(id: &str) -> crate::NewTask {
    crate::NewTask {
        task_id: id.into(),
        task_type: "review".into(),
        metadata: serde_json::Value::Null,
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}
