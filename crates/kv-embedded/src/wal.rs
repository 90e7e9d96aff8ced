//! The write-ahead log: what makes a batch durable before the overlay's layer
//! that holds it reaches the B-tree.
//!
//! Each batch's *effects* — absolute puts and deletes on the four tables — are
//! appended to the current segment and fdatasynced before any request of the
//! batch is answered or its revision published (see [`crate::syncer`]). Several
//! batches that wait together share one record and one `fdatasync`.
//!
//! Two segments, `wal-0` and `wal-1`, alternate: each holds the records of one
//! overlay layer. When the writer freezes the active layer, the log switches to
//! the other segment, which is free because the layer before was committed to
//! the B-tree (with `meta.wal_seq` = the last sequence it holds) before the
//! writer was allowed to freeze again. A free segment is overwritten from its
//! start; its stale tail has sequence numbers at or below `meta.wal_seq`.
//!
//! A segment is preallocated (zeros written and synced once, 4 MiB at a time), so
//! appends overwrite allocated blocks and `fdatasync` never has to flush a size
//! change. Records start on page boundaries: a small record dirties one page, as
//! the disk's own 4 KiB write + fdatasync does, instead of straddling two.
//!
//! Record: `magic u32 | seq u64 | len u32 | crc32 u32 | payload`, little endian;
//! the CRC covers `seq`, `len` and the payload. Recovery reads each segment (and
//! a `wal.log` left by the single-file log of earlier versions) from its start:
//! records with `seq <= meta.wal_seq` are already in the B-tree (or stale) and are
//! skipped; within a segment the first torn, corrupt or out-of-order record ends
//! it. The records of all files are then taken in sequence order from
//! `meta.wal_seq + 1` on, up to the first gap. Replaying absolute writes in order
//! on top of any earlier state converges to the logged state, so a record applied
//! twice is harmless.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::FaultSwitch;

const MAGIC: u32 = 0x1FC0_0A1E;
const HEADER: usize = 20;
/// Records start on page boundaries: a small record then dirties one page, as
/// the disk's own 4 KiB write + fdatasync does, instead of straddling two.
const ALIGN: u64 = 4096;

fn aligned(offset: u64) -> u64 {
    offset.div_ceil(ALIGN) * ALIGN
}

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

/// Appends mutations to a record's payload as they are made, without building
/// [`Mutation`]s first (the writer's hot path).
pub mod payload {
    use ifc_kv::KeyValue;

    use super::put_bytes;
    use crate::codec::encode_kv_into;

    /// `kv[key] = kv` (stored as metadata + value).
    pub fn kv_put(out: &mut Vec<u8>, kv: &KeyValue) {
        out.push(1);
        put_bytes(out, &kv.key);
        out.extend_from_slice(&(crate::codec::stored_len(kv) as u32).to_le_bytes());
        encode_kv_into(out, kv);
    }

    /// Remove `kv[key]`.
    pub fn kv_del(out: &mut Vec<u8>, key: &[u8]) {
        out.push(2);
        put_bytes(out, key);
    }

    /// `history[revision] = events`.
    pub fn hist_put(out: &mut Vec<u8>, revision: u64, events: &[u8]) {
        out.push(3);
        out.extend_from_slice(&revision.to_le_bytes());
        put_bytes(out, events);
    }

    /// Remove every `history` entry below the revision.
    pub fn hist_del_below(out: &mut Vec<u8>, revision: u64) {
        out.push(4);
        out.extend_from_slice(&revision.to_le_bytes());
    }

