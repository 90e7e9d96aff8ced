//! Verifying witness chains one record at a time ([`ChainCheck`]), and the
//! paged walk over the store that checks chain after chain in bounded memory.

use ifc_kv::{KeyValue, KvStore};
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::codec::decode;
use crate::keys::{Key, Keys};
use crate::paging::Pager;
use crate::witness::{GENESIS, Head, Tampering, WitnessRecord, hash_of};

/// Checks one chain as its keys arrive in key order: checkpoint (if the
/// chain was pruned), head, then records by seq. Holds only the last link.
#[derive(Clone, Debug)]
pub struct ChainCheck {
    chain: String,
    checkpoint: Option<Head>,
    head: Option<Head>,
    next_seq: u64,
    prev_hash: String,
    prev_revision: i64,
    records: u64,
    problem: Option<Tampering>,
}

impl ChainCheck {
    /// A chain that starts at genesis.
    pub fn new(chain: &str) -> Self {
        ChainCheck {
            chain: chain.into(),
            checkpoint: None,
            head: None,
            next_seq: 1,
            prev_hash: GENESIS.into(),
            prev_revision: 0,
            records: 0,
            problem: None,
        }
    }

    /// The chain's name.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Records checked so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Seq of the last record accepted (or of the checkpoint).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Hash of the last record accepted (or of the checkpoint).
    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }

    /// The chain was pruned through `checkpoint`: what remains starts after it.
    pub fn checkpoint(&mut self, checkpoint: Head) {
        self.next_seq = checkpoint.seq + 1;
        self.prev_hash = checkpoint.hash.clone();
        self.checkpoint = Some(checkpoint);
    }

    /// The chain's stored head: its last record must match it.
    pub fn head(&mut self, head: Head) {
        self.head = Some(head);
    }

    /// Records a problem found outside the record checks (an unreadable value).
    pub fn fail(&mut self, seq: u64, problem: String) {
        if self.problem.is_none() {
            self.problem = Some(Tampering { chain: self.chain.clone(), seq, problem });
        }
    }

    /// The next record of the chain, as stored (its token not filled in).
    pub fn record(&mut self, record: &WitnessRecord) {
        if self.problem.is_some() {
            return;
        }
        if self.records == 0
            && self.checkpoint.is_some()
            && record.seq == 1
            && record.prev_hash == GENESIS
        {
            // The chain's whole history was pruned and its id used again: a
            // new chain from genesis.
            self.next_seq = 1;
            self.prev_hash = GENESIS.into();
        }
        let expected_seq = self.next_seq;
        if record.seq != expected_seq {
            return self.fail(
                expected_seq,
                format!(
                    "sequence {} found where {expected_seq} belongs (removed or inserted)",
                    record.seq
                ),
            );
        }
        if record.chain != self.chain {
            return self.fail(record.seq, format!("record claims chain {}", record.chain));
        }
        if record.prev_hash != self.prev_hash {
            return self.fail(
                record.seq,
                "does not link to the record before it (reordered, removed or inserted)".into(),
            );
        }
        if hash_of(record) != record.hash {
            return self.fail(record.seq, "content does not match its hash (edited)".into());
        }
        if record.revision != 0 && record.revision <= self.prev_revision {
            return self
                .fail(record.seq, "committed before the record it follows (reordered)".into());
        }
        self.next_seq += 1;
        self.records += 1;
        self.prev_hash = record.hash.clone();
        self.prev_revision = record.revision;
    }

    /// The verdict: the records checked, or the chain's first problem.
    pub fn finish(self) -> Result<u64, Tampering> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let last_seq = self.next_seq - 1;
        let pruned_whole = self.records == 0 && self.checkpoint.is_some();
        let head = match self.head {
            Some(head) => head,
            None if pruned_whole => return Ok(0),
            None => Head::empty(),
        };
        if head.seq != last_seq || head.hash != self.prev_hash {
            return Err(Tampering {
                chain: self.chain,
                seq: head.seq,
                problem: format!(
                    "chain ends at {last_seq} but its head says {} (tail removed or head edited)",
                    head.seq
                ),
            });
        }
        Ok(self.records)
    }
}

/// Checks one chain: its records in key order, and its stored head.
pub fn verify_chain(chain: &str, records: &[WitnessRecord], head: &Head) -> Result<(), Tampering> {
    let mut check = ChainCheck::new(chain);
    check.head(head.clone());
    records.iter().for_each(|r| check.record(r));
    check.finish().map(drop)
}

/// What one walk of [`walk`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyPage {
    /// The first problem of each chain that did not verify.
    pub problems: Vec<Tampering>,
    /// Chains checked.
    pub chains: u64,
    /// Records checked.
    pub records: u64,
    /// The chain to resume from, if the walk stopped before the end.
    pub next_chain: Option<String>,
}

impl VerifyPage {
    fn finish(&mut self, check: ChainCheck) {
        self.chains += 1;
        self.records += check.records();
        if let Err(problem) = check.finish() {
            self.problems.push(problem);
        }
    }
}

/// Feeds one stored key of the chain to its check.
fn feed(check: &mut ChainCheck, kv: &KeyValue, key: Key<'_>) {
    match key {
        Key::WitnessCheckpoint { .. } => match decode::<Head>(kv) {
            Ok(head) => check.checkpoint(head),
            Err(_) => check.fail(0, "checkpoint is unreadable (edited)".into()),
        },
        Key::WitnessHead { .. } => match decode::<Head>(kv) {
            Ok(head) => check.head(head),
            Err(_) => check.fail(0, "head is unreadable (edited)".into()),
        },
        Key::WitnessRecord { seq, .. } => match decode::<WitnessRecord>(kv) {
            Ok(mut record) => {
                record.revision = kv.mod_revision;
                check.record(&record);
            }
            Err(_) => check.fail(seq, "record is unreadable (edited)".into()),
        },
        _ => {}
    }
}

/// Verifies chains in key order from `from_chain`, at most `max_chains`,
/// reading the store a page at a time (a chain's keys are contiguous).
pub(crate) async fn walk(
    store: &dyn KvStore,
    keys: &Keys,
    from_chain: Option<&str>,
    max_chains: u64,
) -> Result<VerifyPage, CoreError> {
    let start = from_chain.map_or_else(|| keys.witness_all(), |c| keys.witness_chain(c));
    let mut pager = Pager::prefix_from(keys.witness_all(), start);
    let mut page_result = VerifyPage::default();
    let mut current: Option<ChainCheck> = None;
    while let Some(page) = pager.next_page(store).await? {
        for kv in &page {
            let Some(key) = keys.parse(&kv.key) else { continue };
            let chain = match key {
                Key::WitnessCheckpoint { chain }
                | Key::WitnessHead { chain }
                | Key::WitnessRecord { chain, .. } => chain,
                _ => continue,
            };
            if current.as_ref().is_none_or(|c| c.chain() != chain) {
                if let Some(done) = current.take() {
                    page_result.finish(done);
                }
                if page_result.chains >= max_chains {
                    page_result.next_chain = Some(chain.to_string());
                    return Ok(page_result);
                }
                current = Some(ChainCheck::new(chain));
            }
            if let Some(check) = current.as_mut() {
                feed(check, kv, key);
            }
        }
    }
    if let Some(done) = current.take() {
        page_result.finish(done);
    }
    Ok(page_result)
}
