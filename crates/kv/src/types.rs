//! Requests, responses and errors of the contract.

use std::fmt;

/// A store revision. Revisions start at 1 and only grow.
pub type Revision = i64;

/// A lease id. 0 means "no lease".
pub type LeaseId = i64;

/// One key as stored, with its etcd metadata.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Revision that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// Revision of the last put.
    pub mod_revision: Revision,
    /// Number of puts since creation (1 after creation).
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value", &String::from_utf8_lossy(&self.value))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Which keys a request covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly this key (must not be empty).
    Key(Vec<u8>),
    /// Every key that starts with this prefix; the empty prefix is every key.
    Prefix(Vec<u8>),
    /// Keys in `[start, end)`; `start` must not be empty and `end` must not be
    /// below `start`.
    Span {
        /// First key included.
        start: Vec<u8>,
        /// First key excluded.
        end: Vec<u8>,
    },
}

impl KeyRange {
    /// A single key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange::Key(key.into())
    }

    /// Every key under a prefix.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        KeyRange::Prefix(prefix.into())
    }

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(k) => k.as_slice() == key,
            KeyRange::Prefix(p) => key.starts_with(p),
            KeyRange::Span { start, end } => key >= start.as_slice() && key < end.as_slice(),
        }
    }

    /// The range as etcd's `(key, range_end)` pair: an empty `range_end` means a
    /// single key; `[0]` with key `[0]` means every key.
    pub fn to_etcd(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeyRange::Key(k) => (k.clone(), Vec::new()),
            KeyRange::Prefix(p) if p.is_empty() => (vec![0], vec![0]),
            KeyRange::Prefix(p) => (p.clone(), prefix_end(p)),
            KeyRange::Span { start, end } => (start.clone(), end.clone()),
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`).
/// For a prefix of only `0xff` bytes there is none: returns `[0]`, etcd's "to the end".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    /// Keys to read.
    pub range: KeyRange,
    /// At most this many keys; 0 for no limit.
    pub limit: i64,
    /// May be answered from one member's local state without a round of
    /// consensus (etcd's serializable read): faster, possibly a little stale on
    /// a cluster. Fit for a read whose result a later compare-and-swap checks.
    /// The embedded store is always current, so it ignores this.
    pub serializable: bool,
    /// Count every key in the range, past the limit too. Counting costs a walk
    /// of the whole range, so it is done only when asked: without it a limited
    /// read may stop at the limit, and [`RangeResponse::count`] is then exact
    /// only when `more` is false (otherwise a lower bound above the keys
    /// returned). etcd counts every range whatever is asked.
    pub count: bool,
}

impl RangeRequest {
    /// Reads a range.
    pub fn new(range: KeyRange) -> Self {
        RangeRequest { range, limit: 0, serializable: false, count: false }
    }

    /// Reads one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        RangeRequest::new(KeyRange::key(key))
    }

    /// Reads every key under a prefix.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        RangeRequest::new(KeyRange::prefix(prefix))
    }

    /// Allows a serializable (member-local, possibly stale) read.
    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }

    /// Caps the number of keys returned.
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    /// Asks for the exact count of the whole range (see [`RangeRequest::count`]).
    pub fn counted(mut self) -> Self {
        self.count = true;
        self
    }

    /// Only the count of the range: one key at most comes back.
    pub fn count_only(self) -> Self {
        self.with_limit(1).counted()
    }
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RangeResponse {
    /// The keys, ascending.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit left keys out.
    pub more: bool,
    /// How many keys matched, regardless of the limit, when the request asked
    /// for a count or nothing was left out; otherwise at least `kvs.len() + 1`.
    pub count: i64,
    /// The store revision the read saw.
    pub revision: Revision,
}

/// A write of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRequest {
    /// The key (not empty).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Lease to attach the key to; 0 for none (which also detaches it).
    pub lease: LeaseId,
    /// Return the value the key had before.
    pub prev_kv: bool,
}

impl PutRequest {
    /// A put with no lease and no previous value asked for.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        PutRequest { key: key.into(), value: value.into(), lease: 0, prev_kv: false }
    }

    /// Attaches the key to a lease.
    pub fn with_lease(mut self, lease: LeaseId) -> Self {
        self.lease = lease;
        self
    }

    /// Asks for the previous value.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// The answer to a put.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PutResponse {
    /// The revision of this write.
    pub revision: Revision,
    /// The key before the put, if asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// A delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Keys to delete.
    pub range: KeyRange,
    /// Return the deleted keys.
    pub prev_kv: bool,
}

impl DeleteRequest {
    /// Deletes one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        DeleteRequest { range: KeyRange::key(key), prev_kv: false }
    }

    /// Deletes every key under a prefix.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        DeleteRequest { range: KeyRange::prefix(prefix), prev_kv: false }
    }

    /// Asks for the deleted keys.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// The answer to a delete.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeleteResponse {
    /// The revision of this write, or the current one if nothing was deleted.
    pub revision: Revision,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted keys, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value's bytes.
    Value(Vec<u8>),
    /// The key's version (0 if missing).
    Version(i64),
    /// The key's create revision (0 if missing).
    CreateRevision(Revision),
    /// The key's mod revision (0 if missing).
    ModRevision(Revision),
    /// The key's lease (0 if none or missing).
    Lease(LeaseId),
}

/// How a compare compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One condition of a txn, on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// The comparison.
    pub op: CompareOp,
    /// What is compared, and with what.
    pub target: CompareTarget,
}

impl Compare {
    /// `key`'s target `op` the given value.
    pub fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget) -> Self {
        Compare { key: key.into(), op, target }
    }

    /// The key does not exist.
    pub fn missing(key: impl Into<Vec<u8>>) -> Self {
        Compare::new(key, CompareOp::Equal, CompareTarget::CreateRevision(0))
    }

    /// The key exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Compare::new(key, CompareOp::Greater, CompareTarget::CreateRevision(0))
    }

    /// The key was last written at `revision`.
    pub fn mod_revision_is(key: impl Into<Vec<u8>>, revision: Revision) -> Self {
        Compare::new(key, CompareOp::Equal, CompareTarget::ModRevision(revision))
    }

    /// Evaluates the compare on a key's current state (`None`: missing), with
    /// etcd's rules for missing keys.
    pub fn holds(&self, kv: Option<&KeyValue>) -> bool {
        use std::cmp::Ordering;
        let ordering: Ordering = match (&self.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (CompareTarget::Version(v), kv) => kv.map_or(0, |kv| kv.version).cmp(v),
            (CompareTarget::CreateRevision(r), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
            (CompareTarget::ModRevision(r), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
            (CompareTarget::Lease(l), kv) => kv.map_or(0, |kv| kv.lease).cmp(l),
        };
        match self.op {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::Greater => ordering == Ordering::Greater,
        }
    }
}

/// One operation inside a txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// A read.
    Range(RangeRequest),
    /// A write.
    Put(PutRequest),
    /// A delete.
    Delete(DeleteRequest),
}

/// The answer to one operation of a txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResponse {
    /// A read's answer.
    Range(RangeResponse),
    /// A write's answer.
    Put(PutResponse),
    /// A delete's answer.
    Delete(DeleteResponse),
}

/// A transaction: if every compare holds apply `success`, else `failure`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TxnRequest {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Applied when every compare holds.
    pub success: Vec<TxnOp>,
    /// Applied otherwise.
    pub failure: Vec<TxnOp>,
}

impl TxnRequest {
    /// An empty txn (no compares: the success branch runs).
    pub fn new() -> Self {
        TxnRequest::default()
    }

    /// Adds a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds an operation to the success branch.
    pub fn and_then(mut self, op: TxnOp) -> Self {
        self.success.push(op);
        self
    }

    /// Adds an operation to the failure branch.
    pub fn or_else(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }
}

/// The answer to a txn.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TxnResponse {
    /// Whether every compare held (so `success` ran).
    pub succeeded: bool,
    /// One answer per operation of the branch that ran, in order.
    pub responses: Vec<TxnOpResponse>,
    /// The revision of this write, or the current one if nothing changed.
    pub revision: Revision,
}

/// A watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    /// The key or keys to watch.
    pub range: KeyRange,
    /// First revision to report; 0 for "from the next one".
    pub start_revision: Revision,
    /// Include each event's previous key state.
    pub prev_kv: bool,
}

impl WatchRequest {
    /// Watches a prefix from the next revision.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        WatchRequest { range: KeyRange::prefix(prefix), start_revision: 0, prev_kv: false }
    }

    /// Watches one key from the next revision.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        WatchRequest { range: KeyRange::key(key), start_revision: 0, prev_kv: false }
    }

    /// Starts at a revision.
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.start_revision = revision;
        self
    }

    /// Asks for previous values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted (by a delete, a txn, or a lease's end).
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change. For a delete: the key, with `mod_revision` the
    /// deleting revision and every other field zero/empty (as etcd reports it).
    pub kv: KeyValue,
    /// The key before the change, if the watch asked for it and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// Every matching event of one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    /// The revision.
    pub revision: Revision,
    /// The events, in the order the revision applied them.
    pub events: Vec<Event>,
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// Seconds it lives without a keep-alive.
    pub ttl: i64,
}

/// A lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Its id.
    pub id: LeaseId,
    /// TTL it was granted.
    pub granted_ttl: i64,
    /// Seconds left, rounded as etcd does (down).
    pub remaining_ttl: i64,
    /// The keys attached to it, ascending.
    pub keys: Vec<Vec<u8>>,
}

/// What a store's reachability probe found (see [`crate::KvStore::health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHealth {
    /// Members the store knows of (1 for the embedded store).
    pub members: usize,
    /// Members that answered the probe.
    pub answering: usize,
    /// Whether a quorum answers: requests can be served now.
    pub quorum: bool,
}

/// Every way a store call can fail. Callers branch on the variant; the message is
/// for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The request is malformed (empty key, inverted range, too large, a txn that
    /// writes one key twice, a bad TTL). Nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The lease does not exist (never did, expired, or revoked). Nothing was written.
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// The history asked for has been compacted away.
    #[error("revision compacted: history before {compact_revision} is gone")]
    Compacted {
        /// The oldest revision still available.
        compact_revision: Revision,
    },
    /// The revision asked for has not happened yet.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        /// What was asked.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The backend cannot be reached now and nothing was applied; the call may
    /// be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write was sent but the answer was lost (the connection or the member
    /// failed after sending): it may or may not have been applied. Not safe to
    /// retry blindly; read the state to find out.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The store stopped after an I/O failure and refuses every call until reopened.
    #[error("store stopped after a failure: {0}")]
    Stopped(String),
    /// Another process holds the store's data directory.
    #[error("data directory is locked by another process: {0}")]
    Locked(String),
    /// Anything else the backend reported.
    #[error("store error: {0}")]
    Backend(String),
}

impl KvError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, KvError::Unavailable(_))
    }
}
