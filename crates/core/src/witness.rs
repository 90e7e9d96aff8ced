//! The witness log: every state change's audit record, written in the same store
//! transaction as the change, chained per entity so tampering shows.
//!
//! Chains: one per task (`task/<id>`) and one per swarm (`swarm/<id>`). A record's
//! hash is `sha256(prev_hash ‖ canonical JSON of the record without its hash)`;
//! the chain's head (`seq`, `hash`) is its own key, written in the same txn. So
//! unrelated tasks never contend on one key, and [`verify`] finds any edited,
//! removed, inserted or reordered record: an edit breaks the hash, a removal or
//! insertion the sequence or the link, a reorder the link, a removed tail the
//! head. Commit order across chains is each record's store revision.
//!
//! A claim's token is the revision of the txn that creates the claim, and a
//! record is hashed before that txn commits, so `task_claimed` and
//! `task_pushed` records are stored with no token; [`committed`] fills it in
//! from the commit revision, the one place every reader (logger, queries,
//! event stream) goes through.

use std::sync::Arc;

use futures::{Stream, TryStreamExt, stream};

use ifc_api::WitnessQuery;
use ifc_kv::{KeyValue, KvStore, PutRequest, TxnOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ifc_api::{Tampering, WitnessRecord};

use crate::codec::decode;
use crate::keys::{Key, Keys, task_chain};
use crate::paging::Pager;
use crate::{CoreError, validate};

pub use crate::witness_verify::{ChainCheck, VerifyPage, verify_chain};

/// Receives every witness record after its transaction committed (the seed's
/// `witness_logger`).
pub type WitnessLogger = Arc<dyn Fn(&WitnessRecord) + Send + Sync>;

/// Every operation a witness record names. On the wire (the record's `op`)
/// each is its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessOp {
    /// A task was created.
    TaskCreated,
    /// A swarm claimed a task.
    TaskClaimed,
    /// The holder completed a task.
    TaskCompleted,
    /// The holder failed a task, which returns to the pool.
    TaskFailed,
    /// A task used its last attempt.
    TaskDeadLettered,
    /// A lapsed claim's task returned to the pool.
    TaskRequeued,
    /// A task was cancelled.
    TaskCancelled,
    /// The holder gave a task back unfinished; it returned to the pool
    /// without using an attempt.
    TaskReleased,
    /// An operator put a dead task back in the pool with its attempts reset.
    TaskRetried,
    /// A claim was renewed (event stream only; never stored).
    TaskRenewed,
    /// A task was pushed to a swarm's inbox.
    TaskPushed,
    /// The swarm acknowledged a push.
    PushAcked,
    /// The swarm declined a push.
    PushDeclined,
    /// A push was not acknowledged in time.
    PushExpired,
    /// A swarm raised a blocker.
    BlockerRaised,
    /// A helper was assigned to a blocker.
    BlockerAssigned,
    /// A blocker was resolved.
    BlockerResolved,
    /// A swarm registered.
    SwarmRegistered,
    /// A swarm re-registered with its token.
    SwarmRefreshed,
    /// A swarm unregistered.
    SwarmLeft,
    /// A swarm's liveness lease ran out.
    SwarmExpired,
}

impl WitnessOp {
    const ALL: [WitnessOp; 21] = [
        WitnessOp::TaskCreated,
        WitnessOp::TaskClaimed,
        WitnessOp::TaskCompleted,
        WitnessOp::TaskFailed,
        WitnessOp::TaskDeadLettered,
        WitnessOp::TaskRequeued,
        WitnessOp::TaskCancelled,
        WitnessOp::TaskReleased,
        WitnessOp::TaskRetried,
        WitnessOp::TaskRenewed,
        WitnessOp::TaskPushed,
        WitnessOp::PushAcked,
        WitnessOp::PushDeclined,
        WitnessOp::PushExpired,
        WitnessOp::BlockerRaised,
        WitnessOp::BlockerAssigned,
        WitnessOp::BlockerResolved,
        WitnessOp::SwarmRegistered,
        WitnessOp::SwarmRefreshed,
        WitnessOp::SwarmLeft,
        WitnessOp::SwarmExpired,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WitnessOp::TaskCreated => "task_created",
            WitnessOp::TaskClaimed => "task_claimed",
            WitnessOp::TaskCompleted => "task_completed",
            WitnessOp::TaskFailed => "task_failed",
            WitnessOp::TaskDeadLettered => "task_dead_lettered",
            WitnessOp::TaskRequeued => "task_requeued",
            WitnessOp::TaskCancelled => "task_cancelled",
            WitnessOp::TaskReleased => "task_released",
            WitnessOp::TaskRetried => "task_retried",
            WitnessOp::TaskRenewed => "task_renewed",
            WitnessOp::TaskPushed => "task_pushed",
            WitnessOp::PushAcked => "push_acked",
            WitnessOp::PushDeclined => "push_declined",
            WitnessOp::PushExpired => "push_expired",
            WitnessOp::BlockerRaised => "blocker_raised",
            WitnessOp::BlockerAssigned => "blocker_assigned",
            WitnessOp::BlockerResolved => "blocker_resolved",
            WitnessOp::SwarmRegistered => "swarm_registered",
            WitnessOp::SwarmRefreshed => "swarm_refreshed",
            WitnessOp::SwarmLeft => "swarm_left",
            WitnessOp::SwarmExpired => "swarm_expired",
        }
    }

    /// The op of a wire name; `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<WitnessOp> {
        WitnessOp::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether the record's token is its own commit revision (the txn that
    /// creates the claim), filled in by [`committed`].
    pub fn token_is_commit_revision(self) -> bool {
        matches!(self, WitnessOp::TaskClaimed | WitnessOp::TaskPushed)
    }
}

