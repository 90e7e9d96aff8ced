//! Postgres as a job queue, the way River, Oban and graphile-worker use it:
//! one row per job, claimed by `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
//! LOCKED LIMIT 1) RETURNING`, each claim its own autocommit transaction with
//! Postgres's defaults (`fsync`, `synchronous_commit` on: a claim is durable
//! when answered, as ours is).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio_postgres::NoTls;

use super::{PeerProcess, free_port, run, running_as_root};
use crate::latency::{Summary, histogram, record, summary};

/// How to install it, for the report when it is missing.
pub const INSTALL: &str = "apt-get install postgresql";

const CLAIM: &str = "UPDATE jobs SET state = 'running', owner = $1, claimed_at = now() \
     WHERE id = (SELECT id FROM jobs WHERE state = 'ready' AND queue = 'default' \
     ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id";

/// A Postgres server on a loopback port.
pub struct Postgres {
    port: u16,
    _process: PeerProcess,
    _dir: tempfile::TempDir,
}

/// The newest installed server's `bin` directory (Debian puts each major
/// version under `/usr/lib/postgresql/<major>/bin`).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("no postgres user (the postgresql package makes it)")?
        .split(':')
        .collect();
    Ok((fields.get(2).context("uid")?.parse()?, fields.get(3).context("gid")?.parse()?))
}

/// `program`, run as the `postgres` user when we are root (the process
/// itself, not a wrapper, so stopping it stops the server).
fn as_postgres(program: &Path) -> Result<Command> {
    let mut command = Command::new(program);
    if running_as_root() {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = postgres_user()?;
        command.uid(uid).gid(gid);
    }
    Ok(command)
}

impl Postgres {
    /// Starts a fresh cluster; `None` if Postgres is not installed.
    pub async fn start() -> Result<Option<Postgres>> {
        let Some(bin) = bin_dir() else { return Ok(None) };
        // Under the system temp dir (same disk here), readable by the
        // `postgres` user, which the bench's own work dir is not.
        let dir = tempfile::Builder::new().prefix("ifc-bench-postgres-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if running_as_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        run(as_postgres(&bin.join("initdb"))?
            .args(["-A", "trust", "-U", "bench", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data))?;
        let port = free_port()?;
        let child = as_postgres(&bin.join("postgres"))?
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        // SIGQUIT: Postgres's immediate shutdown, which also ends its backends
        // (a SIGKILLed postmaster leaves them behind).
        let mut process = PeerProcess::new("postgres", child).stop_with("QUIT");
        process.wait_ready(|| async move { connect(port).await.is_ok() }).await?;
        Ok(Some(Postgres { port, _process: process, _dir: dir }))
    }

    /// Fills the queue with `jobs` ready jobs (a fresh table).
    pub async fn fill(&self, jobs: usize) -> Result<()> {
        let client = connect(self.port).await?;
        client
            .batch_execute(
                "DROP TABLE IF EXISTS jobs;
                 CREATE TABLE jobs (
                   id bigserial PRIMARY KEY,
                   queue text NOT NULL DEFAULT 'default',
                   priority int NOT NULL DEFAULT 0,
                   state text NOT NULL DEFAULT 'ready',
                   owner text,
                   payload jsonb NOT NULL DEFAULT '{}',
                   claimed_at timestamptz);
                 CREATE INDEX jobs_ready ON jobs (queue, priority DESC, id) WHERE state = 'ready';",
            )
            .await?;
        let jobs = i64::try_from(jobs)?;
        client
            .execute(
                "INSERT INTO jobs (payload) SELECT '{}' FROM generate_series(1, $1::bigint)",
                &[&jobs],
            )
            .await?;
        client.batch_execute("VACUUM ANALYZE jobs").await?;
        Ok(())
    }

    /// `clients` connections each claiming `per_client` jobs one after
    /// another. Returns (claims/s, latency).
    pub async fn claims(&self, clients: usize, per_client: usize) -> Result<(f64, Summary)> {
        self.fill(clients * per_client).await?;
        let mut connections = Vec::new();
        for _ in 0..clients {
            connections.push(connect(self.port).await?);
        }
        let started = Instant::now();
        let mut workers = Vec::new();
        for (w, client) in connections.into_iter().enumerate() {
            workers.push(tokio::spawn(async move {
                let claim = client.prepare(CLAIM).await?;
                let owner = format!("worker-{w}");
                let mut h = histogram();
                for _ in 0..per_client {
                    let t = Instant::now();
                    if client.query_opt(&claim, &[&owner]).await?.is_none() {
                        bail!("postgres: the queue ran dry");
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

async fn connect(port: u16) -> Result<tokio_postgres::Client> {
    let config = format!("host=127.0.0.1 port={port} user=bench dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
