//! Embedded-only behaviour: what survives a reopen, and fail-stop after a failed
//! fsync. (Everything the contract promises is in the conformance suite.)

use std::time::Duration;

use futures::StreamExt;
use ifc_kv::{KvError, KvStore, PutRequest, RangeRequest, WatchRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore, FaultSwitch};

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_leases_and_history_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (lease, last) = {
        let store = open(dir.path());
        let lease = store.lease_grant(60).await.unwrap();
        store.put(PutRequest::new("leased", "x").with_lease(lease.id)).await.unwrap();
        store.put(PutRequest::new("plain", "1")).await.unwrap();
        let last = store.put(PutRequest::new("plain", "2")).await.unwrap().revision;
        (lease, last)
    };
    let store = open(dir.path());
    assert_eq!(store.revision(), last);
    let status = store.lease_time_to_live(lease.id).await.unwrap().expect("lease survives");
    assert_eq!(status.keys, vec![b"leased".to_vec()]);
    assert_eq!(status.granted_ttl, 60);
    let plain = store.range(RangeRequest::key("plain")).await.unwrap();
    assert_eq!(plain.kvs[0].version, 2);
    assert_eq!(plain.revision, last);

    let mut history = store.watch(WatchRequest::prefix("").from_revision(2)).await.unwrap();
    let mut revisions = Vec::new();
    while revisions.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(10), history.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        revisions.push(batch.revision);
    }
    assert_eq!(revisions, vec![2, 3, 4]);

    // New leases do not reuse ids handed out before the restart.
    let next = store.lease_grant(5).await.unwrap();
    assert!(next.id > lease.id);
    let revoked = store.lease_revoke(lease.id).await.unwrap();
    assert_eq!(revoked, last + 1);
    assert!(store.range(RangeRequest::key("leased")).await.unwrap().kvs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_store_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let switch = FaultSwitch::new();
    let options = EmbeddedOptions { fault_switch: Some(switch.clone()), ..Default::default() };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let acknowledged = store.put(PutRequest::new("before", "1")).await.unwrap().revision;
    let mut watch = store.watch(WatchRequest::prefix("")).await.unwrap();

    switch.fail_fsync(true);
    match store.put(PutRequest::new("during", "2")).await {
        Err(KvError::Stopped(message)) => assert!(message.contains("injected"), "{message}"),
        other => panic!("expected Stopped after a failed fsync, got {other:?}"),
    }
    switch.fail_fsync(false);
    // Stopped means stopped: even with the disk healthy again, nothing is served.
    assert!(matches!(store.put(PutRequest::new("after", "3")).await, Err(KvError::Stopped(_))));
    assert!(matches!(store.range(RangeRequest::key("before")).await, Err(KvError::Stopped(_))));
    assert!(matches!(store.lease_grant(5).await, Err(KvError::Stopped(_))));
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap();
    assert!(matches!(ended, Some(Err(KvError::Stopped(_)))), "watchers end with Stopped");
    drop(store);

    let store = open(dir.path());
    let before = store.range(RangeRequest::key("before")).await.unwrap();
    assert_eq!(before.kvs[0].mod_revision, acknowledged);
    assert!(store.range(RangeRequest::key("after")).await.unwrap().kvs.is_empty());
    store.put(PutRequest::new("after", "3")).await.expect("reopened store works");
}
