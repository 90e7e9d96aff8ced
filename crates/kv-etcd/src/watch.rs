//! Watches that survive a member's death or a disconnect: each watch task keeps
//! the next revision it owes and re-creates the etcd watch from it on a live
//! member, dropping anything at or below what it already delivered.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use ifc_kv::{Event, EventKind, KeyValue, KvError, Revision, WatchBatch, WatchRequest};
use tokio::sync::mpsc;

use crate::Shared;
use crate::convert::kv_from;

/// How long to wait before re-creating a broken watch, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows one watch, re-creating it after any disconnect (or when the member
/// it is on is marked down) from the revision after the last one delivered.
pub(crate) async fn run_watch(
    shared: Arc<Shared>,
    req: WatchRequest,
    mut next: Revision,
    tx: mpsc::Sender<Result<WatchBatch, KvError>>,
) {
    let (key, end) = req.range.to_etcd();
    let mut backoff = Duration::from_millis(50);
    let mut round = 0usize;
    loop {
        let mut options = WatchOptions::new().with_start_revision(next);
        if !end.is_empty() {
            options = options.with_range(end.clone());
        }
        if req.prev_kv {
            options = options.with_prev_key();
        }
        // Each retry moves one member further down the order, so a member
        // that accepts watches but never delivers is not retried forever.
        let order = shared.members.order();
        let index = order[round % order.len()];
        round += 1;
        let member = &shared.members.list[index];
        let mut down = member.down_signal();
        let created = async {
            let mut watch_client = member.client().await?.watch_client();
            watch_client.watch(key.clone(), Some(options)).await
        };
        let created = tokio::select! {
            created = tokio::time::timeout(shared.attempt_timeout, created) => created,
            () = tx.closed() => return,
        };
        let mut stream = match created {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %member.endpoint, error = %e, "etcd watch: cannot create, retrying");
                if !wait(&tx, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(_) => {
                member.mark_down("no answer to a watch request");
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = down.changed() => break,
                () = tx.closed() => return,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => break,
            };
            backoff = Duration::from_millis(50);
            round = 0;
            if resp.compact_revision() > 0 {
                let compacted = KvError::Compacted { compact_revision: resp.compact_revision() };
                let _ = tx.send(Err(compacted)).await;
                return;
            }
            if resp.canceled() {
                let reason = resp.cancel_reason().to_string();
                // etcd cancels watches on a member that lost its leader
                // (require-leader): resume elsewhere.
                if reason.contains("no leader") {
                    break;
                }
                let _ = tx.send(Err(KvError::Backend(format!("watch canceled: {reason}")))).await;
                return;
            }
            for batch in group_by_revision(resp.events(), next) {
                next = batch.revision + 1;
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
        }
        tracing::debug!(next, endpoint = %member.endpoint, "etcd watch: stream ended, resuming");
        if !wait(&tx, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sleeps for `pause`; false if the watcher went away meanwhile.
async fn wait(tx: &mpsc::Sender<Result<WatchBatch, KvError>>, pause: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        () = tx.closed() => false,
    }
}

/// Splits one etcd watch response into per-revision batches, skipping revisions
/// below `next` (already delivered before a resume).
fn group_by_revision(events: &[etcd_client::Event], next: Revision) -> Vec<WatchBatch> {
    let mut batches: Vec<WatchBatch> = Vec::new();
    for event in events {
        let Some(kv) = event.kv() else { continue };
        let revision = kv.mod_revision();
        if revision < next {
            continue;
        }
        let (kind, kv) = match event.event_type() {
            EventType::Put => (EventKind::Put, kv_from(kv)),
            EventType::Delete => (
                EventKind::Delete,
                KeyValue { key: kv.key().to_vec(), mod_revision: revision, ..KeyValue::default() },
            ),
        };
        let event = Event { kind, kv, prev_kv: event.prev_kv().map(kv_from) };
        match batches.last_mut() {
            Some(batch) if batch.revision == revision => batch.events.push(event),
            _ => batches.push(WatchBatch { revision, events: vec![event] }),
        }
    }
    batches
}
