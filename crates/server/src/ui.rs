//! The dashboard: `GET /` and `GET /ui/{file}`, hand-written HTML, CSS and
//! ES modules embedded in the binary (no build step, no CDN). The pages call
//! the `/v1` API from JavaScript with `Authorization: Bearer`, so they hold no
//! power of their own.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles
//! from this origin only, no inline code, no framing), `nosniff`, no referrer,
//! and an ETag of its content with `Cache-Control: no-cache`: browsers keep
//! the files and revalidate with one cheap 304, so a new binary's dashboard is
//! never mixed with an old one's cached modules.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ifc_api::ErrorCode;
use ifc_core::hex;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::state::AppState;

/// The policy: this origin only; nothing inline; no plugins, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../ui/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("sse.js", JS),
    asset!("live.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("tasks.js", JS),
    asset!("task.js", JS),
    asset!("blockers.js", JS),
    asset!("dead.js", JS),
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/ui/{*file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return AppError::new(ErrorCode::NotFound, format!("no dashboard file {name}"))
            .into_response();
    };
    let digest = Sha256::digest(asset.body);
    let etag = format!("\"{}-{}\"", env!("CARGO_PKG_VERSION"), hex(&digest[..8]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let out = response.headers_mut();
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, etag);
    }
    response
}
