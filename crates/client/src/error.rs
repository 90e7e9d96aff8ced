//! Every way a call can fail, and the checks made before sending.

use ifc_api::{ApiError, ErrorCode, ids};

/// Every way a call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error; `error.code` is stable.
    #[error("{error} ({code:?}, HTTP {status})", code = error.code)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error.
        error: ApiError,
    },
    /// The server could not be reached.
    #[error("cannot reach the coordinator: {0}")]
    Transport(String),
    /// The server's answer could not be read.
    #[error("unexpected answer from the coordinator: {0}")]
    Decode(String),
    /// An id outside the one id grammar ([`ifc_api::ids::check`]); refused
    /// before anything was sent. Its [`ClientError::code`] is
    /// `invalid_argument`, as the server would answer.
    #[error("{field} {id:?} {reason}")]
    InvalidId {
        /// Which argument (`task_id`, `swarm_id`, `blocker_id`, ...).
        field: &'static str,
        /// The refused value.
        id: String,
        /// Why it is not an id.
        reason: ids::IdError,
    },
}

impl ClientError {
    /// The server's error code, if the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            ClientError::InvalidId { .. } => Some(ErrorCode::InvalidArgument),
            _ => None,
        }
    }
}

/// A transport failure, with its innermost cause ("Connection refused", a TLS
/// or DNS failure): reqwest's own message names only the URL.
pub(crate) fn transport(e: reqwest::Error) -> ClientError {
    let mut cause: &dyn std::error::Error = &e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let outer = e.to_string();
    let inner = cause.to_string();
    if inner == outer {
        ClientError::Transport(outer)
    } else {
        ClientError::Transport(format!("{outer}: {inner}"))
    }
}

/// Refuses an id outside the grammar the server uses, before sending.
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), ClientError> {
    ids::check(id).map_err(|reason| ClientError::InvalidId { field, id: id.into(), reason })
}
