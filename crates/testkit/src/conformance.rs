//! The KV conformance suite: every behaviour of the `KvStore` contract, written
//! once, run on every backend by [`crate::conformance_tests!`].
//!
//! Each case gets a fresh, empty store. Cases wait for events with a generous
//! timeout (a hang fails the test; speed is never asserted).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, EventKind, KeyRange, KeyValue, KvError,
    KvStore, PutRequest, RangeRequest, Revision, TxnOp, TxnOpResponse, TxnRequest, WatchBatch,
    WatchRequest, WatchStream,
};

/// A store under test.
pub type Kv = Arc<dyn KvStore>;

/// How long a case waits for an expected event before it fails.
pub const EVENT_WAIT: Duration = Duration::from_secs(15);

/// Runs every case on a store made by `make` (one fresh store per case).
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@cases $backend;
            fresh_store_is_empty_at_revision_one,
            put_sets_revisions_and_versions,
            put_returns_prev_kv,
            range_of_missing_key_is_empty,
            prefix_span_and_limit,
            empty_prefix_reads_every_key,
            delete_key_prefix_and_nothing,
            deleted_key_is_recreated_at_version_one,
            compare_on_missing_key_follows_etcd,
            compare_operators,
            txn_success_branch,
            txn_failure_branch,
            txn_reads_its_own_writes,
            txn_that_changes_nothing_keeps_the_revision,
            bad_input_is_refused_and_changes_nothing,
            watch_from_a_past_revision_replays_then_follows,
            watch_from_now_filters_by_prefix_and_key,
            watch_reports_prev_kv_only_when_asked,
            watch_never_splits_a_revision,
            watch_from_a_compacted_revision_fails,
            compact_refuses_future_and_old_revisions,
            lease_revoke_deletes_its_keys_in_one_revision,
            lease_expiry_deletes_its_keys,
            lease_keep_alive_keeps_keys,
            unknown_lease_is_refused,
            put_without_lease_detaches_the_key,
            concurrent_compare_and_swap_counts_exactly,
            many_watchers_see_the_same_history
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn history_beyond_retention_is_compacted_on_its_own() {
            let store = $crate::StartStore::start_with_retention(&$backend, 5).await;
            $crate::conformance::history_beyond_retention_is_compacted_on_its_own(store.kv()).await;
        }
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $crate::StartStore::start(&$backend).await;
                $crate::conformance::$case(store.kv()).await;
            }
        )*
    };
}

async fn put(kv: &Kv, key: &str, value: &str) -> Revision {
    kv.put(PutRequest::new(key, value)).await.expect("put").revision
}

async fn get(kv: &Kv, key: &str) -> Option<KeyValue> {
    kv.range(RangeRequest::key(key)).await.expect("range").kvs.pop()
}

async fn revision(kv: &Kv) -> Revision {
    kv.range(RangeRequest::key("\0")).await.expect("range").revision
}

/// Waits for the next batch of a watch, failing the test after [`EVENT_WAIT`].
pub async fn next_batch(stream: &mut WatchStream) -> Result<WatchBatch, KvError> {
    tokio::time::timeout(EVENT_WAIT, stream.next())
        .await
        .expect("a watch event within the wait")
        .expect("the watch stream ended")
}

fn keys(batch: &WatchBatch) -> Vec<(EventKind, String)> {
    batch.events.iter().map(|e| (e.kind, String::from_utf8_lossy(&e.kv.key).into_owned())).collect()
}

/// A fresh store reports revision 1 and holds nothing.
pub async fn fresh_store_is_empty_at_revision_one(kv: Kv) {
    let all = kv.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(all.revision, 1);
    assert_eq!(all.count, 0);
    assert!(all.kvs.is_empty());
}

