//! `ifc serve` stops on SIGTERM while holding many open event streams: every
//! stream gets a final event naming the revision to resume after, and the
//! process exits cleanly within its grace period.

mod common;

use std::process::Command;

use common::{ServeOptions, serve_with};
use ifc_testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAMS: usize = 100;

async fn sigterm_ends_every_stream_then_exits(backend: Backend) {
    let mut served = serve_with(
        backend,
        &["--shutdown-grace", "60", "--log-format", "json"],
        ServeOptions { piped: true, ..ServeOptions::default() },
    )
    .await;
    let port = served.port();
    let admin = served.admin();
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

    let child = served.take_child();
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
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_streams_on_embedded() {
    sigterm_ends_every_stream_then_exits(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_streams_on_etcd() {
    sigterm_ends_every_stream_then_exits(Backend::Etcd).await;
}
