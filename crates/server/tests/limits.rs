//! The limits an operator sets, on each backend: slow request heads and
//! bodies get 408, idle connections close, a full connection table makes room
//! (or answers 503 `overloaded`), and stalled TLS handshakes cannot hold the
//! others off. Every bound below is a hang guard, never a timing claim.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ifc_core::{Coordinator, CoreConfig};
use ifc_server::{AppState, Limits, Metrics};
use ifc_testkit::TestStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ADMIN: &str = "test-admin-token";

/// Generous: nothing here should take longer, and nothing asserts it is faster.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Short limits, so the tests do not wait long for them to pass.
fn short() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

struct Server {
    address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _store: TestStore,
}

impl Server {
    async fn start(
        store: TestStore,
        limits: Limits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        ifc_client::install_crypto_provider();
        let core = Arc::new(Coordinator::new(store.kv(), CoreConfig::default()));
        let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()));
        let router = ifc_server::router(state, 1 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ifc_server::serve_with(listener, router, tls, limits, async {
            let _ = stopped.await;
        }));
        Server { address, stop: Some(stop), task, _store: store }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }
}

/// Everything the server sends until it closes the connection (or the guard).
async fn read_all(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(HANG_GUARD, socket.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Whether the server closed the connection (read end or reset) within the guard.
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(HANG_GUARD, socket.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn healthz(url: &str) -> u16 {
    let client = reqwest::Client::builder().timeout(HANG_GUARD).build().unwrap();
    client.get(format!("{url}/healthz")).send().await.map_or(0, |r| r.status().as_u16())
}

ifc_testkit::on_each_backend!(
    a_body_announced_but_not_sent_gets_408,
    a_body_announced_past_the_limit_gets_413_at_once,
    slow_loris_heads_are_cut_off_with_408,
    idle_connections_are_closed,
    idle_connections_cannot_starve_healthz,
    past_the_cap_with_nothing_idle_newcomers_get_503_overloaded,
    stalled_tls_handshakes_do_not_hold_off_others,
    shutdown_closes_idle_connections_and_finishes,
);

/// A POST whose head says 1,000 bytes and whose body stops after 10: 408
/// `request_timeout`, and the connection closes.
async fn a_body_announced_but_not_sent_gets_408(store: TestStore) {
    let server = Server::start(store, short(), None).await;
    let mut socket = server.connect().await;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"task_id\""
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    // Nothing was created.
    assert_eq!(healthz(&server.url()).await, 200);
}

/// A head announcing 100 MB then 10 bytes: 413 `payload_too_large` before any
/// body is read (the edge checks the announced length against its limit),
/// while a body within the limit is waited for.
async fn a_body_announced_past_the_limit_gets_413_at_once(store: TestStore) {
    let limits = Limits {
        body_timeout: Duration::from_secs(3600),
        max_body_bytes: Some(1 << 20),
        ..short()
    };
    let server = Server::start(store, limits, None).await;
    let mut socket = server.connect().await;
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n0123456789"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"payload_too_large\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    // Within the limit: the server waits for the rest (no answer yet).
    let mut socket = server.connect().await;
    socket.write_all(head.replace("100000000", "1000").as_bytes()).await.unwrap();
    let mut first = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), socket.read(&mut first)).await;
    assert!(waited.is_err(), "answered a body still arriving: {waited:?}");
}

/// Twenty clients trickling a header line at a time never finish their head:
/// each gets 408 `request_timeout` and is closed.
async fn slow_loris_heads_are_cut_off_with_408(store: TestStore) {
    let server = Server::start(store, short(), None).await;
    let mut tricklers = Vec::new();
    for _ in 0..20 {
        let mut socket = server.connect().await;
        tricklers.push(tokio::spawn(async move {
            socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            let started = Instant::now();
            let mut received = Vec::new();
            while started.elapsed() < HANG_GUARD {
                // One more header line, then look for an answer.
                if socket.write_all(b"X-Slow: y\r\n").await.is_err() {
                    break;
                }
                let mut chunk = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(100), socket.read(&mut chunk))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
                    Err(_) => {}
                }
            }
            String::from_utf8_lossy(&received).into_owned()
        }));
    }
    for trickler in tricklers {
        let answer = trickler.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
}

/// A connection that never sends, and one kept alive after a request, are
/// both closed by the server once idle.
async fn idle_connections_are_closed(store: TestStore) {
    let server = Server::start(store, short(), None).await;
    let mut silent = server.connect().await;
    let mut kept_alive = server.connect().await;
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    kept_alive.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_by_server(&mut silent).await, "a silent connection stayed open");
    assert!(closed_by_server(&mut kept_alive).await, "an idle keep-alive stayed open");
}

/// With `max_connections` 8 and 12 idle connections held open (idle timeout
/// far away), `/healthz` still answers 200: the longest-idle ones make room.
async fn idle_connections_cannot_starve_healthz(store: TestStore) {
    let limits =
        Limits { max_connections: 8, idle_timeout: Duration::from_secs(3600), ..Limits::default() };
    let server = Server::start(store, limits, None).await;
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(server.connect().await);
    }
    for _ in 0..3 {
        assert_eq!(healthz(&server.url()).await, 200);
    }
    // The connections made to wait were closed by the server, not left hanging.
    let mut closed = 0;
    for socket in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), socket.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 4, "only {closed} of 12 idle connections were closed");
}

/// Every slot busy with a request in flight (event streams): a newcomer is
/// answered 503 `overloaded` with `Retry-After`, and served once one ends.
async fn past_the_cap_with_nothing_idle_newcomers_get_503_overloaded(store: TestStore) {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let server = Server::start(store, limits, None).await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut socket = server.connect().await;
        let request =
            format!("GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        socket.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        streams.push(socket);
    }
    let mut newcomer = server.connect().await;
    newcomer.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_all(&mut newcomer).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"overloaded\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    drop(streams.pop());
    let deadline = Instant::now() + HANG_GUARD;
    while healthz(&server.url()).await != 200 {
        assert!(Instant::now() < deadline, "never served after a stream ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Over TLS with one handshake slot: five connections that never say hello
/// are closed after the header timeout, and a real client gets through.
async fn stalled_tls_handshakes_do_not_hold_off_others(store: TestStore) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = ifc_server::tls_config(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let limits = Limits { max_tls_handshakes: 1, ..short() };
    let server = Server::start(store, limits, Some(config)).await;
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(server.connect().await);
    }
    let https = format!("https://localhost:{}", server.address.port());
    let admin = ifc_client::Client::with_ca(&https, ADMIN, cert.cert.pem().as_bytes()).unwrap();
    let listed = tokio::time::timeout(HANG_GUARD, admin.list_swarms()).await;
    assert!(matches!(listed, Ok(Ok(_))), "{listed:?}");
    for socket in &mut stalled {
        assert!(closed_by_server(socket).await, "a stalled handshake stayed open");
    }
}

/// Shutdown with an idle keep-alive connection open (its idle timeout far
/// away): the server closes it and finishes.
async fn shutdown_closes_idle_connections_and_finishes(store: TestStore) {
    let limits = Limits { idle_timeout: Duration::from_secs(3600), ..Limits::default() };
    let mut server = Server::start(store, limits, None).await;
    let mut kept_alive = server.connect().await;
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    kept_alive.read_exact(&mut head).await.unwrap();
    let _ = server.stop.take().unwrap().send(());
    let finished = tokio::time::timeout(HANG_GUARD, &mut server.task).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
    assert!(closed_by_server(&mut kept_alive).await);
}
