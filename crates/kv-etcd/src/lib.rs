//! The etcd v3 [`KvStore`]: a thin mapping onto `etcd-client`, plus what the
//! client does not do for us:
//! - requests are checked by the shared [`Limits`] first, so etcd and the embedded
//!   store refuse the same requests with the same errors;
//! - watches survive a dropped connection or an etcd restart: each watch task
//!   remembers the last revision it delivered and re-creates the etcd watch from
//!   the next one, dropping anything at or below it, so nothing inside etcd's
//!   history window is lost or repeated;
//! - history is compacted to the last [`EtcdOptions::history_retention`]
//!   revisions, as the embedded store does, so etcd's backend does not grow
//!   until it hits its quota and refuses every write.

#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp as EtcdCompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp as EtcdTxnOp,
    TxnOpResponse as EtcdTxnOpResponse, WatchOptions,
};
use ifc_kv::validate::Limits;
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, DeleteResponse, Event, EventKind, KeyValue,
    KvError, KvStore, Lease, LeaseId, LeaseStatus, PutRequest, PutResponse, RangeRequest,
    RangeResponse, Revision, TxnOp, TxnOpResponse, TxnRequest, TxnResponse, WatchBatch,
    WatchRequest, WatchStream,
};
use tokio::sync::mpsc;

/// TLS settings for the connection to etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// PEM of the CA that signed etcd's certificate (else the system roots).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for mutual TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check etcd's certificate against (else the endpoint's host).
    pub domain: Option<String>,
}

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Endpoints, e.g. `http://127.0.0.1:2379`; requests are balanced across them.
    pub endpoints: Vec<String>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// User and password, if etcd has auth enabled.
    pub user: Option<(String, String)>,
    /// TLS, if etcd serves it.
    pub tls: Option<EtcdTls>,
    /// Request size limits (checked before sending).
    pub limits: Limits,
    /// Revisions of history to keep; older ones are compacted every
    /// `compaction_interval`. `None` leaves compaction to etcd's own
    /// `--auto-compaction-*` settings.
    pub history_retention: Option<i64>,
    /// How often to compact.
    pub compaction_interval: Duration,
}

impl EtcdOptions {
    /// Options for these endpoints with default timeouts (10 s, as the seed's
    /// `ETCD_TIMEOUT`).
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            user: None,
            tls: None,
            limits: Limits::default(),
            history_retention: Some(100_000),
            compaction_interval: Duration::from_secs(60),
        }
    }
}

