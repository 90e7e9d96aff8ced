//! Test support shared by every crate's tests: a real etcd process on free
//! loopback ports ([`EtcdProcess`]), a fresh store on either backend
//! ([`TestStore`]), each test case run once per backend ([`on_each_backend!`]),
//! and the KV conformance suite ([`conformance`], run on every backend through
//! [`conformance_tests!`]).

#![deny(missing_docs)]

mod cluster;
pub mod conformance;
mod etcd;

use std::sync::Arc;

use ifc_kv::KvStore;
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

pub use cluster::EtcdCluster;
pub use etcd::EtcdProcess;

/// Runs each listed case once per backend, on a fresh store: expands to a
/// module `embedded` and a module `etcd`, each with one `#[tokio::test]` per
/// case, named after it.
///
/// `on_each_backend!(a, b)` calls `async fn a(store: TestStore)`.
/// `on_each_backend!(Server::start => a, b)` first hands the store to
/// `async fn start(store: TestStore) -> Server` (a path from the invoking
/// module) and calls `async fn a(server: Server)`.
///
/// The test crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! on_each_backend {
    ($($case:ident),+ $(,)?) => {
        $crate::on_each_backend!(@modules []; $($case),+);
    };
    ($($start:ident)::+ => $($case:ident),+ $(,)?) => {
        $crate::on_each_backend!(@modules [$($start)::+]; $($case),+);
    };
    // `$start` is one bracketed group, `[]` or `[path::to::start]`, so that it
    // can stand inside the repetition over the cases.
    (@modules $start:tt; $($case:ident),+) => {
        mod embedded {
            $crate::on_each_backend!(@tests Embedded $start; $($case),+);
        }
        mod etcd {
            $crate::on_each_backend!(@tests Etcd $start; $($case),+);
        }
    };
    (@tests $backend:ident $start:tt; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $crate::TestStore::start($crate::Backend::$backend).await;
                super::$case($crate::on_each_backend!(@prepare store $start)).await;
            }
        )+
    };
    (@prepare $store:ident []) => { $store };
    (@prepare $store:ident [$($start:ident)::+]) => { super::$($start)::+($store).await };
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded redb store in a temporary directory.
    Embedded,
    /// A real etcd started for the test.
    Etcd,
}

/// A fresh, empty store and whatever keeps it alive (a temporary directory or an
/// etcd process), released when dropped.
pub struct TestStore {
    store: Arc<dyn KvStore>,
    backend: Backend,
    /// Kept for its Drop: the etcd process, stopped when the test ends.
    pub etcd: Option<EtcdProcess>,
    /// Kept for its Drop: the embedded store's directory.
    pub dir: Option<tempfile::TempDir>,
    /// Kept for its Drop: the etcd cluster, when the store is on one.
    pub cluster: Option<EtcdCluster>,
}

/// How a conformance case gets its fresh store: one backend, or a store given
/// every member of a three-member etcd cluster ([`ThreeMemberEtcd`]).
#[async_trait::async_trait]
pub trait StartStore: Sync {
    /// A fresh, empty store.
    async fn start(&self) -> TestStore;
    /// A fresh store that keeps only `retention` revisions of history.
    async fn start_with_retention(&self, retention: i64) -> TestStore;
}

#[async_trait::async_trait]
impl StartStore for Backend {
    async fn start(&self) -> TestStore {
        TestStore::start(*self).await
    }
    async fn start_with_retention(&self, retention: i64) -> TestStore {
        TestStore::start_with_retention(*self, retention).await
    }
}

/// A store on a fresh three-member etcd cluster on loopback, given every
/// member's endpoint.
#[derive(Clone, Copy, Debug)]
pub struct ThreeMemberEtcd;

#[async_trait::async_trait]
impl StartStore for ThreeMemberEtcd {
    async fn start(&self) -> TestStore {
        self.start_with(None).await
    }
    async fn start_with_retention(&self, retention: i64) -> TestStore {
        self.start_with(Some(retention)).await
    }
}

impl ThreeMemberEtcd {
    async fn start_with(&self, retention: Option<i64>) -> TestStore {
        let cluster = EtcdCluster::start(3).await;
        let mut options = ifc_kv_etcd::EtcdOptions::new(cluster.endpoints());
        if let Some(retention) = retention {
            options.history_retention = Some(retention);
            options.owns_cluster = true;
            options.compaction_interval = std::time::Duration::from_millis(100);
        }
        let store = ifc_kv_etcd::EtcdStore::connect(options).await.expect("connect to etcd");
        TestStore {
            store: Arc::new(store),
            backend: Backend::Etcd,
            etcd: None,
            dir: None,
            cluster: Some(cluster),
        }
    }
}

impl TestStore {
    /// Starts a fresh store on `backend`. Panics (failing the test) if etcd is
    /// needed and not installed, with the command that installs it.
    pub async fn start(backend: Backend) -> TestStore {
        match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
                    .expect("open the embedded store");
                TestStore {
                    store: Arc::new(store),
                    backend,
                    etcd: None,
                    dir: Some(dir),
                    cluster: None,
                }
            }
            Backend::Etcd => {
                let etcd = EtcdProcess::start().await;
                let store = etcd.connect().await;
                TestStore {
                    store: Arc::new(store),
                    backend,
                    etcd: Some(etcd),
                    dir: None,
                    cluster: None,
                }
            }
        }
    }

    /// Starts a fresh store on `backend` that keeps only `retention` revisions
    /// of history, compacting on its own (etcd: checked every 100 ms).
    pub async fn start_with_retention(backend: Backend, retention: i64) -> TestStore {
        match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let options =
                    EmbeddedOptions { history_retention: retention, ..EmbeddedOptions::default() };
                let store =
                    EmbeddedStore::open(dir.path(), options).expect("open the embedded store");
                TestStore {
                    store: Arc::new(store),
                    backend,
                    etcd: None,
                    dir: Some(dir),
                    cluster: None,
                }
            }
            Backend::Etcd => {
                let etcd = EtcdProcess::start().await;
                let mut options = ifc_kv_etcd::EtcdOptions::new(vec![etcd.endpoint()]);
                options.history_retention = Some(retention);
                options.owns_cluster = true;
                options.compaction_interval = std::time::Duration::from_millis(100);
                let store =
                    ifc_kv_etcd::EtcdStore::connect(options).await.expect("connect to etcd");
                TestStore {
                    store: Arc::new(store),
                    backend,
                    etcd: Some(etcd),
                    dir: None,
                    cluster: None,
                }
            }
        }
    }

    /// The store.
    pub fn kv(&self) -> Arc<dyn KvStore> {
        self.store.clone()
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}
