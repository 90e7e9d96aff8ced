//! The floors under our figures: the disk's own write + fdatasync, and raw
//! etcd-client calls on the same etcd.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

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
