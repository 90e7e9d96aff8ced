//! The Python client, timed against the same server as the Rust client: runs
//! `clients/python/bench/claim_latency.py` with the package's virtualenv.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::latency::Summary;

/// The repository's Python client directory.
fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/python")
}

/// What to run to get the virtualenv, when it is missing.
pub const MAKE_VENV: &str = "IFC_BIN=$PWD/target/debug/ifc clients/python/run_tests.sh -q";

/// `count` seed-style `claim_task` calls from Python against `url`; `None`
/// when the package's virtualenv is missing.
pub fn claim_latency(url: &str, admin_token: &str, count: usize) -> Result<Option<Summary>> {
    let dir = python_dir();
    let python = dir.join(".venv/bin/python");
    if !python.exists() {
        return Ok(None);
    }
    let output = std::process::Command::new(&python)
        .arg(dir.join("bench/claim_latency.py"))
        .args(["--server", url, "--token", admin_token, "--count", &count.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "the Python claim benchmark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("the Python claim benchmark's answer is not JSON")?;
    let field = |name: &str| answer[name].as_f64().unwrap_or(f64::NAN);
    Ok(Some(Summary {
        p50: field("p50"),
        p95: field("p95"),
        p99: field("p99"),
        max: field("max"),
        count: answer["count"].as_u64().unwrap_or(0),
    }))
}
