//! `ifc serve` keeps its data directory private (0700, files 0600), and the CLI
//! ends quietly when its reader goes away (`| head`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{ServeOptions, serve_with};
use ifc_testkit::Backend;

/// A data directory left readable by everyone, with a readable file in it.
fn loosen(data: &Path) {
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("old.log"), b"x").unwrap();
    std::fs::set_permissions(data.join("old.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

async fn private_data_and_quiet_pipes(backend: Backend) {
    let options = ServeOptions { prepare: Some(loosen), ..ServeOptions::default() };
    let served = serve_with(backend, &[], options).await;
    let data = served.dir.path().to_path_buf();
    let url = served.url.clone();
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
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_and_quiet_pipes_on_embedded() {
    private_data_and_quiet_pipes(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_and_quiet_pipes_on_etcd() {
    private_data_and_quiet_pipes(Backend::Etcd).await;
}
