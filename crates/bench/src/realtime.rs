//! Push, blocker and subscription figures, in process and through HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use ifc_core::{BlockerInfo, ClaimOutcome, Coordinator, CoreConfig, NewTask, Reaper};
use ifc_kv::KvStore;

use crate::etcd::ns;
use crate::floors::{self, TxnShape};
use crate::latency::{Summary, histogram, interleave, record, summary};
use crate::workload::progress;

/// A plain task with this id.
pub fn task(id: String) -> NewTask {
    NewTask {
        task_id: id,
        task_type: "bench".into(),
        metadata: serde_json::Value::Null,
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// The namespace of the nodes these rows run.
const NAMESPACE: &str = "ifc";

fn coordinator(store: Arc<dyn KvStore>, max_swarms: usize) -> Arc<Coordinator> {
    let config = CoreConfig {
        namespace: ns(NAMESPACE),
        max_swarms,
        claim_timeout_ms: 60_000,
        push_timeout_ms: 60_000,
        swarm_ttl_secs: 3600,
        ..CoreConfig::default()
    };
    Arc::new(Coordinator::new(store, config))
}

/// A coordinator with its reaper, as a node of `ifc serve` runs it (the
/// reaper's watch also feeds the node's snapshot cache).
fn node(store: Arc<dyn KvStore>, max_swarms: usize) -> (Arc<Coordinator>, Reaper) {
    let c = coordinator(store, max_swarms);
    let reaper = Reaper::spawn(c.clone());
    (c, reaper)
}

const WAIT: Duration = Duration::from_secs(30);

/// The next item of a stream, or an error naming `what` if it ends, fails or
/// takes longer than [`WAIT`].
async fn next_item<T, E>(
    stream: &mut (impl futures::Stream<Item = Result<T, E>> + Unpin),
    what: &str,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let item = tokio::time::timeout(WAIT, stream.next())
        .await
        .with_context(|| format!("{what}: timed out"))?;
    Ok(item.with_context(|| format!("{what}: the stream ended"))??)
}

/// The blocker every benchmark raises.
fn bench_blocker() -> BlockerInfo {
    BlockerInfo {
        blocker_type: "bench".into(),
        description: "stuck".into(),
        severity: "high".into(),
        required_capabilities: vec!["x".into()],
        task_id: None,
    }
}

/// push_task_to_swarm, timed until the swarm's inbox stream yields it.
pub async fn push_delivery(store: Arc<dyn KvStore>, n: usize) -> Result<Summary> {
    let (c, _reaper) = node(store, 10);
    c.register_swarm("push-target", Vec::new(), serde_json::Value::Null, None).await?;
    let mut inbox = c.inbox("push-target", 0).await?;
    let mut h = histogram();
    for i in 0..n {
        let started = Instant::now();
        c.push_task_to_swarm("push-target", task(format!("push-{i}"))).await?;
        next_item(&mut inbox, "push delivery").await?;
        record(&mut h, started);
    }
    Ok(summary(&h))
}

/// The push on etcd and its two floors, interleaved (the order rotates each
/// round, so none always follows another's fsync): `push_task_to_swarm`
/// timed until the swarm's inbox stream yields it; a raw etcd-client txn of
/// the push's shape (read back from one untimed push first; see
/// [`floors::raw_txn_of_shape`]) timed until a watch of its keys sees it; a
/// raw one-key put timed until its watch sees it. Returns (push, shaped,
/// put → watch, the push's shape).
pub async fn push_vs_floors(
    store: Arc<dyn KvStore>,
    raw: &mut etcd_client::Client,
    n: usize,
) -> Result<(Summary, Summary, Summary, TxnShape)> {
    let (c, _reaper) = node(store, 10);
    c.register_swarm("push-target", Vec::new(), serde_json::Value::Null, None).await?;
    let mut inbox = c.inbox("push-target", 0).await?;
    c.push_task_to_swarm("push-target", task("push-shape".into())).await?;
    let first = next_item(&mut inbox, "push delivery").await?;
    // A push of a new task compares the swarm's record and the task's record,
    // claim and holder keys (`inbox.rs`); its puts and deletes are read back.
    let prefix = format!("{}/", ns(NAMESPACE));
    let shape = TxnShape::read_back(raw, &prefix, first.revision, 4).await?;

    let lease = raw.lease_grant(600, None).await?.id();
    let shaped_prefix = |i: usize| ns(&format!("pw/{i}"));
    for i in 0..n {
        floors::prepare_shape(raw, &shaped_prefix(i), &shape).await?;
    }
    // Opened after the keys the txns delete were written, so they see the
    // timed writes only.
    let options = || Some(etcd_client::WatchOptions::new().with_prefix());
    let mut shaped_watch = raw.watch(ns("pw/"), options()).await?;
    let mut floor_watch = raw.watch(ns("bench/floor-watch/"), options()).await?;
    let (mut pushes, mut shaped, mut floor) = (histogram(), histogram(), histogram());
    for i in 0..n {
        for turn in 0..3 {
            let started = Instant::now();
            match (i + turn) % 3 {
                0 => {
                    c.push_task_to_swarm("push-target", task(format!("push-{i}"))).await?;
                    next_item(&mut inbox, "push delivery").await?;
                    record(&mut pushes, started);
                }
                1 => {
                    floors::raw_txn_of_shape(raw, &shaped_prefix(i), &shape, lease).await?;
                    next_events(&mut shaped_watch).await?;
                    record(&mut shaped, started);
                }
                _ => {
                    raw.put(ns(&format!("bench/floor-watch/{i}")), "v", None).await?;
                    next_events(&mut floor_watch).await?;
                    record(&mut floor, started);
                }
            }
        }
    }
    // Now, untimed, rather than at its expiry under a later row.
    raw.lease_revoke(lease).await?;
    Ok((summary(&pushes), summary(&shaped), summary(&floor), shape))
}

/// Waits for a watch response that carries events.
async fn next_events(watch: &mut etcd_client::WatchStream) -> Result<()> {
    loop {
        let message =
            tokio::time::timeout(WAIT, watch.message()).await.context("watch floor")??;
        if message.is_some_and(|m| !m.events().is_empty()) {
            return Ok(());
        }
    }
}

/// detect_blocker, timed until the orchestrator's stream yields it (helper
/// candidates included).
pub async fn blocker_delivery(store: Arc<dyn KvStore>, n: usize) -> Result<Summary> {
    let (c, _reaper) = node(store, 10);
    c.register_swarm("reporter", vec!["x".into()], serde_json::Value::Null, None).await?;
    c.register_swarm("helper", vec!["x".into()], serde_json::Value::Null, None).await?;
    let mut blockers = c.blockers(None).await?;
    let mut h = histogram();
    for _ in 0..n {
        let info = bench_blocker();
        let started = Instant::now();
        c.detect_blocker("reporter", info).await?;
        next_item(&mut blockers, "blocker delivery").await?;
        record(&mut h, started);
    }
    Ok(summary(&h))
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

/// Registers `count` swarms and opens an idle inbox subscription for each;
/// returns the RSS growth the subscriptions caused (registration lives in the
/// store, not in memory), keeping them open until the returned streams drop.
pub async fn idle_subscriptions(
    store: Arc<dyn KvStore>,
    count: usize,
    round: usize,
) -> Result<(u64, Vec<ifc_core::CoreStream<ifc_core::InboxItem>>)> {
    let c = coordinator(store, usize::MAX);
    let bar = progress(count, format!("registering {count} swarms"));
    let mut registering = Vec::new();
    for chunk in 0..16 {
        let c = c.clone();
        let bar = bar.clone();
        registering.push(tokio::spawn(async move {
            for i in (chunk..count).step_by(16) {
                c.register_swarm(
                    &format!("idle-{round}-{i}"),
                    Vec::new(),
                    serde_json::Value::Null,
                    None,
                )
                .await?;
                bar.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for r in registering {
        r.await??;
    }
    bar.finish_and_clear();
    let before = rss_bytes();
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        streams.push(c.inbox(&format!("idle-{round}-{i}"), 0).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((rss_bytes().saturating_sub(before), streams))
}

/// The viewer token of a [`ChildServer`].
pub const VIEWER_TOKEN: &str = "bench-viewer";

/// `ifc serve` (release build, next to this binary) in its own process on a
/// fresh embedded store, killed on drop.
pub struct ChildServer {
    child: std::process::Child,
    pub url: String,
    pub admin: ifc_client::Client,
    _data: tempfile::TempDir,
}

impl ChildServer {
    /// Starts the server and waits until it is ready; `None` when the `ifc`
    /// binary is not built next to this one.
    pub async fn start(max_swarms: usize) -> Result<Option<ChildServer>> {
        let Some(ifc) = std::env::current_exe()?.parent().map(|dir| dir.join("ifc")) else {
            return Ok(None);
        };
        if !ifc.exists() {
            return Ok(None);
        }
        let data = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new(&ifc)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--max-swarms", &max_swarms.to_string(), "--swarm-ttl", "86400"])
            .arg("--data-dir")
            .arg(data.path())
            .env("IFC_ADMIN_TOKEN", "bench-admin")
            .env("IFC_VIEWER_TOKEN", VIEWER_TOKEN)
            .env_remove("IFC_ETCD")
            .env_remove("ETCD_HOST")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let server = ChildServer {
            child,
            admin: ifc_client::Client::new(&url, "bench-admin"),
            url,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/readyz", server.url))
            .await
            .map(|r| r.status().is_success())
            .ok()
            != Some(true)
        {
            anyhow::ensure!(Instant::now() < deadline, "ifc serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Some(server))
    }

    /// The server process's resident memory.
    pub fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
            .map(|kb| kb * 1024)
            .context("no VmRSS in /proc/<pid>/status")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An idle `ifc serve`'s resident memory, or `None` if `ifc` is not built.
pub async fn idle_server_rss() -> Result<Option<u64>> {
    let Some(server) = ChildServer::start(100).await? else {
        return Ok(None);
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Some(server.rss()?))
}

/// An in-process server on a loopback port, on the given store.
pub struct LocalServer {
    pub url: String,
    pub admin: ifc_client::Client,
    _task: tokio::task::JoinHandle<std::io::Result<()>>,
    _reaper: Reaper,
}

pub async fn local_server(store: Arc<dyn KvStore>, max_swarms: usize) -> Result<LocalServer> {
    let (core, reaper) = node(store, max_swarms);
    let state =
        ifc_server::AppState::new(core, "bench-admin", Arc::new(ifc_server::Metrics::default()));
    let router = ifc_server::router(state, 4 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(ifc_server::serve(listener, router, std::future::pending()));
    Ok(LocalServer {
        admin: ifc_client::Client::new(&url, "bench-admin"),
        url,
        _task: task,
        _reaper: reaper,
    })
}

/// One HTTP client claiming distinct tasks one after another, interleaved with
/// the floor: a bare `GET /healthz` on the same server from a reqwest client
/// (the library under the Rust client), which does no work but the round
/// trip. Returns (claim, floor).
pub async fn http_claim_rtt(server: &LocalServer, n: usize) -> Result<(Summary, Summary)> {
    let swarm = server.admin.register_swarm("http-claimer", &[], serde_json::Value::Null).await?;
    for i in 0..n {
        server.admin.create_task(task(format!("http-{i}"))).await?;
    }
    let http = reqwest::Client::new();
    let healthz = format!("{}/healthz", server.url);
    interleave(
        n,
        async |i| match swarm.claim_task(&format!("http-{i}")).await? {
            ClaimOutcome::Claimed(_) => Ok(()),
            other => anyhow::bail!("http claim: {other:?}"),
        },
        async |_| {
            let answer = http.get(&healthz).send().await?.error_for_status()?;
            answer.bytes().await?;
            Ok(())
        },
    )
    .await
}

/// `clients` HTTP clients, each claiming `per_client` distinct tasks.
pub async fn http_claims_concurrent(
    server: &LocalServer,
    clients: usize,
    per_client: usize,
) -> Result<(f64, Summary)> {
    let mut swarms = Vec::new();
    for w in 0..clients {
        swarms.push(
            server.admin.register_swarm(&format!("hc-{w}"), &[], serde_json::Value::Null).await?,
        );
    }
    let mut creators = Vec::new();
    for chunk in 0..16 {
        let admin = server.admin.clone();
        creators.push(tokio::spawn(async move {
            for t in (chunk..clients * per_client).step_by(16) {
                admin.create_task(task(format!("hc-task-{t}"))).await?;
            }
            anyhow::Ok(())
        }));
    }
    for creator in creators {
        creator.await??;
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for (w, swarm) in swarms.iter().enumerate() {
        let client = (**swarm).clone();
        workers.push(tokio::spawn(async move {
            let mut h = histogram();
            for i in 0..per_client {
                let t = Instant::now();
                match client.claim_task(&format!("hc-task-{}", w * per_client + i)).await? {
                    ClaimOutcome::Claimed(_) => {}
                    other => anyhow::bail!("{other:?}"),
                }
                record(&mut h, t);
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for worker in workers {
        all.add(worker.await??)?;
    }
    Ok(((clients * per_client) as f64 / started.elapsed().as_secs_f64(), summary(&all)))
}

/// Push over HTTP, timed until the swarm's SSE inbox yields it.
pub async fn http_push_sse(server: &LocalServer, n: usize) -> Result<Summary> {
    let swarm = server.admin.register_swarm("sse-target", &[], serde_json::Value::Null).await?;
    let mut inbox = swarm.inbox(0)?;
    // Let the stream connect before timing.
    server.admin.push_task_to_swarm("sse-target", task("sse-warmup".into())).await?;
    next_item(&mut inbox, "sse warm-up").await?;
    let mut h = histogram();
    for i in 0..n {
        let started = Instant::now();
        server.admin.push_task_to_swarm("sse-target", task(format!("sse-{i}"))).await?;
        next_item(&mut inbox, "sse delivery").await?;
        record(&mut h, started);
    }
    Ok(summary(&h))
}

/// Bursts of `burst` pushes sent at once to one swarm, each timed from the
/// first push until the swarm's SSE stream has yielded all of them: events
/// that follow each other closely on one connection.
pub async fn http_push_burst_sse(
    server: &LocalServer,
    bursts: usize,
    burst: usize,
) -> Result<Summary> {
    let swarm = server.admin.register_swarm("sse-burst", &[], serde_json::Value::Null).await?;
    let mut inbox = swarm.inbox(0)?;
    server.admin.push_task_to_swarm("sse-burst", task("burst-warmup".into())).await?;
    next_item(&mut inbox, "sse warm-up").await?;
    let mut h = histogram();
    for b in 0..bursts {
        let started = Instant::now();
        let pushes = (0..burst)
            .map(|i| server.admin.push_task_to_swarm("sse-burst", task(format!("burst-{b}-{i}"))));
        for pushed in futures::future::join_all(pushes).await {
            pushed?;
        }
        for _ in 0..burst {
            next_item(&mut inbox, "sse burst delivery").await?;
        }
        record(&mut h, started);
    }
    Ok(summary(&h))
}

/// Opens `count` idle inbox SSE streams, one per newly registered swarm, on
/// the server at `url`, and returns how much `rss` grew while they opened,
/// with the streams (which stay open while held).
pub async fn http_idle_streams(
    url: &str,
    admin: &ifc_client::Client,
    rss: impl Fn() -> Result<u64>,
    count: usize,
    round: usize,
) -> Result<(u64, Vec<ifc_client::ItemStream<ifc_client::InboxItem>>)> {
    let mut swarms = Vec::new();
    let bar = progress(count, format!("registering {count} swarms over HTTP"));
    for i in 0..count {
        let id = format!("sse-idle-{round}-{i}");
        let swarm = admin.register_swarm(&id, &[], serde_json::Value::Null).await?;
        swarms.push((*swarm).clone());
        // The registration's heartbeat task stops when `swarm` drops; the
        // plain client keeps the identity.
        bar.inc(1);
    }
    bar.finish_and_clear();
    let before = rss()?;
    let expected = streams_open(url).await? + count;
    let mut streams = Vec::with_capacity(count);
    for swarm in &swarms {
        streams.push(swarm.inbox(0)?);
    }
    // Wait until the server reports every stream open.
    let deadline = Instant::now() + Duration::from_secs(120);
    while streams_open(url).await? < expected {
        anyhow::ensure!(Instant::now() < deadline, "{count} SSE streams did not open in 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((rss()?.saturating_sub(before), streams))
}

/// The server's `ifc_open_streams{kind}` gauges, summed.
async fn streams_open(url: &str) -> Result<usize> {
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("ifc_open_streams{"))
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()))
        .sum())
}

/// The seed's table, ours, in process: create, claim, complete, push → inbox,
/// blocker → orchestrator, each timed `n` times on a fresh coordinator.
pub async fn seed_table(
    store: Arc<dyn KvStore>,
    n: usize,
    tag: &str,
) -> Result<Vec<(&'static str, Summary)>> {
    let (c, _reaper) = node(store.clone(), 100);
    c.register_swarm(&format!("seed-{tag}"), Vec::new(), serde_json::Value::Null, None).await?;
    let swarm = format!("seed-{tag}");
    let (mut create, mut claim, mut complete) = (histogram(), histogram(), histogram());
    for i in 0..n {
        let id = format!("seed-{tag}-{i}");
        let t = Instant::now();
        c.create_task(task(id.clone())).await?;
        record(&mut create, t);
        let t = Instant::now();
        let token = match c.claim_task(&swarm, &id).await? {
            ClaimOutcome::Claimed(claim) => claim.token,
            other => anyhow::bail!("seed claim: {other:?}"),
        };
        record(&mut claim, t);
        let t = Instant::now();
        c.complete_task(&swarm, &id, token, serde_json::json!({"ok": true})).await?;
        record(&mut complete, t);
    }
    Ok(vec![
        ("claim_task", summary(&claim)),
        ("push_task_to_swarm (→ delivered)", push_delivery(store.clone(), n).await?),
        ("create_task", summary(&create)),
        ("complete_task", summary(&complete)),
        ("detect_blocker (→ orchestrator)", blocker_delivery(store, n).await?),
    ])
}

/// The seed's table through HTTP: the same operations via the Rust client.
pub async fn seed_table_http(
    server: &LocalServer,
    n: usize,
    tag: &str,
) -> Result<Vec<(&'static str, Summary)>> {
    let admin = &server.admin;
    let swarm = admin.register_swarm(&format!("hs-{tag}"), &["x"], serde_json::Value::Null).await?;
    let (mut create, mut claim, mut complete) = (histogram(), histogram(), histogram());
    for i in 0..n {
        let id = format!("hs-{tag}-{i}");
        let t = Instant::now();
        admin.create_task(task(id.clone())).await?;
        record(&mut create, t);
        let t = Instant::now();
        let token = match swarm.claim_task(&id).await? {
            ClaimOutcome::Claimed(claim) => claim.token,
            other => anyhow::bail!("http seed claim: {other:?}"),
        };
        record(&mut claim, t);
        let t = Instant::now();
        swarm.complete_task(&id, token, serde_json::json!({"ok": true})).await?;
        record(&mut complete, t);
    }
    // Push → SSE and blocker → SSE.
    let mut inbox = swarm.inbox(0)?;
    let mut blockers = admin.blockers(None);
    let helper =
        admin.register_swarm(&format!("hs-helper-{tag}"), &["x"], serde_json::Value::Null).await?;
    admin.push_task_to_swarm(&format!("hs-{tag}"), task(format!("hs-warm-{tag}"))).await?;
    next_item(&mut inbox, "sse warm-up").await?;
    let (mut push, mut blocker) = (histogram(), histogram());
    for i in 0..n {
        let t = Instant::now();
        admin.push_task_to_swarm(&format!("hs-{tag}"), task(format!("hs-push-{tag}-{i}"))).await?;
        next_item(&mut inbox, "sse push").await?;
        record(&mut push, t);
        let info = bench_blocker();
        let t = Instant::now();
        helper.detect_blocker(info).await?;
        next_item(&mut blockers, "sse blocker").await?;
        record(&mut blocker, t);
    }
    Ok(vec![
        ("claim_task", summary(&claim)),
        ("push_task_to_swarm (→ delivered)", summary(&push)),
        ("create_task", summary(&create)),
        ("complete_task", summary(&complete)),
        ("detect_blocker (→ orchestrator)", summary(&blocker)),
    ])
}
