//! The witness archive: pruned records, appended as JSON Lines to files in a
//! directory before the store forgets them, and the check that they still
//! chain from genesis up to the checkpoint the store kept.
//!
//! Every node may append (one file per UTC day); a prune that lost its CAS race
//! may have appended a chain already archived by another node, so a chain may
//! appear more than once. Each appearance is checked on its own from genesis;
//! the last must end exactly at the store's checkpoint.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::witness::{ChainCheck, Checkpoint, Head, Tampering, WitnessRecord};

/// Failure to read or write the archive's files.
#[derive(Debug, thiserror::Error)]
#[error("witness archive {path}: {source}")]
pub struct ArchiveError {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: std::io::Error,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError { path: path.to_path_buf(), source }
}

/// Appends `records` (one chain, in seq order) to today's file and syncs it,
/// so they are on disk before the store forgets them.
pub fn append(dir: &Path, records: &[WitnessRecord]) -> Result<(), ArchiveError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let day = crate::now_ms() / 86_400_000;
    let path = dir.join(format!("witness-{day:06}.jsonl"));
    let mut text = Vec::new();
    for record in records {
        text.extend(serde_json::to_vec(record).unwrap_or_default());
        text.push(b'\n');
    }
    // One write of whole lines with O_APPEND: concurrent appenders do not interleave.
    let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
    file.write_all(&text).map_err(io(&path))?;
    file.sync_data().map_err(io(&path))
}

/// What checking an archive found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// Files read.
    pub files: u64,
    /// Chains found.
    pub chains: u64,
    /// Records checked.
    pub records: u64,
    /// Every problem found (at most the first per chain appearance).
    pub problems: Vec<Tampering>,
}

/// Checks every `*.jsonl` file in `dir` against the store's `checkpoints`:
/// each chain's records link from genesis, and its last appearance ends at its
/// checkpoint. Memory grows with the number of chains, not of records.
pub fn verify(
    dir: &Path,
    checkpoints: &HashMap<String, Checkpoint>,
) -> Result<ArchiveReport, ArchiveError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut report = ArchiveReport { files: files.len() as u64, ..ArchiveReport::default() };
    let mut open: HashMap<String, ChainCheck> = HashMap::new();
    for path in &files {
        let file = fs::File::open(path).map_err(io(path))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io(path))?;
            if line.trim().is_empty() {
                continue;
            }
            let record: WitnessRecord = match serde_json::from_str(&line) {
                Ok(record) => record,
                Err(e) => {
                    let chain = path.display().to_string();
                    let problem = format!("line {} is not a witness record: {e}", n + 1);
                    report.problems.push(Tampering { chain, seq: 0, problem });
                    continue;
                }
            };
            report.records += 1;
            let restarts = record.seq == 1 && open.contains_key(&record.chain);
            if restarts {
                // The chain again (a prune archived twice): the earlier
                // appearance must verify on its own.
                if let Some(earlier) = open.remove(&record.chain) {
                    let end = Head { seq: earlier.last_seq(), hash: earlier.last_hash().into() };
                    close(earlier, end, &mut report);
                }
            }
            let check = open.entry(record.chain.clone()).or_insert_with(|| {
                report.chains += 1;
                ChainCheck::new(&record.chain)
            });
            check.record(&unrevised(record));
        }
    }
    for (chain, check) in open {
        match checkpoints.get(&chain) {
            Some(cp) => close(check, Head { seq: cp.seq, hash: cp.hash.clone() }, &mut report),
            None => report.problems.push(Tampering {
                chain,
                seq: check.last_seq(),
                problem: "archived, but the store has no checkpoint for this chain".into(),
            }),
        }
    }
    Ok(report)
}

/// Revisions are per store and only order records within one walk of it;
/// archived ones are checked by hash and link only.
fn unrevised(mut record: WitnessRecord) -> WitnessRecord {
    record.revision = 0;
    record
}

fn close(mut check: ChainCheck, end: Head, report: &mut ArchiveReport) {
    check.head(end);
    if let Err(problem) = check.finish() {
        report.problems.push(problem);
    }
}
