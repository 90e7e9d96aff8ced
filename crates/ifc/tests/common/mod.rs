//! A real `ifc serve` in a child process on either backend, for tests that
//! drive the binary as a person or a script would.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ifc_testkit::{Backend, EtcdProcess};

/// A running `ifc serve`, killed on drop.
pub struct Served {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// Its data directory (holds `admin.token`).
    pub dir: tempfile::TempDir,
    _etcd: Option<EtcdProcess>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// The admin token the server generated.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin.token")).unwrap().trim().to_string()
    }

    /// A client with the admin token.
    pub fn admin(&self) -> ifc_client::Client {
        ifc_client::Client::new(&self.url, &self.admin_token())
    }

    /// `ifc <args>` pointed at this server (IFC_SERVER, IFC_DATA_DIR set).
    pub fn ifc(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
        command
            .env("IFC_SERVER", &self.url)
            .env("IFC_DATA_DIR", self.dir.path())
            .env_remove("IFC_TOKEN")
            .env_remove("IFC_SWARM")
            .env_remove("IFC_SWARM_TOKEN")
            .env_remove("IFC_CLAIM_TOKEN");
        command
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `ifc serve` on `backend` with `extra` flags and waits until ready.
pub async fn serve(backend: Backend, extra: &[&str]) -> Served {
    ifc_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(extra)
        .env_remove("IFC_ETCD")
        .env_remove("ETCD_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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
    Served { child, url, dir, _etcd: etcd }
}

/// Polls until `task_id` reads as `state`, or fails the test after 60 s.
pub async fn wait_for_state(
    served: &Served,
    task_id: &str,
    state: ifc_client::TaskState,
) -> ifc_client::TaskView {
    let admin = served.admin();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = admin.get_task(task_id).await.unwrap();
        if view.state == state {
            return view;
        }
        assert!(Instant::now() < deadline, "{task_id} never became {state:?}: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
