//! The one error-to-HTTP table. Every failure leaves the server as
//! `{"code", "message"}` with the status of its code; anything unmapped is a
//! 500 whose message carries no internals (its cause chain is logged).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ifc_api::{ApiError, ErrorCode};
use ifc_core::CoreError;
use ifc_kv::KvError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct AppError(pub ApiError);

impl AppError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError(ApiError::new(code, message))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // etcd elects a new leader in about a second: ask for a retry after that.
            return (status, [(axum::http::header::RETRY_AFTER, "1")], Json(self.0))
                .into_response();
        }
        (status, Json(self.0)).into_response()
    }
}

impl From<CoreError> for AppError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::Invalid { .. } | CoreError::InvalidItem { .. } => ErrorCode::InvalidArgument,
            CoreError::BatchTooLarge { .. } => ErrorCode::PayloadTooLarge,
            CoreError::NotRegistered(_) => ErrorCode::SwarmNotRegistered,
            CoreError::Contended(_) => ErrorCode::Contended,
            CoreError::SwarmTaken(_) => ErrorCode::SwarmTaken,
            CoreError::TaskExists(_) => ErrorCode::TaskExists,
            CoreError::TaskFinished { .. } => ErrorCode::TaskFinished,
            CoreError::TaskClaimed { .. } => ErrorCode::TaskClaimed,
            CoreError::AlreadyAcknowledged(_) => ErrorCode::AlreadyAcknowledged,
            CoreError::BlockerResolved(_) => ErrorCode::BlockerResolved,
            CoreError::WrongToken(_) => ErrorCode::Forbidden,
            CoreError::TooManySwarms { .. } => ErrorCode::TooManySwarms,
            CoreError::TaskNotFound(_) => ErrorCode::TaskNotFound,
            CoreError::Incapable { .. } => ErrorCode::Incapable,
            CoreError::NotOwner { .. } => ErrorCode::NotOwner,
            CoreError::Fenced { .. } => ErrorCode::Fenced,
            CoreError::ClaimLapsed { .. } => ErrorCode::ClaimLapsed,
            CoreError::ClaimReplaced { .. } => ErrorCode::ClaimReplaced,
            CoreError::NotClaimed { .. } => ErrorCode::NotClaimed,
            CoreError::NotDead { .. } => ErrorCode::NotDead,
            CoreError::BlockerNotFound(_) => ErrorCode::BlockerNotFound,
            CoreError::Compacted { .. } => ErrorCode::Compacted,
            // The store's own limits, met at the edge: never a 500.
            CoreError::Store(KvError::InvalidArgument(m)) if m.starts_with("value of") => {
                ErrorCode::PayloadTooLarge
            }
            CoreError::Store(KvError::InvalidArgument(m)) if m.starts_with("txn branch has") => {
                ErrorCode::StoreLimit
            }
            CoreError::Store(KvError::Unavailable(_)) => ErrorCode::Unavailable,
            CoreError::Store(KvError::Stopped(_)) => ErrorCode::Unavailable,
            CoreError::Store(KvError::OutcomeUnknown(_)) => ErrorCode::OutcomeUnknown,
            _ => ErrorCode::Internal,
        };
        if code == ErrorCode::Internal {
            // The cause chain goes to the log; the body says only "internal".
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %chain, "internal error");
        }
        let message = match code {
            // Store and decoding failures stay in the server's log, not the body.
            ErrorCode::Internal => "internal error".to_string(),
            ErrorCode::Unavailable => {
                "the store is unavailable; nothing was applied; retry".to_string()
            }
            ErrorCode::OutcomeUnknown => {
                "the store's answer was lost: the write may or may not have applied; \
                 read the state before retrying"
                    .to_string()
            }
            ErrorCode::PayloadTooLarge if matches!(e, CoreError::Store(_)) => {
                format!("the stored record would be too large for the store: {e}")
            }
            _ => e.to_string(),
        };
        let error = ApiError::new(code, message);
        match e {
            CoreError::InvalidItem { index, .. } => AppError(error.at_item(index)),
            _ => AppError(error),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match &rejection {
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson,
            JsonRejection::JsonDataError(_) => ErrorCode::InvalidBody,
            JsonRejection::BytesRejection(_) if body_timed_out(&rejection) => {
                ErrorCode::RequestTimeout
            }
            JsonRejection::BytesRejection(_) => {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::PayloadTooLarge
                } else {
                    ErrorCode::InvalidArgument
                }
            }
            _ => ErrorCode::InvalidArgument,
        };
        AppError::new(code, rejection.body_text())
    }
}

/// Whether the body could not be read because it did not arrive in time (the
/// listener's body timer), found in the cause chain or, where a layer has
/// flattened it to text, by its message.
fn body_timed_out(rejection: &JsonRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<crate::BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    rejection.body_text().contains(crate::listen::BODY_TIMED_OUT)
}
