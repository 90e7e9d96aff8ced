//! The etcd v3 [`KvStore`]: a mapping onto `etcd-client`, plus what the client
//! does not do for us:
//! - requests are checked by the shared [`Limits`] first, so etcd and the embedded
//!   store refuse the same requests with the same errors;
//! - failover: one channel per member, requests go to the leader or another live
//!   member; a member that does not answer is marked down and probed in the
//!   background; reads, and writes a retry cannot apply twice, are retried on
//!   another member within the request's deadline; a write whose answer was lost
//!   is [`KvError::OutcomeUnknown`], never retried blindly, so
//!   [`KvError::Unavailable`] always means nothing was applied;
//! - watches survive a member's death, a disconnect or an etcd restart: each
//!   watch task re-creates the etcd watch from the revision after the last one
//!   it delivered, on a live member, so nothing inside etcd's history window is
//!   lost or repeated;
//! - history compaction, when this deployment owns the cluster
//!   ([`EtcdOptions::owns_cluster`]).

#![deny(missing_docs)]

mod compaction;
mod convert;
mod members;
mod requests;
mod retry;
mod tls;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use ifc_kv::validate::Limits;
use ifc_kv::{KvError, LeaseId, TxnOp, TxnRequest};

use crate::members::Members;
use crate::retry::{Answer, Resend};

/// TLS settings for the connection to etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// PEM of the CA that signed etcd's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for mutual TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check etcd's certificate against (else the endpoint's host).
    pub domain: Option<String>,
}

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Endpoints, e.g. `http://127.0.0.1:2379`: give every member, so requests
    /// can move to a live one when one fails.
    pub endpoints: Vec<String>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one request may take in all, failing over included.
    pub request_timeout: Duration,
    /// How long one attempt on one member may take before the store tries
    /// another (a frozen or partitioned member never answers).
    pub attempt_timeout: Duration,
    /// User and password, if etcd has auth enabled.
    pub user: Option<(String, String)>,
    /// TLS, if etcd serves it.
    pub tls: Option<EtcdTls>,
    /// Request size limits (checked before sending).
    pub limits: Limits,
    /// Revisions of history to keep when compacting (see `owns_cluster`).
    /// `None` never compacts.
    pub history_retention: Option<i64>,
    /// How often to compact.
    pub compaction_interval: Duration,
    /// This deployment is the cluster's only user, so it may compact history:
    /// etcd compaction is cluster-wide and would drop other applications'
    /// history too. Off by default; without it, history is left to etcd's own
    /// `--auto-compaction-*`.
    pub owns_cluster: bool,
}

impl EtcdOptions {
    /// Options for these endpoints with default timeouts (10 s, as the seed's
    /// `ETCD_TIMEOUT`; 2 s per attempt on one member: an HTTP request makes
    /// several store calls, and a client gives it about 8 s in all).
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            user: None,
            tls: None,
            limits: Limits::default(),
            history_retention: Some(100_000),
            compaction_interval: Duration::from_secs(60),
            owns_cluster: false,
        }
    }
}

/// What every clone of a store shares.
pub(crate) struct Shared {
    pub(crate) members: Members,
    pub(crate) limits: Limits,
    pub(crate) request_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    /// A client built at connect, for [`EtcdStore::client`].
    first_client: Client,
}

/// A `KvStore` on an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    /// The prober and compactor, stopped when the last clone of the store drops.
    _background: Option<Arc<Background>>,
}

