//! The user KV API behind the seed's `EventBus` (admin only): keys confined to
//! `{namespace}/kv/` by the core ([`ifc_core::user_kv`]). Shape: `docs/python.md`,
//! "The KV API the EventBus expects".

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures::{Stream, StreamExt};
use ifc_api::{ApiError, ErrorCode};
use ifc_core::user_kv::{
    KvChanges, KvCompare, KvCompareTarget, KvEntry, KvOp, KvPage, KvTxn, KvTxnOutcome,
};
use ifc_kv::{CompareOp, EventKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{Body, Q};
use crate::sse::{StreamStart, resume_point, sse};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(kv_get, kv_put, kv_delete))
        .routes(routes!(kv_txn))
        .routes(routes!(kv_watch))
}

/// One key, or every key under a prefix.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KvSelect {
    /// Exactly this key.
    key: Option<String>,
    /// Every key under this prefix (empty: every user key), in key order.
    prefix: Option<String>,
    /// With `prefix`: at most this many, 1 to 1000 (default 1000).
    limit: Option<i64>,
}

/// One key.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KvKey {
    /// The key.
    key: String,
}

/// A user key as stored.
#[derive(Debug, Serialize, ToSchema)]
struct KvEntryWire {
    key: String,
    value: String,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
}

impl From<KvEntry> for KvEntryWire {
    fn from(e: KvEntry) -> Self {
        KvEntryWire {
            key: e.key,
            value: e.value,
            create_revision: e.create_revision,
            mod_revision: e.mod_revision,
            version: e.version,
        }
    }
}

/// The answer to a read.
#[derive(Debug, Serialize, ToSchema)]
struct KvRange {
    /// The keys, in key order (empty if none).
    entries: Vec<KvEntryWire>,
    /// Whether the limit left keys out.
    more: bool,
    /// The store revision the read saw.
    revision: i64,
}

impl From<KvPage> for KvRange {
    fn from(p: KvPage) -> Self {
        KvRange {
            entries: p.entries.into_iter().map(Into::into).collect(),
            more: p.more,
            revision: p.revision,
        }
    }
}

/// A value to store (UTF-8 text).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KvValue {
    value: String,
}

/// The revision of a write.
#[derive(Debug, Serialize, ToSchema)]
struct KvWritten {
    revision: i64,
}

/// The answer to a delete.
#[derive(Debug, Serialize, ToSchema)]
struct KvDeleted {
    /// Keys deleted: 0 or 1.
    deleted: i64,
    revision: i64,
}

/// The compare operator.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
enum KvCompareOpWire {
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = ">")]
    Greater,
}

/// What a compare looks at.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum KvCompareTargetWire {
    Value,
    Version,
    CreateRevision,
    ModRevision,
}

/// A string (for `value`) or an integer (for the others).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum KvCompareValue {
    Number(i64),
    Text(String),
}

/// One condition: `key`'s `target` `op` `value`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KvCompareWire {
    key: String,
    target: KvCompareTargetWire,
    op: KvCompareOpWire,
    value: KvCompareValue,
}

/// One operation of a branch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum KvOpWire {
    Put { key: String, value: String },
    Delete { key: String },
    Get { key: String },
}

/// A transaction on user keys: ≤ 128 compares and ≤ 128 ops per branch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KvTxnWire {
    #[serde(default)]
    compare: Vec<KvCompareWire>,
    #[serde(default)]
    success: Vec<KvOpWire>,
    #[serde(default)]
    failure: Vec<KvOpWire>,
}

/// The answer to a txn.
#[derive(Debug, Serialize, ToSchema)]
struct KvTxnResult {
    succeeded: bool,
    revision: i64,
    /// One per `get` of the branch that ran: the entry, or null.
    responses: Vec<Option<KvEntryWire>>,
}

impl From<KvTxnOutcome> for KvTxnResult {
    fn from(o: KvTxnOutcome) -> Self {
        KvTxnResult {
            succeeded: o.succeeded,
            revision: o.revision,
            responses: o.responses.into_iter().map(|r| r.map(Into::into)).collect(),
        }
    }
}

/// One change under a watched prefix.
#[derive(Debug, Serialize, ToSchema)]
struct KvWatchEvent {
    /// `put` or `delete`.
    #[serde(rename = "type")]
    kind: &'static str,
    key: String,
    /// The new value (puts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    mod_revision: i64,
}

/// Every change of one revision (`event: kv`, `id: <revision>`).
#[derive(Debug, Serialize, ToSchema)]
struct KvWatchBatch {
    revision: i64,
    events: Vec<KvWatchEvent>,
}

impl From<KvChanges> for KvWatchBatch {
    fn from(c: KvChanges) -> Self {
        let events = c
            .events
            .into_iter()
            .map(|e| KvWatchEvent {
                kind: if e.kind == EventKind::Put { "put" } else { "delete" },
                key: e.key,
                value: e.value,
                mod_revision: e.mod_revision,
            })
            .collect();
        KvWatchBatch { revision: c.revision, events }
    }
}

