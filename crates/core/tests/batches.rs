//! Batches: creating many tasks at once and claiming several, on both
//! backends.

mod common;

use std::collections::{HashMap, HashSet};

use common::{caps, coordinator};
use ifc_core::{CoreConfig, CoreError, CreateOutcome, NewTask, TaskState, WitnessQuery};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(
    a_batch_is_checked_whole_and_a_bad_one_writes_nothing,
    a_retried_batch_is_idempotent,
    a_claim_batch_gives_distinct_tasks_each_its_own_claim,
    a_claim_batch_serves_higher_priorities_first,
    concurrent_batch_claimers_never_share_a_task,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "code-review".into(),
        metadata: json!({"n": id}),
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

fn tasks(prefix: &str, n: usize) -> Vec<NewTask> {
    (0..n).map(|i| task(&format!("{prefix}-{i:04}"))).collect()
}

async fn ready_ids(c: &ifc_core::Coordinator) -> Vec<String> {
    let page = c.list_tasks(TaskState::Ready, None, 100).await.unwrap();
    page.tasks.into_iter().map(|t| t.record.task_id).collect()
}

async fn a_batch_is_checked_whole_and_a_bad_one_writes_nothing(store: TestStore) {
    let (c, witnessed) = coordinator(&store, CoreConfig::default());
    let bad_items = [
        (NewTask { max_attempts: Some(0), ..task("b-0002") }, "max_attempts"),
        (task("bad/id"), "task_id"),
        (NewTask { timeout_ms: Some(1), ..task("b-0002") }, "timeout_ms"),
        // An id given twice is a bad item too: the later one.
        (task("b-0000"), "task_id"),
    ];
    for (bad, field) in bad_items {
        let mut batch = tasks("b", 40);
        batch[2] = bad;
        match c.create_tasks(batch).await {
            Err(CoreError::InvalidItem { index: 2, field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected item 2 refused for {field}, got {other:?}"),
        }
    }
    assert!(ready_ids(&c).await.is_empty(), "a refused batch writes nothing");
    assert!(witnessed.lock().unwrap().is_empty(), "and witnesses nothing");
    assert!(matches!(c.create_tasks(Vec::new()).await, Err(CoreError::Invalid { .. })));
    assert!(matches!(
        c.create_tasks(tasks("big", 1001)).await,
        Err(CoreError::BatchTooLarge { max: 1000, given: 1001 })
    ));
    assert!(ready_ids(&c).await.is_empty());
}

async fn a_retried_batch_is_idempotent(store: TestStore) {
    let (c, witnessed) = coordinator(&store, CoreConfig::default());
    // 60 tasks over two capability sets: several txns, each set defined once.
    let mut batch = tasks("r", 60);
    for t in batch.iter_mut().skip(30) {
        t.required_capabilities = caps(&["gpu"]);
    }
    let first = c.create_tasks(batch.clone()).await.unwrap();
    assert_eq!(first.len(), 60);
    for (answer, asked) in first.iter().zip(&batch) {
        match answer {
            Ok(CreateOutcome::Created(record)) => assert_eq!(record.task_id, asked.task_id),
            other => panic!("{}: expected created, got {other:?}", asked.task_id),
        }
    }
    let created_records = witnessed.lock().unwrap().len();
    assert_eq!(created_records, 60, "one task_created record each");
    // The whole batch again (a retry after a lost answer): nothing changes.
    let again = c.create_tasks(batch.clone()).await.unwrap();
    for (answer, before) in again.iter().zip(&first) {
        let Ok(CreateOutcome::Created(before)) = before else { unreachable!() };
        assert_eq!(answer.as_ref().ok(), Some(&CreateOutcome::Exists(before.clone())));
    }
    assert_eq!(witnessed.lock().unwrap().len(), created_records, "a retry witnesses nothing");
    // New and existing mixed, and one existing id with other content.
    let mut mixed = vec![task("r-0000"), task("r-new")];
    mixed.push(NewTask { priority: 7, ..task("r-0001") });
    let answers = c.create_tasks(mixed).await.unwrap();
    assert!(matches!(answers[0], Ok(CreateOutcome::Exists(_))));
    assert!(matches!(answers[1], Ok(CreateOutcome::Created(_))));
    assert!(matches!(&answers[2], Err(CoreError::TaskExists(id)) if id == "r-0001"));
    assert_eq!(c.get_task("r-0001").await.unwrap().record.priority, 0, "left as it was");
    let history = c.witness(&WitnessQuery::default()).await.unwrap();
    for id in ["r-0000", "r-0059", "r-new"] {
        let created = history.iter().filter(|r| r.task_id.as_deref() == Some(id)).count();
        assert_eq!(created, 1, "{id}: one record");
    }
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn a_claim_batch_gives_distinct_tasks_each_its_own_claim(store: TestStore) {
    let (c, witnessed) = coordinator(&store, CoreConfig::default());
    c.register_swarm("w", caps(&[]), json!(null), None).await.unwrap();
    c.create_tasks(tasks("c", 40)).await.unwrap();
    assert!(matches!(c.claim_next_many("w", 0).await, Err(CoreError::Invalid { .. })));
    assert!(matches!(c.claim_next_many("w", 101).await, Err(CoreError::Invalid { .. })));
    assert!(matches!(c.claim_next_many("nobody", 5).await, Err(CoreError::NotRegistered(_))));

    let claims = c.claim_next_many("w", 30).await.unwrap();
    assert_eq!(claims.len(), 30);
    let ids: HashSet<&str> = claims.iter().map(|c| c.task.task_id.as_str()).collect();
    assert_eq!(ids.len(), 30, "distinct tasks");
    let records = witnessed.lock().unwrap().clone();
    for claim in &claims {
        let view = c.get_task(&claim.task.task_id).await.unwrap();
        assert_eq!(view.state, TaskState::Claimed);
        assert_eq!(view.record.owner.as_deref(), Some("w"));
        assert_eq!(view.token, Some(claim.token), "the claim's own token is the live one");
        assert_eq!(view.deadline_ms, Some(claim.deadline_ms));
        let claimed: Vec<_> = records
            .iter()
            .filter(|r| r.op == "task_claimed" && r.task_id == Some(claim.task.task_id.clone()))
            .collect();
        assert_eq!(claimed.len(), 1, "one task_claimed record per claim");
        assert_eq!(claimed[0].token, Some(claim.token));
    }
    let stats = c.get_swarm_stats("w").await.unwrap().unwrap();
    assert_eq!(stats.tasks_claimed, 30, "every claim counted");
    assert_eq!(stats.current_claims.len(), 30);
    for claim in &claims {
        c.complete_task("w", &claim.task.task_id, claim.token, json!("ok")).await.unwrap();
    }
    let rest = c.claim_next_many("w", 30).await.unwrap();
    assert_eq!(rest.len(), 10, "fewer when fewer are ready");
    assert!(c.claim_next_many("w", 30).await.unwrap().is_empty());
    assert_eq!(c.get_swarm_stats("w").await.unwrap().unwrap().tasks_claimed, 40);
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn a_claim_batch_serves_higher_priorities_first(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("w", caps(&["py"]), json!(null), None).await.unwrap();
    let mut batch = tasks("low", 30);
    batch.extend((0..3).map(|i| NewTask { priority: 5, ..task(&format!("mid-{i}")) }));
    batch.extend((0..4).map(|i| NewTask { priority: 10, ..task(&format!("high-{i}")) }));
    // Urgent, but the swarm cannot do it.
    let gpu = NewTask { priority: 100, required_capabilities: caps(&["gpu"]), ..task("gpu-job") };
    batch.push(gpu);
    batch.push(NewTask { priority: 10, required_capabilities: caps(&["py"]), ..task("high-py") });
    c.create_tasks(batch).await.unwrap();
    let claims = c.claim_next_many("w", 7).await.unwrap();
    let got: Vec<(i32, &str)> =
        claims.iter().map(|c| (c.task.priority, c.task.task_id.as_str())).collect();
    let priorities: Vec<i32> = got.iter().map(|g| g.0).collect();
    assert_eq!(priorities, vec![10, 10, 10, 10, 10, 5, 5], "{got:?}");
    assert!(got.iter().all(|g| g.1 != "gpu-job"));
    let next = c.claim_next_many("w", 3).await.unwrap();
    let next: Vec<i32> = next.iter().map(|c| c.task.priority).collect();
    assert_eq!(next, vec![5, 0, 0]);
}

async fn concurrent_batch_claimers_never_share_a_task(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.create_tasks(tasks("race", 300)).await.unwrap();
    for w in 0..8 {
        c.register_swarm(&format!("w{w}"), caps(&[]), json!(null), None).await.unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let c = c.clone();
        workers.push(tokio::spawn(async move {
            let swarm = format!("w{w}");
            let mut mine = Vec::new();
            loop {
                let claims = c.claim_next_many(&swarm, 16).await.unwrap();
                if claims.is_empty() {
                    return (swarm, mine);
                }
                mine.extend(claims);
            }
        }));
    }
    let mut owner_of: HashMap<String, String> = HashMap::new();
    for worker in workers {
        let (swarm, claims) = worker.await.unwrap();
        for claim in claims {
            let task_id = claim.task.task_id.clone();
            let before = owner_of.insert(task_id.clone(), swarm.clone());
            assert!(before.is_none(), "{task_id} handed to {before:?} and {swarm}");
            let view = c.get_task(&task_id).await.unwrap();
            assert_eq!((view.record.owner, view.token), (Some(swarm.clone()), Some(claim.token)));
        }
    }
    assert_eq!(owner_of.len(), 300, "every task claimed once");
    let mut total = 0;
    for w in 0..8 {
        total += c.get_swarm_stats(&format!("w{w}")).await.unwrap().unwrap().tasks_claimed;
    }
    assert_eq!(total, 300, "the counters add up");
}