/// A stored record as committed at `revision`: its revision set, and the
/// claim token filled in where it is that revision.
pub fn committed(mut record: WitnessRecord, revision: i64) -> WitnessRecord {
    record.revision = revision;
    let token_is_revision =
        WitnessOp::parse(&record.op).is_some_and(WitnessOp::token_is_commit_revision);
    if token_is_revision && record.token.is_none() {
        record.token = Some(revision);
    }
    record
}

/// Where committed records go: the logger, if one is set.
#[derive(Clone, Default)]
pub(crate) struct WitnessSink {
    logger: Option<WitnessLogger>,
}

impl WitnessSink {
    /// A sink that hands records to `logger`.
    pub fn new(logger: WitnessLogger) -> Self {
        WitnessSink { logger: Some(logger) }
    }

    /// Hands a record committed at `revision` to the logger.
    pub fn log(&self, record: WitnessRecord, revision: i64) {
        if let Some(logger) = &self.logger {
            logger(&committed(record, revision));
        }
    }
}

/// The hash that precedes a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A chain's head as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Last sequence number (0: empty chain).
    pub seq: u64,
    /// Last hash ([`GENESIS`] for an empty chain).
    pub hash: String,
}

impl Head {
    /// The head of an empty chain.
    pub fn empty() -> Self {
        Head { seq: 0, hash: GENESIS.into() }
    }

    /// Decodes a stored head; a missing key is an empty chain.
    pub fn from_kv(kv: Option<&KeyValue>) -> Result<Self, CoreError> {
        match kv {
            None => Ok(Head::empty()),
            Some(kv) => crate::codec::decode(kv),
        }
    }
}

/// What a caller fills in; [`Entry::seal`] adds chain, seq and hashes.
#[derive(Clone, Debug)]
pub struct Entry {
    /// See [`WitnessRecord::op`].
    pub op: WitnessOp,
    /// See [`WitnessRecord::actor`].
    pub actor: String,
    /// See [`WitnessRecord::task_id`].
    pub task_id: Option<String>,
    /// See [`WitnessRecord::swarm_id`].
    pub swarm_id: Option<String>,
    /// See [`WitnessRecord::token`].
    pub token: Option<i64>,
    /// See [`WitnessRecord::outcome`].
    pub outcome: String,
    /// See [`WitnessRecord::detail`].
    pub detail: serde_json::Value,
}

impl Entry {
    /// A swarm acting on a task it holds (complete, fail, ack, decline).
    pub fn by_holder(
        op: WitnessOp,
        swarm_id: &str,
        task_id: &str,
        token: i64,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Entry {
        Entry {
            op,
            actor: swarm_id.into(),
            task_id: Some(task_id.into()),
            swarm_id: Some(swarm_id.into()),
            token: Some(token),
            outcome: outcome.into(),
            detail,
        }
    }
}

/// The hash of a record: one SHA-256 over its `prev_hash` followed by its
/// JSON with `hash` empty and `revision` 0 (so left out), in field order.
pub fn hash_of(record: &WitnessRecord) -> String {
    let mut hasher = Sha256::new();
    hasher.update(record.prev_hash.as_bytes());
    serde_json::to_writer(&mut hasher, &Unhashed::of(record))
        .expect("strings, numbers and a JSON value serialize into a hasher");
    crate::hex(&hasher.finalize())
}

/// A record as its hash sees it, borrowed: serializes exactly as a
/// `WitnessRecord` with `hash` empty and `revision` 0 does (pinned by a
/// test), without cloning the record for every seal and check.
#[derive(Serialize)]
struct Unhashed<'r> {
    chain: &'r str,
    seq: u64,
    op: &'r str,
    actor: &'r str,
    task_id: &'r Option<String>,
    swarm_id: &'r Option<String>,
    token: Option<i64>,
    outcome: &'r str,
    detail: &'r serde_json::Value,
    at_ms: i64,
    prev_hash: &'r str,
    hash: &'static str,
}

