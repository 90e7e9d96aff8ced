//! Where the etcd phases run: a fresh etcd member on loopback for each phase
//! (the default), or the cluster named by `--etcd`, where every phase writes
//! under key prefixes of its own so runs and phases never meet.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use ifc_kv_etcd::{EtcdOptions, EtcdStore};
use ifc_testkit::EtcdProcess;

/// The user's cluster and this run's prefix, when `--etcd` is given.
struct External {
    endpoints: Vec<String>,
    run: String,
}

static EXTERNAL: OnceLock<External> = OnceLock::new();
/// Counts the phases that asked for an etcd, so each gets its own prefix.
static PHASE: AtomicUsize = AtomicUsize::new(0);

/// Runs the etcd phases against `endpoints` instead of spawned members.
pub fn use_external(endpoints: Vec<String>) {
    let started =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let run = format!("ifc-bench-{}", started.as_secs());
    let _ = EXTERNAL.set(External { endpoints, run });
}

/// The external endpoints, if `--etcd` was given.
pub fn external_endpoints() -> Option<&'static [String]> {
    EXTERNAL.get().map(|e| e.endpoints.as_slice())
}

/// `name` as a namespace or key: unchanged on a spawned member (it is fresh),
/// under this run's and this phase's prefix on an external cluster.
pub fn ns(name: &str) -> String {
    match EXTERNAL.get() {
        Some(external) => {
            format!("{}-{}-{name}", external.run, PHASE.load(Ordering::Relaxed))
        }
        None => name.to_string(),
    }
}

/// One phase's etcd.
pub struct BenchEtcd {
    member: Option<EtcdProcess>,
    endpoints: Vec<String>,
}

impl BenchEtcd {
    /// A fresh member (with this backend quota, if given), or the external
    /// cluster under a new phase prefix.
    pub async fn start(quota_backend_bytes: Option<u64>) -> BenchEtcd {
        if let Some(external) = EXTERNAL.get() {
            PHASE.fetch_add(1, Ordering::Relaxed);
            return BenchEtcd { member: None, endpoints: external.endpoints.clone() };
        }
        let member = match quota_backend_bytes {
            Some(quota) => EtcdProcess::start_with_quota(quota).await,
            None => EtcdProcess::start().await,
        };
        BenchEtcd { endpoints: vec![member.endpoint()], member: Some(member) }
    }

    /// A new client.
    pub async fn connect(&self) -> Result<EtcdStore> {
        EtcdStore::connect(EtcdOptions::new(self.endpoints.clone()))
            .await
            .with_context(|| format!("connecting to etcd at {}", self.endpoints.join(",")))
    }

    /// The member's (or the external cluster's) client URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The spawned member's backend file; `None` on an external cluster.
    pub fn db_file(&self) -> Option<PathBuf> {
        self.member.as_ref().map(EtcdProcess::db_file)
    }
}