/// Create and update set create/mod revision and version as etcd does.
pub async fn put_sets_revisions_and_versions(kv: Kv) {
    let r1 = put(&kv, "a", "1").await;
    assert_eq!(r1, 2);
    let a = get(&kv, "a").await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version, a.lease), (r1, r1, 1, 0));
    assert_eq!(a.value, b"1");
    let r2 = put(&kv, "a", "2").await;
    assert_eq!(r2, r1 + 1);
    let a = get(&kv, "a").await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r2, 2));
    let r3 = put(&kv, "b", "x").await;
    assert_eq!(r3, r2 + 1);
    assert_eq!(revision(&kv).await, r3);
}

/// A put asked for its previous value gets it; a first put gets none.
pub async fn put_returns_prev_kv(kv: Kv) {
    let first = kv.put(PutRequest::new("k", "v1").with_prev_kv()).await.unwrap();
    assert_eq!(first.prev_kv, None);
    let second = kv.put(PutRequest::new("k", "v2").with_prev_kv()).await.unwrap();
    let prev = second.prev_kv.expect("prev kv");
    assert_eq!(prev.value, b"v1");
    assert_eq!(prev.mod_revision, first.revision);
    let quiet = kv.put(PutRequest::new("k", "v3")).await.unwrap();
    assert_eq!(quiet.prev_kv, None);
}

/// Reading a missing key answers nothing, at the current revision.
pub async fn range_of_missing_key_is_empty(kv: Kv) {
    let r = put(&kv, "present", "1").await;
    let resp = kv.range(RangeRequest::key("absent")).await.unwrap();
    assert!(resp.kvs.is_empty());
    assert_eq!((resp.count, resp.more, resp.revision), (0, false, r));
}

/// Prefixes, spans and limits.
pub async fn prefix_span_and_limit(kv: Kv) {
    for key in ["a/1", "a/2", "a/3", "ab", "b/1"] {
        put(&kv, key, key).await;
    }
    let a = kv.range(RangeRequest::prefix("a/")).await.unwrap();
    let names: Vec<_> = a.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(names, vec![b"a/1".to_vec(), b"a/2".to_vec(), b"a/3".to_vec()]);
    assert_eq!((a.count, a.more), (3, false));

    let limited = kv.range(RangeRequest::prefix("a/").with_limit(2).counted()).await.unwrap();
    assert_eq!(limited.kvs.len(), 2);
    assert_eq!((limited.count, limited.more), (3, true));
    assert_eq!(limited.kvs[1].key, b"a/2");

    // Not asked to count, a limited read still says `more`, and its count is at
    // least one past what came back.
    let page = kv.range(RangeRequest::prefix("a/").with_limit(1)).await.unwrap();
    assert_eq!(page.kvs.len(), 1);
    assert!(page.more && page.count >= 2, "{page:?}");
    let last = kv.range(RangeRequest::prefix("a/").with_limit(3)).await.unwrap();
    assert_eq!((last.kvs.len(), last.count, last.more), (3, 3, false));
    let only = kv.range(RangeRequest::prefix("a/").count_only()).await.unwrap();
    assert_eq!((only.count, only.more), (3, true));

    let span = RangeRequest::new(KeyRange::Span { start: b"a/2".to_vec(), end: b"b".to_vec() });
    let span = kv.range(span).await.unwrap();
    let names: Vec<_> = span.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(names, vec![b"a/2".to_vec(), b"a/3".to_vec(), b"ab".to_vec()]);

    let empty_span =
        RangeRequest::new(KeyRange::Span { start: b"a/1".to_vec(), end: b"a/1".to_vec() });
    assert_eq!(kv.range(empty_span).await.unwrap().count, 0);
}

/// The empty prefix is the whole key space.
pub async fn empty_prefix_reads_every_key(kv: Kv) {
    for key in ["\u{1}", "m", "zzz"] {
        put(&kv, key, "v").await;
    }
    let all = kv.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(all.count, 3);
    let deleted = kv.delete(DeleteRequest::prefix("")).await.unwrap();
    assert_eq!(deleted.deleted, 3);
    assert_eq!(kv.range(RangeRequest::prefix("")).await.unwrap().count, 0);
}

