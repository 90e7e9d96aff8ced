//! The README's "Use it" walk-through, run as written: its shell block (marked
//! `<!-- walkthrough -->`) is extracted from README.md, not copied, and run
//! with bash against a real `ifc serve` started with the flags the README's
//! `<!-- walkthrough-server -->` block gives, on each backend.

mod common;

use std::process::Command;

use ifc_testkit::Backend;

/// The first ```sh block after `marker` in README.md.
fn block_after(marker: &str) -> String {
    let readme = include_str!("../../../README.md");
    let start = readme.find(marker).unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("a ```sh block after the marker") + "```sh\n".len();
    let close = rest[open..].find("```").expect("the block's closing fence");
    rest[open..open + close].to_string()
}

/// The flags after `ifc serve` in the server block (comments dropped).
fn server_flags() -> Vec<String> {
    let block = block_after("<!-- walkthrough-server -->");
    let line = block.lines().find(|l| l.trim_start().starts_with("ifc serve")).expect("ifc serve");
    let line = line.split('#').next().unwrap_or_default();
    line.split_whitespace().skip(2).map(str::to_string).collect()
}

async fn walkthrough_runs_as_written(backend: Backend) {
    let flags = server_flags();
    let served =
        common::serve(backend, &flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let script = block_after("<!-- walkthrough -->");
    assert!(!script.contains("$TOKEN"), "the walk-through uses an undefined $TOKEN");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_ifc")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("IFC_SERVER", &served.url)
        .env("IFC_DATA_DIR", served.dir.path())
        .env_remove("IFC_TOKEN")
        .env_remove("IFC_SWARM")
        .env_remove("IFC_SWARM_TOKEN")
        .env_remove("IFC_CLAIM_TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the walk-through failed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("error"), "the walk-through printed an error:\n{stderr}");
    for expected in [
        "created review-pr-123 (ready)",
        "review-pr-123 completed",
        "completed:swarm-1",
        "every chain verifies",
    ] {
        assert!(
            stdout.contains(expected),
            "no {expected:?} in the walk-through's output:\n{stdout}"
        );
    }
    let task = served.admin().get_task("review-pr-123").await.unwrap();
    assert_eq!(task.record.result, Some(serde_json::json!({"status": "approved"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_runs_as_written_on_embedded() {
    walkthrough_runs_as_written(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_runs_as_written_on_etcd() {
    walkthrough_runs_as_written(Backend::Etcd).await;
}