    /// `leases[id] = ttl`.
    pub fn lease_put(out: &mut Vec<u8>, id: i64, ttl: i64) {
        out.push(5);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&ttl.to_le_bytes());
    }

    /// Remove `leases[id]`.
    pub fn lease_del(out: &mut Vec<u8>, id: i64) {
        out.push(6);
        out.extend_from_slice(&id.to_le_bytes());
    }

    /// `meta[name] = value`.
    pub fn meta(out: &mut Vec<u8>, name: &str, value: i64) {
        out.push(7);
        put_bytes(out, name.as_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Encodes a batch's mutations.
#[cfg(test)]
pub fn encode(mutations: &[Mutation]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in mutations {
        match m {
            Mutation::KvPut(k, v) => {
                out.push(1);
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
            Mutation::KvDel(k) => payload::kv_del(&mut out, k),
            Mutation::HistPut(r, v) => payload::hist_put(&mut out, *r, v),
            Mutation::HistDelBelow(r) => payload::hist_del_below(&mut out, *r),
            Mutation::LeasePut(id, ttl) => payload::lease_put(&mut out, *id, *ttl),
            Mutation::LeaseDel(id) => payload::lease_del(&mut out, *id),
            Mutation::Meta(name, value) => payload::meta(&mut out, name, *value),
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

/// One segment file.
struct Segment {
    file: File,
    /// Bytes of the file already allocated (zeros written and synced).
    allocated: u64,
    /// Where the next record goes.
    offset: u64,
}

impl Segment {
    fn open(path: &Path) -> std::io::Result<Segment> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let allocated = file.metadata()?.len();
        Ok(Segment { file, allocated, offset: 0 })
    }

    /// Preallocates (writes zeros and syncs) up to `end`, in 4 MiB steps, so
    /// appends overwrite allocated blocks and `fdatasync` flushes data only.
    fn allocate(&mut self, end: u64) -> std::io::Result<()> {
        const STEP: u64 = 4 << 20;
        if end <= self.allocated {
            return Ok(());
        }
        let target = end.div_ceil(STEP).saturating_mul(STEP);
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
}

/// Every valid record of one file with `seq > applied`, in file order, up to
/// the first torn, corrupt or out-of-order one.
fn read_records(file: &File, applied: u64) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let allocated = file.metadata()?.len();
    let mut records = Vec::new();
    let mut offset = 0u64;
    let mut last = applied;
    let mut header = [0u8; HEADER];
    while offset + HEADER as u64 <= allocated {
        file.read_exact_at(&mut header, offset)?;
        let magic = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
        let seq = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default()) as u64;
        let crc = u32::from_le_bytes(header[16..20].try_into().unwrap_or_default());
        if magic != MAGIC || offset + HEADER as u64 + len > allocated {
            break;
        }
        let mut payload = vec![0u8; len as usize];
        file.read_exact_at(&mut payload, offset + HEADER as u64)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[4..16]);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            break;
        }
        offset = aligned(offset + HEADER as u64 + len);
        if seq <= applied {
            // Already in the B-tree, or left over from before the segment was reused.
            continue;
        }
        if seq <= last {
            break;
        }
        last = seq;
        records.push((seq, payload));
    }
    Ok(records)
}

/// The segment files' names inside the data directory.
pub const SEGMENT_FILES: [&str; 2] = ["wal-0", "wal-1"];

/// The log: two segments, one of them current.
pub struct Wal {
    segments: [Segment; 2],
    current: usize,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    faults: Option<FaultSwitch>,
    legacy: Option<std::path::PathBuf>,
}

impl Wal {
    /// Opens (creating if needed) both segments in `dir`.
    pub fn open(dir: &Path, faults: Option<FaultSwitch>) -> std::io::Result<Wal> {
        let segments = [
            Segment::open(&dir.join(SEGMENT_FILES[0]))?,
            Segment::open(&dir.join(SEGMENT_FILES[1]))?,
        ];
        let legacy = dir.join(crate::LEGACY_WAL_FILE);
        let legacy = legacy.exists().then_some(legacy);
        Ok(Wal { segments, current: 0, next_seq: 1, faults, legacy })
    }

    /// Every record after `applied` (the last sequence the B-tree holds), from
    /// both segments and a legacy `wal.log`, in sequence order up to the first
    /// gap. Leaves the log writing segment 0 from its start with the next
    /// sequence number (both segments are free once the caller has committed
    /// the records it was given).
    pub fn recover(&mut self, applied: u64) -> std::io::Result<Vec<(u64, Vec<Mutation>)>> {
        let mut found = Vec::new();
        for segment in &self.segments {
            found.extend(read_records(&segment.file, applied)?);
        }
        if let Some(path) = &self.legacy {
            found.extend(read_records(&File::open(path)?, applied)?);
        }
        found.sort_by_key(|(seq, _)| *seq);
        let mut records = Vec::new();
        let mut expected = applied + 1;
        for (seq, payload) in found {
            if seq < expected {
                continue;
            }
            if seq != expected {
                break;
            }
            let Some(mutations) = decode(&payload) else { break };
            records.push((seq, mutations));
            expected += 1;
        }
        for segment in &mut self.segments {
            segment.offset = 0;
        }
        self.current = 0;
        self.next_seq = expected;
        Ok(records)
    }

    /// Removes the legacy `wal.log` once its records are in the B-tree.
    pub fn remove_legacy(&mut self) -> std::io::Result<()> {
        if let Some(path) = self.legacy.take() {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Appends one record (the next sequence number) to the current segment and
    /// makes it durable. Returns its sequence number.
    pub fn append(&mut self, payload: &[u8]) -> std::io::Result<u64> {
        let seq = self.next_seq;
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
        let segment = &mut self.segments[self.current];
        segment.allocate(segment.offset + record.len() as u64)?;
        segment.file.write_all_at(&record, segment.offset)?;
        if let Some(faults) = &self.faults {
            faults.before_log_fsync()?;
        }
        segment.file.sync_data()?;
        segment.offset = aligned(segment.offset + record.len() as u64);
        self.next_seq = seq + 1;
        Ok(seq)
    }

    /// Switches to the other segment, which must be free (its layer is in the
    /// B-tree), and overwrites it from its start.
    pub fn switch(&mut self) {
        self.current ^= 1;
        self.segments[self.current].offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(records: &[(u64, Vec<Mutation>)]) -> Vec<u64> {
        records.iter().map(|r| r.0).collect()
    }

    #[test]
    fn records_round_trip_across_segments_and_recovery_stops_at_damage() {
        let dir = tempfile::tempdir().unwrap();
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
        let mut wal = Wal::open(dir.path(), None).unwrap();
        for seq in 1..=3 {
            assert_eq!(wal.append(&encode(&batch)).unwrap(), seq);
        }
        wal.switch();
        for seq in 4..=5 {
            assert_eq!(wal.append(&encode(&batch)).unwrap(), seq);
        }
        drop(wal);
        let mut wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(seqs(&wal.recover(0).unwrap()), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(&wal.recover(3).unwrap()), vec![4, 5]);
        // Segment 0 reused: new records overwrite its start; its stale tail
        // (sequence numbers at or below the B-tree's) is not replayed.
        assert_eq!(wal.next_seq, 6);
        assert_eq!(wal.append(&encode(&batch[..1])).unwrap(), 6);
        assert_eq!(seqs(&wal.recover(3).unwrap()), vec![4, 5, 6]);
        // A gap (records 1..=3 are gone from segment 0) ends the log.
        assert!(wal.recover(0).unwrap().is_empty());
        // A torn record ends its segment, and the gap it leaves ends the log.
        let file = OpenOptions::new().write(true).open(dir.path().join(SEGMENT_FILES[1])).unwrap();
        file.write_all_at(&[0xFF; 4], HEADER as u64 + 2).unwrap();
        assert_eq!(aligned(1), ALIGN);
        assert!(wal.recover(3).unwrap().is_empty());
        assert_eq!(seqs(&wal.recover(5).unwrap()), vec![6]);
    }

    #[test]
    fn a_legacy_log_is_replayed_then_removed() {
        let old = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(old.path(), None).unwrap();
        for _ in 1..=2 {
            wal.append(&encode(&[Mutation::LeasePut(1, 10)])).unwrap();
        }
        drop(wal);
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(old.path().join(SEGMENT_FILES[0]), dir.path().join(crate::LEGACY_WAL_FILE))
            .unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(seqs(&wal.recover(0).unwrap()), vec![1, 2]);
        wal.remove_legacy().unwrap();
        assert!(!dir.path().join(crate::LEGACY_WAL_FILE).exists());
        let mut wal = Wal::open(dir.path(), None).unwrap();
        assert!(wal.recover(2).unwrap().is_empty());
    }
}
