//! Concurrent claimers on one node, both backends, each node running its
//! reaper (and so its snapshot cache) as `ifc serve` does: they take disjoint
//! tasks, so no claim's txn loses a race to another claim of the same node.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use ifc_testkit::TestStore;
use serde_json::json;

use crate::claim_next::Candidate;
use crate::queue_head::QueueHead;
use crate::test_support::{Counting, task};
use crate::{Coordinator, CoreConfig, Reaper};

ifc_testkit::on_each_backend!(
    concurrent_batch_claims_on_one_node_lose_no_race,
    concurrent_claim_next_on_one_node_loses_no_race,
    a_caller_waits_for_a_claim_in_flight_and_takes_its_task_if_it_fails,
    candidates_end_at_the_last_key_of_a_cut_queue,
);

/// A node (coordinator and reaper) over a counting store with `swarms`
/// swarms and `tasks` ready tasks of one priority.
async fn node(
    store: &TestStore,
    swarms: usize,
    tasks: usize,
) -> (Arc<Coordinator>, Reaper, Arc<Counting>) {
    let counting = Arc::new(Counting::new(store.kv()));
    let c = Arc::new(Coordinator::new(counting.clone(), CoreConfig::default()));
    let reaper = Reaper::spawn(c.clone());
    for s in 0..swarms {
        c.register_swarm(&format!("s{s}"), Vec::new(), json!(null), None).await.unwrap();
    }
    for t in 0..tasks {
        c.create_task(task(&format!("t{t:03}"))).await.unwrap();
    }
    counting.lost.store(0, Ordering::SeqCst);
    (c, reaper, counting)
}

/// Asserts `claimed` (task ids) has no repeat and `expected` ids.
fn assert_disjoint(claimed: &[String], expected: usize) {
    let distinct: HashSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a task claimed twice: {claimed:?}");
    assert_eq!(claimed.len(), expected, "{claimed:?}");
}

async fn concurrent_batch_claims_on_one_node_lose_no_race(store: TestStore) {
    // Eight workers fetching eight each from the same 64-task queue head: each
    // chooses among the first 16 it reads, so without coordination their
    // choices overlap and whole groups fail.
    let (c, _reaper, counting) = node(&store, 8, 64).await;
    let calls = (0..8).map(|s| {
        let c = c.clone();
        tokio::spawn(async move { c.claim_next_many(&format!("s{s}"), 8).await })
    });
    let mut claimed = Vec::new();
    for call in join_all(calls).await {
        let claims = call.unwrap().unwrap();
        assert_eq!(claims.len(), 8, "each call takes all it asked for");
        claimed.extend(claims.into_iter().map(|claim| claim.task.task_id));
    }
    assert_disjoint(&claimed, 64);
    assert_eq!(counting.lost.load(Ordering::SeqCst), 0, "claim txns that lost a race");
}

async fn concurrent_claim_next_on_one_node_loses_no_race(store: TestStore) {
    let (c, _reaper, counting) = node(&store, 16, 16).await;
    let calls = (0..16).map(|s| {
        let c = c.clone();
        tokio::spawn(async move { c.claim_next(&format!("s{s}")).await })
    });
    let mut claimed = Vec::new();
    for call in join_all(calls).await {
        let claim = call.unwrap().unwrap().expect("each call finds a task");
        claimed.push(claim.task.task_id);
    }
    assert_disjoint(&claimed, 16);
    assert_eq!(counting.lost.load(Ordering::SeqCst), 0, "claim txns that lost a race");
}

async fn a_caller_waits_for_a_claim_in_flight_and_takes_its_task_if_it_fails(store: TestStore) {
    let (c, _reaper, _) = node(&store, 1, 1).await;
    // Another caller on this node is taking the only task...
    let head = [Candidate { rank: String::new(), created: String::new(), task_id: "t000".into() }];
    let other = c.claims_in_flight.take(c.claims_in_flight.epoch(), &head, |free| {
        free.iter().map(|c| c.task_id.clone()).collect()
    });
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move { c.claim_next("s0").await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "claim_next waits while the only task is being taken");
    // ... and gives it up without claiming it: the waiting call takes it.
    drop(other);
    let claim = waiting.await.unwrap().unwrap().expect("the task, once given up");
    assert_eq!(claim.task.task_id, "t000");
}

/// A cut queue read ends the candidates at its last key: a task of another
/// queue ranked after it is not offered, though that queue was read whole
/// (the cut queue may hold better tasks past its cut).
async fn candidates_end_at_the_last_key_of_a_cut_queue(store: TestStore) {
    let c = Coordinator::new(store.kv(), CoreConfig::default());
    let kv = |priority: i32, created: i64, id: &str| ifc_kv::KeyValue {
        key: c.keys.ready("a", priority, created, id).into_bytes(),
        ..Default::default()
    };
    let one = vec![kv(5, 1, "one-1"), kv(5, 3, "one-3"), kv(5, 5, "one-5")];
    let two = vec![kv(5, 2, "two-2"), kv(0, 0, "two-low")];
    let heads = |one_cut: bool| {
        [QueueHead { kvs: one.clone(), cut: one_cut }, QueueHead { kvs: two.clone(), cut: false }]
    };
    let ids = |candidates: Vec<Candidate>| -> Vec<String> {
        candidates.into_iter().map(|c| c.task_id).collect()
    };
    // Queue one was cut: nothing ranked after its last key is offered.
    assert_eq!(ids(c.candidates(&heads(true), &[])), ["one-1", "two-2", "one-3", "one-5"]);
    // Neither was cut: every task is offered, best first, less those skipped.
    assert_eq!(
        ids(c.candidates(&heads(false), &["two-2".to_string()])),
        ["one-1", "one-3", "one-5", "two-low"]
    );
}
