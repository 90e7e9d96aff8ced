//! A real etcd for tests: started from `PATH` on free loopback ports with a
//! temporary data directory, stopped (killed and reaped) on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ifc_kv_etcd::{EtcdOptions, EtcdStore};

pub(crate) const INSTALL_HINT: &str = "etcd is not installed, and this test needs a real etcd. \
Install it with `sudo apt-get install etcd-server` (Debian/Ubuntu), or run \
`scripts/test.sh`, which installs everything the tests need.";

/// One etcd member, on loopback.
pub struct EtcdProcess {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
    log: PathBuf,
    quota_backend_bytes: Option<u64>,
}

/// `n` distinct free loopback ports. Every listener is held until all are
/// picked: ports picked one at a time, each released at once, can repeat (seen
/// in CI: "initial cluster ... has duplicate url").
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound address").port()).collect()
}

impl EtcdProcess {
    /// Starts etcd and waits until it answers. Panics with an install hint if
    /// `etcd` is not on `PATH`.
    pub async fn start() -> EtcdProcess {
        Self::start_inner(None).await
    }

    /// Starts etcd with a backend quota other than etcd's default of 2 GiB,
    /// for data sets (a million stored tasks) that would outgrow it.
    pub async fn start_with_quota(quota_backend_bytes: u64) -> EtcdProcess {
        Self::start_inner(Some(quota_backend_bytes)).await
    }

    async fn start_inner(quota_backend_bytes: Option<u64>) -> EtcdProcess {
        // A free port is released before etcd binds it, so another process may
        // take it first: start again on fresh ports when that happens.
        for _ in 0..5 {
            let data = tempfile::tempdir().expect("temporary directory");
            let log = data.path().join("etcd.log");
            let ports = free_ports(2);
            let mut etcd = EtcdProcess {
                child: None,
                client_port: ports[0],
                peer_port: ports[1],
                data,
                log,
                quota_backend_bytes,
            };
            etcd.spawn();
            match etcd.wait_ready().await {
                Ok(()) => return etcd,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("etcd found its ports taken five times in a row");
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// etcd's backend file (bbolt), whose size is the data's size on disk.
    pub fn db_file(&self) -> PathBuf {
        self.data.path().join("member").join("member").join("snap").join("db")
    }

    /// A new client connection.
    pub async fn connect(&self) -> EtcdStore {
        EtcdStore::connect(EtcdOptions::new(vec![self.endpoint()]))
            .await
            .unwrap_or_else(|e| panic!("connect to etcd at {}: {e}", self.endpoint()))
    }

    /// Kills etcd (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        if let Err(log) = self.wait_ready().await {
            panic!("{log}");
        }
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(&self.log).expect("etcd log file");
        let mut command = Command::new("etcd");
        if let Some(quota) = self.quota_backend_bytes {
            command.arg(format!("--quota-backend-bytes={quota}"));
        }
        let child = command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data.path().join("member").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            // Short raft timers: a single member elects itself at once, and the
            // minimum lease TTL drops to etcd's floor of one second.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=50")
            .arg("--max-request-bytes=2097152")
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot start etcd: {e}"),
        }
    }

    /// Waits until etcd answers; what went wrong and etcd's log if it exits
    /// or does not answer within 30 s.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut options = EtcdOptions::new(vec![self.endpoint()]);
            options.connect_timeout = Duration::from_millis(500);
            options.request_timeout = Duration::from_secs(2);
            if EtcdStore::connect(options).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("etcd exited with {status} before it was ready:\n{log}"));
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let endpoint = self.endpoint();
                return Err(format!("etcd at {endpoint} did not become ready in 30 s:\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
