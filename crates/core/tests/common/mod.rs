//! Shared helpers for the core's tests.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ifc_core::{Coordinator, CoreConfig, WitnessRecord};
use ifc_testkit::TestStore;

/// A coordinator on the test store whose witness records are also collected.
pub fn coordinator(
    store: &TestStore,
    config: CoreConfig,
) -> (Arc<Coordinator>, Arc<Mutex<Vec<WitnessRecord>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let coordinator = Coordinator::new(store.kv(), config).with_witness_logger(Arc::new(
        move |r: &WitnessRecord| sink.lock().unwrap().push(r.clone()),
    ));
    (Arc::new(coordinator), seen)
}

/// Polls `check` until it is true, failing the test after 20 s. For waiting on
/// lease expiry, which has no event of its own at this level.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Capabilities from string literals.
pub fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
