//! `ifc serve` tells its operator when a claim lapses and when a swarm
//! expires: one info line each, with ids and the attempt, never a token.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ifc_testkit::{Backend, EtcdProcess};
use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (bounded: a hang guard, not a timing claim) until `ready` holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, ready: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lapse_and_expiry_are_logged_without_tokens(backend: Backend) {
    ifc_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "json", "--swarm-ttl", "1", "--claim-timeout-ms", "1000"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("IFC_ETCD")
        .env_remove("ETCD_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let etcd = match backend {
        Backend::Embedded => None,
        Backend::Etcd => {
            let etcd = EtcdProcess::start().await;
            command.args(["--etcd", &etcd.endpoint()]);
            Some(etcd)
        }
    };
    let child = command.spawn().expect("start ifc serve");
    let url = format!("http://127.0.0.1:{port}");
    eventually("ifc serve ready", || async {
        reqwest::get(format!("{url}/readyz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let admin_token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = ifc_client::Client::new(&url, admin_token.trim());
    admin
        .create_task(ifc_client::NewTask {
            task_id: "t1".into(),
            task_type: "x".into(),
            metadata: json!({}),
            required_capabilities: vec![],
            priority: 0,
            max_attempts: Some(3),
            timeout_ms: None,
        })
        .await
        .unwrap();
    let swarm = admin.register_swarm("s1", &[], json!({})).await.unwrap();
    let swarm_token = swarm.registration().token.clone();
    let claimed = swarm.claim_task("t1").await.unwrap();
    assert!(matches!(claimed, ifc_client::ClaimOutcome::Claimed(_)));
    // No more heartbeats: the swarm expires and its claim lapses.
    drop(swarm);
    eventually("the lapse and the expiry recorded", || async {
        let records = admin.witness(None).await.unwrap_or_default();
        let ops: Vec<&str> = records.iter().map(|r| r.op.as_str()).collect();
        ops.contains(&"swarm_expired") && ops.contains(&"task_requeued")
    })
    .await;

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.unwrap().stdout).into_owned();
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let logged = |message: &str| {
        lines.iter().find(|l| l["fields"]["message"] == message && l["level"] == "INFO").cloned()
    };
    let lapse = logged("claim lapsed").unwrap_or_else(|| panic!("no lapse line in\n{stdout}"));
    assert_eq!(lapse["fields"]["task_id"], "t1", "{lapse}");
    assert_eq!(lapse["fields"]["swarm_id"], "s1", "{lapse}");
    assert_eq!(lapse["fields"]["attempt"], 1, "{lapse}");
    assert_eq!(lapse["fields"]["outcome"], "ready", "{lapse}");
    let expiry = logged("swarm expired: no heartbeat within its TTL")
        .unwrap_or_else(|| panic!("no expiry line in\n{stdout}"));
    assert_eq!(expiry["fields"]["swarm_id"], "s1", "{expiry}");
    assert!(!stdout.contains(admin_token.trim()), "the admin token was logged");
    assert!(!stdout.contains(&swarm_token), "a swarm token was logged");
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapse_and_expiry_logged_on_embedded() {
    lapse_and_expiry_are_logged_without_tokens(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapse_and_expiry_logged_on_etcd() {
    lapse_and_expiry_are_logged_without_tokens(Backend::Etcd).await;
}
