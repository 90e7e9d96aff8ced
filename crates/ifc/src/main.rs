//! `ifc`: the IF.coordinator binary.
//!
//! Today it opens a store (the embedded default, or etcd with `--etcd`) and works
//! on it directly: `ifc store status`, `ifc kv get|put|del|watch`. The service
//! (`ifc serve`), the coordinator CLI and the benchmark land with their issues.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use ifc_kv::{DeleteRequest, EventKind, KvStore, PutRequest, RangeRequest, WatchRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

#[derive(Parser)]
#[command(name = "ifc", version, about = "IF.coordinator: coordination for fleets of agent swarms")]
struct Cli {
    /// Data directory of the embedded store.
    #[arg(long, env = "IFC_DATA_DIR", default_value = "./ifc-data", global = true)]
    data_dir: PathBuf,
    /// etcd endpoints, comma-separated (needs a build with `--features etcd`).
    #[arg(long, env = "IFC_ETCD", global = true)]
    etcd: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Opens the store and reports its revision and size.
    ///
    /// Example: `ifc store status --data-dir ./ifc-data`
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Raw key-value access, for debugging.
    ///
    /// Example: `ifc kv put greeting hello && ifc kv get greeting`
    Kv {
        #[command(subcommand)]
        command: KvCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Opens the store (creating an embedded one if needed) and prints its state.
    Status,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Prints a key, or every key under a prefix with `--prefix`.
    Get {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// Writes a key.
    Put { key: String, value: String },
    /// Deletes a key, or a prefix with `--prefix`.
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// Prints changes under a prefix as they happen (Ctrl-C to stop).
    Watch {
        prefix: String,
        /// Start from this revision (0: from now).
        #[arg(long, default_value_t = 0)]
        from: i64,
    },
}

async fn open(cli: &Cli) -> Result<(Arc<dyn KvStore>, String)> {
    if let Some(endpoints) = &cli.etcd {
        return open_etcd(endpoints).await;
    }
    let store = EmbeddedStore::open(&cli.data_dir, EmbeddedOptions::default())
        .with_context(|| format!("opening the embedded store in {}", cli.data_dir.display()))?;
    Ok((Arc::new(store), format!("embedded store in {}", cli.data_dir.display())))
}

#[cfg(feature = "etcd")]
async fn open_etcd(endpoints: &str) -> Result<(Arc<dyn KvStore>, String)> {
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
    let store = ifc_kv_etcd::EtcdStore::connect(ifc_kv_etcd::EtcdOptions::new(endpoints.clone()))
        .await
        .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
    Ok((Arc::new(store), format!("etcd at {}", endpoints.join(","))))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(_: &str) -> Result<(Arc<dyn KvStore>, String)> {
    anyhow::bail!("this ifc was built without etcd support: rebuild with `--features etcd`")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (store, name) = open(&cli).await?;
    match &cli.command {
        Command::Store { command: StoreCommand::Status } => {
            let all = store.range(RangeRequest::prefix("").with_limit(1)).await?;
            println!("{name}: revision {}, {} keys", all.revision, all.count);
        }
        Command::Kv { command } => match command {
            KvCommand::Get { key, prefix } => {
                let req = if *prefix {
                    RangeRequest::prefix(key.as_str())
                } else {
                    RangeRequest::key(key.as_str())
                };
                let resp = store.range(req).await?;
                if resp.kvs.is_empty() {
                    anyhow::bail!("{key}: not found (revision {})", resp.revision);
                }
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
                let resp = store.put(PutRequest::new(key.as_str(), value.as_str())).await?;
                println!("revision {}", resp.revision);
            }
            KvCommand::Del { key, prefix } => {
                let req = if *prefix {
                    DeleteRequest::prefix(key.as_str())
                } else {
                    DeleteRequest::key(key.as_str())
                };
                let resp = store.delete(req).await?;
                println!("deleted {} at revision {}", resp.deleted, resp.revision);
            }
            KvCommand::Watch { prefix, from } => {
                let mut stream =
                    store.watch(WatchRequest::prefix(prefix.as_str()).from_revision(*from)).await?;
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
        },
    }
    Ok(())
}
