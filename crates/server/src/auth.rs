//! Who is calling, and what they may do.
//!
//! `Authorization: Bearer <token>`. The admin (orchestrator) token may do
//! everything but act as a swarm. A swarm presents its own token together with
//! `X-Ifc-Swarm: <swarm_id>`, and may act only as that swarm. The admin
//! token with `X-Ifc-Swarm` acts for that (registered) swarm, and what it
//! does is witnessed with `"by": "admin"`.

use axum::http::{HeaderMap, header};
use ifc_api::ErrorCode;
use ifc_core::{Coordinator, CoreError};
use sha2::{Digest, Sha256};

use crate::error::AppError;

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
}

impl Caller {
    /// Refuses anyone but the orchestrator.
    pub(crate) fn admin(&self) -> Result<(), AppError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Swarm(_) | Caller::AdminFor(_) => Err(AppError::new(
                ErrorCode::Forbidden,
                "this needs the admin token (without X-Ifc-Swarm)",
            )),
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
        }
    }

    /// Refuses anyone but the orchestrator and the swarm `swarm_id`.
    pub(crate) fn admin_or_swarm(&self, swarm_id: &str) -> Result<(), AppError> {
        match self {
            Caller::Admin => Ok(()),
            _ => self.swarm(swarm_id),
        }
    }
}

/// The admin token, kept only as its SHA-256 digest.
#[derive(Clone)]
pub(crate) struct AdminToken {
    sha256: String,
}

impl AdminToken {
    pub(crate) fn new(token: &str) -> Self {
        AdminToken { sha256: sha256(token) }
    }

    pub(crate) fn matches(&self, token: &str) -> bool {
        sha256(token) == self.sha256
    }
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller these request headers prove: the admin, or a swarm whose token
/// the coordinator accepts.
pub(crate) async fn authenticate(
    headers: &HeaderMap,
    admin: &AdminToken,
    core: &Coordinator,
) -> Result<Caller, AppError> {
    let token = bearer(headers)
        .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    let swarm = headers.get("x-ifc-swarm").and_then(|v| v.to_str().ok());
    match swarm {
        None if admin.matches(token) => Ok(Caller::Admin),
        None => Err(AppError::new(
            ErrorCode::Unauthorized,
            "unknown token (a swarm token needs the X-Ifc-Swarm header)",
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
