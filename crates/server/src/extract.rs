//! Extractors whose rejections are [`AppError`]s, so a malformed path, query,
//! body or credential gets a stable code like every other failure.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use ifc_api::ErrorCode;
use serde::de::DeserializeOwned;

use crate::auth::{Caller, authenticate};
use crate::error::AppError;
use crate::state::AppState;

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        authenticate(&parts.method, &parts.headers, state).await
    }
}

/// A JSON body whose rejections are [`AppError`]s.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| Body(v)).map_err(AppError::from)
    }
}

/// A JSON body that may be left out entirely (no body): then `T::default()`.
/// A body that is there is read as [`Body`] reads it.
pub struct BodyOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for BodyOrDefault<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let headers = req.headers();
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
        let no_body = match length {
            Some(length) => length.trim() == "0",
            None => !headers.contains_key(header::TRANSFER_ENCODING),
        };
        if no_body {
            return Ok(BodyOrDefault(T::default()));
        }
        Body::<T>::from_request(req, state).await.map(|Body(v)| BodyOrDefault(v))
    }
}

/// A path parameter whose rejections are [`AppError`]s.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Id(id))
            .map_err(invalid_path)
    }
}

/// Two path parameters whose rejections are [`AppError`]s.
pub(crate) struct Ids(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((a, b))| Ids(a, b))
            .map_err(invalid_path)
    }
}

fn invalid_path(rejection: PathRejection) -> AppError {
    AppError::new(ErrorCode::InvalidArgument, rejection.body_text())
}

/// Query parameters whose rejections are [`AppError`]s.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Q(q))
            .map_err(|e: QueryRejection| AppError::new(ErrorCode::InvalidArgument, e.body_text()))
    }
}
