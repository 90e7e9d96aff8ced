//! `ifc serve`: the coordinator service.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ifc_core::{Coordinator, CoreConfig, Reaper, WitnessRecord};
use ifc_server::{AppState, MeteredStore, Metrics};

use crate::DataDir;
use crate::store::Backend;

/// Name of the generated admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Name of the generated viewer (read-only) token file in the data directory.
pub const VIEWER_TOKEN_FILE: &str = "viewer.token";

/// `ifc serve` settings. Every flag also reads its environment variable.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    backend: Backend,
    /// Address to listen on.
    #[arg(long, env = "IFC_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Key prefix of this deployment (several may share one etcd).
    #[arg(long, env = "IFC_NAMESPACE", default_value = "ifc")]
    namespace: String,
    /// The admin (orchestrator) bearer token. Without it, one is generated on
    /// first start and kept in `<data-dir>/admin.token` (mode 0600).
    #[arg(long, env = "IFC_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The viewer's bearer token: it may read (every GET route and the event
    /// and blocker streams) and nothing else, for a shared dashboard. Without
    /// it, one is generated on first start and kept in `<data-dir>/viewer.token`
    /// (mode 0600).
    #[arg(long, env = "IFC_VIEWER_TOKEN", hide_env_values = true)]
    viewer_token: Option<String>,
    /// Most live swarms at once (the seed's IF_COORDINATOR_MAX_SWARMS).
    #[arg(long, env = "IF_COORDINATOR_MAX_SWARMS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_swarms: u64,
    /// Claim lease in ms unless renewed (the seed's IF_COORDINATOR_CLAIM_TIMEOUT).
    #[arg(long, env = "IF_COORDINATOR_CLAIM_TIMEOUT", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1000..=86_400_000))]
    claim_timeout_ms: u64,
    /// How long a pushed task waits for the swarm's ack before it returns to the
    /// pool, in ms (the seed's IF_COORDINATOR_PUSH_TIMEOUT).
    #[arg(long, env = "IF_COORDINATOR_PUSH_TIMEOUT", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    push_timeout_ms: u64,
    /// Seconds a swarm stays registered without a heartbeat (default 30;
    /// clients heartbeat every third of it, 10 s).
    #[arg(long, env = "IFC_SWARM_TTL", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    swarm_ttl: i64,
    /// Delay in ms before a failed task can be claimed again.
    #[arg(long, env = "IFC_RETRY_BACKOFF", default_value_t = 0)]
    retry_backoff_ms: u64,
    /// Attempts a task gets when its creator does not say (at most 100).
    #[arg(long, env = "IFC_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Largest metadata, result or error, in bytes.
    #[arg(long, env = "IFC_MAX_JSON_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    max_json_bytes: u64,
    /// MiB of tasks this node keeps a copy of, fed by its watch of the
    /// namespace, so a claim, renew, complete or push goes straight to its one
    /// txn (0: off).
    #[arg(long, env = "IFC_SNAPSHOT_CACHE_MB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(0..=65_536))]
    snapshot_cache_mb: u64,
    /// TLS certificate chain (PEM); with --tls-key, the service speaks HTTPS.
    #[arg(long, env = "IFC_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "IFC_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long finished tasks (and their witness chains) are kept, counted
    /// from their last witness record: `7d`, `12h`, `30m`, `90s`; 0 keeps
    /// everything.
    #[arg(long, env = "IFC_TASK_RETENTION", default_value = "7d",
          value_parser = ifc_core::parse_period)]
    task_retention: Duration,
    /// Directory pruned witness records are appended to (JSON Lines) before
    /// they leave the store; `ifc witness verify --archive` checks it.
    #[arg(long, env = "IFC_WITNESS_ARCHIVE")]
    witness_archive: Option<PathBuf>,
    /// On SIGTERM/SIGINT: how long, in seconds, to let requests in flight
    /// finish (every open event stream is ended at once with its resume
    /// point) before the process exits anyway.
    #[arg(long, env = "IFC_SHUTDOWN_GRACE", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_grace: u64,
    #[command(flatten)]
    edge: EdgeLimits,
    /// Log format.
    #[arg(long, env = "IFC_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Limits on connections, so no client can hold the others off.
