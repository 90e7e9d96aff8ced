//! The user KV API (`/v1/kv`, behind the Python `EventBus`) over real HTTP,
//! on each backend: round trips, confinement to `{namespace}/kv/`, admin only,
//! bad input refused with nothing changed, and the watch (resume, compacted).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ifc_client::Client;
use ifc_core::{Coordinator, CoreConfig};
use ifc_kv::{KvStore, RangeRequest, RangeResponse};
use ifc_server::{AppState, Metrics};
use ifc_testkit::TestStore;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const ADMIN: &str = "test-admin-token";
const NAMESPACE: &str = "ifc";

struct Server {
    url: String,
    http: reqwest::Client,
    kv: Arc<dyn KvStore>,
    _stop: oneshot::Sender<()>,
    _store: TestStore,
}

impl Server {
    async fn start(store: TestStore) -> Server {
        ifc_client::install_crypto_provider();
        let kv = store.kv();
        let config = CoreConfig { namespace: NAMESPACE.into(), ..CoreConfig::default() };
        let core = Arc::new(Coordinator::new(kv.clone(), config));
        let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()));
        // Room for a value just over the store's limit, so the limit answers.
        let router = ifc_server::router(state, 4 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(ifc_server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Server { url, http: reqwest::Client::new(), kv, _stop: stop, _store: store }
    }

    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url)).bearer_auth(ADMIN)
    }

    /// An admin request with these query parameters (percent-encoded).
    fn admin_q(&self, method: Method, path: &str, query: &[(&str, &str)]) -> RequestBuilder {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query).unwrap();
        self.http.request(method, url).bearer_auth(ADMIN)
    }

    /// Sends and returns the status and JSON body.
    async fn call(&self, request: RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put(&self, key: &str, value: &str) -> i64 {
        let request = self.admin_q(Method::PUT, "/v1/kv", &[("key", key)]);
        let (status, body) = self.call(request.json(&json!({"value": value}))).await;
        assert_eq!(status, 200, "{body}");
        body["revision"].as_i64().unwrap()
    }

    async fn get(&self, key: &str) -> Value {
        let (status, body) = self.call(self.admin_q(Method::GET, "/v1/kv", &[("key", key)])).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn txn(&self, txn: Value) -> (StatusCode, Value) {
        self.call(self.admin(Method::POST, "/v1/kv/txn").json(&txn)).await
    }

    async fn dump(&self) -> RangeResponse {
        self.kv.range(RangeRequest::prefix("")).await.unwrap()
    }
}

ifc_testkit::on_each_backend!(
    Server::start =>
    put_get_delete_round_trip,
    txn_is_compare_and_swap,
    keys_cannot_leave_the_user_prefix,
    only_the_admin_may_use_it,
    bad_input_is_refused_and_changes_nothing,
    watch_resumes_and_reports_compaction,
);

async fn put_get_delete_round_trip(server: Server) {
    assert_eq!(server.get("/a/1").await["entries"], json!([]));
    let first = server.put("/a/1", "one").await;
    let second = server.put("/a/1", "uno").await;
    assert!(second > first);
    server.put("/a/2", "two").await;
    server.put("/b/1", "other").await;
    let got = server.get("/a/1").await;
    let entry = &got["entries"][0];
    assert_eq!((entry["key"].as_str(), entry["value"].as_str()), (Some("/a/1"), Some("uno")));
    assert_eq!(
        (entry["version"].as_i64(), entry["mod_revision"].as_i64()),
        (Some(2), Some(second))
    );
    assert_eq!(entry["create_revision"].as_i64(), Some(first));
    assert_eq!(got["more"], false);

    let list = |limit: Option<&str>| {
        let mut query = vec![("prefix", "/a/")];
        query.extend(limit.map(|l| ("limit", l)));
        server.admin_q(Method::GET, "/v1/kv", &query)
    };
    let (_, all) = server.call(list(None)).await;
    let keys: Vec<&str> =
        all["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["/a/1", "/a/2"]);
    let (_, page) = server.call(list(Some("1"))).await;
    assert_eq!((page["entries"].as_array().unwrap().len(), &page["more"]), (1, &json!(true)));

    let delete = || server.admin_q(Method::DELETE, "/v1/kv", &[("key", "/a/1")]);
    let (status, deleted) = server.call(delete()).await;
    assert_eq!((status, &deleted["deleted"]), (StatusCode::OK, &json!(1)));
    let (_, again) = server.call(delete()).await;
    assert_eq!(again["deleted"], 0);
    assert_eq!(again["revision"], deleted["revision"], "deleting nothing writes nothing");
    assert_eq!(server.get("/a/1").await["entries"], json!([]));
}

async fn txn_is_compare_and_swap(server: Server) {
    let key = "/tasks/t1/owner";
    let (_, created) = server
        .txn(json!({"compare": [{"key": key, "target": "version", "op": "==", "value": 0}],
                     "success": [{"op": "put", "key": key, "value": "unclaimed"}]}))
        .await;
    assert_eq!(created["succeeded"], true);
    let claim = json!({
        "compare": [{"key": key, "target": "value", "op": "==", "value": "unclaimed"}],
        "success": [{"op": "put", "key": key, "value": "swarm-a"}, {"op": "get", "key": key}],
        "failure": [{"op": "get", "key": key}, {"op": "get", "key": "/missing"}],
    });
    let (status, won) = server.txn(claim.clone()).await;
    assert_eq!((status, &won["succeeded"]), (StatusCode::OK, &json!(true)));
    assert_eq!(won["responses"][0]["value"], "swarm-a", "a get sees the put before it");
    let (_, lost) = server.txn(claim).await;
    assert_eq!(lost["succeeded"], false);
    assert_eq!(lost["responses"][0]["value"], "swarm-a");
    assert_eq!(lost["responses"][1], Value::Null);
    assert_eq!(lost["revision"], won["revision"], "a failed read-only branch writes nothing");
    let modified = won["revision"].as_i64().unwrap();
    let (_, cas) = server
        .txn(json!({"compare": [{"key": key, "target": "mod_revision", "op": "==", "value": modified}],
                     "success": [{"op": "delete", "key": key}]}))
        .await;
    assert_eq!(cas["succeeded"], true);
    assert_eq!(server.get(key).await["entries"], json!([]));
}

async fn keys_cannot_leave_the_user_prefix(server: Server) {
    // Coordinator state beside the user keys.
    let admin = Client::new(&server.url, ADMIN);
    admin.register_swarm("s", &["x"], json!({})).await.unwrap();
    let coordinator_keys = |dump: RangeResponse| -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        dump.kvs
            .into_iter()
            .filter(|kv| !kv.key.starts_with(format!("{NAMESPACE}/kv/").as_bytes()))
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect()
    };
    let before = coordinator_keys(server.dump().await);
    let hostile = [
        "..",
        "../swarms/s",
        "../../ifc/swarms/s",
        "/ifc/swarms/s",
        "ifc/swarms/s",
        "%2E%2E%2Fswarms%2Fs",
        "..%2f..%2fswarms%2fs",
        "\\..\\swarms\\s",
    ];
    for key in hostile {
        server.put(key, "x").await;
        assert_eq!(server.get(key).await["entries"][0]["key"], key, "read back exactly");
    }
    // An encoded slash in the query is decoded once, to a plain key.
    let raw = format!("{}/v1/kv?key=..%2Fswarms%2Fs", server.url);
    let (status, _) = server.call(server.http.get(raw).bearer_auth(ADMIN)).await;
    assert_eq!(status, 200);

    let dump = server.dump().await;
    assert_eq!(coordinator_keys(dump.clone()), before, "no coordinator key changed");
    let user: Vec<String> = dump
        .kvs
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(format!("{NAMESPACE}/kv/").as_bytes()))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let mut expected: Vec<String> = hostile.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(user, expected, "every user key sits under {NAMESPACE}/kv/ as given");
    // The swarm is untouched and its record is not visible through the KV API.
    assert_eq!(admin.list_swarms().await.unwrap().len(), 1);
    let (_, everything) =
        server.call(server.admin_q(Method::GET, "/v1/kv", &[("prefix", "")])).await;
    assert_eq!(everything["entries"].as_array().unwrap().len(), hostile.len());
}

