//! The handlers, one file per resource. Each is thin: extract (auth, path,
//! body) → one core call → wire type; each file hands [`crate::router`] its
//! routes with their OpenAPI entries.

pub(crate) mod batches;
pub(crate) mod blockers;
pub(crate) mod events;
pub(crate) mod inbox;
pub(crate) mod kv;
pub(crate) mod ops;
pub(crate) mod queues;
pub(crate) mod stats;
pub(crate) mod swarms;
pub(crate) mod tasks;
pub(crate) mod witness;

use axum::Json;

use crate::error::AppError;

/// What most handlers return: a JSON body, or an error from the one table.
pub(crate) type Answer<T> = Result<Json<T>, AppError>;
