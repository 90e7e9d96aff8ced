//! Fault injection for the fail-stop tests: a redb storage backend that wraps the
//! real file and fails `fsync` while a switch is on. Used only when
//! [`crate::EmbeddedOptions::fault_switch`] is set.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, DatabaseError, StorageBackend, backends::FileBackend};

/// Turns fsync failures on and off.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<AtomicBool>);

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
pub fn open(path: &Path, switch: FaultSwitch) -> Result<Database, DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| DatabaseError::Storage(e.into()))?;
    let file = FileBackend::new(file)?;
    Database::builder().create_with_backend(FaultyFile { file, switch })
}