/// Deletes of one key, a prefix, and nothing.
pub async fn delete_key_prefix_and_nothing(kv: Kv) {
    for key in ["d/1", "d/2", "e"] {
        put(&kv, key, "v").await;
    }
    let before = revision(&kv).await;
    let nothing = kv.delete(DeleteRequest::key("missing")).await.unwrap();
    assert_eq!((nothing.deleted, nothing.revision), (0, before));
    assert_eq!(revision(&kv).await, before, "deleting nothing must not take a revision");

    let prefix = kv.delete(DeleteRequest::prefix("d/").with_prev_kv()).await.unwrap();
    assert_eq!((prefix.deleted, prefix.revision), (2, before + 1));
    let gone: Vec<_> = prefix.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(gone, vec![b"d/1".to_vec(), b"d/2".to_vec()]);

    let one = kv.delete(DeleteRequest::key("e")).await.unwrap();
    assert_eq!((one.deleted, one.revision), (1, before + 2));
    assert!(one.prev_kvs.is_empty(), "prev kvs only when asked");
    assert_eq!(kv.range(RangeRequest::prefix("")).await.unwrap().count, 0);
}

/// A key deleted and written again starts over.
pub async fn deleted_key_is_recreated_at_version_one(kv: Kv) {
    put(&kv, "k", "1").await;
    put(&kv, "k", "2").await;
    kv.delete(DeleteRequest::key("k")).await.unwrap();
    let r = put(&kv, "k", "3").await;
    let k = get(&kv, "k").await.unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version), (r, r, 1));
}

async fn txn_compare(kv: &Kv, compare: Compare) -> bool {
    kv.txn(TxnRequest::new().when(compare)).await.expect("txn").succeeded
}

/// A missing key compares as version/revisions/lease 0; a value compare on it is
/// always false, whatever the operator.
pub async fn compare_on_missing_key_follows_etcd(kv: Kv) {
    use CompareOp::*;
    use CompareTarget::*;
    assert!(!txn_compare(&kv, Compare::new("nope", Equal, Value(Vec::new()))).await);
    assert!(!txn_compare(&kv, Compare::new("nope", NotEqual, Value(b"x".to_vec()))).await);
    assert!(txn_compare(&kv, Compare::new("nope", Equal, Version(0))).await);
    assert!(txn_compare(&kv, Compare::new("nope", Equal, CreateRevision(0))).await);
    assert!(txn_compare(&kv, Compare::new("nope", Equal, ModRevision(0))).await);
    assert!(txn_compare(&kv, Compare::new("nope", Equal, Lease(0))).await);
    assert!(txn_compare(&kv, Compare::new("nope", Less, Version(1))).await);
    assert!(txn_compare(&kv, Compare::missing("nope")).await);
    assert!(!txn_compare(&kv, Compare::exists("nope")).await);
}

/// `= != < >` on every target of an existing key.
pub async fn compare_operators(kv: Kv) {
    use CompareOp::*;
    use CompareTarget::*;
    let r1 = put(&kv, "k", "m").await;
    let r2 = put(&kv, "k", "m").await;
    let cases = [
        (Equal, Value(b"m".to_vec()), true),
        (NotEqual, Value(b"m".to_vec()), false),
        (Less, Value(b"n".to_vec()), true),
        (Greater, Value(b"l".to_vec()), true),
        (Greater, Value(b"m".to_vec()), false),
        (Equal, Version(2), true),
        (Greater, Version(1), true),
        (Less, Version(2), false),
        (Equal, CreateRevision(r1), true),
        (Equal, ModRevision(r2), true),
        (Less, ModRevision(r2 + 1), true),
        (NotEqual, ModRevision(r1), true),
        (Equal, Lease(0), true),
        (Greater, Lease(0), false),
    ];
    for (op, target, expected) in cases {
        let compare = Compare::new("k", op, target.clone());
        assert_eq!(txn_compare(&kv, compare).await, expected, "{op:?} {target:?}");
    }
}

