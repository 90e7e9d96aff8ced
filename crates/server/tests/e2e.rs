//! End to end: the real server on a loopback port 0, on each backend, driven
//! through the client and through raw HTTP.

use std::sync::Arc;

use ifc_client::{ClaimOutcome, Client, ClientError, ErrorCode, NewTask, TaskState};
use ifc_core::{Coordinator, CoreConfig};
use ifc_kv::{KvStore, RangeRequest, RangeResponse};
use ifc_server::{AppState, Metrics};
use ifc_testkit::TestStore;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ADMIN: &str = "test-admin-token";

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    kv: Arc<dyn KvStore>,
    _store: TestStore,
}

impl Server {
    async fn start(store: TestStore) -> Server {
        ifc_client::install_crypto_provider();
        let kv = store.kv();
        let config = CoreConfig { max_json_bytes: 4096, ..CoreConfig::default() };
        let core = Arc::new(Coordinator::new(kv.clone(), config));
        let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()));
        let router = ifc_server::router(state, 16 * 1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ifc_server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Server { url, stop: Some(stop), task, kv, _store: store }
    }

    fn admin(&self) -> Client {
        Client::new(&self.url, ADMIN)
    }

    async fn dump(&self) -> RangeResponse {
        self.kv.range(RangeRequest::prefix("")).await.unwrap()
    }

    async fn shutdown(mut self) -> TestStore {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
        self._store
    }
}

