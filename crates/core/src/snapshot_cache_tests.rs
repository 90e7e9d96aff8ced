//! The snapshot cache on real stores, both backends: a claim of a task this
//! node saw created is one txn, and a stale copy never changes an answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ifc_kv::RangeRequest;
use ifc_testkit::TestStore;
use serde_json::json;

use crate::test_support::{COUNTED, Counting, task};
use crate::txn::Freshness;
use crate::{ClaimOutcome, Coordinator, CoreConfig, CoreError, Reaper};

ifc_testkit::on_each_backend!(
    a_claim_renew_complete_and_push_on_a_known_task_are_one_txn_each,
    a_stale_copy_changes_no_answer,
    dropping_the_reaper_stops_the_cache_at_once,
);

/// Polls `check` every 5 ms, failing the test after 10 s: the watch that
/// feeds the cache runs on its own task.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn a_claim_renew_complete_and_push_on_a_known_task_are_one_txn_each(store: TestStore) {
    let counting = Arc::new(Counting::new(store.kv()));
    let c = Arc::new(Coordinator::new(counting.clone(), CoreConfig::default()));
    let _reaper = Reaper::spawn(c.clone());
    // The reaper's watch must be running before the task is created.
    until("the reaper's watch starts the cache", || c.snapshots.is_live()).await;
    c.register_swarm("s", Vec::new(), json!(null), None).await.unwrap();
    c.create_task(task("t")).await.unwrap();
    until("the task and swarm reach the cache", || {
        c.snapshots.task("t").is_some() && c.snapshots.swarm("s").is_some()
    })
    .await;
    counting.take();
    counting.others.store(0, Ordering::SeqCst);
    let ClaimOutcome::Claimed(claim) = COUNTED.scope((), c.claim_task("s", "t")).await.unwrap()
    else {
        panic!("not claimed")
    };
    assert_eq!(counting.take(), (0, 1), "(reads, txns) of a claim of a known task");
    // The claim's own events reach the cache before the complete needs them.
    until("the claim reaches the cache", || {
        c.snapshots.task("t").is_some_and(|t| t.claim.is_some())
    })
    .await;
    counting.take();
    COUNTED.scope((), c.renew_claim("s", "t", claim.token)).await.unwrap();
    assert_eq!(counting.take(), (0, 1), "(reads, txns) of a renew of a known claim");
    counting.take();
    COUNTED.scope((), c.complete_task("s", "t", claim.token, json!({"ok": true}))).await.unwrap();
    assert_eq!(counting.take(), (0, 1), "(reads, txns) of a complete of a known claim");
    // The complete deleted the claim; the reaper sees that in its copy and
    // does not read the task to check for a lapse.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counting.others.load(Ordering::SeqCst), 0, "the reaper's reads after a complete");

    // A push of a new task to a known swarm goes straight to its txn.
    counting.take();
    COUNTED.scope((), c.push_task_to_swarm("s", task("pushed"))).await.unwrap();
    assert_eq!(counting.take(), (0, 1), "(reads, txns) of a push of a new task");

    // Without the cache the same claim reads first.
    let config =
        CoreConfig { snapshot_cache_bytes: 0, namespace: "off".into(), ..CoreConfig::default() };
    let off = Arc::new(Coordinator::new(counting.clone(), config));
    let _off_reaper = Reaper::spawn(off.clone());
    off.register_swarm("s", Vec::new(), json!(null), None).await.unwrap();
    off.create_task(task("t")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    counting.take();
    let ClaimOutcome::Claimed(_) = COUNTED.scope((), off.claim_task("s", "t")).await.unwrap()
    else {
        panic!("not claimed")
    };
    assert_eq!(counting.take(), (0, 2), "(reads, txns) of a claim without the cache");
}

/// Fills `a`'s copy of the task and both swarms from the store as it is now.
async fn copy(a: &Coordinator, task_id: &str) {
    a.snapshot(task_id, Some("s1"), Freshness::Linearizable).await.unwrap();
    a.snapshot(task_id, Some("s2"), Freshness::Linearizable).await.unwrap();
    assert!(a.snapshots.task(task_id).is_some(), "the read filled the copy");
}