impl<'r> Unhashed<'r> {
    fn of(record: &'r WitnessRecord) -> Self {
        let WitnessRecord {
            chain,
            seq,
            op,
            actor,
            task_id,
            swarm_id,
            token,
            outcome,
            detail,
            at_ms,
            prev_hash,
            hash: _,
            revision: _,
        } = record;
        Unhashed {
            chain,
            seq: *seq,
            op,
            actor,
            task_id,
            swarm_id,
            token: *token,
            outcome,
            detail,
            at_ms: *at_ms,
            prev_hash,
            hash: "",
        }
    }
}

impl Entry {
    /// Turns the entry into the next record of `chain` after `head`, and the txn
    /// ops that write it and the new head.
    pub fn seal(
        self,
        keys: &Keys,
        chain: &str,
        head: &Head,
    ) -> Result<(WitnessRecord, Vec<TxnOp>), CoreError> {
        let mut record = WitnessRecord {
            chain: chain.into(),
            seq: head.seq + 1,
            op: self.op.as_str().into(),
            actor: self.actor,
            task_id: self.task_id,
            swarm_id: self.swarm_id,
            token: self.token,
            outcome: self.outcome,
            detail: crate::acting::mark(self.detail),
            at_ms: crate::now_ms(),
            prev_hash: head.hash.clone(),
            hash: String::new(),
            revision: 0,
        };
        record.hash = hash_of(&record);
        let new_head = Head { seq: record.seq, hash: record.hash.clone() };
        let ops = vec![
            TxnOp::Put(PutRequest::new(
                keys.witness_record(chain, record.seq),
                crate::codec::encode(&record)?,
            )),
            TxnOp::Put(PutRequest::new(keys.witness_head(chain), crate::codec::encode(&new_head)?)),
        ];
        Ok((record, ops))
    }
}

/// A stored record with its commit revision, as readers see it.
pub(crate) fn stored(kv: &KeyValue) -> Result<WitnessRecord, CoreError> {
    let record: WitnessRecord = decode(kv)?;
    Ok(committed(record, kv.mod_revision))
}

/// Witness records matching `query`, in commit order. The store is read page
/// by page; only the matching records are kept.
pub(crate) async fn query(
    store: &dyn KvStore,
    keys: &Keys,
    query: &WitnessQuery,
) -> Result<Vec<WitnessRecord>, CoreError> {
    let mut pager = match &query.task_id {
        Some(task_id) => {
            validate::id("task_id", task_id)?;
            Pager::prefix(keys.witness_records(&task_chain(task_id)))
        }
        None => Pager::prefix(keys.witness_all()),
    };
    let wanted = |r: &WitnessRecord| {
        query.swarm_id.as_ref().is_none_or(|s| r.swarm_id.as_ref() == Some(s) || r.actor == *s)
            && query.from_ms.is_none_or(|from| r.at_ms >= from)
            && query.to_ms.is_none_or(|to| r.at_ms < to)
    };
    let mut records = Vec::new();
    while let Some(page) = pager.next_page(store).await? {
        for kv in &page {
            if let Some(Key::WitnessRecord { .. }) = keys.parse(&kv.key) {
                let record = stored(kv)?;
                if wanted(&record) {
                    records.push(record);
                }
            }
        }
    }
    records.sort_by(|a, b| (a.revision, &a.chain, a.seq).cmp(&(b.revision, &b.chain, b.seq)));
    Ok(records)
}

/// Every witness record, chain by chain (key order), one store page at a
/// time: memory stays flat however long the log is. Each record carries its
/// commit `revision`, which orders records across chains.
pub fn export_stream(
    store: Arc<dyn KvStore>,
    keys: Keys,
) -> impl Stream<Item = Result<WitnessRecord, CoreError>> + Send + 'static {
    let pager = Pager::prefix(keys.witness_all());
    stream::try_unfold((store, keys, pager), |(store, keys, mut pager)| async move {
        let Some(page) = pager.next_page(&*store).await? else {
            return Ok::<_, CoreError>(None);
        };
        let records: Vec<Result<WitnessRecord, CoreError>> = page
            .iter()
            .filter(|kv| matches!(keys.parse(&kv.key), Some(Key::WitnessRecord { .. })))
            .map(stored)
            .collect();
        Ok(Some((stream::iter(records), (store, keys, pager))))
    })
    .try_flatten()
}