/// When every compare holds, the success branch runs at one new revision.
pub async fn txn_success_branch(kv: Kv) {
    let r = put(&kv, "owner", "unclaimed").await;
    let txn = TxnRequest::new()
        .when(Compare::new("owner", CompareOp::Equal, CompareTarget::Value(b"unclaimed".to_vec())))
        .when(Compare::missing("lock"))
        .and_then(TxnOp::Put(PutRequest::new("owner", "swarm-a").with_prev_kv()))
        .and_then(TxnOp::Put(PutRequest::new("audit/1", "claimed")))
        .and_then(TxnOp::Delete(DeleteRequest::key("nothing-here")))
        .or_else(TxnOp::Range(RangeRequest::key("owner")));
    let resp = kv.txn(txn).await.unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.revision, r + 1);
    assert_eq!(resp.responses.len(), 3);
    match &resp.responses[0] {
        TxnOpResponse::Put(p) => {
            assert_eq!(p.prev_kv.as_ref().unwrap().value, b"unclaimed");
            assert_eq!(p.revision, r + 1);
        }
        other => panic!("expected a put answer, got {other:?}"),
    }
    match &resp.responses[2] {
        TxnOpResponse::Delete(d) => assert_eq!(d.deleted, 0),
        other => panic!("expected a delete answer, got {other:?}"),
    }
    let owner = get(&kv, "owner").await.unwrap();
    let audit = get(&kv, "audit/1").await.unwrap();
    assert_eq!(owner.value, b"swarm-a");
    assert_eq!(owner.mod_revision, audit.mod_revision, "one txn, one revision");
}

/// When a compare fails, the failure branch runs and the success branch does not.
pub async fn txn_failure_branch(kv: Kv) {
    let r = put(&kv, "owner", "swarm-a").await;
    let txn = TxnRequest::new()
        .when(Compare::new("owner", CompareOp::Equal, CompareTarget::Value(b"unclaimed".to_vec())))
        .and_then(TxnOp::Put(PutRequest::new("owner", "swarm-b")))
        .or_else(TxnOp::Range(RangeRequest::key("owner")));
    let resp = kv.txn(txn).await.unwrap();
    assert!(!resp.succeeded);
    assert_eq!(resp.revision, r, "a read-only branch takes no revision");
    match &resp.responses[..] {
        [TxnOpResponse::Range(range)] => assert_eq!(range.kvs[0].value, b"swarm-a"),
        other => panic!("expected one range answer, got {other:?}"),
    }
    assert_eq!(get(&kv, "owner").await.unwrap().value, b"swarm-a");
}

/// A read after a write in one txn sees the write.
pub async fn txn_reads_its_own_writes(kv: Kv) {
    let txn = TxnRequest::new()
        .and_then(TxnOp::Put(PutRequest::new("k", "new")))
        .and_then(TxnOp::Range(RangeRequest::key("k")));
    let resp = kv.txn(txn).await.unwrap();
    match &resp.responses[1] {
        TxnOpResponse::Range(r) => {
            assert_eq!(r.kvs[0].value, b"new");
            assert_eq!(r.kvs[0].mod_revision, resp.revision);
        }
        other => panic!("expected a range answer, got {other:?}"),
    }
}

/// A txn whose branch changes nothing leaves the revision alone.
pub async fn txn_that_changes_nothing_keeps_the_revision(kv: Kv) {
    let r = put(&kv, "k", "v").await;
    let txn = TxnRequest::new()
        .and_then(TxnOp::Range(RangeRequest::key("k")))
        .and_then(TxnOp::Delete(DeleteRequest::key("missing")));
    let resp = kv.txn(txn).await.unwrap();
    assert_eq!(resp.revision, r);
    assert_eq!(revision(&kv).await, r);
}

