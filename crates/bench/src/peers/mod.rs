//! What a user would pick instead of us, run on this machine in the same run:
//! a Postgres `FOR UPDATE SKIP LOCKED` queue (River, Oban, graphile-worker)
//! and a Redis `BLMOVE` queue with `appendfsync always` (BullMQ). Each is a
//! real server started on a loopback port in a scratch directory, with the
//! durability its users run it with, and stopped when dropped.
//!
//! Neither is installed by `scripts/test.sh`; `scripts/bench.sh` installs
//! both (`apt-get install postgresql redis-server`). A peer that is missing
//! is reported as missing, with how to install it.

pub mod postgres;
pub mod redis;

use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free loopback port (bound and released: the server binds it next).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A peer server process, killed and reaped when dropped.
pub struct PeerProcess {
    name: &'static str,
    child: Child,
    /// Signal to stop it with before the SIGKILL, if it needs one.
    stop_signal: Option<&'static str>,
}

impl PeerProcess {
    fn new(name: &'static str, child: Child) -> Self {
        PeerProcess { name, child, stop_signal: None }
    }

    /// Stops it with `signal` (a `kill -s` name) first, waiting up to 5 s.
    fn stop_with(mut self, signal: &'static str) -> Self {
        self.stop_signal = Some(signal);
        self
    }

    /// Waits until `ready()` holds (the server accepts work), failing if the
    /// process exits or 30 s pass.
    async fn wait_ready<F, Fut>(&mut self, mut ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready().await {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited before it was ready: {status}", self.name);
            }
            if Instant::now() > deadline {
                bail!("{} was not ready within 30 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Some(signal) = self.stop_signal {
            let pid = self.child.id().to_string();
            let _ = std::process::Command::new("kill").args(["-s", signal, &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this process runs as root (Postgres refuses to; it then runs as
/// the `postgres` user its package creates).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `program` on the PATH, or `None`.
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file())
    })
}

/// Runs a setup command to completion, failing with its output.
fn run(command: &mut std::process::Command) -> Result<()> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
