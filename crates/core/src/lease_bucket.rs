//! Shared claim and push leases: everything one node attaches in one second
//! shares one lease per TTL, so the hot path grants a lease once a second, not
//! once per claim. Claims therefore lapse between their timeout and one second
//! after it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ifc_kv::{KvStore, LeaseId};

use crate::{CoreError, now_ms};

struct Bucket {
    ttl: i64,
    lease: LeaseId,
    opened: Instant,
    deadline_ms: i64,
}

/// The leases new claims and pushes attach to, one per TTL, each replaced
/// after a second.
#[derive(Default)]
pub(crate) struct LeaseBuckets {
    buckets: Mutex<Vec<Bucket>>,
}

impl LeaseBuckets {
    /// A lease lasting at least `timeout_ms`, and the earliest time it can
    /// expire.
    pub async fn lease(
        &self,
        store: &dyn KvStore,
        timeout_ms: u64,
    ) -> Result<(LeaseId, i64), CoreError> {
        let ttl = timeout_ms.div_ceil(1000) as i64 + 1;
        {
            let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = buckets.iter().find(|b| b.ttl == ttl)
                && b.opened.elapsed() < Duration::from_secs(1)
            {
                return Ok((b.lease, b.deadline_ms));
            }
        }
        let started_ms = now_ms();
        let lease = store.lease_grant(ttl).await?;
        let deadline_ms = started_ms + lease.ttl * 1000;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Tasks choose their own leases: drop every bucket past its second,
        // so the list holds only the TTLs in use.
        buckets.retain(|b| b.ttl != ttl && b.opened.elapsed() < Duration::from_secs(1));
        buckets.push(Bucket { ttl, lease: lease.id, opened: Instant::now(), deadline_ms });
        Ok((lease.id, deadline_ms))
    }

    /// Drops a cached lease that turned out to be gone.
    pub fn forget(&self, lease: LeaseId) {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).retain(|b| b.lease != lease);
    }
}
