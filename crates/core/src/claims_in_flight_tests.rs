//! Concurrent claimers on one node, both backends: they take disjoint tasks,
//! so no claim's txn loses a race to another claim of the same node.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::join_all;
use ifc_testkit::TestStore;
use serde_json::json;

use crate::counting_store::Counting;
use crate::{Coordinator, CoreConfig, NewTask};

ifc_testkit::on_each_backend!(
    concurrent_batch_claims_on_one_node_lose_no_race,
    concurrent_claim_next_on_one_node_loses_no_race,
);

/// A coordinator over a counting store with `swarms` swarms and `tasks`
/// ready tasks of one priority.
async fn node(store: &TestStore, swarms: usize, tasks: usize) -> (Arc<Coordinator>, Arc<Counting>) {
    let counting = Arc::new(Counting::new(store.kv()));
    let c = Arc::new(Coordinator::new(counting.clone(), CoreConfig::default()));
    for s in 0..swarms {
        c.register_swarm(&format!("s{s}"), Vec::new(), json!(null), None).await.unwrap();
    }
    for t in 0..tasks {
        let task = NewTask {
            task_id: format!("t{t:03}"),
            task_type: "review".into(),
            metadata: json!(null),
            required_capabilities: Vec::new(),
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
        };
        c.create_task(task).await.unwrap();
    }
    counting.lost.store(0, Ordering::SeqCst);
    (c, counting)
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
    let (c, counting) = node(&store, 8, 64).await;
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
    let (c, counting) = node(&store, 16, 16).await;
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
