//! Batches through HTTP, on each backend: `POST /v1/tasks/batch` and
//! `POST /v1/swarms/{id}/claim-batch` through the client and raw HTTP, and
//! the task whose id is `batch` still readable at `GET /v1/tasks/batch`.

use std::sync::Arc;

use ifc_client::{BatchStatus, ClaimOutcome, Client, ErrorCode, NewTask, TaskState};
use ifc_core::{Coordinator, CoreConfig};
use ifc_server::{AppState, Metrics};
use ifc_testkit::TestStore;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const ADMIN: &str = "test-admin-token";
/// Room for a batch of 1,001 small tasks, not for one of 400 KiB.
const BODY_LIMIT: usize = 256 * 1024;

struct Server {
    url: String,
    serving: JoinHandle<std::io::Result<()>>,
    _store: TestStore,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl Server {
    async fn start(store: TestStore) -> Server {
        ifc_client::install_crypto_provider();
        let core = Arc::new(Coordinator::new(store.kv(), CoreConfig::default()));
        let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()));
        let router = ifc_server::router(state, BODY_LIMIT);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving =
            tokio::spawn(ifc_server::serve(listener, router, std::future::pending::<()>()));
        Server { url, serving, _store: store }
    }

    fn admin(&self) -> Client {
        Client::new(&self.url, ADMIN)
    }

    /// A raw POST with the admin token (and `X-Ifc-Swarm`, if given).
    async fn post(&self, path: &str, body: Option<Value>, swarm: Option<&str>) -> (u16, Value) {
        let mut request =
            reqwest::Client::new().post(format!("{}{path}", self.url)).bearer_auth(ADMIN);
        if let Some(swarm) = swarm {
            request = request.header("x-ifc-swarm", swarm);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

ifc_testkit::on_each_backend!(
    Server::start =>
    a_batch_creates_answers_each_task_and_refuses_bad_input_whole,
    the_task_named_batch_is_still_a_task,
    a_claim_batch_hands_out_renewing_claims,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "code-review".into(),
        metadata: json!({"id": id}),
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

fn tasks(prefix: &str, n: usize) -> Vec<NewTask> {
    (0..n).map(|i| task(&format!("{prefix}-{i:04}"))).collect()
}

async fn a_batch_creates_answers_each_task_and_refuses_bad_input_whole(server: Server) {
    let admin = server.admin();
    let results = admin.create_tasks(tasks("b", 50)).await.unwrap();
    assert_eq!(results.len(), 50);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.status, BatchStatus::Created);
        assert_eq!(result.task.as_ref().unwrap().task_id, format!("b-{i:04}"));
    }
    // A retried batch, with one new task and one changed: answered per task.
    let mut retry = tasks("b", 50);
    retry.push(task("b-new"));
    retry[7].priority = 3;
    let results = admin.create_tasks(retry).await.unwrap();
    assert_eq!(results[0].status, BatchStatus::Exists);
    assert_eq!(results[50].status, BatchStatus::Created);
    assert_eq!(results[7].status, BatchStatus::Error);
    let error = results[7].error.as_ref().unwrap();
    assert_eq!(error.code, ErrorCode::TaskExists);
    assert!(results[7].task.is_none());

    // Bad input: the whole batch is refused, naming the item; nothing written.
    let mut items: Vec<Value> =
        (0..10).map(|i| json!({"task_id": format!("x-{i}"), "task_type": "t"})).collect();
    items[3]["max_attempts"] = json!(0);
    let (status, body) = server.post("/v1/tasks/batch", Some(json!({"tasks": items})), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_argument")), "{body}");
    assert_eq!(body["index"], 3, "{body}");
    assert_eq!(server.get("/v1/tasks/x-0").await.0, 404, "nothing of it was created");
    let (status, body) = server.post("/v1/tasks/batch", Some(json!({"tasks": []})), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_argument")));
    let many: Vec<Value> =
        (0..1001).map(|i| json!({"task_id": format!("m{i}"), "task_type": "t"})).collect();
    let (status, body) = server.post("/v1/tasks/batch", Some(json!({"tasks": many})), None).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    let big = "x".repeat(BODY_LIMIT);
    let over = json!({"tasks": [{"task_id": "huge", "task_type": "t", "metadata": big}]});
    let (status, body) = server.post("/v1/tasks/batch", Some(over), None).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert_eq!(server.get("/v1/tasks/m0").await.0, 404);
    // Only the admin creates.
    let swarm = admin.register_swarm("s", &[], json!({})).await.unwrap();
    let refused = swarm.create_tasks(tasks("s", 2)).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
}

async fn the_task_named_batch_is_still_a_task(server: Server) {
    let admin = server.admin();
    let (status, body) = server.get("/v1/tasks/batch").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("task_not_found")), "{body}");
    admin.create_task(task("batch")).await.unwrap();
    let (status, body) = server.get("/v1/tasks/batch").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["record"]["task_id"], "batch");
    assert_eq!(admin.get_task("batch").await.unwrap().state, TaskState::Ready);
    assert_eq!(admin.get_task_owner("batch").await.unwrap().as_deref(), Some("unclaimed"));
    let swarm = admin.register_swarm("s", &[], json!({})).await.unwrap();
    assert!(matches!(swarm.claim_task("batch").await.unwrap(), ClaimOutcome::Claimed(_)));
    assert_eq!(admin.get_task_owner("batch").await.unwrap().as_deref(), Some("s"));
}

async fn a_claim_batch_hands_out_renewing_claims(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("w", &[], json!({})).await.unwrap();
    admin.register_swarm("other", &[], json!({})).await.unwrap();
    let mut batch = tasks("c", 45);
    batch[44].priority = 9;
    admin.create_tasks(batch).await.unwrap();

    let guards = swarm.claim_batch(10).await.unwrap();
    assert_eq!(guards.len(), 10);
    assert_eq!(guards[0].task_id(), "c-0044", "the higher priority first");
    assert_eq!(guards[0].task().unwrap().priority, 9);
    for guard in &guards {
        let view = admin.get_task(guard.task_id()).await.unwrap();
        assert_eq!((view.state, view.token), (TaskState::Claimed, Some(guard.token())));
    }
    for guard in guards {
        let done = guard.complete(json!("ok")).await.unwrap();
        assert_eq!(done.state, TaskState::Completed);
    }
    // No body: the default of 32; the admin may act for the swarm.
    let (status, body) = server.post("/v1/swarms/w/claim-batch", None, Some("w")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["claims"].as_array().unwrap().len(), 32);
    let (status, body) =
        server.post("/v1/swarms/w/claim-batch", Some(json!({"max": 10})), Some("w")).await;
    assert_eq!((status, body["claims"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    let (status, body) =
        server.post("/v1/swarms/w/claim-batch", Some(json!({"max": 101})), Some("w")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_argument")), "{body}");
    // Without X-Ifc-Swarm the admin acts for nobody; a swarm only for itself.
    let (status, _) = server.post("/v1/swarms/w/claim-batch", None, None).await;
    assert_eq!(status, 403);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/swarms/other/claim-batch", server.url))
        .bearer_auth(&swarm.registration().token)
        .header("x-ifc-swarm", "w")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(swarm.claim_batch(5).await.unwrap().is_empty(), "none left");
}
