//! A real `ifc serve` in a child process on either backend, for tests that
//! drive the binary as a person or a script would.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ifc_testkit::{Backend, EtcdProcess};

/// A running `ifc serve`, killed on drop (unless a test took it to stop it
/// itself, with [`Served::take_child`]).
pub struct Served {
    child: Option<Child>,
    /// Its base URL.
    pub url: String,
    /// Its data directory (holds `admin.token`).
    pub dir: tempfile::TempDir,
    /// How it was started (for [`Served::restart`]).
    command: Vec<String>,
    piped: bool,
    _etcd: Option<EtcdProcess>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Served {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server process").id()
    }

    /// The server's process, for a test that stops it and reads its output
    /// (started with [`ServeOptions::piped`]); the store stays up meanwhile.
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("the server process")
    }

    /// Stops the server (SIGKILL); the store and data directory stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, as before (same port, store and data directory), and
    /// waits until ready.
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
        command.args(&self.command).env_remove("IFC_ETCD").env_remove("ETCD_HOST");
        pipe(&mut command, self.piped);
        self.child = Some(command.spawn().expect("restart ifc serve"));
        wait_ready(&self.url).await;
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    /// `ifc <args>` run to completion against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        self.ifc().args(args).output().expect("run ifc")
    }

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

/// How to start `ifc serve` beyond its backend and flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeOptions {
    /// Pipe the server's stdout and stderr (read them via
    /// [`Served::take_child`]); otherwise they are discarded.
    pub piped: bool,
    /// Run on the (empty) data directory before the server starts.
    pub prepare: Option<fn(&std::path::Path)>,
}

/// Starts `ifc serve` on `backend` with `extra` flags and waits until ready.
pub async fn serve(backend: Backend, extra: &[&str]) -> Served {
    serve_with(backend, extra, ServeOptions::default()).await
}

/// [`serve`], with `options`.
pub async fn serve_with(backend: Backend, extra: &[&str], options: ServeOptions) -> Served {
    ifc_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    if let Some(prepare) = options.prepare {
        prepare(dir.path());
    }
    let port = free_port();
    let mut args: Vec<String> =
        vec!["serve".into(), "--listen".into(), format!("127.0.0.1:{port}")];
    args.push("--data-dir".into());
    args.push(dir.path().display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let etcd = match backend {
        Backend::Embedded => None,
        Backend::Etcd => {
            let etcd = EtcdProcess::start().await;
            args.extend(["--etcd".to_string(), etcd.endpoint()]);
            Some(etcd)
        }
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
    command.args(&args).env_remove("IFC_ETCD").env_remove("ETCD_HOST");
    pipe(&mut command, options.piped);
    let child = command.spawn().expect("start ifc serve");
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url).await;
    Served { child: Some(child), url, dir, command: args, piped: options.piped, _etcd: etcd }
}

fn pipe(command: &mut Command, piped: bool) {
    if piped {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/readyz")).await.map(|r| r.status().is_success()).ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "ifc serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