async fn only_the_admin_may_use_it(server: Server) {
    let admin = Client::new(&server.url, ADMIN);
    let swarm = admin.register_swarm("s", &["x"], json!({})).await.unwrap();
    server.put("k", "v").await;
    let before = server.dump().await;
    let requests = |auth: &dyn Fn(RequestBuilder) -> RequestBuilder| {
        let url = |path: &str| format!("{}{path}", server.url);
        vec![
            auth(server.http.get(url("/v1/kv?key=k"))),
            auth(server.http.put(url("/v1/kv?key=k")).json(&json!({"value": "stolen"}))),
            auth(server.http.delete(url("/v1/kv?key=k"))),
            auth(
                server
                    .http
                    .post(url("/v1/kv/txn"))
                    .json(&json!({"success": [{"op": "put", "key": "k", "value": "stolen"}]})),
            ),
            auth(server.http.get(url("/v1/kv/watch?prefix="))),
        ]
    };
    let token = swarm.registration().token.clone();
    let as_swarm = move |r: RequestBuilder| r.bearer_auth(&token).header("x-ifc-swarm", "s");
    for request in requests(&as_swarm) {
        let (status, body) = server.call(request).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    }
    for request in requests(&|r| r) {
        let (status, body) = server.call(request).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
    }
    assert_eq!(server.dump().await, before, "nothing changed");
}

