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

use ifc_api::WitnessQuery;
use ifc_kv::{KeyValue, KvStore, PutRequest, RangeRequest, TxnOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ifc_api::{Tampering, WitnessRecord};

use crate::codec::decode;
use crate::keys::{Key, Keys, task_chain};
use crate::{CoreError, validate};

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
    const ALL: [WitnessOp; 20] = [
        WitnessOp::TaskCreated,
        WitnessOp::TaskClaimed,
        WitnessOp::TaskCompleted,
        WitnessOp::TaskFailed,
        WitnessOp::TaskDeadLettered,
        WitnessOp::TaskRequeued,
        WitnessOp::TaskCancelled,
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

/// The hash of a record: everything but `hash` and `revision`, in field order.
pub fn hash_of(record: &WitnessRecord) -> String {
    let mut unhashed = record.clone();
    unhashed.hash = String::new();
    unhashed.revision = 0;
    let body = serde_json::to_vec(&unhashed).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(record.prev_hash.as_bytes());
    hasher.update(&body);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
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

/// Checks one chain: its records in key order, and its stored head.
pub fn verify_chain(chain: &str, records: &[WitnessRecord], head: &Head) -> Result<(), Tampering> {
    let fail = |seq: u64, problem: String| Tampering { chain: chain.into(), seq, problem };
    let mut prev_hash = GENESIS.to_string();
    let mut prev_revision = 0;
    for (i, record) in records.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        if record.seq != expected_seq {
            return Err(fail(
                expected_seq,
                format!(
                    "sequence {} found where {expected_seq} belongs (removed or inserted)",
                    record.seq
                ),
            ));
        }
        if record.chain != chain {
            return Err(fail(record.seq, format!("record claims chain {}", record.chain)));
        }
        if record.prev_hash != prev_hash {
            return Err(fail(
                record.seq,
                "does not link to the record before it (reordered, removed or inserted)".into(),
            ));
        }
        if hash_of(record) != record.hash {
            return Err(fail(record.seq, "content does not match its hash (edited)".into()));
        }
        if record.revision != 0 && record.revision <= prev_revision {
            return Err(fail(
                record.seq,
                "committed before the record it follows (reordered)".into(),
            ));
        }
        prev_hash = record.hash.clone();
        prev_revision = record.revision;
    }
    let last_seq = records.len() as u64;
    if head.seq != last_seq || head.hash != prev_hash {
        return Err(fail(
            head.seq,
            format!(
                "chain ends at {last_seq} but its head says {} (tail removed or head edited)",
                head.seq
            ),
        ));
    }
    Ok(())
}

/// One chain as stored: its name, its records in key order (revisions set, as
/// stored otherwise) and its head.
type Chain = (String, Vec<WitnessRecord>, Head);

/// A stored record with its commit revision.
fn stored(kv: &KeyValue) -> Result<WitnessRecord, CoreError> {
    let mut record: WitnessRecord = decode(kv)?;
    record.revision = kv.mod_revision;
    Ok(record)
}

/// Every chain in the store.
async fn chains(store: &dyn KvStore, keys: &Keys) -> Result<Vec<Chain>, CoreError> {
    let all = store.range(RangeRequest::prefix(keys.witness_all())).await?;
    let mut chains: Vec<Chain> = Vec::new();
    for kv in &all.kvs {
        let (chain, is_head) = match keys.parse(&kv.key) {
            Some(Key::WitnessHead { chain }) => (chain, true),
            Some(Key::WitnessRecord { chain, .. }) => (chain, false),
            _ => continue,
        };
        if chains.last().is_none_or(|(c, _, _)| c != chain) {
            chains.push((chain.to_string(), Vec::new(), Head::empty()));
        }
        let Some(entry) = chains.last_mut() else { continue };
        if is_head {
            entry.2 = decode(kv)?;
        } else {
            entry.1.push(stored(kv)?);
        }
    }
    Ok(chains)
}

/// Witness records matching `query`, in commit order.
pub(crate) async fn query(
    store: &dyn KvStore,
    keys: &Keys,
    query: &WitnessQuery,
) -> Result<Vec<WitnessRecord>, CoreError> {
    let mut records: Vec<WitnessRecord> = match &query.task_id {
        Some(task_id) => {
            validate::id("task_id", task_id)?;
            let chain = task_chain(task_id);
            let resp = store.range(RangeRequest::prefix(keys.witness_records(&chain))).await?;
            resp.kvs.iter().map(stored).collect::<Result<_, _>>()?
        }
        None => {
            chains(store, keys).await?.into_iter().flat_map(|(_, records, _)| records).collect()
        }
    };
    records.retain(|r| {
        query.swarm_id.as_ref().is_none_or(|s| r.swarm_id.as_ref() == Some(s) || r.actor == *s)
            && query.from_ms.is_none_or(|from| r.at_ms >= from)
            && query.to_ms.is_none_or(|to| r.at_ms < to)
    });
    records.sort_by_key(|r| (r.revision, r.chain.clone(), r.seq));
    Ok(records
        .into_iter()
        .map(|r| {
            let revision = r.revision;
            committed(r, revision)
        })
        .collect())
}

/// Every witness record as JSON Lines, in commit order.
pub(crate) async fn export(store: &dyn KvStore, keys: &Keys) -> Result<String, CoreError> {
    let mut out = String::new();
    for record in query(store, keys, &WitnessQuery::default()).await? {
        out.push_str(&serde_json::to_string(&record).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

/// Verifies every chain; the first problem found, per chain.
pub(crate) async fn verify(store: &dyn KvStore, keys: &Keys) -> Result<Vec<Tampering>, CoreError> {
    Ok(chains(store, keys)
        .await?
        .iter()
        .filter_map(|(chain, records, head)| verify_chain(chain, records, head).err())
        .collect())
}
