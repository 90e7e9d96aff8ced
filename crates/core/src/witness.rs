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

use ifc_kv::{KeyValue, PutRequest, TxnOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ifc_api::{Tampering, WitnessRecord};

use crate::CoreError;
use crate::keys::Keys;

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
    pub op: &'static str,
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
        op: &'static str,
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
            op: self.op.into(),
            actor: self.actor,
            task_id: self.task_id,
            swarm_id: self.swarm_id,
            token: self.token,
            outcome: self.outcome,
            detail: self.detail,
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