/// Every malformed request is refused with a typed error and writes nothing.
pub async fn bad_input_is_refused_and_changes_nothing(kv: Kv) {
    let r = put(&kv, "keep", "v").await;
    let invalid = |result: Result<(), KvError>, what: &str| match result {
        Err(KvError::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    };
    invalid(kv.put(PutRequest::new("", "v")).await.map(drop), "empty key");
    invalid(kv.range(RangeRequest::key("")).await.map(drop), "empty key read");
    invalid(kv.put(PutRequest::new(vec![b'k'; 5000], "v")).await.map(drop), "long key");
    invalid(kv.put(PutRequest::new("k", vec![0u8; 2 << 20])).await.map(drop), "big value");
    let inverted = KeyRange::Span { start: b"z".to_vec(), end: b"a".to_vec() };
    invalid(kv.range(RangeRequest::new(inverted.clone())).await.map(drop), "inverted range");
    invalid(
        kv.delete(DeleteRequest { range: inverted, prev_kv: false }).await.map(drop),
        "inverted delete",
    );
    let duplicate = TxnRequest::new()
        .and_then(TxnOp::Put(PutRequest::new("dup", "1")))
        .and_then(TxnOp::Put(PutRequest::new("dup", "2")));
    invalid(kv.txn(duplicate).await.map(drop), "duplicate txn key");
    invalid(kv.lease_grant(0).await.map(drop), "zero TTL");
    invalid(kv.lease_grant(-5).await.map(drop), "negative TTL");
    invalid(kv.range(RangeRequest::key("k").with_limit(-1)).await.map(drop), "negative limit");
    match kv.compact(r + 100).await {
        Err(KvError::FutureRevision { .. }) => {}
        other => panic!("future compaction: expected FutureRevision, got {other:?}"),
    }
    assert_eq!(revision(&kv).await, r, "nothing was written");
    let all = kv.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(all.count, 1);
}

/// A watch from an old revision replays every change since, then follows.
pub async fn watch_from_a_past_revision_replays_then_follows(kv: Kv) {
    let r1 = put(&kv, "w/a", "1").await;
    let r2 = put(&kv, "w/b", "2").await;
    kv.delete(DeleteRequest::key("w/a")).await.unwrap();
    let mut stream = kv.watch(WatchRequest::prefix("w/").from_revision(r1)).await.unwrap();
    let b1 = next_batch(&mut stream).await.unwrap();
    assert_eq!((b1.revision, keys(&b1)), (r1, vec![(EventKind::Put, "w/a".into())]));
    let b2 = next_batch(&mut stream).await.unwrap();
    assert_eq!(b2.revision, r2);
    let b3 = next_batch(&mut stream).await.unwrap();
    assert_eq!((b3.revision, keys(&b3)), (r2 + 1, vec![(EventKind::Delete, "w/a".into())]));
    assert_eq!(b3.events[0].kv.mod_revision, r2 + 1);
    let r4 = put(&kv, "w/c", "3").await;
    let b4 = next_batch(&mut stream).await.unwrap();
    assert_eq!((b4.revision, keys(&b4)), (r4, vec![(EventKind::Put, "w/c".into())]));
    assert_eq!(b4.events[0].kv.value, b"3");
}

/// A watch from now sees only later changes, and only its keys.
pub async fn watch_from_now_filters_by_prefix_and_key(kv: Kv) {
    put(&kv, "p/old", "x").await;
    let mut prefix = kv.watch(WatchRequest::prefix("p/")).await.unwrap();
    let mut key = kv.watch(WatchRequest::key("p/two")).await.unwrap();
    put(&kv, "q/other", "x").await;
    let r1 = put(&kv, "p/one", "1").await;
    let r2 = put(&kv, "p/two", "2").await;
    let first = next_batch(&mut prefix).await.unwrap();
    assert_eq!((first.revision, keys(&first)), (r1, vec![(EventKind::Put, "p/one".into())]));
    let second = next_batch(&mut prefix).await.unwrap();
    assert_eq!(second.revision, r2);
    let only = next_batch(&mut key).await.unwrap();
    assert_eq!((only.revision, keys(&only)), (r2, vec![(EventKind::Put, "p/two".into())]));
}

/// `prev_kv` is filled only when the watch asked for it.
pub async fn watch_reports_prev_kv_only_when_asked(kv: Kv) {
    let r0 = put(&kv, "k", "old").await;
    let mut with = kv.watch(WatchRequest::key("k").with_prev_kv()).await.unwrap();
    let mut without = kv.watch(WatchRequest::key("k")).await.unwrap();
    put(&kv, "k", "new").await;
    kv.delete(DeleteRequest::key("k")).await.unwrap();
    let put_event = next_batch(&mut with).await.unwrap();
    let prev = put_event.events[0].prev_kv.as_ref().expect("prev kv on put");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"old"[..], r0));
    let delete_event = next_batch(&mut with).await.unwrap();
    assert_eq!(delete_event.events[0].kind, EventKind::Delete);
    assert_eq!(delete_event.events[0].prev_kv.as_ref().expect("prev kv on delete").value, b"new");
    let plain = next_batch(&mut without).await.unwrap();
    assert_eq!(plain.events[0].prev_kv, None);
}