/// What to watch.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KvWatchQuery {
    /// Every key under this prefix (empty or absent: every user key).
    #[serde(default)]
    prefix: String,
    /// Resume after this revision (the `Last-Event-ID` header wins).
    after: Option<i64>,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidArgument, message)
}

/// Reads one user key (`key`) or every key under `prefix` (admin).
#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(KvSelect),
    responses((status = 200, body = KvRange), (status = "4XX", body = ApiError)))]
async fn kv_get(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<KvSelect>,
) -> Answer<KvRange> {
    caller.admin_only()?;
    let page = match (q.key, q.prefix) {
        (Some(key), None) if q.limit.is_none() => state.core.user_kv().get(&key).await?,
        (None, Some(prefix)) => state.core.user_kv().list(&prefix, q.limit).await?,
        _ => return Err(invalid("give exactly one of key or prefix (limit goes with prefix)")),
    };
    Ok(Json(page.into()))
}

/// Writes one user key (admin).
#[utoipa::path(put, path = "/v1/kv", tag = "kv", params(KvKey), request_body = KvValue,
    responses((status = 200, body = KvWritten), (status = "4XX", body = ApiError)))]
async fn kv_put(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<KvKey>,
    Body(body): Body<KvValue>,
) -> Answer<KvWritten> {
    caller.admin_only()?;
    let revision = state.core.user_kv().put(&q.key, &body.value).await?;
    Ok(Json(KvWritten { revision }))
}

/// Deletes one user key (admin).
#[utoipa::path(delete, path = "/v1/kv", tag = "kv", params(KvKey),
    responses((status = 200, body = KvDeleted), (status = "4XX", body = ApiError)))]
async fn kv_delete(
    State(state): State<AppState>,
    caller: Caller,
    Q(q): Q<KvKey>,
) -> Answer<KvDeleted> {
    caller.admin_only()?;
    let (deleted, revision) = state.core.user_kv().delete(&q.key).await?;
    Ok(Json(KvDeleted { deleted, revision }))
}

/// Compare-and-swap on user keys (admin): if every compare holds, `success`
/// runs, else `failure`, atomically.
#[utoipa::path(post, path = "/v1/kv/txn", tag = "kv", request_body = KvTxnWire,
    responses((status = 200, body = KvTxnResult), (status = "4XX", body = ApiError)))]
async fn kv_txn(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<KvTxnWire>,
) -> Answer<KvTxnResult> {
    caller.admin_only()?;
    let txn = KvTxn {
        compare: body.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: body.success.into_iter().map(op).collect(),
        failure: body.failure.into_iter().map(op).collect(),
    };
    Ok(Json(state.core.user_kv().txn(&txn).await?.into()))
}

fn compare(c: KvCompareWire) -> Result<KvCompare, AppError> {
    let op = match c.op {
        KvCompareOpWire::Equal => CompareOp::Equal,
        KvCompareOpWire::NotEqual => CompareOp::NotEqual,
        KvCompareOpWire::Less => CompareOp::Less,
        KvCompareOpWire::Greater => CompareOp::Greater,
    };
    let target = match (c.target, c.value) {
        (KvCompareTargetWire::Value, KvCompareValue::Text(v)) => KvCompareTarget::Value(v),
        (KvCompareTargetWire::Version, KvCompareValue::Number(n)) => KvCompareTarget::Version(n),
        (KvCompareTargetWire::CreateRevision, KvCompareValue::Number(n)) => {
            KvCompareTarget::CreateRevision(n)
        }
        (KvCompareTargetWire::ModRevision, KvCompareValue::Number(n)) => {
            KvCompareTarget::ModRevision(n)
        }
        (KvCompareTargetWire::Value, _) => return Err(invalid("a value compare needs a string")),
        _ => return Err(invalid("a version or revision compare needs an integer")),
    };
    Ok(KvCompare { key: c.key, op, target })
}

fn op(o: KvOpWire) -> KvOp {
    match o {
        KvOpWire::Put { key, value } => KvOp::Put { key, value },
        KvOpWire::Delete { key } => KvOp::Delete { key },
        KvOpWire::Get { key } => KvOp::Get { key },
    }
}

/// Every change under `prefix`, as Server-Sent Events (`event: kv`, one per
/// revision) (admin). Without a resume point it starts now; a resume point
/// older than the history ends with an `error` event, code `compacted`.
#[utoipa::path(get, path = "/v1/kv/watch", tag = "kv", params(KvWatchQuery),
    responses((status = 200, content_type = "text/event-stream", body = KvWatchBatch),
        (status = "4XX", body = ApiError)))]
async fn kv_watch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(q): Q<KvWatchQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    caller.admin_only()?;
    let after = resume_point(&headers, &StreamStart { after: q.after })?;
    let changes = state.core.user_kv().watch(&q.prefix, after).await?;
    let batches = changes.map(|c| c.map(KvWatchBatch::from)).boxed();
    Ok(sse(state, batches, ("kv", "kv"), |b: &KvWatchBatch| b.revision, after.unwrap_or(0)))
}
