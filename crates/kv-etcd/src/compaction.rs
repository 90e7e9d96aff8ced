//! History compaction, on a cluster this deployment owns.
//!
//! etcd compaction is cluster-wide: it drops the history of every key, not only
//! ours. So the store compacts only when told the cluster is its alone
//! ([`crate::EtcdOptions::owns_cluster`]); on a shared cluster that is the
//! operator's call, through etcd's own `--auto-compaction-*`.

use std::time::Duration;

use ifc_kv::{KvError, KvStore, RangeRequest, Revision};

use crate::EtcdStore;

/// Every `interval`, compacts history older than the last `retention` revisions.
/// Several coordinator nodes may each run one: a compaction another node already
/// did comes back `Compacted`, which is success here. Holds a store without the
/// background handles, so it does not keep its store alive.
pub(crate) async fn compact_history(store: EtcdStore, retention: i64, interval: Duration) {
    let mut done: Revision = 0;
    loop {
        tokio::time::sleep(interval).await;
        let current = match store.range(RangeRequest::key("\0")).await {
            Ok(resp) => resp.revision,
            Err(e) => {
                tracing::warn!(error = %e, "history compaction: cannot read the revision");
                continue;
            }
        };
        let target = current - retention;
        if target <= done {
            continue;
        }
        match store.compact(target).await {
            Ok(()) | Err(KvError::Compacted { .. }) => done = target,
            Err(e) => tracing::warn!(error = %e, target, "history compaction failed"),
        }
    }
}
