//! The IF.coordinator HTTP/JSON service.
//!
//! Handlers are thin: extract (auth, path, body) → one core call → wire type.
//! Errors go through the one table in [`error`]. The OpenAPI document is
//! generated from the same route definitions that build the router, so the two
//! cannot drift.
//!
//! Auth: `Authorization: Bearer <token>`. The admin (orchestrator) token may do
//! everything but act as a swarm. A swarm presents its own token together with
//! `X-Ifc-Swarm: <swarm_id>`, and may act only as that swarm.

#![deny(missing_docs)]

mod error;
mod metrics;
mod realtime;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ifc_api::{
    ApiError, ClaimOutcome, ClaimRequest, CompleteRequest, ErrorCode, FailRequest, Heartbeat,
    ListTasks, NewTask, NextClaim, Owner, RegisterSwarm, Registration, RenewRequest, Renewed,
    Swarm, SwarmStats, Tampering, TaskPage, TaskRecord, TaskView, Verification, WitnessQuery,
    WitnessRecord,
};
use ifc_core::Coordinator;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::AppError;
pub use metrics::{MeteredStore, Metrics};
pub use realtime::SLOW_READER_TIMEOUT;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    core: Arc<Coordinator>,
    admin_token_sha256: String,
    metrics: Arc<Metrics>,
    /// How long a stream reader may leave its buffer full before it is cut off.
    slow_reader_timeout: std::time::Duration,
}

impl AppState {
    /// State for a server over `core`, accepting `admin_token` as the
    /// orchestrator's token. Pass the `metrics` the core's witness logger and
    /// store wrapper feed.
    pub fn new(core: Arc<Coordinator>, admin_token: &str, metrics: Arc<Metrics>) -> Self {
        AppState {
            core,
            admin_token_sha256: sha256(admin_token),
            metrics,
            slow_reader_timeout: SLOW_READER_TIMEOUT,
        }
    }

    /// Cuts off stream readers that leave their buffer full this long (default
    /// [`SLOW_READER_TIMEOUT`]).
    pub fn with_slow_reader_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.slow_reader_timeout = timeout;
        self
    }
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The orchestrator.
    Admin,
    /// A swarm, proven by its token.
    Swarm(String),
}

impl Caller {
    fn admin(&self) -> Result<(), AppError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Swarm(_) => {
                Err(AppError::new(ErrorCode::Forbidden, "this needs the admin token"))
            }
        }
    }

    fn swarm(&self, swarm_id: &str) -> Result<(), AppError> {
        match self {
            Caller::Swarm(me) if me == swarm_id => Ok(()),
            Caller::Swarm(me) => Err(AppError::new(
                ErrorCode::Forbidden,
                format!("swarm {me} cannot act as swarm {swarm_id}"),
            )),
            Caller::Admin => Err(AppError::new(
                ErrorCode::Forbidden,
                "this needs the swarm's own token (with X-Ifc-Swarm)",
            )),
        }
    }

    fn admin_or_swarm(&self, swarm_id: &str) -> Result<(), AppError> {
        match self {
            Caller::Admin => Ok(()),
            _ => self.swarm(swarm_id),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let swarm = parts.headers.get("x-ifc-swarm").and_then(|v| v.to_str().ok());
        match swarm {
            None if sha256(token) == state.admin_token_sha256 => Ok(Caller::Admin),
            None => Err(AppError::new(
                ErrorCode::Unauthorized,
                "unknown token (a swarm token needs the X-Ifc-Swarm header)",
            )),
            Some(swarm_id) => match state.core.check_swarm_token(swarm_id, token).await {
                Ok(()) => Ok(Caller::Swarm(swarm_id.to_string())),
                Err(ifc_core::CoreError::WrongToken(_)) => {
                    Err(AppError::new(ErrorCode::Unauthorized, "wrong token for this swarm"))
                }
                Err(e) => Err(e.into()),
            },
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// A JSON body whose rejections are [`AppError`]s.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| Body(v)).map_err(AppError::from)
    }
}

/// A path parameter whose rejections are [`AppError`]s.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| Id(id))
            .map_err(|e: PathRejection| AppError::new(ErrorCode::InvalidArgument, e.body_text()))
    }
}

/// Query parameters whose rejections are [`AppError`]s.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Q(q))
            .map_err(|e: QueryRejection| AppError::new(ErrorCode::InvalidArgument, e.body_text()))
    }
}

type Answer<T> = Result<Json<T>, AppError>;

/// Registers a swarm (admin), or refreshes it (with its own token in the body).
#[utoipa::path(post, path = "/v1/swarms", tag = "swarms", request_body = RegisterSwarm,
    responses((status = 201, body = Registration), (status = "4XX", body = ApiError)))]
async fn register_swarm(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<RegisterSwarm>,
) -> Result<(StatusCode, Json<Registration>), AppError> {
    caller.admin()?;
    let session = state
        .core
        .register_swarm(&req.swarm_id, req.capabilities, req.metadata, req.token.as_deref())
        .await?;
    let registration = Registration {
        swarm_id: session.swarm_id,
        token: session.token,
        ttl_secs: session.ttl_secs,
    };
    Ok((StatusCode::CREATED, Json(registration)))
}

