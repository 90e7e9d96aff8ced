//! Fault injection for tests: a redb storage backend that wraps the real file and
//! fails `fsync` while a switch is on, and the same switch failing or delaying the
//! write-ahead log's `fdatasync`. Used only when
//! [`crate::EmbeddedOptions::fault_switch`] is set.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redb::{Database, DatabaseError, StorageBackend, backends::FileBackend};

/// Turns fsync failures on and off, and slows the log's fsync down.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicUsize>);

impl FaultSwitch {
    /// A switch, off.
    pub fn new() -> Self {
        FaultSwitch::default()
    }

    /// Whether fsyncs fail now.
    pub fn failing(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// From now on every fsync fails (`true`) or works (`false`).
    pub fn fail_fsync(&self, fail: bool) {
        self.0.store(fail, Ordering::SeqCst);
    }

    /// From now on every write-ahead log `fdatasync` first sleeps this long
    /// (zero: no delay), so a test can look at the store while a batch is
    /// applied but not yet durable.
    pub fn delay_log_fsync(&self, delay: Duration) {
        self.1.store(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// How many log `fdatasync`s are being delayed right now (a batch is
    /// applied and written, not yet durable).
    pub fn delayed_log_fsyncs(&self) -> usize {
        self.2.load(Ordering::SeqCst)
    }

    /// Called by the log before each `fdatasync`: sleeps or fails as switched.
    pub(crate) fn before_log_fsync(&self) -> std::io::Result<()> {
        let delay = self.1.load(Ordering::SeqCst);
        if delay > 0 {
            self.2.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(delay));
            self.2.fetch_sub(1, Ordering::SeqCst);
        }
        if self.failing() {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyFile {
    file: FileBackend,
    switch: FaultSwitch,
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.switch.0.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }
}

/// Opens the database through the fault-injecting backend.
pub fn open(
    builder: &redb::Builder,
    path: &Path,
    switch: FaultSwitch,
) -> Result<Database, DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| DatabaseError::Storage(e.into()))?;
    let file = FileBackend::new(file)?;
    builder.create_with_backend(FaultyFile { file, switch })
}
