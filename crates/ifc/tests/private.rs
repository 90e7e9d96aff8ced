//! `ifc serve` keeps its data directory private (0700, files 0600), and the CLI
//! ends quietly when its reader goes away (`| head`).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ifc_testkit::{Backend, EtcdProcess};

async fn private_data_and_quiet_pipes(backend: Backend) {
    ifc_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A directory left readable by everyone, with a readable file in it.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("old.log"), b"x").unwrap();
    std::fs::set_permissions(data.join("old.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ifc"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
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
    let mut child = command.spawn().expect("start ifc serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/readyz")).await.map(|r| r.status().is_success()).ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "ifc serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
            files += 1;
        }
    }
    assert!(files >= 2, "admin.token and old.log at least");

    // A reader that is gone before the CLI writes: exit 141, no panic.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_ifc"))
        .args(["task", "list", "--state", "ready", "-o", "json", "--server", &url])
        .env("IFC_TOKEN", token.trim())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(cli.stdout.take());
    let output = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(matches!(output.status.code(), Some(0 | 141)), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_and_quiet_pipes_on_embedded() {
    private_data_and_quiet_pipes(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_and_quiet_pipes_on_etcd() {
    private_data_and_quiet_pipes(Backend::Etcd).await;
}
