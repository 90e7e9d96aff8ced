//! The floors under our figures: the disk's own write + fdatasync, and raw
//! etcd-client calls on the same etcd.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use etcd_client::{Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use futures::StreamExt;

use crate::latency::{Summary, histogram, record, summary};

/// `n` 4 KiB writes, each followed by `fdatasync`, in `dir`.
pub fn disk_fsync(dir: &Path, n: usize) -> Result<Summary> {
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let block = vec![0xA5u8; 4096];
    let mut h = histogram();
    for i in 0..n {
        let started = Instant::now();
        file.write_all_at(&block, ((i % 256) * 4096) as u64)?;
        file.sync_data()?;
        record(&mut h, started);
    }
    std::fs::remove_file(&path)?;
    Ok(summary(&h))
}

/// One raw etcd-client put.
pub async fn raw_put(raw: &mut etcd_client::Client, key: String) -> Result<()> {
    raw.put(key, "v", None::<PutOptions>).await?;
    Ok(())
}

/// One raw etcd-client compare-and-swap, "create `key` if missing".
pub async fn raw_cas(raw: &mut etcd_client::Client, key: String) -> Result<()> {
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, "owner", None)]);
    raw.txn(txn).await?;
    Ok(())
}

/// What one txn wrote, for [`raw_txn_of_shape`]: the sizes of the keys and
/// values it put (and whether each was on a lease), and how many keys it
/// deleted and compared.
#[derive(Clone, Debug)]
pub struct TxnShape {
    /// (key bytes, value bytes, on a lease) of each put.
    pub puts: Vec<(usize, usize, bool)>,
    pub deletes: usize,
    pub compares: usize,
}

impl TxnShape {
    /// The puts and deletes of the txn that committed at `revision` under
    /// `prefix`, read back from etcd's history by a watch from that revision
    /// (one revision is one txn). A txn's compares leave no trace, so the
    /// caller says how many there were.
    pub async fn read_back(
        raw: &mut etcd_client::Client,
        prefix: &str,
        revision: i64,
        compares: usize,
    ) -> Result<TxnShape> {
        let options = WatchOptions::new().with_prefix().with_start_revision(revision);
        let mut stream = raw.watch(prefix, Some(options)).await?;
        let (mut puts, mut deletes) = (Vec::new(), 0);
        // The revision's events come first; a later revision's event, or a
        // quiet second when nothing was written after it, ends the read.
        'read: while let Ok(Some(response)) =
            tokio::time::timeout(Duration::from_secs(1), stream.next()).await
        {
            for event in response?.events() {
                let Some(kv) = event.kv() else { continue };
                if kv.mod_revision() != revision {
                    break 'read;
                }
                match event.event_type() {
                    EventType::Put => {
                        puts.push((kv.key().len(), kv.value().len(), kv.lease() != 0))
                    }
                    EventType::Delete => deletes += 1,
                }
            }
        }
        anyhow::ensure!(!puts.is_empty(), "no key under {prefix} was written at {revision}");
        Ok(TxnShape { puts, deletes, compares })
    }

    /// Bytes put, keys and values.
    pub fn bytes(&self) -> usize {
        self.puts.iter().map(|(k, v, _)| k + v).sum()
    }
}

impl std::fmt::Display for TxnShape {
    /// "4 compares, 8 puts (3 on leases, 1040 bytes of keys and values), 2 deletes".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on_leases = self.puts.iter().filter(|(_, _, on_lease)| *on_lease).count();
        write!(
            f,
            "{} compares, {} puts ({on_leases} on leases, {} bytes of keys and values), {} deletes",
            self.compares,
            self.puts.len(),
            self.bytes(),
            self.deletes
        )
    }
}

/// Keys `prefix/d{j}` that [`raw_txn_of_shape`] at `prefix` deletes, written
/// beforehand (outside the timing) so its deletes remove real keys.
pub async fn prepare_shape(
    raw: &mut etcd_client::Client,
    prefix: &str,
    shape: &TxnShape,
) -> Result<()> {
    let puts = (0..shape.deletes).map(|j| TxnOp::put(format!("{prefix}/d{j}"), "", None));
    raw.txn(Txn::new().and_then(puts.collect::<Vec<_>>())).await?;
    Ok(())
}

/// A raw etcd-client txn of `shape` under `prefix` (fresh for each call): its
/// compares ask for missing keys, its puts write keys and values of the
/// shape's sizes (those on a lease on `lease`), its deletes remove the keys
/// [`prepare_shape`] wrote.
pub async fn raw_txn_of_shape(
    raw: &mut etcd_client::Client,
    prefix: &str,
    shape: &TxnShape,
    lease: i64,
) -> Result<()> {
    // Padded to the claim's key length; `prefix` is kept short so that none
    // comes out longer.
    let key = |j: usize, len: usize| {
        let mut key = format!("{prefix}/p{j}/");
        key.extend(std::iter::repeat_n('k', len.saturating_sub(key.len())));
        key
    };
    let compares = (0..shape.compares)
        .map(|j| Compare::create_revision(format!("{prefix}/c{j}"), CompareOp::Equal, 0));
    let mut ops = Vec::with_capacity(shape.puts.len() + shape.deletes);
    for (j, &(key_len, value_len, on_lease)) in shape.puts.iter().enumerate() {
        let options = on_lease.then(|| PutOptions::new().with_lease(lease));
        ops.push(TxnOp::put(key(j, key_len), vec![b'v'; value_len], options));
    }
    ops.extend((0..shape.deletes).map(|j| TxnOp::delete(format!("{prefix}/d{j}"), None)));
    let answer = raw.txn(Txn::new().when(compares.collect::<Vec<_>>()).and_then(ops)).await?;
    anyhow::ensure!(answer.succeeded(), "a txn of a claim's shape failed its compares");
    Ok(())
}