/// All events of one revision arrive in one batch.
pub async fn watch_never_splits_a_revision(kv: Kv) {
    let mut stream = kv.watch(WatchRequest::prefix("t/")).await.unwrap();
    let txn = TxnRequest::new()
        .and_then(TxnOp::Put(PutRequest::new("t/1", "a")))
        .and_then(TxnOp::Put(PutRequest::new("t/2", "b")))
        .and_then(TxnOp::Put(PutRequest::new("t/3", "c")));
    let r = kv.txn(txn).await.unwrap().revision;
    let batch = next_batch(&mut stream).await.unwrap();
    assert_eq!(batch.revision, r);
    assert_eq!(batch.events.len(), 3);
    assert!(batch.events.iter().all(|e| e.kv.mod_revision == r));
}

/// A watch that starts before the compaction point fails with `Compacted`; one
/// that starts at it works.
pub async fn watch_from_a_compacted_revision_fails(kv: Kv) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(put(&kv, "c/k", &i.to_string()).await);
    }
    kv.compact(revisions[2]).await.unwrap();
    let mut old = kv.watch(WatchRequest::prefix("c/").from_revision(revisions[1])).await.unwrap();
    match next_batch(&mut old).await {
        Err(KvError::Compacted { compact_revision }) => assert_eq!(compact_revision, revisions[2]),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut kept = kv.watch(WatchRequest::prefix("c/").from_revision(revisions[2])).await.unwrap();
    assert_eq!(next_batch(&mut kept).await.unwrap().revision, revisions[2]);
    assert_eq!(next_batch(&mut kept).await.unwrap().revision, revisions[3]);
}

/// A store opened to keep 5 revisions of history compacts older ones by itself
/// (the embedded store as it writes, etcd's store on a timer), and keeps the
/// current keys.
pub async fn history_beyond_retention_is_compacted_on_its_own(kv: Kv) {
    let first = put(&kv, "r/k", "0").await;
    let mut last = first;
    for i in 1..40 {
        last = put(&kv, "r/k", &i.to_string()).await;
    }
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let mut old = kv.watch(WatchRequest::prefix("r/").from_revision(first)).await.unwrap();
        match next_batch(&mut old).await {
            Err(KvError::Compacted { compact_revision }) => {
                assert!(compact_revision > first && compact_revision <= last - 4);
                break;
            }
            Ok(batch) => assert_eq!(batch.revision, first, "history not yet compacted"),
            Err(e) => panic!("expected Compacted, got {e:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "history was never compacted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&kv, "r/k").await.unwrap().value, b"39", "compaction keeps current keys");
    let mut recent = kv.watch(WatchRequest::prefix("r/").from_revision(last)).await.unwrap();
    assert_eq!(next_batch(&mut recent).await.unwrap().revision, last, "recent history is kept");
}