/// A node whose copy is older than the store (its watch is not feeding it,
/// as when events lag) answers as the store does.
async fn a_stale_copy_changes_no_answer(store: TestStore) {
    let a = Coordinator::new(store.kv(), CoreConfig::default());
    let b = Coordinator::new(
        store.kv(),
        CoreConfig { snapshot_cache_bytes: 0, ..CoreConfig::default() },
    );
    let now = store.kv().range(RangeRequest::key("ifc/")).await.unwrap().revision;
    a.snapshots.start(now);
    for swarm in ["s1", "s2"] {
        a.register_swarm(swarm, Vec::new(), json!(null), None).await.unwrap();
    }

    // Ready in A's copy, finished in the store.
    a.create_task(task("done")).await.unwrap();
    copy(&a, "done").await;
    let ClaimOutcome::Claimed(claim) = b.claim_task("s1", "done").await.unwrap() else {
        panic!("not claimed")
    };
    b.complete_task("s1", "done", claim.token, json!(1)).await.unwrap();
    let outcome = a.claim_task("s2", "done").await.unwrap();
    assert!(matches!(outcome, ClaimOutcome::Finished { .. }), "{outcome:?}");
    let fresh = a.snapshots.task("done").expect("refilled by the linearizable read");
    assert!(fresh.record.unwrap().mod_revision > claim.token, "the copy is current again");

    // Claimed in A's copy, released in the store: A's claim succeeds.
    a.create_task(task("released")).await.unwrap();
    let ClaimOutcome::Claimed(claim) = b.claim_task("s1", "released").await.unwrap() else {
        panic!("not claimed")
    };
    copy(&a, "released").await;
    b.release_claim("s1", "released", claim.token).await.unwrap();
    let outcome = a.claim_task("s2", "released").await.unwrap();
    assert!(matches!(outcome, ClaimOutcome::Claimed(_)), "{outcome:?}");

    // Claimed with token T in A's copy, reclaimed in the store: completing with
    // T is refused as replaced or not claimed, as the store says, never taken.
    a.create_task(task("moved")).await.unwrap();
    let ClaimOutcome::Claimed(old) = b.claim_task("s1", "moved").await.unwrap() else {
        panic!("not claimed")
    };
    copy(&a, "moved").await;
    b.release_claim("s1", "moved", old.token).await.unwrap();
    let ClaimOutcome::Claimed(new) = b.claim_task("s1", "moved").await.unwrap() else {
        panic!("not reclaimed")
    };
    let refused = a.renew_claim("s1", "moved", old.token).await.unwrap_err();
    assert!(
        matches!(refused, CoreError::ClaimReplaced { .. } | CoreError::NotClaimed { .. }),
        "{refused:?}"
    );
    let refused = a.complete_task("s1", "moved", old.token, json!(1)).await.unwrap_err();
    assert!(
        matches!(refused, CoreError::ClaimReplaced { .. } | CoreError::NotClaimed { .. }),
        "{refused:?}"
    );
    b.complete_task("s1", "moved", new.token, json!(2)).await.unwrap();

    // A push takes a task A does not know as new: wrong here, the task is
    // claimed, and the answer says so.
    b.create_task(task("unknown")).await.unwrap();
    let ClaimOutcome::Claimed(_) = b.claim_task("s1", "unknown").await.unwrap() else {
        panic!("not claimed")
    };
    a.snapshots.forget("unknown");
    let refused = a.push_task_to_swarm("s2", task("unknown")).await.unwrap_err();
    assert!(matches!(refused, CoreError::TaskClaimed { .. }), "{refused:?}");
}

async fn dropping_the_reaper_stops_the_cache_at_once(store: TestStore) {
    let c = Arc::new(Coordinator::new(store.kv(), CoreConfig::default()));
    let reaper = Reaper::spawn(c.clone());
    until("the reaper's watch starts the cache", || c.snapshots.is_live()).await;
    drop(reaper);
    assert!(!c.snapshots.is_live(), "an unfed cache must not be served");
}
