//! What the OpenAPI document says beyond the route annotations: its version
//! (the crate's), who may call each operation (the security schemes), the
//! `X-Ifc-Swarm` header on the operations that act as a swarm, and the
//! `{code, message}` error responses every operation may give. Derived from
//! the paths once, here, so a new route gets them without repeating them.

use serde_json::{Map, Value, json};

/// The header that names the swarm a request acts as.
pub const SWARM_HEADER: &str = "X-Ifc-Swarm";

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token: health, readiness, metrics.
    Open,
    /// The admin token.
    Admin,
    /// A swarm's token with `X-Ifc-Swarm` naming it, or the admin token
    /// acting for that swarm (with `X-Ifc-Swarm`).
    Swarm,
    /// The admin token, or the swarm's own token with `X-Ifc-Swarm`.
    AdminOrSwarm,
}

/// Who may call `method path` (a template path, as the document lists it).
pub fn access(method: &str, path: &str) -> Access {
    const ACTS_AS_SWARM: &[&str] = &[
        "/v1/tasks/{task_id}/claim",
        "/v1/tasks/{task_id}/renew",
        "/v1/tasks/{task_id}/release",
        "/v1/tasks/{task_id}/complete",
        "/v1/tasks/{task_id}/fail",
    ];
    const ADMIN_OR_SWARM: &[&str] =
        &["/v1/swarms/{swarm_id}", "/v1/tasks/{task_id}", "/v1/tasks/{task_id}/owner"];
    if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
        Access::Open
    } else if ADMIN_OR_SWARM.contains(&path) && method != "post" {
        Access::AdminOrSwarm
    } else if ACTS_AS_SWARM.contains(&path)
        || (path.starts_with("/v1/swarms/{swarm_id}/") && !path.ends_with("/push"))
    {
        Access::Swarm
    } else {
        Access::Admin
    }
}

/// Whether the viewer token may call it too: every GET an admin may, but the
/// KV API (admin only).
pub fn viewer_may(method: &str, path: &str) -> bool {
    method == "get"
        && matches!(access(method, path), Access::Admin | Access::AdminOrSwarm)
        && !path.starts_with("/v1/kv")
}

/// Adds the version, security, swarm header and error responses to `api`
/// (serialised). Operations keep whatever they declared already.
pub fn complete(mut api: Value) -> Value {
    api["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    api["components"]["securitySchemes"] = security_schemes();
    api["components"]["headers"] = json!({
        "Retry-After": {
            "description": "Seconds to wait before retrying (with 503 `unavailable`, \
                            `outcome_unknown` or `overloaded`).",
            "schema": {"type": "integer"}
        }
    });
    let Some(paths) = api.get_mut("paths").and_then(Value::as_object_mut) else {
        return api;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            let Some(operation) = operation.as_object_mut() else { continue };
            describe_operation(method, path, operation);
        }
    }
    api
}

fn describe_operation(method: &str, path: &str, operation: &mut Map<String, Value>) {
    let access = access(method, path);
    let mut security = match access {
        Access::Open => Vec::new(),
        Access::Admin => vec![json!({"admin": []})],
        Access::Swarm => {
            vec![json!({"swarm": [], "swarm_id": []}), json!({"admin": [], "swarm_id": []})]
        }
        Access::AdminOrSwarm => vec![json!({"admin": []}), json!({"swarm": [], "swarm_id": []})],
    };
    if viewer_may(method, path) {
        security.push(json!({"viewer": []}));
    }
    operation.insert("security".into(), Value::Array(security));
    if matches!(access, Access::Swarm | Access::AdminOrSwarm) {
        let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
        if let Some(parameters) = parameters.as_array_mut() {
            parameters.push(json!({
                "name": SWARM_HEADER,
                "in": "header",
                "required": access == Access::Swarm,
                "description": "The swarm this request acts as (its own token, or the admin \
                                token acting for it).",
                "schema": {"type": "string"}
            }));
        }
    }
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    for (status, description) in error_responses(access, method) {
        let mut response = json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}
        });
        if status == "503" {
            response["headers"] =
                json!({"Retry-After": {"$ref": "#/components/headers/Retry-After"}});
        }
        responses.entry(status).or_insert(response);
    }
}

/// The error statuses an operation may answer, each with `{code, message}`.
fn error_responses(access: Access, method: &str) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if access != Access::Open {
        out.push(("400", "A malformed argument or body (`invalid_argument`, `malformed_json`)."));
        out.push(("401", "No or unknown bearer token (`unauthorized`)."));
        out.push(("403", "The token may not do this (`forbidden`, `incapable`)."));
        out.push(("404", "No such task, swarm, blocker or route (`*_not_found`, `not_found`)."));
        if method != "get" {
            out.push(("409", "The current state refuses it; the code says why."));
            out.push(("422", "JSON of the wrong shape, or past a store limit."));
        }
        out.push((
            "503",
            "The store is unavailable (`unavailable`) or the write's outcome is \
                          unknown (`outcome_unknown`); see Retry-After.",
        ));
    }
    out.push(("500", "A server bug (`internal`); the message carries no internals."));
    out.push(("default", "Any other error, as `{code, message}` with a stable code."));
    out
}

fn security_schemes() -> Value {
    json!({
        "admin": {
            "type": "http",
            "scheme": "bearer",
            "description": "The admin token (`--admin-token`, or generated into \
                            `<data-dir>/admin.token` on first start). With `X-Ifc-Swarm` it \
                            acts for that swarm."
        },
        "swarm": {
            "type": "http",
            "scheme": "bearer",
            "description": "A swarm's token, from `POST /v1/swarms`; always sent with \
                            `X-Ifc-Swarm` naming the swarm."
        },
        "swarm_id": {
            "type": "apiKey",
            "in": "header",
            "name": SWARM_HEADER,
            "description": "The swarm a request acts as."
        },
        "viewer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The read-only viewer token (`--viewer-token`, or generated into \
                            `<data-dir>/viewer.token`): every GET but the KV API."
        }
    })
}
