//! The overlay above redb (embedded only): reads merge the layers and the B-tree
//! correctly while layers are frozen and flushed, nothing shows before its
//! fsync, leases expire keys that live only in the overlay, and watches stay in
//! order across flushes.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use ifc_kv::{
    DeleteRequest, KeyRange, KvStore, ModelStore, PutRequest, RangeRequest, WatchBatch,
    WatchRequest,
};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore, FaultSwitch};
use rand::{Rng, SeedableRng};

/// A layer frozen and flushed every few changes: reads constantly meet a
/// flush that has just started, finished, or not yet begun.
fn flushing() -> EmbeddedOptions {
    EmbeddedOptions {
        freeze_interval: Duration::from_millis(1),
        freeze_changes: 3,
        ..EmbeddedOptions::default()
    }
}

/// Nothing is frozen while the test runs: every write stays in the overlay.
fn never_flushing() -> EmbeddedOptions {
    EmbeddedOptions {
        freeze_interval: Duration::from_secs(3600),
        freeze_changes: usize::MAX,
        ..EmbeddedOptions::default()
    }
}

fn key(n: u32) -> String {
    format!("k{n:02}")
}

fn random_range(rng: &mut impl Rng) -> KeyRange {
    match rng.random_range(0..3) {
        0 => KeyRange::key(key(rng.random_range(0..40))),
        1 => KeyRange::prefix(format!("k{}", rng.random_range(0..4))),
        _ => {
            let (a, b) = (rng.random_range(0..40), rng.random_range(0..40));
            KeyRange::Span { start: key(a.min(b)).into_bytes(), end: key(a.max(b)).into_bytes() }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_the_model_while_layers_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), flushing()).unwrap();
    let mut model = ModelStore::starting_at(store.revision());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0e71a7);
    for step in 0..2000 {
        match rng.random_range(0..10) {
            0..=3 => {
                let req = PutRequest::new(key(rng.random_range(0..40)), format!("v{step}"))
                    .with_prev_kv();
                assert_eq!(store.put(req.clone()).await, model.put(&req), "step {step}: {req:?}");
            }
            4..=5 => {
                let req = DeleteRequest { range: random_range(&mut rng), prev_kv: true };
                let got = store.delete(req.clone()).await;
                assert_eq!(got, model.delete(&req), "step {step}: {req:?}");
            }
            _ => {
                let mut req =
                    RangeRequest::new(random_range(&mut rng)).with_limit(rng.random_range(0..5));
                if rng.random_bool(0.5) {
                    req = req.counted();
                }
                assert_eq!(
                    store.range(req.clone()).await,
                    model.range(&req),
                    "step {step}: {req:?}"
                );
            }
        }
    }
    let all = RangeRequest::prefix("k");
    assert_eq!(store.range(all.clone()).await, model.range(&all));
    drop(store);
    let store = EmbeddedStore::open(dir.path(), flushing()).unwrap();
    assert_eq!(store.range(all.clone()).await, model.range(&all), "after reopening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_shows_before_its_log_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let switch = FaultSwitch::new();
    let options =
        EmbeddedOptions { fault_switch: Some(switch.clone()), ..EmbeddedOptions::default() };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let before = store.put(PutRequest::new("before", "1")).await.unwrap().revision;
    let mut watch = store.watch(WatchRequest::prefix("")).await.unwrap();

    switch.delay_log_fsync(Duration::from_secs(2));
    let pending = tokio::spawn({
        let store = store.clone();
        async move { store.put(PutRequest::new("pending", "2")).await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while switch.delayed_log_fsyncs() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the put reaches the log");
    // Applied and written, not yet durable: no reader, txn or watcher sees it.
    let read = store.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(read.revision, before);
    assert_eq!(read.kvs.len(), 1);
    assert_eq!(store.revision(), before);
    assert!(watch.next().now_or_never().is_none(), "a watcher saw a write before its fsync");

    switch.delay_log_fsync(Duration::ZERO);
    let written = pending.await.unwrap().unwrap().revision;
    assert_eq!(written, before + 1);
    let batch = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap();
    assert_eq!(batch.unwrap().unwrap().revision, written);
    let read = store.range(RangeRequest::key("pending")).await.unwrap();
    assert_eq!((read.revision, read.kvs[0].value.as_slice()), (written, &b"2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expires_keys_that_live_only_in_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), never_flushing()).unwrap();
    let lease = store.lease_grant(1).await.unwrap();
    store.put(PutRequest::new("leased/a", "1").with_lease(lease.id)).await.unwrap();
    store.put(PutRequest::new("leased/b", "1").with_lease(lease.id)).await.unwrap();
    store.put(PutRequest::new("plain", "1")).await.unwrap();
    let mut watch = store.watch(WatchRequest::prefix("leased/")).await.unwrap();
    let expiry = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the lease expires")
        .unwrap()
        .unwrap();
    assert_eq!(expiry.events.len(), 2, "both keys go in one revision");
    let left = store.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(left.kvs.iter().map(|kv| kv.key.as_slice()).collect::<Vec<_>>(), [&b"plain"[..]]);
    assert_eq!(left.revision, expiry.revision);
    drop(watch);
    drop(store);
    // The clean stop flushed the overlay: the expiry survives a reopen.
    let store = EmbeddedStore::open(dir.path(), never_flushing()).unwrap();
    assert_eq!(store.revision(), expiry.revision);
    assert_eq!(store.range(RangeRequest::prefix("")).await.unwrap().kvs.len(), 1);
    assert!(store.lease_time_to_live(lease.id).await.unwrap().is_none());
}

async fn collect(stream: &mut ifc_kv::WatchStream, last: i64) -> Vec<WatchBatch> {
    let mut batches = Vec::new();
    while batches.last().map(|b: &WatchBatch| b.revision) != Some(last) {
        let batch = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("history within the wait")
            .expect("stream open")
            .expect("no watch error");
        batches.push(batch);
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_stay_in_order_across_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), flushing()).unwrap();
    let first = store.revision() + 1;
    let mut live = store.watch(WatchRequest::prefix("w/")).await.unwrap();
    // More revisions than the in-memory ring holds, so a watch from the start
    // reads history from redb and from the layers.
    let writes = 5000;
    let mut last = 0;
    for i in 0..writes {
        last = match i % 5 {
            4 => store.delete(DeleteRequest::key(format!("w/{}", i - 1))).await.unwrap().revision,
            _ => store.put(PutRequest::new(format!("w/{i}"), "x")).await.unwrap().revision,
        };
    }
    for stream in [
        &mut live,
        &mut store.watch(WatchRequest::prefix("w/").from_revision(first)).await.unwrap(),
    ] {
        let batches = collect(stream, last).await;
        let revisions: Vec<i64> = batches.iter().map(|b| b.revision).collect();
        assert_eq!(revisions, (first..=last).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.events.len() == 1));
    }
}
