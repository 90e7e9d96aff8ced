//! The edge, on each backend: event streams end when their clients leave and
//! on shutdown; numbers and ids from a request never reach a 500.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ifc_client::Client;
use ifc_core::{Coordinator, CoreConfig};
use ifc_server::{AppState, Metrics};
use ifc_testkit::TestStore;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ADMIN: &str = "test-admin-token";

struct Server {
    url: String,
    address: std::net::SocketAddr,
    state: AppState,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _store: TestStore,
}

impl Server {
    async fn start(store: TestStore) -> Server {
        Server::start_with(store, 4096).await
    }

    /// A server whose metadata/result/error fields may be `max_json_bytes`.
    async fn start_with(store: TestStore, max_json_bytes: usize) -> Server {
        ifc_client::install_crypto_provider();
        let config = CoreConfig { max_json_bytes, ..CoreConfig::default() };
        let core = Arc::new(Coordinator::new(store.kv(), config));
        let metrics = Arc::new(Metrics::default());
        let state = AppState::new(core, ADMIN, metrics.clone());
        let router = ifc_server::router(state.clone(), 4 * max_json_bytes + 64 * 1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ifc_server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Server {
            url: format!("http://{address}"),
            address,
            state,
            metrics,
            stop: Some(stop),
            task,
            _store: store,
        }
    }

    fn admin(&self) -> Client {
        Client::new(&self.url, ADMIN)
    }

    /// Opens a stream over a raw socket and waits for its response head.
    async fn open_stream(&self, path: &str, headers: &str) -> TcpStream {
        let mut socket = TcpStream::connect(self.address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(socket.read(&mut byte).await.unwrap(), 1, "the stream closed early");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        socket
    }

    /// Raw GET: the status and body.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

/// Waits (bounded) until `ready` holds; the bound is a hang guard, not a timing
/// claim.
async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod large {
    ifc_testkit::on_each_backend!(a_record_over_the_store_value_limit_is_413);

    /// Metadata and a result each within the server's 1 MiB field limit, but
    /// together more than the store takes for one record: 413, nothing changed.
    async fn a_record_over_the_store_value_limit_is_413(store: ifc_testkit::TestStore) {
        use super::*;
        use ifc_client::{ClaimOutcome, ErrorCode};
        let server = Server::start_with(store, 1 << 20).await;
        let admin = server.admin();
        let big = "x".repeat(1_000_000);
        admin.create_task(new_task("t1", &[], json!({ "blob": big }))).await.unwrap();
        let swarm = admin.register_swarm("s1", &[], json!({})).await.unwrap();
        let ClaimOutcome::Claimed(claim) = swarm.claim_task("t1").await.unwrap() else {
            panic!("not claimed");
        };
        let completed = swarm.complete_task("t1", claim.token, json!({ "blob": big })).await;
        assert_eq!(code(completed), ErrorCode::PayloadTooLarge);
        let view = admin.get_task("t1").await.unwrap();
        assert_eq!(view.state, ifc_client::TaskState::Claimed);
    }
}

ifc_testkit::on_each_backend!(
    Server::start =>
    streams_end_when_their_clients_leave,
    shutdown_ends_every_stream_with_its_resume_point,
    revisions_past_the_range_get_a_400_not_a_500,
    ids_that_cannot_be_served_are_refused_at_create,
    store_limits_get_their_own_4xx,
    a_page_size_outside_its_range_is_refused,
    a_refused_post_says_the_connection_closes,
    metrics_carry_method_build_process_and_work_time,
);

fn new_task(id: &str, caps: &[&str], metadata: serde_json::Value) -> ifc_client::NewTask {
    ifc_client::NewTask {
        task_id: id.into(),
        task_type: "x".into(),
        metadata,
        required_capabilities: caps.iter().map(|c| c.to_string()).collect(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, ifc_client::ClientError>) -> ifc_client::ErrorCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("no server error code in {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Five inbox streams whose clients go away: the gauge returns to 0 (the pump
/// noticed, so the store watcher was dropped too), with no event to wake it.
async fn streams_end_when_their_clients_leave(server: Server) {
    let swarm = server.admin().register_swarm("s1", &[], json!({})).await.unwrap();
    let auth =
        format!("Authorization: Bearer {}\r\nX-Ifc-Swarm: s1\r\n", swarm.registration().token);
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(server.open_stream("/v1/swarms/s1/inbox", &auth).await);
    }
    let admin_auth = format!("Authorization: Bearer {ADMIN}\r\n");
    sockets.push(server.open_stream("/v1/events", &admin_auth).await);
    sockets.push(server.open_stream("/v1/blockers/stream", &admin_auth).await);
    assert_eq!(server.metrics.open_streams(), 7);
    let (_, text) = server.get("/metrics", &[]).await;
    assert!(text.contains("ifc_open_streams{kind=\"inbox\"} 5"), "{text}");
    drop(sockets);
    let metrics = server.metrics.clone();
    eventually("every stream closed", || metrics.open_streams() == 0).await;
    let (_, text) = server.get("/metrics", &[]).await;
    assert!(text.contains("ifc_open_streams{kind=\"inbox\"} 0"), "{text}");
}

/// Reads a stream until `marker` has arrived (10 s at most); returns what was read.
async fn read_until(socket: &mut TcpStream, marker: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&received).contains(marker) {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, socket.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no {marker:?} within 10 s"))
            .unwrap();
        assert!(read > 0, "the stream closed before {marker:?}");
        received.extend_from_slice(&chunk[..read]);
    }
    received
}

/// On shutdown every open stream gets a final `shutting_down` event naming the
/// revision to resume after, then closes, and the server finishes.
async fn shutdown_ends_every_stream_with_its_resume_point(mut server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("s1", &[], json!({})).await.unwrap();
    let auth =
        format!("Authorization: Bearer {}\r\nX-Ifc-Swarm: s1\r\n", swarm.registration().token);
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(server.open_stream("/v1/swarms/s1/inbox", &auth).await);
    }
    let pushed = admin
        .push_task_to_swarm(
            "s1",
            ifc_client::NewTask {
                task_id: "t1".into(),
                task_type: "x".into(),
                metadata: json!({}),
                required_capabilities: vec![],
                priority: 0,
                max_attempts: None,
                timeout_ms: None,
            },
        )
        .await
        .unwrap();
    // Delivery is asynchronous (on etcd the push reaches each stream through a
    // watch), so wait until every stream has the task before shutting down.
    let mut delivered = Vec::new();
    for socket in &mut sockets {
        delivered.push(read_until(socket, "event: task").await);
    }
    server.state.close_streams();
    let _ = server.stop.take().unwrap().send(());
    for (mut socket, mut received) in sockets.into_iter().zip(delivered) {
        socket.read_to_end(&mut received).await.unwrap();
        let text = String::from_utf8_lossy(&received);
        let end = text.rfind("event: error").expect("a final event");
        let tail = &text[end..];
        assert!(tail.contains("shutting_down"), "{tail}");
        // The pushed task was delivered first, so the resume point is its revision.
        assert!(text.contains("event: task"), "{text}");
        assert!(tail.contains(&format!("\"resume_after\":{}", pushed.revision)), "{tail}");
    }
    server.task.await.unwrap().unwrap();
    assert_eq!(server.metrics.open_streams(), 0);
}

/// `after` and `Last-Event-ID` at the top of the range (where `after + 1`
/// overflows) and below it are refused with 400 `invalid_argument`.
async fn revisions_past_the_range_get_a_400_not_a_500(server: Server) {
    let swarm = server.admin().register_swarm("s1", &[], json!({})).await.unwrap();
    let token = swarm.registration().token.clone();
    let admin = format!("Bearer {ADMIN}");
    let swarm_auth = format!("Bearer {token}");
    for bad in ["9223372036854775807", "-1", "99999999999999999999", "x"] {
        for (path, auth, swarm) in [
            ("/v1/events", admin.as_str(), None),
            ("/v1/blockers/stream", admin.as_str(), None),
            ("/v1/swarms/s1/inbox", swarm_auth.as_str(), Some("s1")),
        ] {
            let mut headers = vec![("authorization", auth)];
            if let Some(swarm) = swarm {
                headers.push(("x-ifc-swarm", swarm));
            }
            let (status, body) = server.get(&format!("{path}?after={bad}"), &headers).await;
            assert_eq!(status, 400, "{path}?after={bad}: {body}");
            assert!(body.contains("invalid_argument"), "{body}");
            headers.push(("last-event-id", bad));
            let (status, body) = server.get(path, &headers).await;
            assert_eq!(status, 400, "{path} Last-Event-ID {bad}: {body}");
        }
    }
}

/// Ids outside the one grammar (`.`/`..`, non-ASCII, spaces, too long) are
/// refused at create by the server, so every id the server holds works in a
/// path and a header; the Rust client refuses them before sending, with the
/// same code.
async fn ids_that_cannot_be_served_are_refused_at_create(server: Server) {
    use ifc_client::{ClientError, ErrorCode};
    let admin = server.admin();
    let http = reqwest::Client::new();
    let long = "x".repeat(129);
    for bad in [".", "..", "задача-✓", "é", "a b", "a?b", "a%2F", long.as_str()] {
        // The server, sent the id as is.
        let created = http
            .post(format!("{}/v1/tasks", server.url))
            .bearer_auth(ADMIN)
            .json(&new_task(bad, &[], json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 400, "task {bad:?}");
        assert!(created.text().await.unwrap().contains("invalid_argument"), "task {bad:?}");
        let registered = http
            .post(format!("{}/v1/swarms", server.url))
            .bearer_auth(ADMIN)
            .json(&json!({"swarm_id": bad, "capabilities": [], "metadata": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status().as_u16(), 400, "swarm {bad:?}");
        // The client, before sending.
        let created = admin.create_task(new_task(bad, &[], json!({}))).await;
        assert!(matches!(created, Err(ClientError::InvalidId { field: "task_id", .. })), "{bad:?}");
        let registered = admin.register_swarm(bad, &[], json!({})).await.map(|_| ());
        assert_eq!(code(registered), ErrorCode::InvalidArgument, "swarm {bad:?}");
        let acting = admin.as_swarm(bad, "token");
        assert!(matches!(acting.heartbeat().await, Err(ClientError::InvalidId { .. })), "{bad:?}");
    }
    // Nothing was sent: a client of no server at all gives the same answer.
    let nowhere = ifc_client::Client::new("http://127.0.0.1:9", ADMIN);
    assert!(matches!(nowhere.get_task("..").await, Err(ClientError::InvalidId { .. })));
    assert_eq!(
        admin.list_tasks(ifc_client::TaskState::Ready, None, 10).await.unwrap().tasks.len(),
        0
    );
    // The whole grammar round-trips: created, then reachable by path and header.
    let id = "A-z_0.9:x@y";
    admin.create_task(new_task(id, &[], json!({}))).await.unwrap();
    assert_eq!(admin.get_task(id).await.unwrap().record.task_id, id);
    let swarm = admin.register_swarm(id, &[], json!({})).await.unwrap();
    swarm.heartbeat().await.unwrap();
}

/// A record larger than the store takes is 413 `payload_too_large`; a claim
/// that would read more capability queues than one store transaction may is a
/// 422 `store_limit`; neither is a 500 and neither changes anything.
async fn store_limits_get_their_own_4xx(server: Server) {
    use ifc_client::{ClaimOutcome, ErrorCode};
    let admin = server.admin();
    // Each field within the server's 4 KiB JSON limit, so only the store's
    // limits are left to meet: 130 capability sets, each a queue.
    let caps: Vec<String> = (0..130).map(|i| format!("c{i}")).collect();
    for (i, cap) in caps.iter().enumerate() {
        admin.create_task(new_task(&format!("t{i}"), &[cap], json!({}))).await.unwrap();
    }
    let caps_ref: Vec<&str> = caps.iter().map(String::as_str).collect();
    let swarm = admin.register_swarm("wide", &caps_ref, json!({})).await.unwrap();
    assert_eq!(code(swarm.claim_next().await), ErrorCode::StoreLimit);
    // A claim by id still works.
    assert!(matches!(swarm.claim_task("t0").await.unwrap(), ClaimOutcome::Claimed(_)));
}

/// `limit` on a task page is 1 ..= 100: 0 and 101 are refused, not rounded.
async fn a_page_size_outside_its_range_is_refused(server: Server) {
    let auth = format!("Bearer {ADMIN}");
    for (limit, want) in [("0", 400), ("101", 400), ("18446744073709551616", 400), ("1", 200)] {
        let path = format!("/v1/tasks?state=ready&limit={limit}");
        let (status, body) = server.get(&path, &[("authorization", &auth)]).await;
        assert_eq!(status, want, "limit={limit}: {body}");
    }
}

/// A POST refused before its body is read says `Connection: close`.
async fn a_refused_post_says_the_connection_closes(server: Server) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tasks", server.url))
        .header("authorization", "Bearer wrong")
        .json(&new_task("t1", &[], json!({"pad": "x".repeat(2000)})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let connection = response.headers().get("connection").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(connection.as_deref(), Some("close"));
}

/// `/metrics`: a method label on requests, build info, process metrics, and
/// one claim-to-complete observation per completed task.
async fn metrics_carry_method_build_process_and_work_time(server: Server) {
    use ifc_client::ClaimOutcome;
    let admin = server.admin();
    admin.create_task(new_task("t1", &[], json!({}))).await.unwrap();
    let swarm = admin.register_swarm("s1", &[], json!({})).await.unwrap();
    let ClaimOutcome::Claimed(claim) = swarm.claim_task("t1").await.unwrap() else {
        panic!("not claimed");
    };
    swarm.complete_task("t1", claim.token, json!({})).await.unwrap();
    let (_, text) = server.get("/metrics", &[]).await;
    for expected in [
        "ifc_claim_to_complete_seconds_count 1",
        "ifc_build_info{version=",
        "process_open_fds ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "ifc_http_responses_total{method=\"POST\",route=\"/v1/tasks/{task_id}/complete\",status=\"200\"} 1",
    ] {
        assert!(text.contains(expected), "no {expected} in\n{text}");
    }
}
