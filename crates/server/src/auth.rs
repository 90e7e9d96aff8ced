//! Who is calling, and what they may do.
//!
//! `Authorization: Bearer <token>`. The admin (orchestrator) token may do
//! everything but act as a swarm. A swarm presents its own token together with
//! `X-Ifc-Swarm: <swarm_id>`, and may act only as that swarm. The admin
//! token with `X-Ifc-Swarm` acts for that (registered) swarm, and what it
//! does is witnessed with `"by": "admin"`. The viewer token (for a shared
//! dashboard) may read: it is accepted on `GET` and `HEAD` requests only, and
//! refused with 403 `forbidden` on every other method before any handler
//! runs, so a handler that lets the admin read lets the viewer read too.

use axum::http::{HeaderMap, Method, header};
use ifc_api::ErrorCode;
use ifc_core::CoreError;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::state::AppState;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The orchestrator.
    Admin,
    /// A swarm, proven by its token.
    Swarm(String),
    /// The orchestrator acting for a registered swarm (admin token plus
    /// `X-Ifc-Swarm`).
    AdminFor(String),
    /// The read-only viewer token, on a read (`GET`/`HEAD`) request: it exists
    /// on no other request (see [`authenticate`]).
    Viewer,
}

impl Caller {
    /// Refuses anyone but the orchestrator, and the viewer (who only ever
    /// exists on a read request).
    pub(crate) fn admin(&self) -> Result<(), AppError> {
        match self {
            Caller::Admin | Caller::Viewer => Ok(()),
            Caller::Swarm(_) | Caller::AdminFor(_) => Err(AppError::new(
                ErrorCode::Forbidden,
                "this needs the admin token (without X-Ifc-Swarm)",
            )),
        }
    }

    /// Refuses anyone but the orchestrator itself, the viewer too: for the
    /// user key space, which holds the application's own data rather than the
    /// fleet's state a dashboard shows.
    pub(crate) fn admin_only(&self) -> Result<(), AppError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Viewer => Err(AppError::new(
                ErrorCode::Forbidden,
                "the viewer token does not read the user key space: this needs the admin token",
            )),
            Caller::Swarm(_) | Caller::AdminFor(_) => self.admin(),
        }
    }

    /// Refuses anyone but the swarm `swarm_id` itself.
    pub(crate) fn swarm(&self, swarm_id: &str) -> Result<(), AppError> {
        match self {
            Caller::Swarm(me) | Caller::AdminFor(me) if me == swarm_id => Ok(()),
            Caller::Swarm(me) | Caller::AdminFor(me) => Err(AppError::new(
                ErrorCode::Forbidden,
                format!("swarm {me} cannot act as swarm {swarm_id}"),
            )),
            Caller::Admin => Err(AppError::new(
                ErrorCode::Forbidden,
                "this needs the swarm's own token, or the admin token, with X-Ifc-Swarm",
            )),
            Caller::Viewer => Err(AppError::new(
                ErrorCode::Forbidden,
                "the viewer token cannot act as a swarm: this needs the swarm's own token, \
                 or the admin token, with X-Ifc-Swarm",
            )),
        }
    }

    /// Refuses anyone but the orchestrator (or the viewer, on a read) and the
    /// swarm `swarm_id`.
    pub(crate) fn admin_or_swarm(&self, swarm_id: &str) -> Result<(), AppError> {
        match self {
            Caller::Admin | Caller::Viewer => Ok(()),
            _ => self.swarm(swarm_id),
        }
    }
}

/// A token (the admin's or the viewer's), kept only as its SHA-256 digest.
#[derive(Clone)]
pub(crate) struct TokenDigest {
    sha256: String,
}

impl TokenDigest {
    pub(crate) fn new(token: &str) -> Self {
        TokenDigest { sha256: sha256(token) }
    }

    pub(crate) fn matches(&self, token: &str) -> bool {
        sha256(token) == self.sha256
    }
}

fn sha256(text: &str) -> String {
    ifc_core::hex(&Sha256::digest(text.as_bytes()))
}

/// Whether a request with this method only reads.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The caller a request with these headers proves: the admin, the viewer (on a
/// read), or a swarm whose token the coordinator accepts.
pub(crate) async fn authenticate(
    method: &Method,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Caller, AppError> {
    let (admin, core) = (&state.admin_token, &state.core);
    let token = bearer(headers)
        .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    let swarm = headers.get("x-ifc-swarm").and_then(|v| v.to_str().ok());
    let viewer = state.viewer_token.as_ref().is_some_and(|v| v.matches(token));
    match swarm {
        None if admin.matches(token) => Ok(Caller::Admin),
        None if viewer && is_read(method) => Ok(Caller::Viewer),
        _ if viewer => Err(AppError::new(
            ErrorCode::Forbidden,
            "the viewer token may only read; this action needs the admin token",
        )),
        None => Err(AppError::new(
            ErrorCode::Unauthorized,
            "unknown token: neither the admin token, the viewer token, nor a swarm's token \
             (a swarm's token goes with the X-Ifc-Swarm header)",
        )),
        Some(swarm_id) if admin.matches(token) => match core.get_swarm(swarm_id).await? {
            Some(_) => Ok(Caller::AdminFor(swarm_id.to_string())),
            None => Err(AppError::new(
                ErrorCode::SwarmNotRegistered,
                format!("swarm {swarm_id} is not registered"),
            )),
        },
        Some(swarm_id) => match core.check_swarm_token(swarm_id, token).await {
            Ok(()) => Ok(Caller::Swarm(swarm_id.to_string())),
            Err(CoreError::WrongToken(_)) => {
                Err(AppError::new(ErrorCode::Unauthorized, "wrong token for this swarm"))
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// The bearer token in these headers, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// Runs a request made with the admin token on a swarm's behalf (with
/// `X-Ifc-Swarm`) so the witness records it writes say `"by": "admin"`.
pub(crate) async fn mark_admin_acting(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let acting = headers.contains_key("x-ifc-swarm")
        && bearer(headers).is_some_and(|token| state.admin_token.matches(token));
    if acting {
        ifc_core::acting_as_admin(next.run(request)).await
    } else {
        next.run(request).await
    }
}
