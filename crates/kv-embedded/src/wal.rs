//! The write-ahead log that makes a commit cost one sequential write and one
//! `fdatasync` instead of a copy-on-write B-tree flush.
//!
//! Each batch is applied to redb with `Durability::None` (in memory and the OS
//! cache, no fsync), and its *effects* — absolute puts and deletes on the four
//! tables — are appended to `wal.log` and fdatasynced before any request of the
//! batch is acknowledged. Every [`CHECKPOINT_INTERVAL`], or when the log is
//! full, a redb commit with `Durability::Immediate` makes everything durable in
//! the B-tree, records the last log sequence it covers (`meta.wal_seq`), and the
//! log starts over from its beginning.
//!
//! The file is preallocated (zeros written once), so appends overwrite blocks in
//! place and `fdatasync` never has to flush a size change.
//!
//! Record: `magic u32 | seq u64 | len u32 | crc32 u32 | payload`, little endian;
//! the CRC covers `seq`, `len` and the payload. Recovery reads records from the
//! start: records with `seq <= meta.wal_seq` are already in the B-tree (or stale,
//! from before the last restart of the log) and are skipped; then records must
//! follow with consecutive sequence numbers; the first torn, corrupt or
//! out-of-sequence record ends the log. Replaying absolute writes in order on
//! top of any earlier state converges to the logged state, so a record applied
//! twice is harmless.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::FaultSwitch;

const MAGIC: u32 = 0x1FC0_0A1E;
const HEADER: usize = 20;
/// Records start on page boundaries: a small record then dirties one page, as
/// the disk's own 4 KiB write + fdatasync does, instead of straddling two.
const ALIGN: u64 = 4096;

