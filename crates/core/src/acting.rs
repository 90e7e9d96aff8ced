//! Who a call is made by, when that is not who it acts as: an operator with
//! the admin token acting for a swarm. Carried in a task-local so every
//! witness record the call writes says `"by": "admin"` without threading a
//! parameter through every operation.

use std::future::Future;

tokio::task_local! {
    static BY_ADMIN: bool;
}

/// Runs `call` as made by the admin on a swarm's behalf: the witness records
/// it writes carry `"by": "admin"` in their detail.
pub async fn acting_as_admin<F: Future>(call: F) -> F::Output {
    BY_ADMIN.scope(true, call).await
}

/// Whether the current call is made by the admin acting for a swarm.
pub(crate) fn by_admin() -> bool {
    BY_ADMIN.try_with(|by| *by).unwrap_or(false)
}

/// `detail` with `"by": "admin"` added when the admin is acting for a swarm.
pub(crate) fn mark(detail: serde_json::Value) -> serde_json::Value {
    if !by_admin() {
        return detail;
    }
    match detail {
        serde_json::Value::Object(mut fields) => {
            fields.insert("by".into(), "admin".into());
            serde_json::Value::Object(fields)
        }
        other => serde_json::json!({"by": "admin", "detail": other}),
    }
}