/// A `KvStore` on an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    limits: Limits,
    /// The history compactor, stopped when the last clone of the store drops.
    _compactor: Option<std::sync::Arc<AbortOnDrop>>,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd; fails with [`KvError::Unavailable`] if no endpoint answers
    /// within the connect timeout.
    pub async fn connect(options: EtcdOptions) -> Result<Self, KvError> {
        if options.endpoints.is_empty() {
            return Err(KvError::InvalidArgument("no etcd endpoint given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some((user, password)) = &options.user {
            connect = connect.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &options.tls {
            connect = with_tls(connect, tls)?;
        }
        let client = tokio::time::timeout(
            options.connect_timeout,
            Client::connect(&options.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| {
            KvError::Unavailable(format!(
                "no answer from etcd at {} within {:?}",
                options.endpoints.join(","),
                options.connect_timeout
            ))
        })?
        .map_err(map_error)?;
        let mut store = EtcdStore { client, limits: options.limits, _compactor: None };
        // Connecting is lazy in tonic: make one call so a wrong address fails here.
        store.range(RangeRequest::key("\0")).await?;
        if let Some(retention) = options.history_retention.filter(|r| *r > 0) {
            let task = tokio::spawn(compact_history(
                store.clone(),
                retention,
                options.compaction_interval,
            ));
            store._compactor = Some(std::sync::Arc::new(AbortOnDrop(task)));
        }
        Ok(store)
    }

    /// The underlying client, for benchmarks that compare against raw etcd calls.
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

#[cfg(feature = "tls")]
fn with_tls(connect: ConnectOptions, tls: &EtcdTls) -> Result<ConnectOptions, KvError> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let mut options = TlsOptions::new();
    if let Some(ca) = &tls.ca_pem {
        options = options.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = &tls.identity_pem {
        options = options.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &tls.domain {
        options = options.domain_name(domain.clone());
    }
    Ok(connect.with_tls(options))
}

#[cfg(not(feature = "tls"))]
fn with_tls(_: ConnectOptions, _: &EtcdTls) -> Result<ConnectOptions, KvError> {
    Err(KvError::InvalidArgument("this build has no TLS support (feature `tls`)".into()))
}

/// Maps an etcd-client error onto the contract's errors.
fn map_error(e: etcd_client::Error) -> KvError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let message = status.message().to_string();
            match status.code() {
                tonic_code::Unavailable | tonic_code::DeadlineExceeded | tonic_code::Cancelled => {
                    KvError::Unavailable(message)
                }
                _ if message.contains("compacted") => KvError::Compacted { compact_revision: 0 },
                _ if message.contains("future revision") => {
                    KvError::FutureRevision { requested: 0, current: 0 }
                }
                _ if message.contains("lease not found") => KvError::LeaseNotFound(0),
                tonic_code::InvalidArgument => KvError::InvalidArgument(message),
                _ => KvError::Backend(format!("{:?}: {message}", status.code())),
            }
        }
        E::TransportError(e) => KvError::Unavailable(e.to_string()),
        E::IoError(e) => KvError::Unavailable(e.to_string()),
        E::InvalidArgs(m) => KvError::InvalidArgument(m),
        E::LeaseKeepAliveError(m) if m.contains("not found") => KvError::LeaseNotFound(0),
        other => KvError::Backend(other.to_string()),
    }
}

use tonic::Code as tonic_code;

fn with_lease_id(e: KvError, id: LeaseId) -> KvError {
    match e {
        KvError::LeaseNotFound(_) => KvError::LeaseNotFound(id),
        e => e,
    }
}

fn kv_from(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn get_options(req: &RangeRequest) -> (Vec<u8>, GetOptions) {
    let (key, end) = req.range.to_etcd();
    let mut options = GetOptions::new().with_limit(req.limit);
    if req.serializable {
        options = options.with_serializable();
    }
    if !end.is_empty() {
        options = options.with_range(end);
    }
    (key, options)
}

fn delete_options(req: &DeleteRequest) -> (Vec<u8>, DeleteOptions) {
    let (key, end) = req.range.to_etcd();
    let mut options = DeleteOptions::new();
    if !end.is_empty() {
        options = options.with_range(end);
    }
    if req.prev_kv {
        options = options.with_prev_key();
    }
    (key, options)
}

fn put_options(req: &PutRequest) -> PutOptions {
    let mut options = PutOptions::new();
    if req.lease != 0 {
        options = options.with_lease(req.lease);
    }
    if req.prev_kv {
        options = options.with_prev_key();
    }
    options
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

fn compare_to_etcd(c: &Compare) -> EtcdCompare {
    let op = match c.op {
        CompareOp::Equal => EtcdCompareOp::Equal,
        CompareOp::NotEqual => EtcdCompareOp::NotEqual,
        CompareOp::Less => EtcdCompareOp::Less,
        CompareOp::Greater => EtcdCompareOp::Greater,
    };
    let key = c.key.clone();
    match &c.target {
        CompareTarget::Value(v) => EtcdCompare::value(key, op, v.clone()),
        CompareTarget::Version(v) => EtcdCompare::version(key, op, *v),
        CompareTarget::CreateRevision(r) => EtcdCompare::create_revision(key, op, *r),
        CompareTarget::ModRevision(r) => EtcdCompare::mod_revision(key, op, *r),
        CompareTarget::Lease(l) => EtcdCompare::lease(key, op, *l),
    }
}

fn op_to_etcd(op: &TxnOp) -> EtcdTxnOp {
    match op {
        TxnOp::Range(r) => {
            let (key, options) = get_options(r);
            EtcdTxnOp::get(key, Some(options))
        }
        TxnOp::Put(p) => EtcdTxnOp::put(p.key.clone(), p.value.clone(), Some(put_options(p))),
        TxnOp::Delete(d) => {
            let (key, options) = delete_options(d);
            EtcdTxnOp::delete(key, Some(options))
        }
    }
}

fn range_response(resp: &etcd_client::GetResponse, revision: Revision) -> RangeResponse {
    RangeResponse {
        kvs: resp.kvs().iter().map(kv_from).collect(),
        more: resp.more(),
        count: resp.count(),
        revision,
    }
}

fn delete_response(
    resp: &etcd_client::DeleteResponse,
    revision: Revision,
    prev_kv: bool,
) -> DeleteResponse {
    DeleteResponse {
        revision,
        deleted: resp.deleted(),
        prev_kvs: if prev_kv { resp.prev_kvs().iter().map(kv_from).collect() } else { Vec::new() },
    }
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        self.limits.check_range_request(&req)?;
        let (key, options) = get_options(&req);
        let resp = self.client.kv_client().get(key, Some(options)).await.map_err(map_error)?;
        Ok(range_response(&resp, header_revision(resp.header())))
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, KvError> {
        self.limits.check_put(&req)?;
        let resp = self
            .client
            .kv_client()
            .put(req.key.clone(), req.value.clone(), Some(put_options(&req)))
            .await
            .map_err(|e| with_lease_id(map_error(e), req.lease))?;
        Ok(PutResponse {
            revision: header_revision(resp.header()),
            prev_kv: if req.prev_kv { resp.prev_key().map(kv_from) } else { None },
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, KvError> {
        self.limits.check_delete(&req)?;
        let (key, options) = delete_options(&req);
        let resp = self.client.kv_client().delete(key, Some(options)).await.map_err(map_error)?;
        Ok(delete_response(&resp, header_revision(resp.header()), req.prev_kv))
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, KvError> {
        self.limits.check_txn(&req)?;
        let txn = Txn::new()
            .when(req.compares.iter().map(compare_to_etcd).collect::<Vec<_>>())
            .and_then(req.success.iter().map(op_to_etcd).collect::<Vec<_>>())
            .or_else(req.failure.iter().map(op_to_etcd).collect::<Vec<_>>());
        let resp = self.client.kv_client().txn(txn).await.map_err(|e| {
            let lease = req
                .success
                .iter()
                .chain(&req.failure)
                .find_map(|op| match op {
                    TxnOp::Put(p) if p.lease != 0 => Some(p.lease),
                    _ => None,
                })
                .unwrap_or(0);
            with_lease_id(map_error(e), lease)
        })?;
        let revision = header_revision(resp.header());
        let branch = if resp.succeeded() { &req.success } else { &req.failure };
        let responses = resp
            .op_responses()
            .iter()
            .zip(branch)
            .map(|(r, op)| match (r, op) {
                (EtcdTxnOpResponse::Get(g), _) => {
                    Ok(TxnOpResponse::Range(range_response(g, revision)))
                }
                (EtcdTxnOpResponse::Put(p), TxnOp::Put(put)) => {
                    Ok(TxnOpResponse::Put(PutResponse {
                        revision,
                        prev_kv: if put.prev_kv { p.prev_key().map(kv_from) } else { None },
                    }))
                }
                (EtcdTxnOpResponse::Delete(d), TxnOp::Delete(del)) => {
                    Ok(TxnOpResponse::Delete(delete_response(d, revision, del.prev_kv)))
                }
                (other, _) => Err(KvError::Backend(format!(
                    "etcd answered {other:?} to a different operation"
                ))),
            })
            .collect::<Result<Vec<_>, KvError>>()?;
        Ok(TxnResponse { succeeded: resp.succeeded(), responses, revision })
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, KvError> {
        self.limits.check_range(&req.range)?;
        if req.start_revision < 0 {
            return Err(KvError::InvalidArgument("negative start revision".into()));
        }
        let (tx, mut rx) = mpsc::channel(64);
        let mut start = req.start_revision;
        if start == 0 {
            // Pin "now" before returning, so no event after this call is missed.
            start = self.range(RangeRequest::key("\0")).await?.revision + 1;
        }
        tokio::spawn(run_watch(self.client.clone(), req, start, tx));
        Ok(Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease, KvError> {
        self.limits.check_ttl(ttl_secs)?;
        let resp = self.client.lease_client().grant(ttl_secs, None).await.map_err(map_error)?;
        Ok(Lease { id: resp.id(), ttl: resp.ttl() })
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, KvError> {
        let not_found = |e| with_lease_id(map_error(e), id);
        let (mut keeper, mut stream) =
            self.client.lease_client().keep_alive(id).await.map_err(not_found)?;
        // The first answer only proved the lease exists; ask once more for its TTL.
        keeper.keep_alive().await.map_err(not_found)?;
        match stream.message().await.map_err(not_found)? {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            _ => Err(KvError::LeaseNotFound(id)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<Revision, KvError> {
        let resp = self
            .client
            .lease_client()
            .revoke(id)
            .await
            .map_err(|e| with_lease_id(map_error(e), id))?;
        Ok(header_revision(resp.header()))
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<LeaseStatus>, KvError> {
        let resp = self
            .client
            .lease_client()
            .time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .map_err(map_error)?;
        // etcd answers TTL -1 for a lease it does not know.
        if resp.ttl() < 0 {
            return Ok(None);
        }
        let mut keys = resp.keys().to_vec();
        keys.sort();
        Ok(Some(LeaseStatus {
            id,
            granted_ttl: resp.granted_ttl(),
            remaining_ttl: resp.ttl(),
            keys,
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        match self.client.kv_client().compact(revision, None).await.map_err(map_error) {
            Ok(_) => Ok(()),
            Err(KvError::FutureRevision { .. }) => {
                let current = self.range(RangeRequest::key("\0")).await?.revision;
                Err(KvError::FutureRevision { requested: revision, current })
            }
            // etcd does not say where it compacted to; the refused revision is at
            // or below it, which is what a caller needs.
            Err(KvError::Compacted { .. }) => {
                Err(KvError::Compacted { compact_revision: revision })
            }
            Err(e) => Err(e),
        }
    }
}

/// Every `interval`, compacts history older than the last `retention` revisions.
/// Several coordinator nodes may each run one: a compaction another node already
/// did comes back `Compacted`, which is success here. Holds only a client (no
/// compactor handle), so it does not keep its store alive.
async fn compact_history(store: EtcdStore, retention: i64, interval: Duration) {
    let store = EtcdStore { _compactor: None, ..store };
    let mut done: Revision = 0;
    loop {
        tokio::time::sleep(interval).await;
        let current = match store.range(RangeRequest::key("\0")).await {
            Ok(resp) => resp.revision,
            Err(e) => {
                tracing::warn!(error = %e, "history compaction: cannot read the revision");
                continue;
            }
        };
        let target = current - retention;
        if target <= done {
            continue;
        }
        match store.compact(target).await {
            Ok(()) | Err(KvError::Compacted { .. }) => done = target,
            Err(e) => tracing::warn!(error = %e, target, "history compaction failed"),
        }
    }
}

/// How long to wait before re-creating a broken watch, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows one watch, re-creating it after any disconnect from the revision after
/// the last one delivered.
async fn run_watch(
    client: Client,
    req: WatchRequest,
    mut next: Revision,
    tx: mpsc::Sender<Result<WatchBatch, KvError>>,
) {
    let (key, end) = req.range.to_etcd();
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut options = WatchOptions::new().with_start_revision(next);
        if !end.is_empty() {
            options = options.with_range(end.clone());
        }
        if req.prev_kv {
            options = options.with_prev_key();
        }
        let mut watch_client = client.watch_client();
        let created = tokio::select! {
            created = watch_client.watch(key.clone(), Some(options)) => created,
            () = tx.closed() => return,
        };
        let mut stream = match created {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "etcd watch: cannot create, retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = tx.closed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = tx.closed() => return,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => break,
            };
            backoff = Duration::from_millis(50);
            if resp.compact_revision() > 0 {
                let compacted = KvError::Compacted { compact_revision: resp.compact_revision() };
                let _ = tx.send(Err(compacted)).await;
                return;
            }
            if resp.canceled() {
                let reason = resp.cancel_reason().to_string();
                let _ = tx.send(Err(KvError::Backend(format!("watch canceled: {reason}")))).await;
                return;
            }
            for batch in group_by_revision(resp.events(), next) {
                next = batch.revision + 1;
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
        }
        tracing::debug!(next, "etcd watch: stream ended, resuming");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Splits one etcd watch response into per-revision batches, skipping revisions
/// below `next` (already delivered before a resume).
fn group_by_revision(events: &[etcd_client::Event], next: Revision) -> Vec<WatchBatch> {
    let mut batches: Vec<WatchBatch> = Vec::new();
    for event in events {
        let Some(kv) = event.kv() else { continue };
        let revision = kv.mod_revision();
        if revision < next {
            continue;
        }
        let (kind, kv) = match event.event_type() {
            EventType::Put => (EventKind::Put, kv_from(kv)),
            EventType::Delete => (
                EventKind::Delete,
                KeyValue { key: kv.key().to_vec(), mod_revision: revision, ..KeyValue::default() },
            ),
        };
        let event = Event { kind, kv, prev_kv: event.prev_kv().map(kv_from) };
        match batches.last_mut() {
            Some(batch) if batch.revision == revision => batch.events.push(event),
            _ => batches.push(WatchBatch { revision, events: vec![event] }),
        }
    }
    batches
}
