//! The event stream: the witness records as they commit (plus claim
//! renewals), resumable from any revision inside the store's history. Built
//! on the store's watch, so a change made through one coordinator node reaches
//! subscribers on every other.

use futures::StreamExt;
use futures::stream::BoxStream;
use ifc_api::{CoordinationEvent, TaskState};
use ifc_kv::{EventKind, KvError, WatchBatch, WatchRequest};
use serde_json::json;

use crate::codec::decode;
use crate::keys::{Key, Keys};
use crate::txn::ClaimValue;
use crate::witness::{self, WitnessOp, WitnessRecord};
use crate::{Coordinator, CoreError};

/// A stream of items, each a result.
pub type CoreStream<T> = BoxStream<'static, Result<T, CoreError>>;

/// A watch failure as a stream item: history gone is its own error.
pub(crate) fn stream_error(e: KvError) -> CoreError {
    match e {
        KvError::Compacted { compact_revision } => CoreError::Compacted { compact_revision },
        e => CoreError::Store(e),
    }
}

impl Coordinator {
    /// Every coordination event after revision `after` (`None`: from now), in commit
    /// order: the witness records as they commit, and claim renewals. A revision
    /// older than the store's history ends the stream with
    /// [`CoreError::Compacted`].
    pub async fn events(
        &self,
        after: Option<i64>,
    ) -> Result<CoreStream<CoordinationEvent>, CoreError> {
        let from = after.map_or(0, |after| after + 1);
        let root = self.keys.root().to_string();
        let keys = self.keys.clone();
        let watch = self.store.watch(WatchRequest::prefix(root).from_revision(from)).await?;
        Ok(watch
            .flat_map(move |batch| {
                let items: Vec<Result<CoordinationEvent, CoreError>> = match batch {
                    Err(e) => vec![Err(stream_error(e))],
                    Ok(batch) => batch_events(&keys, batch),
                };
                futures::stream::iter(items)
            })
            .boxed())
    }
}

/// The event of a witness record committed at `revision`.
fn witnessed(record: WitnessRecord, revision: i64) -> CoordinationEvent {
    let record = witness::committed(record, revision);
    CoordinationEvent {
        revision,
        blocker_id: record.chain.strip_prefix("blocker/").map(String::from),
        op: record.op,
        actor: record.actor,
        task_id: record.task_id,
        swarm_id: record.swarm_id,
        token: record.token,
        outcome: record.outcome,
        detail: record.detail,
        at_ms: record.at_ms,
    }
}

/// The coordination events of one revision.
fn batch_events(keys: &Keys, batch: WatchBatch) -> Vec<Result<CoordinationEvent, CoreError>> {
    let mut out = Vec::new();
    let mut witnessed_tasks = Vec::new();
    let puts = || batch.events.iter().filter(|e| e.kind == EventKind::Put);
    for event in puts() {
        if !matches!(keys.parse(&event.kv.key), Some(Key::WitnessRecord { .. })) {
            continue;
        }
        out.push(decode::<WitnessRecord>(&event.kv).map(|record| {
            witnessed_tasks.extend(record.task_id.clone());
            witnessed(record, batch.revision)
        }));
    }
    // A claim key rewritten without a witnessed change is a renewal.
    for event in puts().filter(|e| e.kv.version > 1) {
        let Some(Key::Claim(task)) = keys.parse(&event.kv.key) else { continue };
        if witnessed_tasks.iter().any(|t| t == task) {
            continue;
        }
        let Ok(claim) = decode::<ClaimValue>(&event.kv) else { continue };
        out.push(Ok(CoordinationEvent {
            revision: batch.revision,
            op: WitnessOp::TaskRenewed.as_str().into(),
            actor: claim.swarm_id.clone(),
            task_id: Some(task.to_string()),
            swarm_id: Some(claim.swarm_id),
            blocker_id: None,
            token: Some(event.kv.create_revision),
            outcome: TaskState::Claimed.as_str().into(),
            detail: json!({"deadline_ms": claim.deadline_ms}),
            at_ms: claim.written_at_ms,
        }));
    }
    out
}