ifc_testkit::on_each_backend!(
    Server::start =>
    seed_workflow_through_the_client,
    auth_is_enforced,
    bad_input_gets_a_code_and_changes_nothing,
    openapi_lists_exactly_the_routes,
    graceful_shutdown_loses_no_acknowledged_write,
    task_leases_and_refusals_that_explain,
    operator_controls,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "code-review".into(),
        metadata: json!({"language": "python"}),
        required_capabilities: vec!["code-analysis:python".into()],
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("no server error code in {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

async fn seed_workflow_through_the_client(server: Server) {
    let admin = server.admin();
    let swarm1 =
        admin.register_swarm("swarm-1", &["code-analysis:python"], json!({})).await.unwrap();
    let swarm2 = admin.register_swarm("swarm-2", &["code-analysis:rust"], json!({})).await.unwrap();
    admin.create_task(task("review-pr-123")).await.unwrap();
    let claim = match swarm1.claim_task("review-pr-123").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("swarm 1 must win: {other:?}"),
    };
    assert_eq!(swarm1.get_task_owner("review-pr-123").await.unwrap().as_deref(), Some("swarm-1"));
    let renewed = swarm1.renew_claim("review-pr-123", claim.token).await.unwrap();
    assert!(renewed >= claim.deadline_ms);
    swarm1
        .complete_task("review-pr-123", claim.token, json!({"status": "approved"}))
        .await
        .unwrap();
    // Swarm 2 lacks the capability and the task is done anyway.
    assert!(!matches!(swarm2.claim_task("review-pr-123").await, Ok(ClaimOutcome::Claimed(_))));
    assert_eq!(
        admin.get_task_owner("review-pr-123").await.unwrap().as_deref(),
        Some("completed:swarm-1")
    );
    assert_eq!(admin.get_task_owner("nothing").await.unwrap(), None);
    let stats = swarm1.get_swarm_stats("swarm-1").await.unwrap();
    assert_eq!(stats.task_count, 1);

    admin.create_task(task("next-one")).await.unwrap();
    let next = swarm1.claim_next().await.unwrap().expect("a ready task");
    swarm1.fail_task("next-one", next.token, "ImportError: numpy").await.unwrap();
    assert_eq!(admin.get_task("next-one").await.unwrap().record.attempts, 1);
    assert_eq!(
        code(swarm1.complete_task("next-one", next.token, json!(null)).await),
        ErrorCode::NotClaimed
    );

    let verification = admin.verify_witness().await.unwrap();
    assert!(verification.ok);
    let export = admin.export_witness().await.unwrap();
    assert!(export.lines().count() >= 8);
    assert_eq!(admin.list_swarms().await.unwrap().len(), 2);
    swarm2.unregister().await.unwrap();
    assert_eq!(admin.list_swarms().await.unwrap().len(), 1);
}

async fn auth_is_enforced(server: Server) {
    let admin = server.admin();
    let one = admin.register_swarm("one", &[], json!({})).await.unwrap();
    let two = admin.register_swarm("two", &[], json!({})).await.unwrap();
    admin.create_task(NewTask { required_capabilities: vec![], ..task("t") }).await.unwrap();

    let nobody = Client::new(&server.url, "wrong");
    assert_eq!(code(nobody.list_swarms().await), ErrorCode::Unauthorized);
    let http = reqwest::Client::new();
    let bare = http.get(format!("{}/v1/swarms", server.url)).send().await.unwrap();
    assert_eq!(bare.status(), 401);

    // Swarm "two"'s token presented as swarm "one".
    let impostor = admin.as_swarm("one", &two.registration().token);
    assert_eq!(code(impostor.claim_task("t").await), ErrorCode::Unauthorized);
    // Swarm "one" acting for "two" in the body.
    let body = json!({"swarm_id": "two"});
    let response = http
        .post(format!("{}/v1/tasks/t/claim", server.url))
        .bearer_auth(&one.registration().token)
        .header("x-ifc-swarm", "one")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Admin-only routes refuse swarms; swarm routes refuse the admin.
    assert_eq!(code(one.create_task(task("x")).await), ErrorCode::Forbidden);
    assert_eq!(code(one.list_swarms().await), ErrorCode::Forbidden);
    assert_eq!(code(one.get_swarm_stats("two").await), ErrorCode::Forbidden);
    // The admin token with X-Ifc-Swarm acts for that swarm (see operator_controls);
    // without the header it is not a swarm.
    let as_admin = http
        .post(format!("{}/v1/tasks/t/claim", server.url))
        .bearer_auth(ADMIN)
        .json(&json!({"swarm_id": "one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), 403);
    assert_eq!(admin.get_task_owner("t").await.unwrap().as_deref(), Some("unclaimed"));
}

async fn bad_input_gets_a_code_and_changes_nothing(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("s", &[], json!({})).await.unwrap();
    admin.create_task(NewTask { required_capabilities: vec![], ..task("real") }).await.unwrap();
    let before = server.dump().await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>, content_type: &str| {
        http.post(format!("{}{path}", server.url))
            .bearer_auth(ADMIN)
            .header("content-type", content_type.to_string())
            .body(body)
            .send()
    };
    let json_type = "application/json";
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("/v1/tasks", b"{".to_vec(), json_type, 400, "malformed_json"),
        ("/v1/tasks", b"[1,2]".to_vec(), json_type, 422, "invalid_body"),
        (
            "/v1/tasks",
            br#"{"task_id": 5, "task_type": "x"}"#.to_vec(),
            json_type,
            422,
            "invalid_body",
        ),
        (
            "/v1/tasks",
            br#"{"task_id": "a", "task_type": "x"}"#.to_vec(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/tasks",
            br#"{"task_id": "a/b", "task_type": "x"}"#.to_vec(),
            json_type,
            400,
            "invalid_argument",
        ),
        (
            "/v1/tasks",
            b"{\"task_id\": \"a\\u0001\", \"task_type\": \"x\"}".to_vec(),
            json_type,
            400,
            "invalid_argument",
        ),
        (
            "/v1/tasks",
            br#"{"task_id": "", "task_type": "x"}"#.to_vec(),
            json_type,
            400,
            "invalid_argument",
        ),
        (
            "/v1/tasks",
            format!(
                r#"{{"task_id": "big", "task_type": "x", "metadata": "{}"}}"#,
                "y".repeat(8000)
            )
            .into_bytes(),
            json_type,
            400,
            "invalid_argument",
        ),
        ("/v1/tasks", vec![b' '; 64 * 1024], json_type, 413, "payload_too_large"),
        (
            "/v1/swarms",
            br#"{"swarm_id": "x", "capabilities": [""]}"#.to_vec(),
            json_type,
            400,
            "invalid_argument",
        ),
        ("/v1/tasks/real/cancel/extra", b"{}".to_vec(), json_type, 404, "not_found"),
        ("/v1/tasks/a%2Fb/cancel", b"".to_vec(), json_type, 400, "invalid_argument"),
        ("/v1/tasks/a%01b/cancel", b"".to_vec(), json_type, 400, "invalid_argument"),
        ("/v1/tasks/missing/cancel", b"".to_vec(), json_type, 404, "task_not_found"),
    ];
    for (path, body, content_type, status, expected) in cases {
        let response = post(path, body, content_type).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} ({expected})");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], expected, "{path}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let query = http
        .get(format!("{}/v1/tasks?state=bogus", server.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 400);
    let token = swarm.registration().token.clone();
    let stale = http
        .post(format!("{}/v1/tasks/real/complete", server.url))
        .bearer_auth(&token)
        .header("x-ifc-swarm", "s")
        .json(&json!({"swarm_id": "s", "token": 1, "result": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    assert_eq!(stale.json::<serde_json::Value>().await.unwrap()["code"], "not_claimed");
    let after = server.dump().await;
    assert_eq!(after.kvs, before.kvs, "bad input changed nothing");
}

async fn openapi_lists_exactly_the_routes(server: Server) {
    let spec: serde_json::Value =
        reqwest::get(format!("{}/openapi.json", server.url)).await.unwrap().json().await.unwrap();
    let paths = spec["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut expected = vec![
        "POST /v1/swarms",
        "GET /v1/swarms",
        "GET /v1/swarms/{swarm_id}",
        "DELETE /v1/swarms/{swarm_id}",
        "POST /v1/swarms/{swarm_id}/heartbeat",
        "POST /v1/swarms/{swarm_id}/claim-next",
        "POST /v1/swarms/{swarm_id}/claim-batch",
        "POST /v1/tasks",
        "POST /v1/tasks/batch",
        "GET /v1/tasks",
        "GET /v1/tasks/{task_id}",
        "GET /v1/tasks/{task_id}/owner",
        "POST /v1/tasks/{task_id}/claim",
        "POST /v1/tasks/{task_id}/renew",
        "POST /v1/tasks/{task_id}/release",
        "POST /v1/tasks/{task_id}/complete",
        "POST /v1/tasks/{task_id}/fail",
        "POST /v1/tasks/{task_id}/cancel",
        "POST /v1/tasks/{task_id}/retry",
        "GET /v1/queues",
        "GET /v1/stats/throughput",
        "GET /v1/blockers/{blocker_id}/candidates",
        "GET /v1/witness",
        "GET /v1/witness/export",
        "GET /v1/witness/verify",
        "GET /v1/witness/checkpoints",
        "POST /v1/swarms/{swarm_id}/push",
        "GET /v1/swarms/{swarm_id}/inbox",
        "POST /v1/swarms/{swarm_id}/inbox/{task_id}/ack",
        "POST /v1/swarms/{swarm_id}/inbox/{task_id}/decline",
        "POST /v1/swarms/{swarm_id}/blockers",
        "GET /v1/blockers",
        "GET /v1/blockers/stream",
        "GET /v1/blockers/{blocker_id}",
        "POST /v1/blockers/{blocker_id}/assign",
        "POST /v1/blockers/{blocker_id}/resolve",
        "GET /v1/events",
        "GET /v1/kv",
        "PUT /v1/kv",
        "DELETE /v1/kv",
        "POST /v1/kv/txn",
        "GET /v1/kv/watch",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ];
    expected.sort();
    assert_eq!(documented, expected, "the document lists every route");
    // Every documented route exists: none answers "no such route" or 405.
    let http = reqwest::Client::new();
    for entry in &documented {
        let (method, path) = entry.split_once(' ').unwrap();
        let path =
            path.replace("{swarm_id}", "x").replace("{task_id}", "x").replace("{blocker_id}", "x");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http.request(method, format!("{}{path}", server.url)).send().await.unwrap();
        assert_ne!(response.status(), 405, "{entry}");
        if response.status() == 404 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_ne!(body["code"], "not_found", "{entry} is documented but not routed");
        }
    }
}

async fn graceful_shutdown_loses_no_acknowledged_write(server: Server) {
    let admin = server.admin();
    let mut writers = Vec::new();
    for w in 0..8 {
        let admin = admin.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let id = format!("w{w}-{i}");
                let t = NewTask { required_capabilities: vec![], ..task(&id) };
                match admin.create_task(t).await {
                    Ok(_) => acknowledged.push(id),
                    Err(ClientError::Transport(_)) => break,
                    Err(e) => panic!("{id}: {e}"),
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let kv = server.kv.clone();
    let store = server.shutdown().await;
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(!acknowledged.is_empty());
    let core = Coordinator::new(kv, CoreConfig::default());
    for id in &acknowledged {
        core.get_task(id).await.unwrap_or_else(|e| panic!("acknowledged {id} is gone: {e}"));
    }
    drop(store);
}

mod streams {
    use super::*;
    use futures::StreamExt;
    use ifc_client::BlockerInfo;
    use std::time::Duration;

    async fn next<T>(stream: &mut ifc_client::ItemStream<T>) -> T {
        tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .expect("an item within the wait")
            .expect("stream open")
            .expect("no error")
    }

    ifc_testkit::on_each_backend!(
        Server::start =>
        push_reaches_the_swarm_over_sse_and_resumes,
        blockers_and_events_stream_over_sse,
    );

    async fn push_reaches_the_swarm_over_sse_and_resumes(server: Server) {
        let admin = server.admin();
        let swarm = admin.register_swarm("s", &["x"], json!({})).await.unwrap();
        let mut inbox = swarm.inbox(0).unwrap();
        let first = admin.push_task_to_swarm("s", task("p1")).await.unwrap();
        let second = admin.push_task_to_swarm("s", task("p2")).await.unwrap();
        assert_eq!(next(&mut inbox).await.token, first.token);
        assert_eq!(next(&mut inbox).await.token, second.token);

        // Raw HTTP: Last-Event-ID resumes after the first push.
        let response = reqwest::Client::new()
            .get(format!("{}/v1/swarms/s/inbox", server.url))
            .bearer_auth(&swarm.registration().token)
            .header("x-ifc-swarm", "s")
            .header("last-event-id", first.revision.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.bytes_stream();
        let mut text = String::new();
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(15), body.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(text.contains(&format!("id: {}", second.revision)), "{text}");
        assert!(text.contains("event: task"), "{text}");
        assert!(!text.contains(&format!("id: {}\n", first.revision)), "{text}");

        // The seed's task_callback: each push once, acknowledged on receipt.
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let _callback = swarm.on_task(move |item| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send(item.task.task_id);
                Ok::<_, String>(json!({"seen": true}))
            }
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            if got.len() == 2 {
                admin.push_task_to_swarm("s", task("p3")).await.unwrap();
            }
            got.push(
                tokio::time::timeout(Duration::from_secs(15), seen_rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(got, ["p1", "p2", "p3"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while admin.get_task("p3").await.unwrap().record.awaiting_ack {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the callback's item was not acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Decline through the client; push to nobody is a 404.
        let declined = admin.push_task_to_swarm("s", task("p4")).await.unwrap();
        drop(_callback);
        let _ = swarm.decline_push("p4", declined.token).await;
        assert_eq!(
            code(admin.push_task_to_swarm("ghost", task("p5")).await),
            ErrorCode::SwarmNotRegistered
        );
    }

    async fn blockers_and_events_stream_over_sse(server: Server) {
        let admin = server.admin();
        let mut events = admin.events(None);
        let mut blockers = admin.blockers(None);
        let reporter = admin.register_swarm("reporter", &["x"], json!({})).await.unwrap();
        let _helper = admin.register_swarm("helper", &["x", "y"], json!({})).await.unwrap();
        let info = BlockerInfo {
            blocker_type: "missing_tool".into(),
            description: "Rust compiler not found".into(),
            severity: "high".into(),
            required_capabilities: vec!["x".into()],
            task_id: None,
        };
        let blocker_id = reporter.detect_blocker(info).await.unwrap();
        let event = next(&mut blockers).await;
        assert_eq!(event.blocker.blocker_id, blocker_id);
        assert_eq!(
            event.candidates.iter().map(|c| c.swarm_id.as_str()).collect::<Vec<_>>(),
            ["helper"]
        );
        let help = admin.assign_helper(&blocker_id, "helper").await.unwrap();
        assert_eq!(help.blocker_id.as_deref(), Some(blocker_id.as_str()));
        admin.resolve_blocker(&blocker_id, "installed rustc").await.unwrap();
        assert!(admin.list_blockers(true).await.unwrap().is_empty());

        let mut ops = Vec::new();
        while ops.len() < 6 {
            ops.push(next(&mut events).await);
        }
        let names: Vec<_> = ops.iter().map(|e| e.op.as_str()).collect();
        assert_eq!(
            names,
            [
                "swarm_registered",
                "swarm_registered",
                "blocker_raised",
                "task_pushed",
                "blocker_assigned",
                "blocker_resolved"
            ]
        );
        // Resume after the blocker was raised.
        let mut resumed = admin.events(Some(ops[2].revision));
        assert_eq!(next(&mut resumed).await, ops[3]);
        // A stream from a compacted revision is refused with a code.
        let kv = server.kv.clone();
        let now = kv.range(RangeRequest::key("\0")).await.unwrap().revision;
        kv.compact(now).await.unwrap();
        let mut old = admin.events(Some(0));
        let refused =
            tokio::time::timeout(Duration::from_secs(15), old.next()).await.unwrap().unwrap();
        assert_eq!(refused.err().and_then(|e| e.code()), Some(ErrorCode::Compacted));
        assert_eq!(code(admin.resolve_blocker("blk-none", "x").await), ErrorCode::BlockerNotFound);
    }
}

/// HTTPS with a self-signed certificate, on the embedded store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_a_given_certificate() {
    let store = TestStore::start(ifc_testkit::Backend::Embedded).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = ifc_server::tls_config(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let core = Arc::new(Coordinator::new(store.kv(), CoreConfig::default()));
    let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(ifc_server::serve_tls(
        listener,
        ifc_server::router(state, 1 << 20),
        config,
        std::future::pending(),
    ));
    let https = format!("https://localhost:{port}");
    let admin = Client::with_ca(&https, ADMIN, cert.cert.pem().as_bytes()).unwrap();
    let swarm = admin.register_swarm("secure", &[], json!({})).await.unwrap();
    admin.create_task(NewTask { required_capabilities: vec![], ..task("tls") }).await.unwrap();
    assert!(matches!(swarm.claim_task("tls").await.unwrap(), ClaimOutcome::Claimed(_)));
    // A client that does not trust the certificate is refused; so is plain HTTP.
    let untrusting = Client::new(&https, ADMIN);
    assert!(matches!(untrusting.list_swarms().await, Err(ClientError::Transport(_))));
    let plain = Client::new(&format!("http://localhost:{port}"), ADMIN);
    assert!(plain.list_swarms().await.is_err());
    // A broken certificate or key is refused with a message.
    assert!(ifc_server::tls_config(b"not pem", b"not pem").is_err());
    server.abort();
}

mod robustness {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    ifc_testkit::on_each_backend!(
        a_slow_sse_reader_is_cut_off_with_a_resume_point,
        garbage_requests_never_get_a_server_error
    );

    /// A reader that stops reading is cut off with a final `error` event naming
    /// the revision to resume after; it is not buffered forever.
    async fn a_slow_sse_reader_is_cut_off_with_a_resume_point(store: TestStore) {
        ifc_client::install_crypto_provider();
        let core = Arc::new(Coordinator::new(store.kv(), CoreConfig::default()));
        let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()))
            .with_slow_reader_timeout(Duration::from_millis(300));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let url = format!("http://{address}");
        tokio::spawn(ifc_server::serve(
            listener,
            ifc_server::router(state, 4 << 20),
            std::future::pending(),
        ));
        let admin = Client::new(&url, ADMIN);
        let swarm = admin.register_swarm("slow", &[], json!({})).await.unwrap();

        // Subscribe over a raw socket and then read nothing.
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET /v1/swarms/slow/inbox HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\nX-Ifc-Swarm: slow\r\n\r\n",
            swarm.registration().token
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        // Far more than the stream's buffer (256 events) and the sockets' buffers
        // (a few MB on loopback) hold: 2,000 pushes of ~8 KiB.
        let big = "x".repeat(8_000);
        for i in 0..2000 {
            let task = NewTask {
                metadata: json!({"blob": big}),
                required_capabilities: vec![],
                ..task(&format!("big-{i}"))
            };
            let created = tokio::time::timeout(
                Duration::from_secs(30),
                admin.push_task_to_swarm("slow", task),
            )
            .await;
            created.expect("a push is never held up by a slow reader").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Now read everything that was sent: it ends with the cut-off event.
        let mut received = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut received)).await;
        let text = String::from_utf8_lossy(&received);
        let end = text.rfind("event: error").expect("the stream ends with an error event");
        let tail = &text[end..];
        assert!(tail.contains("slow_consumer"), "{tail}");
        let delivered = text.matches("event: task").count();
        assert!(delivered < 2000, "a cut-off reader did not get everything ({delivered})");
        let resume: serde_json::Value = serde_json::from_str(
            tail.lines().find_map(|l| l.strip_prefix("data: ")).expect("error data"),
        )
        .unwrap();
        let resume_after = resume["resume_after"].as_i64().unwrap();
        assert!(resume_after > 0);
        // Resuming from there delivers the rest, nothing twice.
        let mut rest = swarm.inbox(resume_after).unwrap();
        let first =
            tokio::time::timeout(Duration::from_secs(15), futures::StreamExt::next(&mut rest))
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        assert!(first.revision > resume_after);
    }

    /// No request, however malformed, gets a 5xx or kills the server.
    async fn garbage_requests_never_get_a_server_error(store: TestStore) {
        let server = Server::start(store).await;
        let admin = server.admin();
        let swarm = admin.register_swarm("fuzz", &[], json!({})).await.unwrap();
        let http = reqwest::Client::new();
        let paths = [
            "/v1/tasks",
            "/v1/tasks/x",
            "/v1/tasks/x/claim",
            "/v1/tasks/x/complete",
            "/v1/tasks/x/fail",
            "/v1/tasks/x/renew",
            "/v1/tasks/x/release",
            "/v1/tasks/x/cancel",
            "/v1/tasks/x/owner",
            "/v1/swarms",
            "/v1/swarms/fuzz",
            "/v1/swarms/fuzz/heartbeat",
            "/v1/swarms/fuzz/claim-next",
            "/v1/swarms/fuzz/push",
            "/v1/swarms/fuzz/blockers",
            "/v1/swarms/fuzz/inbox/x/ack",
            "/v1/blockers/x/assign",
            "/v1/blockers/x/resolve",
            "/v1/witness",
            "/v1/tasks?state=%FF",
            "/v1/tasks/%00",
            "/v1/tasks/..%2F..%2Fetc",
            "/v1/swarms/%E2%82",
        ];
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"null".to_vec(),
            b"{}".to_vec(),
            b"[]".to_vec(),
            b"{\"swarm_id\": null, \"token\": \"NaN\"}".to_vec(),
            b"{\"task_id\": \"\\ud800\", \"task_type\": 7}".to_vec(),
            b"{\"swarm_id\": \"fuzz\", \"token\": 99999999999999999999}".to_vec(),
            b"{\"swarm_id\": \"fuzz\", \"token\": -1, \"error\": \"\"}".to_vec(),
            vec![0xff, 0xfe, 0x00, 0x7b],
            "{\"a\":".repeat(2000).into_bytes(),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..400 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let path = paths[(seed % paths.len() as u64) as usize];
            let body = bodies[((seed >> 8) % bodies.len() as u64) as usize].clone();
            let method = [
                reqwest::Method::GET,
                reqwest::Method::POST,
                reqwest::Method::DELETE,
                reqwest::Method::PUT,
            ][((seed >> 16) % 4) as usize]
                .clone();
            let mut request =
                http.request(method.clone(), format!("{}{path}", server.url)).body(body);
            request = match (seed >> 20) % 4 {
                0 => request.bearer_auth(ADMIN),
                1 => request.bearer_auth(&swarm.registration().token).header("x-ifc-swarm", "fuzz"),
                2 => request.bearer_auth("garbage").header("x-ifc-swarm", "no such swarm"),
                _ => request,
            };
            if (seed >> 24).is_multiple_of(2) {
                request = request.header("content-type", "application/json");
            }
            // The server may answer a rejected request (401, 413…) and close the
            // connection before the client finished sending its body: that is a
            // client-side send error, not a server error.
            let Ok(response) = request.send().await else { continue };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert!(status < 500, "round {round}: {method} {path} got {status}: {body}");
        }
        // Still serving.
        assert!(admin.list_swarms().await.is_ok());
    }
}

async fn admin_call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

async fn task_leases_and_refusals_that_explain(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("s", &["code-analysis:python"], json!({})).await.unwrap();
    let out_of_range = NewTask { timeout_ms: Some(999), ..task("short") };
    assert_eq!(code(admin.create_task(out_of_range).await), ErrorCode::InvalidArgument);
    let long = admin.create_task(NewTask { timeout_ms: Some(60_000), ..task("long") }).await;
    assert_eq!(long.unwrap().timeout_ms, 60_000);
    let claim = match swarm.claim_task("long").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    assert!(claim.deadline_ms - claim.task.claimed_at_ms.unwrap() >= 60_000);
    let result = json!({"verdict": "ok"});
    let first = swarm.complete_task("long", claim.token, result.clone()).await.unwrap();
    // The response was lost; the same request again answers the same.
    let again = swarm.complete_task("long", claim.token, result).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(
        code(swarm.complete_task("long", claim.token, json!("other")).await),
        ErrorCode::NotClaimed
    );

    admin.create_task(NewTask { timeout_ms: Some(1000), ..task("quick") }).await.unwrap();
    let claim = match swarm.claim_task("quick").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !admin.get_task("quick").await.unwrap().lapsed {
        assert!(tokio::time::Instant::now() < deadline, "the claim never lapsed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refused = swarm.renew_claim("quick", claim.token).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::ClaimLapsed));
    let message = refused.to_string();
    assert!(message.contains("after a lease of 1000 ms"), "{message}");
    assert!(message.contains("requeued at attempt 2/3"), "{message}");
    let history = admin.get_task("quick").await.unwrap().record.history;
    assert_eq!(history[0].token, claim.token, "the lapsed attempt keeps its token");
}

async fn operator_controls(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("s", &["code-analysis:python"], json!({})).await.unwrap();
    // The admin acts for a registered swarm; the witness says so.
    let acting = admin.as_swarm("s", ADMIN);
    admin.create_task(NewTask { max_attempts: Some(1), ..task("doomed") }).await.unwrap();
    let claim = match acting.claim_task("doomed").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    let witnessed = admin.witness(Some("doomed")).await.unwrap();
    let claimed = witnessed.iter().find(|r| r.op == "task_claimed").unwrap();
    assert_eq!(claimed.detail["by"], "admin");
    assert_eq!(
        code(admin.as_swarm("nobody", ADMIN).claim_task("doomed").await),
        ErrorCode::SwarmNotRegistered
    );
    acting.fail_task("doomed", claim.token, "no luck").await.unwrap();
    assert_eq!(admin.get_task("doomed").await.unwrap().record.state, TaskState::Dead);

    // A dead task retried: back to ready, attempts reset, witnessed.
    let (status, body) = admin_call(&server, reqwest::Method::POST, "/v1/tasks/doomed/retry").await;
    assert_eq!(
        (status, body["state"].as_str(), body["attempts"].as_i64()),
        (200, Some("ready"), Some(0))
    );
    let (status, body) = admin_call(&server, reqwest::Method::POST, "/v1/tasks/doomed/retry").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("not_dead")));
    let witnessed = admin.witness(Some("doomed")).await.unwrap();
    assert!(witnessed.iter().any(|r| r.op == "task_retried"));
    assert!(admin.verify_witness().await.unwrap().ok);

    // Queue depth by state and by capability set.
    admin.create_task(task("waiting")).await.unwrap();
    let held = match swarm.claim_task("waiting").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    let (status, queues) = admin_call(&server, reqwest::Method::GET, "/v1/queues").await;
    assert_eq!(status, 200);
    assert_eq!(queues["states"]["ready"], 1);
    assert_eq!(queues["states"]["claimed"], 1);
    assert_eq!(queues["capability_sets"][0]["capabilities"], json!(["code-analysis:python"]));
    assert_eq!(queues["capability_sets"][0]["ready"], 1);
    assert_eq!(
        code(swarm.renew_claim("waiting", held.token + 1_000_000).await),
        ErrorCode::NotClaimed,
        "a token that never claimed it"
    );

    // The admin unregisters any swarm: its claims lapse at once.
    let (status, _) = admin_call(&server, reqwest::Method::DELETE, "/v1/swarms/s").await;
    assert_eq!(status, 204);
    let view = admin.get_task("waiting").await.unwrap();
    assert_eq!((view.state, view.lapsed, view.record.attempts), (TaskState::Ready, false, 1));

    // The gauge is refreshed in the background; /metrics serves the last value.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let metrics = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
        let text = metrics.text().await.unwrap();
        if text.contains("ifc_tasks{state=\"ready\"} 2") {
            // The same refresh counts live swarms: no scrape reads the store.
            assert!(text.contains("\nifc_live_swarms "), "no ifc_live_swarms gauge: {text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ifc_tasks gauge: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