#[derive(clap::Args, Debug)]
struct EdgeLimits {
    /// Time, in ms, from the first byte of a request head to its end (and
    /// for a TLS handshake); past it: 408 `request_timeout`, connection closed.
    #[arg(long, env = "IFC_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    header_timeout_ms: u64,
    /// Time, in ms, from the end of a request head to the end of its body;
    /// past it: 408 `request_timeout`, connection closed.
    #[arg(long, env = "IFC_BODY_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    body_timeout_ms: u64,
    /// Time, in ms, a connection with no request in flight stays open.
    #[arg(long, env = "IFC_IDLE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    idle_timeout_ms: u64,
    /// Most connections at once, event streams included (lowered to fit the
    /// open-file limit, which is what usually decides it). Past it the longest-idle connection is closed to make
    /// room, or, if none is idle, the newcomer gets 503 `overloaded`.
    #[arg(long, env = "IFC_MAX_CONNECTIONS", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Most TLS handshakes in progress at once; more wait (within the header
    /// timeout) for a slot.
    #[arg(long, env = "IFC_MAX_TLS_HANDSHAKES", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_tls_handshakes: u64,
}

/// Open files kept back from connections: the store, etcd channels, logs.
const FILES_KEPT_BACK: u64 = 256;

impl EdgeLimits {
    /// The limits, with the connection cap lowered to fit `open_files`.
    fn limits(&self, open_files: Option<u64>) -> ifc_server::Limits {
        let mut max_connections = self.max_connections;
        if let Some(open_files) = open_files {
            let fits = open_files.saturating_sub(FILES_KEPT_BACK).max(16);
            if fits < max_connections {
                tracing::warn!(
                    max_connections,
                    open_files,
                    "--max-connections lowered to {fits} to fit the open-file limit"
                );
                max_connections = fits;
            }
        }
        ifc_server::Limits {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            max_tls_handshakes: usize::try_from(self.max_tls_handshakes).unwrap_or(usize::MAX),
            max_body_bytes: None,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

/// Reads the admin token file, creating it (0600) with a fresh token if absent.
pub fn admin_token(dir: &Path) -> Result<(String, PathBuf)> {
    token_file(dir, ADMIN_TOKEN_FILE)
}

/// Reads the token file `name` in `dir`, creating it (0600) with a fresh token
/// if absent.
fn token_file(dir: &Path, name: &str) -> Result<(String, PathBuf)> {
    let path = dir.join(name);
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
        return Ok((token, path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok((token, path))
}

/// The data directory is the service user's alone: the directory 0700 (created
/// if absent), and every file in it 0600. The 0700 directory already keeps
/// other users out of files created later.
fn make_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("making {} private", path.display()))
        };
        set(dir, 0o700)?;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                set(&entry.path(), 0o600)?;
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<()> {
    // Colour only on a terminal: piped logs stay plain text.
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        );
    match args.log_format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
    // Every SSE stream holds a socket: raise the soft open-file limit to the
    // hard one, as many distributions start services at 1,024.
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 4096 => {
            tracing::warn!(
                limit,
                "open files are limited to {limit}; each SSE stream needs one (raise `ulimit -n`)"
            );
            Some(limit)
        }
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    };
    let max_body_bytes = 2 * args.max_json_bytes + 64 * 1024;
    let limits =
        ifc_server::Limits { max_body_bytes: Some(max_body_bytes), ..args.edge.limits(open_files) };
    tracing::info!(
        header_timeout_ms = args.edge.header_timeout_ms,
        body_timeout_ms = args.edge.body_timeout_ms,
        idle_timeout_ms = args.edge.idle_timeout_ms,
        max_connections = limits.max_connections,
        max_tls_handshakes = limits.max_tls_handshakes,
        "connection limits"
    );
    make_private(&args.data.data_dir)?;
    let (admin, token_source) = match &args.admin_token {
        Some(token) if !token.trim().is_empty() => {
            (token.trim().to_string(), "IFC_ADMIN_TOKEN".to_string())
        }
        Some(_) => anyhow::bail!("--admin-token (IFC_ADMIN_TOKEN) is empty"),
        None => {
            let (token, path) = admin_token(&args.data.data_dir)?;
            (token, path.display().to_string())
        }
    };
    let (viewer, viewer_source) = match &args.viewer_token {
        Some(token) if !token.trim().is_empty() => {
            (token.trim().to_string(), "IFC_VIEWER_TOKEN".to_string())
        }
        Some(_) => anyhow::bail!("--viewer-token (IFC_VIEWER_TOKEN) is empty"),
        None => {
            let (token, path) = token_file(&args.data.data_dir, VIEWER_TOKEN_FILE)?;
            (token, path.display().to_string())
        }
    };
    anyhow::ensure!(
        viewer != admin,
        "the viewer token ({viewer_source}) is the admin token ({token_source}): give them apart"
    );
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert)
                .with_context(|| format!("reading --tls-cert {}", cert.display()))?;
            let key = std::fs::read(key)
                .with_context(|| format!("reading --tls-key {}", key.display()))?;
            Some(
                ifc_server::tls_config(&cert, &key)
                    .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?,
            )
        }
        _ => None,
    };
    let (store, store_name) = args.backend.open(&args.data).await?;
    // The store may have created files just now; they are private too.
    make_private(&args.data.data_dir)?;
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn ifc_kv::KvStore> = Arc::new(MeteredStore::new(store, metrics.clone()));
    let config = CoreConfig {
        namespace: args.namespace.clone(),
        swarm_ttl_secs: args.swarm_ttl,
        max_swarms: args.max_swarms as usize,
        max_json_bytes: args.max_json_bytes as usize,
        claim_timeout_ms: args.claim_timeout_ms,
        push_timeout_ms: args.push_timeout_ms,
        retry_backoff_ms: args.retry_backoff_ms,
        default_max_attempts: args.max_attempts,
        snapshot_cache_bytes: (args.snapshot_cache_mb as usize) << 20,
    };
    let counted = metrics.clone();
    let core = Arc::new(
        Coordinator::new(store.clone(), config)
            .with_witness_logger(Arc::new(move |r: &WitnessRecord| counted.operation(&r.op))),
    );
    let reaper = Reaper::spawn(core.clone());
    let retention = ifc_core::Retention {
        keep: args.task_retention,
        every: (args.task_retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        archive: args.witness_archive.clone(),
    };
    let pruner = ifc_core::Pruner::spawn(core.clone(), retention);
    let state = AppState::new(core.clone(), &admin, metrics).with_viewer_token(&viewer);
    let state_for_shutdown = state.clone();
    let router = ifc_server::router(state, usize::try_from(max_body_bytes).unwrap_or(usize::MAX));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        %address,
        store = %store_name,
        admin_token = %token_source,
        viewer_token = %viewer_source,
        scheme,
        "IF.coordinator serving"
    );
    // The plain banner is for people; JSON logs stay JSON only.
    if matches!(args.log_format, LogFormat::Text) {
        println!(
            "IF.coordinator listening on {scheme}://{address} ({store_name}); \
             admin token: {token_source}; viewer token: {viewer_source}; \
             dashboard: {scheme}://{address}/"
        );
    }
    // On a signal: end every event stream (each gets its resume point), stop
    // accepting, let requests in flight finish; past the grace period, exit
    // anyway. Every acknowledged write was durable when it was acknowledged.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let streams = state_for_shutdown;
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: ending event streams, finishing requests in flight");
        streams.close_streams();
        stopping.send_replace(true);
    });
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let serving = ifc_server::serve_with(listener, router, tls, limits, stopped);
    let grace = std::time::Duration::from_secs(args.shutdown_grace);
    let mut stop = stop;
    tokio::select! {
        served = serving => served?,
        () = async move {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(
            grace_secs = args.shutdown_grace,
            "requests still in flight after the grace period; exiting anyway"
        ),
    }
    drop((reaper, pruner));
    tracing::info!("stopped: in-flight requests finished, every acknowledged write is on disk");
    Ok(())
}
