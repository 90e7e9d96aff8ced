//! Task records (defined in `ifc-api`, stored as JSON) and the keys that
//! accompany them.

use ifc_kv::KeyValue;
use serde::{Deserialize, Serialize};

pub use ifc_api::{Attempt, AttemptOutcome, NewTask, TaskRecord, TaskState, TaskView};

/// The claim key's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimValue {
    /// The claiming swarm.
    pub swarm_id: String,
    /// When the claim lapses at the latest, unless renewed (ms since the epoch).
    pub deadline_ms: i64,
    /// When this value was written (the claim, the ack or the last renewal).
    #[serde(default)]
    pub written_at_ms: i64,
}

/// The keys of one task, read together in one snapshot.
#[derive(Clone, Debug)]
pub(crate) struct TaskKeys {
    pub record: KeyValue,
    pub claim: Option<KeyValue>,
    pub holder: Option<KeyValue>,
}

impl TaskKeys {
    /// The live claim: the claim key and its holder, made by the same claim.
    pub fn live_claim(&self) -> Option<&KeyValue> {
        match (&self.claim, &self.holder) {
            (Some(claim), Some(holder)) if holder.create_revision == claim.create_revision => {
                Some(claim)
            }
            _ => None,
        }
    }
}