/// Compaction refuses a future revision and one at or below the current point.
pub async fn compact_refuses_future_and_old_revisions(kv: Kv) {
    let r = put(&kv, "k", "1").await;
    put(&kv, "k", "2").await;
    assert!(matches!(kv.compact(r + 10).await, Err(KvError::FutureRevision { .. })));
    kv.compact(r).await.unwrap();
    assert!(matches!(kv.compact(r).await, Err(KvError::Compacted { .. })));
    assert!(matches!(kv.compact(r - 1).await, Err(KvError::Compacted { .. })));
    assert_eq!(get(&kv, "k").await.unwrap().value, b"2", "compaction keeps current keys");
}

/// Revoking a lease deletes every key on it in one revision, seen by watchers.
pub async fn lease_revoke_deletes_its_keys_in_one_revision(kv: Kv) {
    let lease = kv.lease_grant(60).await.unwrap();
    assert!(lease.ttl >= 60);
    kv.put(PutRequest::new("l/1", "a").with_lease(lease.id)).await.unwrap();
    kv.put(PutRequest::new("l/2", "b").with_lease(lease.id)).await.unwrap();
    put(&kv, "l/3", "no lease").await;
    assert_eq!(get(&kv, "l/1").await.unwrap().lease, lease.id);
    let status = kv.lease_time_to_live(lease.id).await.unwrap().expect("live lease");
    assert_eq!(status.keys, vec![b"l/1".to_vec(), b"l/2".to_vec()]);
    assert_eq!(status.granted_ttl, lease.ttl);
    assert!(status.remaining_ttl <= lease.ttl && status.remaining_ttl > 0);

    let mut stream = kv.watch(WatchRequest::prefix("l/")).await.unwrap();
    let r = kv.lease_revoke(lease.id).await.unwrap();
    let batch = next_batch(&mut stream).await.unwrap();
    assert_eq!(batch.revision, r);
    assert_eq!(
        keys(&batch),
        vec![(EventKind::Delete, "l/1".into()), (EventKind::Delete, "l/2".into())]
    );
    assert!(get(&kv, "l/1").await.is_none());
    assert!(get(&kv, "l/3").await.is_some());
    assert_eq!(kv.lease_time_to_live(lease.id).await.unwrap(), None);
    assert!(
        matches!(kv.lease_keep_alive(lease.id).await, Err(KvError::LeaseNotFound(id)) if id == lease.id)
    );
    assert!(matches!(kv.lease_revoke(lease.id).await, Err(KvError::LeaseNotFound(_))));
}

/// A lease nobody keeps alive expires and takes its keys with it.
pub async fn lease_expiry_deletes_its_keys(kv: Kv) {
    let lease = kv.lease_grant(1).await.unwrap();
    let mut stream = kv.watch(WatchRequest::key("ephemeral")).await.unwrap();
    kv.put(PutRequest::new("ephemeral", "v").with_lease(lease.id)).await.unwrap();
    assert_eq!(next_batch(&mut stream).await.unwrap().events[0].kind, EventKind::Put);
    let gone = next_batch(&mut stream).await.unwrap();
    assert_eq!(keys(&gone), vec![(EventKind::Delete, "ephemeral".into())]);
    assert!(get(&kv, "ephemeral").await.is_none());
    assert_eq!(kv.lease_time_to_live(lease.id).await.unwrap(), None);
}

