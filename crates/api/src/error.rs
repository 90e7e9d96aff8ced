//! The one error shape of the API, `{"code": "...", "message": "..."}`, and its
//! stable codes. The server maps every failure to one of these (once, at the
//! edge); the client turns them back into typed errors.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable error codes. New codes may be added; existing ones never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A field is malformed (400).
    InvalidArgument,
    /// The body is not valid JSON (400).
    MalformedJson,
    /// The body is JSON of the wrong shape (422).
    InvalidBody,
    /// No or wrong bearer token (401).
    Unauthorized,
    /// The token is valid but not for this operation (403).
    Forbidden,
    /// The swarm lacks the task's required capabilities (403).
    Incapable,
    /// No such route (404).
    NotFound,
    /// No such task (404).
    TaskNotFound,
    /// No such blocker (404).
    BlockerNotFound,
    /// The stream's start revision is older than the store's history (410).
    Compacted,
    /// The swarm is not registered (404).
    SwarmNotRegistered,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The operation conflicts with the current state (409). No longer sent:
    /// each conflict now has its own code below; kept so old clients parse.
    Conflict,
    /// Concurrent writers won every attempt; nothing changed, retry (409).
    Contended,
    /// The swarm id is registered under another owner (409).
    SwarmTaken,
    /// A task with this id exists with different content (409).
    TaskExists,
    /// The task is completed, dead or cancelled and cannot change (409).
    TaskFinished,
    /// The task is claimed, so it cannot be pushed (409).
    TaskClaimed,
    /// The pushed task was acknowledged already (409).
    AlreadyAcknowledged,
    /// The blocker is resolved (409).
    BlockerResolved,
    /// The claim token is stale: the claim lapsed or was replaced (409).
    Fenced,
    /// Another swarm holds the task (409).
    NotOwner,
    /// The caller's claim lapsed; the message says when, after what lease,
    /// and what became of the task (409).
    ClaimLapsed,
    /// A newer claim replaced the caller's (409).
    ClaimReplaced,
    /// The task is not claimed with this token (never claimed, or not now) (409).
    NotClaimed,
    /// Only a dead task can be retried (409).
    NotDead,
    /// The request head or body did not arrive within the server's timeout;
    /// the connection is closed (408).
    RequestTimeout,
    /// The body is too large (413).
    PayloadTooLarge,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The request would pass a store limit other than value size (most
    /// operations in one transaction, e.g. a swarm whose capabilities cover
    /// more capability sets than one read may span) (422).
    StoreLimit,
    /// The swarm limit is reached (429).
    TooManySwarms,
    /// The server is at its connection limit; nothing was read; retry after
    /// `Retry-After` seconds (503).
    Overloaded,
    /// The store cannot be reached and nothing was applied; retry (503).
    Unavailable,
    /// The store may or may not have applied the write (its answer was lost):
    /// read the state before retrying, never retry blindly (503).
    OutcomeUnknown,
    /// Anything else (500); the message carries no internals.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::MalformedJson => 400,
            ErrorCode::InvalidBody | ErrorCode::StoreLimit => 422,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::Incapable => 403,
            ErrorCode::NotFound
            | ErrorCode::TaskNotFound
            | ErrorCode::BlockerNotFound
            | ErrorCode::SwarmNotRegistered => 404,
            ErrorCode::Compacted => 410,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict
            | ErrorCode::Contended
            | ErrorCode::SwarmTaken
            | ErrorCode::TaskExists
            | ErrorCode::TaskFinished
            | ErrorCode::TaskClaimed
            | ErrorCode::AlreadyAcknowledged
            | ErrorCode::BlockerResolved
            | ErrorCode::Fenced
            | ErrorCode::NotOwner
            | ErrorCode::ClaimLapsed
            | ErrorCode::ClaimReplaced
            | ErrorCode::NotClaimed
            | ErrorCode::NotDead => 409,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManySwarms => 429,
            ErrorCode::Unavailable | ErrorCode::OutcomeUnknown | ErrorCode::Overloaded => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl ErrorCode {
    /// Whether the same call may succeed if simply retried.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Contended | ErrorCode::Unavailable | ErrorCode::Overloaded)
    }
}

/// The error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The item at fault, from 0, when a batch was refused for one of its
    /// items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), index: None }
    }

    /// The same error, naming item `index` of a batch as the one at fault.
    pub fn at_item(self, index: usize) -> Self {
        ApiError { index: Some(index), ..self }
    }
}