/// Lists live swarms (admin).
#[utoipa::path(get, path = "/v1/swarms", tag = "swarms",
    responses((status = 200, body = Vec<Swarm>), (status = "4XX", body = ApiError)))]
async fn list_swarms(State(state): State<AppState>, caller: Caller) -> Answer<Vec<Swarm>> {
    caller.admin()?;
    Ok(Json(state.core.list_swarms().await?.iter().map(|s| s.public()).collect()))
}

/// A swarm's statistics (admin or the swarm).
#[utoipa::path(get, path = "/v1/swarms/{swarm_id}", tag = "swarms",
    params(("swarm_id" = String, Path)),
    responses((status = 200, body = SwarmStats), (status = "4XX", body = ApiError)))]
async fn swarm_stats(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<SwarmStats> {
    caller.admin_or_swarm(&id)?;
    match state.core.get_swarm_stats(&id).await? {
        Some(stats) => Ok(Json(stats)),
        None => Err(AppError::new(
            ErrorCode::SwarmNotRegistered,
            format!("swarm {id} is not registered"),
        )),
    }
}

/// Unregisters a swarm (the swarm); its claims return to the pool at once.
#[utoipa::path(delete, path = "/v1/swarms/{swarm_id}", tag = "swarms",
    params(("swarm_id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ApiError)))]
async fn unregister_swarm(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id,
) -> Result<StatusCode, AppError> {
    caller.swarm(&id)?;
    let token = bearer(&headers).unwrap_or_default();
    state.core.unregister_swarm(&id, token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps a swarm alive (the swarm).
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/heartbeat", tag = "swarms",
    params(("swarm_id" = String, Path)),
    responses((status = 200, body = Heartbeat), (status = "4XX", body = ApiError)))]
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id,
) -> Answer<Heartbeat> {
    caller.swarm(&id)?;
    let token = bearer(&headers).unwrap_or_default();
    Ok(Json(Heartbeat { ttl_secs: state.core.heartbeat(&id, token).await? }))
}

/// Claims the best ready task the swarm can do (the swarm).
#[utoipa::path(post, path = "/v1/swarms/{swarm_id}/claim-next", tag = "tasks",
    params(("swarm_id" = String, Path)),
    responses((status = 200, body = NextClaim), (status = "4XX", body = ApiError)))]
async fn claim_next(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<NextClaim> {
    caller.swarm(&id)?;
    Ok(Json(NextClaim { claim: state.core.claim_next(&id).await? }))
}

/// Creates a task (admin). Idempotent for the same id and content.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = NewTask,
    responses((status = 201, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    Body(task): Body<NewTask>,
) -> Result<(StatusCode, Json<TaskRecord>), AppError> {
    caller.admin()?;
    Ok((StatusCode::CREATED, Json(state.core.create_task(task).await?)))
}

/// Lists tasks in one state, a page at a time (admin).
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListTasks),
    responses((status = 200, body = TaskPage), (status = "4XX", body = ApiError)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<ListTasks>,
) -> Answer<TaskPage> {
    caller.admin()?;
    Ok(Json(state.core.list_tasks(q.state, q.after.as_deref(), q.limit.unwrap_or(50)).await?))
}

/// The whole task (admin or any swarm).
#[utoipa::path(get, path = "/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = String, Path)),
    responses((status = 200, body = TaskView), (status = "4XX", body = ApiError)))]
async fn get_task(State(state): State<AppState>, _caller: Caller, Id(id): Id) -> Answer<TaskView> {
    Ok(Json(state.core.get_task(&id).await?))
}

/// The seed's owner string (admin or any swarm).
#[utoipa::path(get, path = "/v1/tasks/{task_id}/owner", tag = "tasks", params(("task_id" = String, Path)),
    responses((status = 200, body = Owner), (status = "4XX", body = ApiError)))]
async fn task_owner(State(state): State<AppState>, _caller: Caller, Id(id): Id) -> Answer<Owner> {
    match state.core.get_task_owner(&id).await? {
        Some(owner) => Ok(Json(Owner { owner })),
        None => Err(AppError::new(ErrorCode::TaskNotFound, format!("task {id} not found"))),
    }
}

/// Claims a task (the swarm in the body). A lost race is a 200 with outcome
/// `already_claimed`.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/claim", tag = "tasks", params(("task_id" = String, Path)),
    request_body = ClaimRequest,
    responses((status = 200, body = ClaimOutcome), (status = "4XX", body = ApiError)))]
async fn claim_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<ClaimRequest>,
) -> Answer<ClaimOutcome> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(state.core.claim_task(&req.swarm_id, &id).await?))
}

/// Extends a claim (its holder).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/renew", tag = "tasks", params(("task_id" = String, Path)),
    request_body = RenewRequest,
    responses((status = 200, body = Renewed), (status = "4XX", body = ApiError)))]
async fn renew_claim(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<RenewRequest>,
) -> Answer<Renewed> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(Renewed { deadline_ms: state.core.renew_claim(&req.swarm_id, &id, req.token).await? }))
}