/// Keep-alives hold a short lease (and its key) past its TTL.
pub async fn lease_keep_alive_keeps_keys(kv: Kv) {
    let lease = kv.lease_grant(2).await.unwrap();
    kv.put(PutRequest::new("held", "v").with_lease(lease.id)).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        let ttl = kv.lease_keep_alive(lease.id).await.unwrap();
        assert_eq!(ttl, lease.ttl);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(get(&kv, "held").await.is_some(), "kept-alive lease lost its key");
    kv.lease_revoke(lease.id).await.unwrap();
}

/// Attaching a key to a lease that does not exist writes nothing.
pub async fn unknown_lease_is_refused(kv: Kv) {
    let r = revision(&kv).await;
    let missing = 0x7777_0000;
    match kv.put(PutRequest::new("k", "v").with_lease(missing)).await {
        Err(KvError::LeaseNotFound(id)) => assert_eq!(id, missing),
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    let txn = TxnRequest::new()
        .and_then(TxnOp::Put(PutRequest::new("a", "v")))
        .and_then(TxnOp::Put(PutRequest::new("b", "v").with_lease(missing)));
    assert!(matches!(kv.txn(txn).await, Err(KvError::LeaseNotFound(_))));
    assert_eq!(revision(&kv).await, r);
    assert!(get(&kv, "a").await.is_none(), "a refused txn writes nothing");
    assert!(matches!(kv.lease_keep_alive(missing).await, Err(KvError::LeaseNotFound(_))));
    assert_eq!(kv.lease_time_to_live(missing).await.unwrap(), None);
}

/// A put without a lease detaches the key from its old lease.
pub async fn put_without_lease_detaches_the_key(kv: Kv) {
    let lease = kv.lease_grant(60).await.unwrap();
    kv.put(PutRequest::new("k", "1").with_lease(lease.id)).await.unwrap();
    put(&kv, "k", "2").await;
    assert_eq!(get(&kv, "k").await.unwrap().lease, 0);
    let status = kv.lease_time_to_live(lease.id).await.unwrap().unwrap();
    assert!(status.keys.is_empty());
    kv.lease_revoke(lease.id).await.unwrap();
    assert_eq!(get(&kv, "k").await.unwrap().value, b"2");
}

/// 64 tasks race compare-and-swap increments on one key: the final value is the
/// number of swaps that succeeded.
pub async fn concurrent_compare_and_swap_counts_exactly(kv: Kv) {
    put(&kv, "counter", "0").await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0u64;
            for _ in 0..8 {
                let current = get(&kv, "counter").await.unwrap();
                let n: u64 = String::from_utf8(current.value).unwrap().parse().unwrap();
                let txn = TxnRequest::new()
                    .when(Compare::mod_revision_is("counter", current.mod_revision))
                    .and_then(TxnOp::Put(PutRequest::new("counter", (n + 1).to_string())));
                if kv.txn(txn).await.unwrap().succeeded {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += task.await.unwrap();
    }
    let value: u64 =
        String::from_utf8(get(&kv, "counter").await.unwrap().value).unwrap().parse().unwrap();
    assert!(won > 0);
    assert_eq!(value, won);
}

/// Several watchers of one prefix see identical, gap-free histories while
/// writers run concurrently.
pub async fn many_watchers_see_the_same_history(kv: Kv) {
    let start = revision(&kv).await + 1;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(kv.watch(WatchRequest::prefix("h/").from_revision(start)).await.unwrap());
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let kv = kv.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                kv.put(PutRequest::new(format!("h/{w}"), i.to_string())).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let mut histories = Vec::new();
    for stream in &mut streams {
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let batch = next_batch(stream).await.unwrap();
            for event in batch.events {
                seen.push((batch.revision, event.kv.key, event.kv.value));
            }
        }
        histories.push(seen);
    }
    let revisions: Vec<Revision> = histories[0].iter().map(|(r, _, _)| *r).collect();
    let expected: Vec<Revision> = (start..start + 100).collect();
    assert_eq!(revisions, expected, "ordered, unique, no gaps");
    for other in &histories[1..] {
        assert_eq!(other, &histories[0]);
    }
}
