//! The reaper: records claims that lapsed and swarms that expired.
//!
//! The store does the deleting (a claim lease or a swarm's liveness lease runs
//! out); every coordinator node runs a reaper that watches for those deletes and
//! writes what they mean (the task back in the pool with attempts + 1, or in
//! dead-letter; a `swarm_expired` witness record) with the usual CAS, so nodes
//! racing on one event are harmless and a dead node's events are handled by the
//! others. Correctness never waits for it: a claim of a lapsed task records the
//! lapse itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use ifc_kv::{EventKind, KvError, RangeRequest, WatchRequest};
use tokio::task::JoinHandle;

use crate::Coordinator;
use crate::keys::Key;
use crate::snapshot_cache::SnapshotCache;

/// A running reaper; dropping it stops it.
pub struct Reaper {
    task: JoinHandle<()>,
    coordinator: Arc<Coordinator>,
    /// The snapshot cache generation its watch feeds (0: none yet).
    feeding: Arc<AtomicU64>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.task.abort();
        // At once: the aborted task's `Feeding` guard runs only when tokio
        // drops it, and until then the cache would be served unfed.
        self.coordinator.snapshot_cache().stop(self.feeding.load(Ordering::Acquire));
    }
}

/// This reaper's watch feeding the node's snapshot cache; when dropped (the
/// watch broke, or the reaper stopped), the cache stops serving, since
/// unfed it would only go stale.
struct Feeding<'a> {
    cache: &'a SnapshotCache,
    generation: u64,
}

impl Drop for Feeding<'_> {
    fn drop(&mut self) {
        self.cache.stop(self.generation);
    }
}

impl Reaper {
    /// Sweeps the store once (lapses that happened while no reaper ran), then
    /// follows deletes until dropped.
    pub fn spawn(coordinator: Arc<Coordinator>) -> Reaper {
        let feeding = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(coordinator.clone(), feeding.clone()));
        Reaper { task, coordinator, feeding }
    }
}

async fn run(coordinator: Arc<Coordinator>, generation: Arc<AtomicU64>) {
    let root = coordinator.keys().root().to_string();
    loop {
        // Watch before sweeping, so nothing falls between the two.
        let watch = coordinator.store().watch(WatchRequest::prefix(root.clone())).await;
        let mut stream = match watch {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "reaper: cannot watch; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = coordinator.reap_all().await {
            tracing::warn!(error = %e, "reaper: sweep failed");
        }
        // The same watch keeps this node's snapshot cache current, from the
        // store's revision now (the watch began before it).
        let cache = coordinator.snapshot_cache();
        let root_key = RangeRequest::key(coordinator.keys().root()).count_only();
        let feeding = match coordinator.store().range(root_key).await {
            Ok(now) => Feeding { cache, generation: cache.start(now.revision) },
            Err(e) => {
                // Watch again rather than run a whole watch without the cache.
                tracing::warn!(error = %e, "reaper: no revision; watching again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        generation.store(feeding.generation, Ordering::Release);
        while let Some(batch) = stream.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(KvError::Compacted { .. }) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reaper: watch ended");
                    break;
                }
            };
            cache.apply(feeding.generation, &batch);
            for event in batch.events.iter().filter(|e| e.kind == EventKind::Delete) {
                let result = match coordinator.keys().parse(&event.kv.key) {
                    Some(
                        Key::Claim(task_id) | Key::Holder(task_id) | Key::Holding { task_id, .. },
                    ) if coordinator.may_have_lapsed(task_id) => {
                        coordinator.reap_task(task_id).await.map(drop)
                    }
                    Some(Key::Swarm(swarm_id)) => {
                        coordinator.reap_swarm(swarm_id).await.map(|expired| {
                            if expired {
                                tracing::info!(
                                    swarm_id,
                                    "swarm expired: no heartbeat within its TTL"
                                );
                            }
                        })
                    }
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    let key = String::from_utf8_lossy(&event.kv.key);
                    tracing::warn!(error = %e, %key, "reaper: could not record a lapse");
                }
            }
        }
        drop(feeding);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