async fn bad_input_is_refused_and_changes_nothing(server: Server) {
    server.put("k", "v").await;
    let before = server.dump().await;
    let get = |query: &[(&str, &str)]| server.admin_q(Method::GET, "/v1/kv", query);
    let put =
        |key: &str, body: Value| server.admin_q(Method::PUT, "/v1/kv", &[("key", key)]).json(&body);
    let many_puts: Vec<Value> =
        (0..129).map(|i| json!({"op": "put", "key": format!("m{i}"), "value": "x"})).collect();
    let many_compares: Vec<Value> = (0..129)
        .map(|i| json!({"key": format!("c{i}"), "target": "version", "op": "==", "value": 0}))
        .collect();
    let big = "x".repeat(1_310_721);
    let txn = |body: Value| server.admin(Method::POST, "/v1/kv/txn").json(&body);
    let cases: Vec<(&str, RequestBuilder)> = vec![
        ("empty key", get(&[("key", "")])),
        ("key and prefix", get(&[("key", "k"), ("prefix", "")])),
        ("neither key nor prefix", get(&[])),
        ("limit 0", get(&[("prefix", ""), ("limit", "0")])),
        ("limit too large", get(&[("prefix", ""), ("limit", "1001")])),
        ("limit not a number", get(&[("prefix", ""), ("limit", "x")])),
        ("key too long", get(&[("key", &"k".repeat(5000))])),
        ("put empty key", put("", json!({"value": "v"}))),
        ("put without key", server.admin(Method::PUT, "/v1/kv").json(&json!({"value": "v"}))),
        ("put a number", put("k", json!({"value": 5}))),
        ("put unknown field", put("k", json!({"value": "v", "lease": 1}))),
        ("put value too large", put("k", json!({"value": big}))),
        ("put not json", server.admin(Method::PUT, "/v1/kv?key=k").body("v")),
        ("delete empty key", server.admin(Method::DELETE, "/v1/kv?key=")),
        ("txn 129 ops", txn(json!({"success": many_puts}))),
        ("txn 129 compares", txn(json!({"compare": many_compares}))),
        (
            "txn too many bytes",
            txn(json!({"success": [
            {"op": "put", "key": "a", "value": "x".repeat(700_000)},
            {"op": "put", "key": "b", "value": "x".repeat(700_000)}]})),
        ),
        (
            "txn puts a key twice",
            txn(json!({"success": [
            {"op": "put", "key": "k", "value": "1"}, {"op": "put", "key": "k", "value": "2"}]})),
        ),
        (
            "txn puts and deletes a key",
            txn(json!({"success": [
            {"op": "put", "key": "k", "value": "1"}, {"op": "delete", "key": "k"}]})),
        ),
        ("txn empty key", txn(json!({"success": [{"op": "delete", "key": ""}]}))),
        ("txn unknown op", txn(json!({"success": [{"op": "upsert", "key": "k", "value": "1"}]}))),
        (
            "txn unknown compare op",
            txn(json!({"compare": [
            {"key": "k", "target": "value", "op": "=~", "value": "v"}]})),
        ),
        (
            "txn value compare with a number",
            txn(json!({"compare": [
            {"key": "k", "target": "value", "op": "==", "value": 1}]})),
        ),
        (
            "txn version compare with text",
            txn(json!({"compare": [
            {"key": "k", "target": "version", "op": "==", "value": "1"}]})),
        ),
        (
            "txn lease compare",
            txn(json!({"compare": [
            {"key": "k", "target": "lease", "op": "==", "value": 0}]})),
        ),
        (
            "watch bad Last-Event-ID",
            server.admin(Method::GET, "/v1/kv/watch").header("last-event-id", "x"),
        ),
        ("watch negative after", server.admin(Method::GET, "/v1/kv/watch?after=-1")),
        (
            "watch key too long",
            server.admin_q(Method::GET, "/v1/kv/watch", &[("prefix", &"k".repeat(5000))]),
        ),
    ];
    for (case, request) in cases {
        let (status, body) = server.call(request).await;
        assert!(status.is_client_error(), "{case}: {status} {body}");
        assert!(body["code"].is_string(), "{case}: no code in {body}");
    }
    assert_eq!(server.dump().await, before, "nothing changed");
}

