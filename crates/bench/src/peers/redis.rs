//! Redis as a job queue, the way BullMQ uses it: job ids in a list, a worker
//! takes one with `BLMOVE wait active LEFT RIGHT`, and the server runs with
//! `appendonly yes` and `appendfsync always`, so a move is in the fsynced
//! append-only file before it is answered (as ours is durable when answered).

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::{PeerProcess, free_port, on_path};
use crate::latency::{Summary, histogram, record, summary};

/// How to install it, for the report when it is missing.
pub const INSTALL: &str = "apt-get install redis-server";

/// A Redis server on a loopback port.
pub struct Redis {
    client: redis::Client,
    _process: PeerProcess,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a fresh server; `None` if Redis is not installed.
    pub async fn start() -> Result<Option<Redis>> {
        let Some(server) = on_path("redis-server") else { return Ok(None) };
        let dir = tempfile::Builder::new().prefix("ifc-bench-redis-").tempdir()?;
        let port = free_port()?;
        let child = Command::new(server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let mut process = PeerProcess::new("redis-server", child);
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let probe = client.clone();
        process
            .wait_ready(|| {
                let probe = probe.clone();
                async move { probe.get_multiplexed_async_connection().await.is_ok() }
            })
            .await?;
        Ok(Some(Redis { client, _process: process, _dir: dir }))
    }

    async fn connection(&self) -> Result<MultiplexedConnection> {
        Ok(self.client.get_multiplexed_async_connection().await?)
    }

    /// Fills the wait list with `jobs` job ids (an empty list first).
    pub async fn fill(&self, jobs: usize) -> Result<()> {
        let mut conn = self.connection().await?;
        let _: () = conn.del(&["wait", "active"]).await?;
        let ids: Vec<String> = (0..jobs).map(|i| format!("job-{i}")).collect();
        for chunk in ids.chunks(1000) {
            let _: () = conn.rpush("wait", chunk).await?;
        }
        Ok(())
    }

    /// `clients` connections each taking `per_client` jobs one after another.
    /// Returns (claims/s, latency).
    pub async fn claims(&self, clients: usize, per_client: usize) -> Result<(f64, Summary)> {
        self.fill(clients * per_client).await?;
        let mut connections = Vec::new();
        for _ in 0..clients {
            connections.push(self.connection().await?);
        }
        let started = Instant::now();
        let mut workers = Vec::new();
        for mut conn in connections {
            workers.push(tokio::spawn(async move {
                let mut h = histogram();
                for _ in 0..per_client {
                    let t = Instant::now();
                    let job: Option<String> = redis::cmd("BLMOVE")
                        .arg(&["wait", "active", "LEFT", "RIGHT", "1"])
                        .query_async(&mut conn)
                        .await?;
                    if job.is_none() {
                        bail!("redis: the queue ran dry");
                    }
                    record(&mut h, t);
                }
                anyhow::Ok(h)
            }));
        }
        let mut all = histogram();
        for worker in workers {
            all.add(worker.await??)?;
        }
        Ok(((clients * per_client) as f64 / started.elapsed().as_secs_f64(), summary(&all)))
    }
}