fn aligned(offset: u64) -> u64 {
    offset.div_ceil(ALIGN) * ALIGN
}
/// How often the B-tree is made durable and the log restarted, at most.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// One absolute change to a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// `kv[key] = value` (value as stored: metadata + bytes).
    KvPut(Vec<u8>, Vec<u8>),
    /// Remove `kv[key]`.
    KvDel(Vec<u8>),
    /// `history[revision] = events`.
    HistPut(u64, Vec<u8>),
    /// Remove every `history` entry below the revision.
    HistDelBelow(u64),
    /// `leases[id] = ttl`.
    LeasePut(i64, i64),
    /// Remove `leases[id]`.
    LeaseDel(i64),
    /// `meta[name] = value`.
    Meta(String, i64),
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes a batch's mutations.
pub fn encode(mutations: &[Mutation]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in mutations {
        match m {
            Mutation::KvPut(k, v) => {
                out.push(1);
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
            Mutation::KvDel(k) => {
                out.push(2);
                put_bytes(&mut out, k);
            }
            Mutation::HistPut(r, v) => {
                out.push(3);
                out.extend_from_slice(&r.to_le_bytes());
                put_bytes(&mut out, v);
            }
            Mutation::HistDelBelow(r) => {
                out.push(4);
                out.extend_from_slice(&r.to_le_bytes());
            }
            Mutation::LeasePut(id, ttl) => {
                out.push(5);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&ttl.to_le_bytes());
            }
            Mutation::LeaseDel(id) => {
                out.push(6);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Mutation::Meta(name, value) => {
                out.push(7);
                put_bytes(&mut out, name.as_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        Some(self.take(len)?.to_vec())
    }
}

/// Decodes a batch's mutations; `None` if the payload is malformed.
pub fn decode(payload: &[u8]) -> Option<Vec<Mutation>> {
    let mut c = Cursor(payload);
    let mut out = Vec::new();
    while !c.0.is_empty() {
        let tag = c.take(1)?[0];
        out.push(match tag {
            1 => Mutation::KvPut(c.bytes()?, c.bytes()?),
            2 => Mutation::KvDel(c.bytes()?),
            3 => Mutation::HistPut(c.u64()?, c.bytes()?),
            4 => Mutation::HistDelBelow(c.u64()?),
            5 => Mutation::LeasePut(c.i64()?, c.i64()?),
            6 => Mutation::LeaseDel(c.i64()?),
            7 => Mutation::Meta(String::from_utf8(c.bytes()?).ok()?, c.i64()?),
            _ => return None,
        });
    }
    Some(out)
}

/// The log file.
pub struct Wal {
    file: File,
    capacity: u64,
    /// Bytes of the file already allocated (zeros written and synced).
    allocated: u64,
    offset: u64,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    faults: Option<FaultSwitch>,
}

impl Wal {
    /// Opens (creating if needed) the log at `path`. It grows in preallocated
    /// chunks up to `capacity` as records need room, and never shrinks.
    pub fn open(path: &Path, capacity: u64, faults: Option<FaultSwitch>) -> std::io::Result<Wal> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let allocated = file.metadata()?.len();
        Ok(Wal { file, capacity, allocated, offset: 0, next_seq: 1, faults })
    }

    /// Preallocates (writes zeros and syncs) up to `end`, in 4 MiB steps, so
    /// appends overwrite allocated blocks and `fdatasync` flushes data only.
    fn allocate(&mut self, end: u64) -> std::io::Result<()> {
        const STEP: u64 = 4 << 20;
        if end <= self.allocated {
            return Ok(());
        }
        let target = end.div_ceil(STEP).saturating_mul(STEP).min(self.capacity).max(end);
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.allocated;
        while at < target {
            let n = zeros.len().min((target - at) as usize);
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }

    /// Every valid record after `applied` (the last sequence the B-tree holds),
    /// in order. Leaves the log positioned to overwrite from the start with the
    /// next sequence number.
    pub fn recover(&mut self, applied: u64) -> std::io::Result<Vec<(u64, Vec<Mutation>)>> {
        let mut records = Vec::new();
        let mut offset = 0u64;
        let mut expected = applied + 1;
        let mut header = [0u8; HEADER];
        while offset + HEADER as u64 <= self.allocated {
            self.file.read_exact_at(&mut header, offset)?;
            let magic = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
            let seq = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default()) as u64;
            let crc = u32::from_le_bytes(header[16..20].try_into().unwrap_or_default());
            if magic != MAGIC || offset + HEADER as u64 + len > self.allocated {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            self.file.read_exact_at(&mut payload, offset + HEADER as u64)?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[4..16]);
            hasher.update(&payload);
            if hasher.finalize() != crc {
                break;
            }
            if seq <= applied {
                // Already in the B-tree, or left over from before the log restarted.
                offset = aligned(offset + HEADER as u64 + len);
                continue;
            }
            if seq != expected {
                break;
            }
            let Some(mutations) = decode(&payload) else { break };
            records.push((seq, mutations));
            expected += 1;
            offset = aligned(offset + HEADER as u64 + len);
        }
        self.offset = 0;
        self.next_seq = expected;
        Ok(records)
    }

    /// Whether a record of `len` payload bytes fits before the end.
    pub fn fits(&self, len: usize) -> bool {
        aligned(self.offset + (HEADER + len) as u64) <= self.capacity
    }

    /// Appends one record and makes it durable. The caller checked [`Wal::fits`].
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(&(payload.len() as u32).to_le_bytes());
        hasher.update(payload);
        record.extend_from_slice(&hasher.finalize().to_le_bytes());
        record.extend_from_slice(payload);
        self.allocate(self.offset + record.len() as u64)?;
        self.file.write_all_at(&record, self.offset)?;
        if self.faults.as_ref().is_some_and(FaultSwitch::failing) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()?;
        self.offset = aligned(self.offset + record.len() as u64);
        self.next_seq = seq + 1;
        Ok(())
    }

    /// Starts the log over (after a checkpoint made every record redundant).
    pub fn restart(&mut self) {
        self.offset = 0;
    }

    /// Whether any record was written since the last restart.
    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_recovery_stops_at_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let batch = vec![
            Mutation::KvPut(b"k".to_vec(), b"v".to_vec()),
            Mutation::KvDel(b"x".to_vec()),
            Mutation::HistPut(7, b"e".to_vec()),
            Mutation::HistDelBelow(3),
            Mutation::LeasePut(1, 10),
            Mutation::LeaseDel(2),
            Mutation::Meta("wal_seq".into(), 9),
        ];
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
        let mut wal = Wal::open(&path, 1 << 16, None).unwrap();
        for seq in 1..=3 {
            wal.append(seq, &encode(&batch)).unwrap();
        }
        drop(wal);
        let mut wal = Wal::open(&path, 1 << 16, None).unwrap();
        assert_eq!(wal.recover(0).unwrap().len(), 3);
        assert_eq!(wal.recover(2).unwrap().iter().map(|r| r.0).collect::<Vec<_>>(), vec![3]);
        // A restarted log: new records overwrite from the start; the stale tail
        // (sequence numbers at or below the checkpoint) is not replayed.
        assert_eq!(wal.next_seq, 4);
        wal.append(4, &encode(&batch[..1])).unwrap();
        assert_eq!(wal.recover(3).unwrap().iter().map(|r| r.0).collect::<Vec<_>>(), vec![4]);
        // A torn record ends the log.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xFF; 4], HEADER as u64 + 2).unwrap();
        assert_eq!(aligned(1), ALIGN);
        assert!(wal.recover(3).unwrap().is_empty());
    }
}
