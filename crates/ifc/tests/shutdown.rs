//! `ifc serve` stops on SIGTERM while holding many open event streams: every
//! stream gets a final event naming the revision to resume after, and the
//! process exits cleanly within its grace period.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ifc_testkit::{Backend, EtcdProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAMS: usize = 100;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn sigterm_ends_every_stream_then_exits(backend: Backend) {
    ifc_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--shutdown-grace", "60"])
        .args(["--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/readyz")).await.map(|r| r.status().is_success()).ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "ifc serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin_token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = ifc_client::Client::new(&url, admin_token.trim());
    let swarm = admin.register_swarm("s1", &[], serde_json::json!({})).await.unwrap();
    let request = format!(
        "GET /v1/swarms/s1/inbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         X-Ifc-Swarm: s1\r\n\r\n",
        swarm.registration().token
    );
    let mut sockets = Vec::new();
    for _ in 0..STREAMS {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        socket.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        sockets.push(socket);
    }

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut ended = 0;
    for mut socket in sockets {
        let mut received = Vec::new();
        socket.read_to_end(&mut received).await.unwrap();
        let text = String::from_utf8_lossy(&received);
        let end = text.rfind("event: error").expect("a final event");
        let tail = &text[end..];
        assert!(tail.contains("\"code\":\"shutting_down\""), "{tail}");
        assert!(tail.contains("\"resume_after\":0"), "{tail}");
        ended += 1;
    }
    assert_eq!(ended, STREAMS);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap();
    let output = output.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{:?}: {stdout}", output.status);
    // Finished on its own, not cut short by the grace period.
    assert!(!stdout.contains("after the grace period"), "{stdout}");
    assert!(stdout.contains("stopped"), "{stdout}");
    // JSON logs are JSON only: no plain banner line.
    for line in stdout.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_streams_on_embedded() {
    sigterm_ends_every_stream_then_exits(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_streams_on_etcd() {
    sigterm_ends_every_stream_then_exits(Backend::Etcd).await;
}