/// Completes a task (its holder, with the claim's token).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/complete", tag = "tasks", params(("task_id" = String, Path)),
    request_body = CompleteRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn complete_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<CompleteRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(state.core.complete_task(&req.swarm_id, &id, req.token, req.result).await?))
}

/// Fails a task (its holder): back to the pool, or to dead-letter.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/fail", tag = "tasks", params(("task_id" = String, Path)),
    request_body = FailRequest,
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn fail_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<FailRequest>,
) -> Answer<TaskRecord> {
    caller.swarm(&req.swarm_id)?;
    Ok(Json(state.core.fail_task(&req.swarm_id, &id, req.token, req.error).await?))
}

/// Cancels a task (admin).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/cancel", tag = "tasks", params(("task_id" = String, Path)),
    responses((status = 200, body = TaskRecord), (status = "4XX", body = ApiError)))]
async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Answer<TaskRecord> {
    caller.admin()?;
    Ok(Json(state.core.cancel_task(&id).await?))
}

/// Witness records in commit order (admin).
#[utoipa::path(get, path = "/v1/witness", tag = "witness", params(WitnessQuery),
    responses((status = 200, body = Vec<WitnessRecord>), (status = "4XX", body = ApiError)))]
async fn witness(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<WitnessQuery>,
) -> Answer<Vec<WitnessRecord>> {
    caller.admin()?;
    Ok(Json(state.core.witness(&q).await?))
}

/// The whole witness log as JSON Lines (admin).
#[utoipa::path(get, path = "/v1/witness/export", tag = "witness",
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = "4XX", body = ApiError)))]
async fn witness_export(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, AppError> {
    caller.admin()?;
    let body = state.core.export_witness().await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Verifies every witness chain (admin).
#[utoipa::path(get, path = "/v1/witness/verify", tag = "witness",
    responses((status = 200, body = Verification), (status = "4XX", body = ApiError)))]
async fn witness_verify(State(state): State<AppState>, caller: Caller) -> Answer<Verification> {
    caller.admin()?;
    let problems: Vec<Tampering> = state.core.verify_witness().await?;
    Ok(Json(Verification { ok: problems.is_empty(), problems }))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = String), (status = 503, body = ApiError)))]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state
        .core
        .store()
        .range(ifc_kv::RangeRequest::key("\0"))
        .await
        .map_err(|e| AppError::new(ErrorCode::Unavailable, format!("store unreachable: {e}")))?;
    Ok("ready")
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, body = String)))]
async fn metrics_text(State(state): State<AppState>) -> Response {
    let live = state.core.list_swarms().await.ok().map(|s| s.len());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(live))
        .into_response()
}

#[derive(OpenApi)]
#[openapi(info(
    title = "IF.coordinator",
    description = "Coordination for fleets of agent swarms."
))]
struct ApiDoc;

/// The routes and their OpenAPI document, from one definition.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(register_swarm, list_swarms))
        .routes(routes!(swarm_stats, unregister_swarm))
        .routes(routes!(heartbeat))
        .routes(routes!(claim_next))
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(task_owner))
        .routes(routes!(claim_task))
        .routes(routes!(renew_claim))
        .routes(routes!(complete_task))
        .routes(routes!(fail_task))
        .routes(routes!(cancel_task))
        .routes(routes!(witness))
        .routes(routes!(witness_export))
        .routes(routes!(witness_verify))
        .routes(routes!(realtime::push_task))
        .routes(routes!(realtime::inbox))
        .routes(routes!(realtime::ack))
        .routes(routes!(realtime::decline))
        .routes(routes!(realtime::raise_blocker))
        .routes(routes!(realtime::list_blockers))
        .routes(routes!(realtime::blocker_stream))
        .routes(routes!(realtime::get_blocker))
        .routes(routes!(realtime::assign_helper))
        .routes(routes!(realtime::resolve_blocker))
        .routes(routes!(realtime::events))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16(), started.elapsed());
    response
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        return AppError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
            .into_response();
    }
    response
}

/// The whole service: routes, `/openapi.json`, errors for unknown routes, a body
/// limit, and metrics.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let (router, api) = routes().split_for_parts();
    let api = Arc::new(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { Json(api.as_ref().clone()) }),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting
/// and finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, no_delay);
    // `into_make_service` resolves the route table once; handing `axum::serve`
    // the router itself rebuilds it for every connection (about 18 KB each,
    // held for the connection's life: most of an idle SSE stream's cost).
    axum::serve(listener, router.into_make_service()).with_graceful_shutdown(shutdown).await
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

/// A listener that completes TLS handshakes off the accept loop: a slow or
/// broken client never holds up the next connection.
struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
}

impl TlsListener {
    fn new(
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let mut stream = stream;
                no_delay(&mut stream);
                let (acceptor, handshaken) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls)) => drop(handshaken.send((tls, peer)).await),
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Like [`serve`], over TLS.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TlsListener::new(listener, config)?;
    axum::serve(listener, router.into_make_service()).with_graceful_shutdown(shutdown).await
}