/// Every chain's checkpoint (the last pruned record's seq and hash), one
/// store page at a time.
pub fn checkpoint_stream(
    store: Arc<dyn KvStore>,
    keys: Keys,
) -> impl Stream<Item = Result<Checkpoint, CoreError>> + Send + 'static {
    let pager = Pager::prefix(keys.witness_all());
    stream::try_unfold((store, keys, pager), |(store, keys, mut pager)| async move {
        let Some(page) = pager.next_page(&*store).await? else {
            return Ok::<_, CoreError>(None);
        };
        let mut checkpoints = Vec::new();
        for kv in &page {
            if let Some(Key::WitnessCheckpoint { chain }) = keys.parse(&kv.key) {
                let head: Head = decode(kv)?;
                checkpoints.push(Ok(Checkpoint {
                    chain: chain.into(),
                    seq: head.seq,
                    hash: head.hash,
                }));
            }
        }
        Ok(Some((stream::iter(checkpoints), (store, keys, pager))))
    })
    .try_flatten()
}

/// Where a pruned chain's stored part begins: the seq and hash of its last
/// pruned record (an archive of the pruned records must end here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain.
    pub chain: String,
    /// Seq of the last pruned record.
    pub seq: u64,
    /// Hash of the last pruned record.
    pub hash: String,
}

/// Every witness record as JSON Lines, chain by chain (see [`export_stream`]).
pub(crate) async fn export(store: Arc<dyn KvStore>, keys: Keys) -> Result<String, CoreError> {
    let mut out = String::new();
    let mut records = std::pin::pin!(export_stream(store, keys));
    while let Some(record) = records.try_next().await? {
        out.push_str(&serde_json::to_string(&record).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

impl crate::Coordinator {
    /// Every witness record, streamed chain by chain (see [`export_stream`]).
    pub fn witness_export_stream(
        &self,
    ) -> impl Stream<Item = Result<WitnessRecord, CoreError>> + Send + 'static {
        export_stream(self.store.clone(), self.keys.clone())
    }

    /// Every chain's checkpoint, streamed.
    pub fn witness_checkpoints(
        &self,
    ) -> impl Stream<Item = Result<Checkpoint, CoreError>> + Send + 'static {
        checkpoint_stream(self.store.clone(), self.keys.clone())
    }

    /// Verifies chains in key order from `from_chain` (the first chain if
    /// `None`), at most `max_chains` of them; [`VerifyPage::next_chain`] says
    /// where to resume.
    pub async fn verify_witness_from(
        &self,
        from_chain: Option<&str>,
        max_chains: u64,
    ) -> Result<VerifyPage, CoreError> {
        crate::witness_verify::walk(&*self.store, &self.keys, from_chain, max_chains).await
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    /// The hash as it was first defined: the record cloned with `hash` empty
    /// and `revision` 0, serialized whole. Records stored by any version
    /// must keep verifying.
    fn hash_by_clone(record: &WitnessRecord) -> String {
        let mut unhashed = record.clone();
        unhashed.hash = String::new();
        unhashed.revision = 0;
        let mut hasher = Sha256::new();
        hasher.update(record.prev_hash.as_bytes());
        hasher.update(serde_json::to_vec(&unhashed).unwrap());
        crate::hex(&hasher.finalize())
    }

    #[test]
    fn the_borrowed_view_hashes_as_the_cloned_record_did() {
        let full = WitnessRecord {
            chain: "task/t-1".into(),
            seq: 7,
            op: "task_failed".into(),
            actor: "swarm-a".into(),
            task_id: Some("t-1".into()),
            swarm_id: Some("swarm-a".into()),
            token: Some(42),
            outcome: "ready".into(),
            detail: serde_json::json!({"error": "quote \" and ünïcode", "n": [1, 2.5, null]}),
            at_ms: 1_764_000_000_123,
            prev_hash: "ab".repeat(32),
            hash: "not part of the hash".into(),
            revision: 99,
        };
        let bare = WitnessRecord {
            task_id: None,
            swarm_id: None,
            token: None,
            detail: serde_json::Value::Null,
            revision: 0,
            ..full.clone()
        };
        // Fixed when the view replaced the clone (d803e0f's definition): a
        // change to the record's fields or their serde attributes that moved
        // the hash would leave every stored record failing verification.
        assert_eq!(
            hash_of(&full),
            "2644e89fabdc2fd252afc54d1bec8cb137fc96025e0944fad45cb53ffdbc1544"
        );
        for record in [full, bare] {
            let mut cloned = record.clone();
            cloned.hash = String::new();
            cloned.revision = 0;
            assert_eq!(
                serde_json::to_string(&Unhashed::of(&record)).unwrap(),
                serde_json::to_string(&cloned).unwrap()
            );
            assert_eq!(hash_of(&record), hash_by_clone(&record));
        }
    }
}
