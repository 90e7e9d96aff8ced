//! Opening a store (embedded or etcd) and the debugging commands that work on it
//! directly.

use std::sync::Arc;
#[cfg(feature = "etcd")]
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use ifc_kv::{DeleteRequest, EventKind, KvStore, PutRequest, RangeRequest, WatchRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

use crate::DataDir;

/// Which store to use.
#[derive(clap::Args, Clone, Debug)]
pub struct Backend {
    /// etcd endpoints, comma-separated (`http://h1:2379,http://h2:2379`); without
    /// it the embedded store in the data directory is used. The seed's
    /// `ETCD_HOST` / `ETCD_PORT` also select etcd.
    #[arg(long, env = "IFC_ETCD", global = true)]
    pub etcd: Option<String>,
    /// etcd connect and request timeout in seconds (the seed's `ETCD_TIMEOUT`).
    #[arg(
        long,
        env = "ETCD_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub etcd_timeout: u64,
    /// etcd user (auth enabled clusters).
    #[arg(long, env = "IFC_ETCD_USER", global = true)]
    pub etcd_user: Option<String>,
    /// etcd password.
    #[arg(long, env = "IFC_ETCD_PASSWORD", global = true, hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// Revisions of history to keep for resuming streams; older ones are
    /// compacted. On etcd only with `--etcd-owns-cluster` (etcd compaction is
    /// cluster-wide); otherwise set etcd's own `--auto-compaction-*`, or etcd
    /// fills its quota. 0 never compacts.
    #[arg(long, env = "IFC_HISTORY_RETENTION", default_value_t = 100_000,
          value_parser = clap::value_parser!(i64).range(0..), global = true)]
    pub history_retention: i64,
    /// This deployment is the etcd cluster's only user, so its nodes may
    /// compact etcd's (cluster-wide) history to `--history-retention`.
    /// Off by default: compaction would also drop other applications' history.
    #[arg(long, env = "IFC_ETCD_OWNS_CLUSTER", global = true)]
    pub etcd_owns_cluster: bool,
}

impl Backend {
    /// The etcd endpoints chosen by `--etcd` or the seed's `ETCD_HOST`/`ETCD_PORT`.
    pub fn endpoints(&self) -> Result<Option<Vec<String>>> {
        if let Some(list) = &self.etcd {
            let endpoints: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            anyhow::ensure!(!endpoints.is_empty(), "--etcd (IFC_ETCD) names no endpoint");
            return Ok(Some(endpoints));
        }
        match std::env::var("ETCD_HOST") {
            Ok(host) if !host.is_empty() => {
                let port = std::env::var("ETCD_PORT").unwrap_or_else(|_| "2379".into());
                let port: u16 =
                    port.parse().with_context(|| format!("ETCD_PORT={port:?} is not a port"))?;
                Ok(Some(vec![format!("http://{host}:{port}")]))
            }
            _ => Ok(None),
        }
    }

    /// Opens the store: etcd if endpoints are given, else the embedded one.
    pub async fn open(&self, data: &DataDir) -> Result<(Arc<dyn KvStore>, String)> {
        match self.endpoints()? {
            Some(endpoints) => self.open_etcd(endpoints).await,
            None => {
                let options = EmbeddedOptions {
                    history_retention: self.history_retention,
                    ..EmbeddedOptions::default()
                };
                let store = EmbeddedStore::open(&data.data_dir, options).with_context(|| {
                    format!("opening the embedded store in {}", data.data_dir.display())
                })?;
                Ok((Arc::new(store), format!("embedded store in {}", data.data_dir.display())))
            }
        }
    }

    #[cfg(feature = "etcd")]
    async fn open_etcd(&self, endpoints: Vec<String>) -> Result<(Arc<dyn KvStore>, String)> {
        let mut options = ifc_kv_etcd::EtcdOptions::new(endpoints.clone());
        options.connect_timeout = Duration::from_secs(self.etcd_timeout);
        options.request_timeout = Duration::from_secs(self.etcd_timeout);
        options.history_retention = Some(self.history_retention).filter(|r| *r > 0);
        options.owns_cluster = self.etcd_owns_cluster;
        if let Some(user) = &self.etcd_user {
            options.user = Some((user.clone(), self.etcd_password.clone().unwrap_or_default()));
        }
        let store = ifc_kv_etcd::EtcdStore::connect(options)
            .await
            .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
        Ok((Arc::new(store), format!("etcd at {}", endpoints.join(","))))
    }

    #[cfg(not(feature = "etcd"))]
    async fn open_etcd(&self, _: Vec<String>) -> Result<(Arc<dyn KvStore>, String)> {
        anyhow::bail!(
            "this ifc was built without etcd support: rebuild with the default features (`--features etcd`)"
        )
    }
}

/// `ifc store …`
#[derive(clap::Args)]
pub struct StoreArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    backend: Backend,
}

/// `ifc kv …`
#[derive(clap::Args)]
pub struct KvArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    backend: Backend,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(clap::Subcommand)]
enum KvCommand {
    /// Prints a key, or every key under a prefix with `--prefix`.
    ///
    /// Example: `ifc kv get ifc/tasks/ --prefix`
    Get {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// Writes a key.
    ///
    /// Example: `ifc kv put greeting hello`
    Put { key: String, value: String },
    /// Deletes a key, or a prefix with `--prefix`.
    ///
    /// Example: `ifc kv del greeting`
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// Prints changes under a prefix as they happen (Ctrl-C to stop).
    ///
    /// Example: `ifc kv watch ifc/ --from 1`
    Watch {
        prefix: String,
        /// Start from this revision (0: from now).
        #[arg(long, default_value_t = 0)]
        from: i64,
    },
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ifc store status`
pub async fn status(args: StoreArgs) -> Result<()> {
    let (store, name) = args.backend.open(&args.data).await?;
    let all = store.range(RangeRequest::prefix("").count_only()).await?;
    println!("{name}: revision {}, {} keys", all.revision, all.count);
    Ok(())
}

/// `ifc kv …`
pub async fn kv(args: KvArgs) -> Result<()> {
    let (store, _) = args.backend.open(&args.data).await?;
    match args.command {
        KvCommand::Get { key, prefix } => {
            let req = if prefix {
                RangeRequest::prefix(key.as_str())
            } else {
                RangeRequest::key(key.as_str())
            };
            let resp = store.range(req).await?;
            anyhow::ensure!(!resp.kvs.is_empty(), "{key}: not found (revision {})", resp.revision);
            for kv in resp.kvs {
                println!(
                    "{}\t{}\t(mod {}, version {})",
                    text(&kv.key),
                    text(&kv.value),
                    kv.mod_revision,
                    kv.version
                );
            }
        }
        KvCommand::Put { key, value } => {
            let resp = store.put(PutRequest::new(key, value)).await?;
            println!("revision {}", resp.revision);
        }
        KvCommand::Del { key, prefix } => {
            let req = if prefix { DeleteRequest::prefix(key) } else { DeleteRequest::key(key) };
            let resp = store.delete(req).await?;
            println!("deleted {} at revision {}", resp.deleted, resp.revision);
        }
        KvCommand::Watch { prefix, from } => {
            let mut stream = store.watch(WatchRequest::prefix(prefix).from_revision(from)).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                for event in batch.events {
                    let kind = match event.kind {
                        EventKind::Put => "PUT",
                        EventKind::Delete => "DELETE",
                    };
                    println!(
                        "{}\t{kind}\t{}\t{}",
                        batch.revision,
                        text(&event.kv.key),
                        text(&event.kv.value)
                    );
                }
            }
        }
    }
    Ok(())
}