/// Background tasks, aborted when dropped.
struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd; fails with [`KvError::Unavailable`] if no member
    /// answers within the connect timeout.
    pub async fn connect(options: EtcdOptions) -> Result<Self, KvError> {
        if options.endpoints.is_empty() {
            return Err(KvError::InvalidArgument("no etcd endpoint given".into()));
        }
        let members = Members::new(&options)?;
        let no_answer = || {
            KvError::Unavailable(format!(
                "no answer from etcd at {} within {:?}",
                options.endpoints.join(","),
                options.connect_timeout
            ))
        };
        // Connecting is lazy: make one call so a wrong address fails here. The
        // call also builds the client of the member that answered.
        let connected = tokio::time::timeout(options.connect_timeout, async {
            members
                .call(
                    Resend::Always,
                    options.attempt_timeout,
                    options.connect_timeout,
                    |mut c| async move { c.get("\0", None).await },
                )
                .await
        })
        .await
        .map_err(|_| no_answer())?;
        if let Err(e) = connected {
            return Err(match e {
                KvError::Unavailable(_) => no_answer(),
                e => e,
            });
        }
        let first = members.order()[0];
        let first_client = members.list[first].client().await.map_err(map_error)?;
        let shared = Arc::new(Shared {
            members,
            limits: options.limits,
            request_timeout: options.request_timeout,
            // With one member there is nowhere to fail over to: a slow answer
            // is worth the whole deadline rather than an unknown outcome.
            attempt_timeout: if options.endpoints.len() == 1 {
                options.request_timeout
            } else {
                options.attempt_timeout
            },
            first_client,
        });
        let mut store = EtcdStore { shared, _background: None };
        let mut tasks = vec![tokio::spawn(members::probe_forever(Arc::downgrade(&store.shared)))];
        match options.history_retention.filter(|r| *r > 0) {
            Some(retention) if options.owns_cluster => tasks.push(tokio::spawn(
                compaction::compact_history(store.clone(), retention, options.compaction_interval),
            )),
            Some(_) => tracing::info!(
                "etcd history compaction is off: the cluster may be shared (etcd compacts \
                 every key); set it with etcd's --auto-compaction-*, or declare that this \
                 deployment owns the cluster"
            ),
            None => {}
        }
        store._background = Some(Arc::new(Background(tasks)));
        Ok(store)
    }

    /// A client on one member, for benchmarks that compare against raw etcd calls.
    pub fn client(&self) -> Client {
        self.shared.first_client.clone()
    }

    /// Sends a request with failover (see the crate's doc).
    async fn call<T, F, Fut>(&self, resend: Resend, attempt: F) -> Result<Answer<T>, KvError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let shared = &self.shared;
        shared.members.call(resend, shared.attempt_timeout, shared.request_timeout, attempt).await
    }
}

/// Maps an etcd-client error onto the contract's errors.
pub(crate) fn map_error(e: etcd_client::Error) -> KvError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => map_status(&status),
        E::TransportError(e) => KvError::Unavailable(e.to_string()),
        E::IoError(e) => KvError::OutcomeUnknown(e.to_string()),
        E::InvalidArgs(m) => KvError::InvalidArgument(m),
        E::LeaseKeepAliveError(m) if m.contains("not found") => KvError::LeaseNotFound(0),
        other => KvError::Backend(other.to_string()),
    }
}

/// Maps a gRPC status etcd answered with onto the contract's errors.
pub(crate) fn map_status(status: &tonic::Status) -> KvError {
    use tonic::Code;
    let message = status.message().to_string();
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            KvError::Unavailable(message)
        }
        _ if message.contains("compacted") => KvError::Compacted { compact_revision: 0 },
        _ if message.contains("future revision") => {
            KvError::FutureRevision { requested: 0, current: 0 }
        }
        _ if message.contains("lease not found") => KvError::LeaseNotFound(0),
        Code::InvalidArgument => KvError::InvalidArgument(message),
        _ => KvError::Backend(format!("{:?}: {message}", status.code())),
    }
}

/// The lease a txn attaches keys to, for the `LeaseNotFound` it may cause.
fn txn_lease(req: &TxnRequest) -> LeaseId {
    req.success
        .iter()
        .chain(&req.failure)
        .find_map(|op| match op {
            TxnOp::Put(p) if p.lease != 0 => Some(p.lease),
            _ => None,
        })
        .unwrap_or(0)
}
