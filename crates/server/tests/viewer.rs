//! The viewer role, on each backend: the viewer token reads what the admin
//! reads on every GET route (but the user key space) and is refused every
//! route that changes state.

use std::sync::Arc;

use ifc_client::Client;
use ifc_core::{Coordinator, CoreConfig};
use ifc_server::{AppState, Metrics};
use ifc_testkit::TestStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const ADMIN: &str = "test-admin-token";
const VIEWER: &str = "test-viewer-token";

struct Server {
    url: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _store: TestStore,
}

impl Server {
    async fn start(store: TestStore) -> Server {
        ifc_client::install_crypto_provider();
        let core = Arc::new(Coordinator::new(store.kv(), CoreConfig::default()));
        let state =
            AppState::new(core, ADMIN, Arc::new(Metrics::default())).with_viewer_token(VIEWER);
        let router = ifc_server::router(state, 1 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(ifc_server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Server {
            url: format!("http://{address}"),
            http: reqwest::Client::new(),
            _stop: stop,
            _store: store,
        }
    }

    /// A request's status and body (empty for a stream, whose head is enough).
    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if method != reqwest::Method::GET {
            request = request.json(&json!({}));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let is_stream = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        if is_stream {
            return (status, Value::Null);
        }
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Every route of the OpenAPI document with `method`, its path
    /// parameters filled with ids that exist.
    fn routes(&self, method: &str) -> Vec<String> {
        let doc = serde_json::to_value(ifc_server::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut routes: Vec<String> = paths
            .iter()
            .filter(|(_, operations)| operations.get(method).is_some())
            .map(|(path, _)| {
                path.replace("{task_id}", "t1")
                    .replace("{swarm_id}", "s1")
                    .replace("{blocker_id}", "b-none")
                    .replace("{key}", "k")
            })
            .collect();
        routes.sort();
        routes
    }
}

/// A swarm, a claimed task and a ready one, so reads have something to show.
async fn seed(server: &Server) {
    let admin = Client::new(&server.url, ADMIN);
    let swarm = admin.register_swarm("s1", &["code"], json!({})).await.unwrap();
    for id in ["t1", "t2"] {
        let task = ifc_client::NewTask {
            task_id: id.into(),
            task_type: "build".into(),
            metadata: json!({}),
            required_capabilities: vec!["code".into()],
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
        };
        admin.create_task(task).await.unwrap();
    }
    swarm.claim_task("t1").await.unwrap();
}

/// Queries that make each GET route a valid request.
fn with_query(path: &str) -> String {
    match path {
        "/v1/tasks" => "/v1/tasks?state=ready".into(),
        "/v1/kv" => "/v1/kv?key=k".into(),
        "/v1/kv/watch" => "/v1/kv/watch?key=k".into(),
        _ => path.to_string(),
    }
}

async fn the_viewer_reads_what_the_admin_reads_on_every_get_route(server: Server) {
    seed(&server).await;
    let gets = server.routes("get");
    assert!(gets.len() > 10, "the OpenAPI document lists the GET routes: {gets:?}");
    for path in gets.iter().map(|p| with_query(p)) {
        let (admin_status, admin_body) = server.call("GET", &path, Some(ADMIN)).await;
        let (viewer_status, viewer_body) = server.call("GET", &path, Some(VIEWER)).await;
        if path.starts_with("/v1/kv") {
            // The user key space is the application's data, not the fleet's.
            assert_eq!(viewer_status, 403, "GET {path}: {viewer_body}");
            continue;
        }
        assert_eq!(viewer_status, admin_status, "GET {path}: {viewer_body}");
        if path == "/v1/swarms/s1/inbox" {
            // A swarm's own stream: neither may read it without X-Ifc-Swarm.
            assert_eq!(viewer_status, 403, "{viewer_body}");
        } else if path != "/metrics" {
            assert_ne!(viewer_status, 401, "GET {path}: {viewer_body}");
            assert_ne!(viewer_status, 403, "GET {path}: {viewer_body}");
        }
        if admin_status == 200 && path.starts_with("/v1/") && !path.contains("/witness/verify") {
            assert_eq!(viewer_body, admin_body, "GET {path}");
        }
    }
    // The dashboard's own reads, spelled out.
    for path in ["/v1/swarms", "/v1/queues", "/v1/tasks/t1", "/v1/events", "/v1/blockers/stream"] {
        assert_eq!(server.call("GET", path, Some(VIEWER)).await.0, 200, "GET {path}");
    }
}

async fn the_viewer_is_refused_every_route_that_changes_state(server: Server) {
    seed(&server).await;
    let before = server.call("GET", "/v1/queues", Some(ADMIN)).await;
    let mut refused = 0;
    for method in ["post", "put", "delete", "patch"] {
        for path in server.routes(method) {
            let (status, body) = server.call(&method.to_uppercase(), &path, Some(VIEWER)).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert_eq!(body["code"], "forbidden", "{method} {path}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("admin token"), "{method} {path}: {message}");
            refused += 1;
        }
    }
    assert!(refused > 10, "the OpenAPI document lists the mutating routes");
    // Nothing changed: the same queues, the same live claim.
    assert_eq!(server.call("GET", "/v1/queues", Some(ADMIN)).await, before);
    let (_, task) = server.call("GET", "/v1/tasks/t1", Some(ADMIN)).await;
    assert_eq!(task["state"], "claimed");
    let (status, _) = server.call("GET", "/v1/swarms/s1", Some(ADMIN)).await;
    assert_eq!(status, 200, "the viewer's DELETE left the swarm registered");
}

async fn no_token_or_a_wrong_one_is_401_and_the_viewer_cannot_act_as_a_swarm(server: Server) {
    seed(&server).await;
    for token in [None, Some("not-a-token")] {
        for path in ["/v1/queues", "/v1/events", "/v1/tasks/t1"] {
            let (status, body) = server.call("GET", path, token).await;
            assert_eq!(status, 401, "GET {path} with {token:?}: {body}");
            assert_eq!(body["code"], "unauthorized");
        }
    }
    let response = server
        .http
        .get(format!("{}/v1/swarms/s1/inbox", server.url))
        .bearer_auth(VIEWER)
        .header("X-Ifc-Swarm", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
}

ifc_testkit::on_each_backend!(
    Server::start =>
    the_viewer_reads_what_the_admin_reads_on_every_get_route,
    the_viewer_is_refused_every_route_that_changes_state,
    no_token_or_a_wrong_one_is_401_and_the_viewer_cannot_act_as_a_swarm,
);