/// The `event:`/`id:`/`data:` blocks of an SSE body until `count` arrive.
async fn sse_events(response: reqwest::Response, count: usize) -> Vec<(String, String, Value)> {
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    loop {
        let events: Vec<(String, String, Value)> = text
            .split("\n\n")
            .filter(|block| block.contains("data:"))
            .map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or("")
                        .trim()
                        .to_string()
                };
                let data = serde_json::from_str(&field("data:")).unwrap_or(Value::Null);
                (field("event:"), field("id:"), data)
            })
            .collect();
        if events.len() >= count && text.ends_with("\n\n") {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(15), body.next()).await;
        match chunk {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream ended early ({other:?}) after: {text}"),
        }
    }
}

async fn watch_resumes_and_reports_compaction(server: Server) {
    let start = server.put("/w/warmup", "0").await;
    let put = server.put("/w/a", "1").await;
    server.put("/elsewhere", "x").await;
    let (_, deleted) =
        server.call(server.admin_q(Method::DELETE, "/v1/kv", &[("key", "/w/a")])).await;
    let watch = |after: Option<i64>| {
        let after = after.map(|a| a.to_string());
        let mut query = vec![("prefix", "/w/")];
        query.extend(after.as_deref().map(|a| ("after", a)));
        server.admin_q(Method::GET, "/v1/kv/watch", &query)
    };
    let events = sse_events(watch(Some(start)).send().await.unwrap(), 2).await;
    assert_eq!(events[0].0, "kv");
    assert_eq!(events[0].1, put.to_string());
    assert_eq!(
        events[0].2,
        json!({"revision": put, "events": [{"type": "put", "key": "/w/a", "value": "1", "mod_revision": put}]})
    );
    assert_eq!(events[1].1, deleted["revision"].to_string());
    assert_eq!(events[1].2["events"][0]["type"], "delete");
    assert_eq!(events[1].2["events"][0].get("value"), None);

    // Last-Event-ID resumes after the put: the delete comes first.
    let resumed = watch(None).header("last-event-id", put.to_string()).send().await.unwrap();
    let events = sse_events(resumed, 1).await;
    assert_eq!(events[0].1, deleted["revision"].to_string());

    // History before the compaction point is gone: the stream says so.
    let latest = server.put("/w/b", "2").await;
    server.kv.compact(latest).await.unwrap();
    let old = watch(Some(start)).send().await.unwrap();
    let events = sse_events(old, 1).await;
    assert_eq!(events[0].0, "error");
    assert_eq!(events[0].2["code"], "compacted");
}
