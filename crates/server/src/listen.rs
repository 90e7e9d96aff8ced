//! Serving the router on a plain TCP listener or over TLS, under the limits
//! an operator sets: how many connections at once, how many TLS handshakes in
//! flight, and how long a request head, a request body and an idle
//! connection may take (see [`Limits`]). No client can hold the server's file
//! descriptors: past the connection cap an idle connection is closed to make
//! room, and if none is idle the newcomer is answered 503 `overloaded`.

mod conn;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

pub(crate) use conn::BODY_TIMED_OUT;
pub use conn::BodyTimedOut;

/// The limits an operator sets on connections. Defaults: header 10 s, body
/// 30 s, idle 60 s, 10,000 connections, 128 TLS handshakes in flight, no
/// body size check ahead of the router's.
#[derive(Clone, Debug)]
pub struct Limits {
    /// From the first byte of a request head to its end; past it the
    /// connection is answered 408 `request_timeout` and closed. Also bounds a
    /// TLS handshake (and the wait for a handshake slot).
    pub header_timeout: Duration,
    /// From the end of a request head to the end of its body; past it the
    /// request is answered 408 `request_timeout` and the connection closed.
    pub body_timeout: Duration,
    /// How long a connection with nothing in flight stays open.
    pub idle_timeout: Duration,
    /// Most connections at once (event streams included).
    pub max_connections: usize,
    /// Most TLS handshakes in progress at once; more wait for a slot.
    pub max_tls_handshakes: usize,
    /// A request whose `Content-Length` says more than this is answered 413
    /// `payload_too_large` at once, before any of its body is read (give the
    /// router's own body limit). `None`: the router's limit alone applies.
    pub max_body_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 65_536,
            max_tls_handshakes: 128,
            max_body_bytes: None,
        }
    }
}

/// Serves `router` on `listener` with the default [`Limits`] until `shutdown`
/// resolves, then stops accepting and finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, None, Limits::default(), shutdown).await
}

/// Like [`serve`], over TLS.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, Some(config), Limits::default(), shutdown).await
}

/// Serves `router` on `listener` (over TLS when `tls` is given) under
/// `limits` until `shutdown` resolves; then stops accepting, closes idle
/// connections, and returns once the requests in flight have finished.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Arc::new(Limits {
        max_connections: limits.max_connections.max(1),
        max_tls_handshakes: limits.max_tls_handshakes.max(1),
        ..limits
    });
    let edge = Arc::new(Edge {
        router,
        tls: tls.map(|config| Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshakes: Arc::new(Semaphore::new(limits.max_tls_handshakes)),
        }),
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        refusals: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
        idle: Mutex::new(HashMap::new()),
        limits,
    });
    let (stopping, stop) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before it
                    // was accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let mut stream = stream;
        no_delay(&mut stream);
        next_id = next_id.wrapping_add(1);
        let edge = edge.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(permit) = edge.connection_slot().await else {
                edge.refuse(stream, peer);
                return;
            };
            edge.run(next_id, stream, peer, permit, stop).await;
        });
    }
    drop(listener);
    stopping.send_replace(true);
    // Every connection holds a slot until it ends: all slots back means all
    // connections (and their requests in flight) are done.
    let all = u32::try_from(edge.limits.max_connections).unwrap_or(u32::MAX);
    let _ = edge.connections.acquire_many(all).await;
    Ok(())
}

/// Refusals being written at once; past this a refused connection is just
/// closed (a flood must not turn the answers into the new starvation).
const REFUSALS_AT_ONCE: usize = 64;

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: Arc<Semaphore>,
}

/// What every connection of one listener shares.
struct Edge {
    router: Router,
    tls: Option<Tls>,
    limits: Arc<Limits>,
    connections: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    /// Connections past their handshake, to find an idle one to evict.
    idle: Mutex<HashMap<u64, Arc<conn::Activity>>>,
}

impl Edge {
    /// A connection slot: a free one, or one an idle connection gives up.
    async fn connection_slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.evict_longest_idle() {
            return None;
        }
        // The evicted connection returns its slot as soon as it closes; another
        // newcomer may take it first, hence the bound.
        tokio::time::timeout(Duration::from_secs(1), self.connections.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Asks the connection idle the longest to close; false if none is idle.
    fn evict_longest_idle(&self) -> bool {
        let registry = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let longest = registry
            .values()
            .filter_map(|activity| activity.idle_since().map(|since| (since, activity)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, activity)) => {
                activity.evict();
                true
            }
            None => false,
        }
    }

    /// Over the connection cap with nothing idle: answer 503 `overloaded`
    /// (plain HTTP; over TLS there is no answer without a handshake, so the
    /// connection is closed).
    fn refuse(&self, mut stream: TcpStream, peer: std::net::SocketAddr) {
        tracing::debug!(%peer, "connection cap reached: refusing");
        if self.tls.is_some() {
            return;
        }
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let answer = conn::canned(
                "503 Service Unavailable",
                "overloaded",
                "the server is at its connection limit; retry shortly",
                "retry-after: 1\r\n",
            );
            let refusal = async {
                stream.write_all(&answer).await?;
                stream.shutdown().await?;
                // Read what the client sent before closing, so the close does
                // not reset the connection before the answer is read.
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), refusal).await;
            drop(permit);
        });
    }

    /// Completes the TLS handshake if any, then serves the connection.
    async fn run(
        &self,
        id: u64,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        _slot: OwnedSemaphorePermit,
        stop: watch::Receiver<bool>,
    ) {
        let activity = Arc::new(conn::Activity::default());
        let router = self.router.clone();
        let limits = self.limits.clone();
        match &self.tls {
            None => {
                let _registered = self.register(id, &activity);
                conn::drive(stream, router, limits, activity, stop).await;
            }
            Some(tls) => {
                let handshake = async {
                    let _slot = tls.handshakes.clone().acquire_owned().await.ok()?;
                    tls.acceptor
                        .accept(stream)
                        .await
                        .map_err(|e| {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                        })
                        .ok()
                };
                let Ok(Some(stream)) =
                    tokio::time::timeout(self.limits.header_timeout, handshake).await
                else {
                    tracing::debug!(%peer, "TLS handshake not done within the header timeout");
                    return;
                };
                let _registered = self.register(id, &activity);
                conn::drive(stream, router, limits, activity, stop).await;
            }
        }
    }

    fn register(&self, id: u64, activity: &Arc<conn::Activity>) -> Registered<'_> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, activity.clone());
        Registered { edge: self, id }
    }
}

/// Removes a connection from the eviction registry when it ends.
struct Registered<'a> {
    edge: &'a Edge,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.edge.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
    }
}

/// Sends small writes at once. Without it, an SSE event written while the one
/// before is still unacknowledged waits for that ack (Nagle), which a client's
/// delayed ack can hold back by tens of milliseconds. axum 0.8 leaves it off.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// TLS for the service: a certificate chain and its private key, PEM.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the certificate: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("cannot read the private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
