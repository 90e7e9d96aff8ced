//! The task lifecycle, claims, fencing, leases and the witness log, on both
//! backends.

mod common;

use std::collections::HashSet;

use common::{caps, coordinator, eventually};
use ifc_core::{
    AttemptOutcome, ClaimOutcome, CoreConfig, CoreError, NewTask, Reaper, TaskState, WitnessQuery,
};
use ifc_kv::{DeleteRequest, PutRequest, RangeRequest};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(
    seed_complete_workflow,
    concurrent_claims_have_exactly_one_winner,
    a_lapsed_claim_is_fenced_and_the_new_owner_completes,
    failures_retry_then_dead_letter,
    a_release_gives_the_task_back_without_using_an_attempt,
    unregister_returns_claims_to_the_pool_at_once,
    an_expired_swarm_returns_its_claims_through_the_reaper,
    claim_next_follows_priority_age_and_capabilities,
    a_higher_priority_is_always_served_first,
    a_nodes_queue_window_never_hides_a_task,
    concurrent_claim_next_callers_get_different_tasks,
    create_is_idempotent_for_the_same_content,
    cancel_ends_a_task_and_fences_its_owner,
    list_tasks_pages_by_state,
    witness_log_is_complete_ordered_and_tamper_evident,
    bad_input_is_refused_and_changes_nothing,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "code-review".into(),
        metadata: json!({"language": "python"}),
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

fn claimed(outcome: ClaimOutcome) -> ifc_core::Claim {
    match outcome {
        ClaimOutcome::Claimed(claim) => *claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// The seed's "Complete Workflow Example".
async fn seed_complete_workflow(store: TestStore) {
    let (c, witnessed) = coordinator(&store, CoreConfig::default());
    c.register_swarm("swarm-1", caps(&["code-analysis:python"]), json!(null), None).await.unwrap();
    c.register_swarm("swarm-2", caps(&["code-analysis:rust"]), json!(null), None).await.unwrap();
    let created = c.create_task(task("review-pr-123")).await.unwrap();
    assert_eq!(created.state, TaskState::Ready);
    assert_eq!(c.get_task_owner("review-pr-123").await.unwrap().as_deref(), Some("unclaimed"));

    let claim = claimed(c.claim_task("swarm-1", "review-pr-123").await.unwrap());
    assert!(claim.token > 0);
    assert!(claim.deadline_ms > 0);
    assert_eq!(c.get_task_owner("review-pr-123").await.unwrap().as_deref(), Some("swarm-1"));
    let result = json!({"status": "approved", "issues": 0});
    let done =
        c.complete_task("swarm-1", "review-pr-123", claim.token, result.clone()).await.unwrap();
    assert_eq!((done.state, done.result), (TaskState::Completed, Some(result)));

    match c.claim_task("swarm-2", "review-pr-123").await.unwrap() {
        ClaimOutcome::Finished { state } => assert_eq!(state, TaskState::Completed),
        other => panic!("swarm 2 must not get a completed task: {other:?}"),
    }
    assert_eq!(
        c.get_task_owner("review-pr-123").await.unwrap().as_deref(),
        Some("completed:swarm-1")
    );
    let stats = c.get_swarm_stats("swarm-1").await.unwrap().unwrap();
    assert_eq!((stats.tasks_claimed, stats.task_count, stats.tasks_failed), (1, 1, 0));
    assert!(stats.current_claims.is_empty());
    assert!(c.get_swarm_stats("nobody").await.unwrap().is_none());
    assert!(matches!(
        c.claim_task("swarm-1", "no-such-task").await,
        Err(CoreError::TaskNotFound(_))
    ));
    assert_eq!(c.get_task_owner("no-such-task").await.unwrap(), None);

    let ops: Vec<String> = witnessed.lock().unwrap().iter().map(|r| r.op.clone()).collect();
    assert_eq!(
        ops,
        vec![
            "swarm_registered",
            "swarm_registered",
            "task_created",
            "task_claimed",
            "task_completed"
        ]
    );
}

async fn concurrent_claims_have_exactly_one_winner(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    for i in 0..16 {
        c.register_swarm(&format!("s{i}"), caps(&[]), json!(null), None).await.unwrap();
    }
    c.create_task(task("hot")).await.unwrap();
    let mut racers = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        racers.push(tokio::spawn(
            async move { c.claim_task(&format!("s{i}"), "hot").await.unwrap() },
        ));
    }
    let mut winners = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            ClaimOutcome::Claimed(claim) => winners.push(*claim),
            ClaimOutcome::AlreadyClaimed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    let owner = c.get_task_owner("hot").await.unwrap().unwrap();
    assert_eq!(Some(owner), winners[0].task.owner);
}

async fn a_lapsed_claim_is_fenced_and_the_new_owner_completes(store: TestStore) {
    let config = CoreConfig { claim_timeout_ms: 1000, ..CoreConfig::default() };
    let (c, _) = coordinator(&store, config);
    c.register_swarm("paused", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("fresh", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("t")).await.unwrap();
    let old = claimed(c.claim_task("paused", "t").await.unwrap());
    // "paused" stops renewing (a GC pause, a partition): its claim lapses.
    eventually("the claim to lapse", || async { c.get_task("t").await.unwrap().lapsed }).await;
    let new = claimed(c.claim_task("fresh", "t").await.unwrap());
    assert!(new.token > old.token, "tokens only grow");
    assert_eq!(new.task.attempts, 1, "the lapse used an attempt");
    match c.complete_task("paused", "t", old.token, json!("stale")).await {
        Err(CoreError::ClaimLapsed { token, detail, .. }) => {
            assert_eq!(token, old.token);
            assert!(detail.contains("after a lease of 1000 ms"), "{detail}");
            assert!(detail.contains("requeued at attempt 2/3"), "{detail}");
        }
        other => panic!("the paused swarm must be told its claim lapsed, got {other:?}"),
    }
    assert!(matches!(
        c.complete_task("fresh", "t", old.token, json!("wrong token")).await,
        Err(CoreError::ClaimReplaced { .. })
    ));
    assert!(matches!(
        c.renew_claim("paused", "t", old.token).await,
        Err(CoreError::ClaimLapsed { .. })
    ));
    let deadline = c.renew_claim("fresh", "t", new.token).await.unwrap();
    assert!(deadline >= new.deadline_ms);
    let done = c.complete_task("fresh", "t", new.token, json!("ok")).await.unwrap();
    assert_eq!(done.owner.as_deref(), Some("fresh"));
    assert_eq!(done.history.len(), 2);
    assert!(matches!(
        c.complete_task("fresh", "t", new.token, json!("twice")).await,
        Err(CoreError::NotClaimed { .. })
    ));
}

async fn failures_retry_then_dead_letter(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(NewTask { max_attempts: Some(2), ..task("flaky") }).await.unwrap();
    let first = claimed(c.claim_task("s", "flaky").await.unwrap());
    let after_one =
        c.fail_task("s", "flaky", first.token, "ImportError: numpy".into()).await.unwrap();
    assert_eq!((after_one.state, after_one.attempts), (TaskState::Ready, 1));
    assert_eq!(c.get_task_owner("flaky").await.unwrap().as_deref(), Some("unclaimed"));
    let second = claimed(c.claim_task("s", "flaky").await.unwrap());
    assert!(second.token > first.token);
    let dead = c.fail_task("s", "flaky", second.token, "again".into()).await.unwrap();
    assert_eq!((dead.state, dead.attempts), (TaskState::Dead, 2));
    assert_eq!(dead.error.as_deref(), Some("again"));
    assert_eq!(c.get_task_owner("flaky").await.unwrap().as_deref(), Some("dead"));
    assert!(matches!(
        c.claim_task("s", "flaky").await.unwrap(),
        ClaimOutcome::Finished { state: TaskState::Dead }
    ));
    let stats = c.get_swarm_stats("s").await.unwrap().unwrap();
    assert_eq!((stats.tasks_claimed, stats.tasks_failed), (2, 2));

    // With a backoff, a failed task waits before it can be claimed again.
    let config = CoreConfig { retry_backoff_ms: 60_000, ..CoreConfig::default() };
    let (slow, _) = coordinator(&store, config);
    slow.create_task(task("later")).await.unwrap();
    let claim = claimed(slow.claim_task("s", "later").await.unwrap());
    slow.fail_task("s", "later", claim.token, "busy".into()).await.unwrap();
    assert!(matches!(
        slow.claim_task("s", "later").await.unwrap(),
        ClaimOutcome::BackingOff { .. }
    ));
}

async fn a_release_gives_the_task_back_without_using_an_attempt(store: TestStore) {
    let config = CoreConfig { retry_backoff_ms: 60_000, ..CoreConfig::default() };
    let (c, seen) = coordinator(&store, config);
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("other", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(NewTask { max_attempts: Some(1), ..task("long") }).await.unwrap();
    let first = claimed(c.claim_task("s", "long").await.unwrap());
    // Only the holder may release.
    assert!(c.release_claim("other", "long", first.token).await.is_err());
    let released = c.release_claim("s", "long", first.token).await.unwrap();
    assert_eq!((released.state, released.attempts), (TaskState::Ready, 0));
    let last = released.history.last().unwrap();
    assert_eq!((last.outcome, last.token), (AttemptOutcome::Released, first.token));
    // A retry after a lost response gets the same answer.
    let again = c.release_claim("s", "long", first.token).await.unwrap();
    assert_eq!(again.state, TaskState::Ready);
    // No backoff and no attempt used: the one attempt is still there to use.
    let second = claimed(c.claim_task("other", "long").await.unwrap());
    assert!(second.token > first.token);
    // The release already happened, so a late retry still answers with the
    // task as it stands, and changes nothing: the new claim holds.
    let late = c.release_claim("s", "long", first.token).await.unwrap();
    assert_eq!((late.state, late.owner.as_deref()), (TaskState::Claimed, Some("other")));
    // A token that never released is refused.
    assert!(c.release_claim("s", "long", second.token).await.is_err(), "not the holder");
    let done = c.complete_task("other", "long", second.token, json!("ok")).await.unwrap();
    assert_eq!((done.state, done.attempts), (TaskState::Completed, 0));
    let ops: Vec<_> = seen.lock().unwrap().iter().map(|r| r.op.as_str().to_string()).collect();
    assert!(ops.iter().any(|op| op == "task_released"), "{ops:?}");
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn unregister_returns_claims_to_the_pool_at_once(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let leaving = c.register_swarm("leaving", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("staying", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("a")).await.unwrap();
    c.create_task(task("b")).await.unwrap();
    let claim_a = claimed(c.claim_task("leaving", "a").await.unwrap());
    claimed(c.claim_task("leaving", "b").await.unwrap());
    let stats = c.get_swarm_stats("leaving").await.unwrap().unwrap();
    assert_eq!(stats.current_claims, vec!["a", "b"]);

    c.unregister_swarm("leaving", &leaving.token).await.unwrap();
    for id in ["a", "b"] {
        let view = c.get_task(id).await.unwrap();
        assert_eq!((view.state, view.lapsed, view.record.attempts), (TaskState::Ready, false, 1));
    }
    assert!(matches!(
        c.complete_task("leaving", "a", claim_a.token, json!(null)).await,
        Err(CoreError::ClaimLapsed { .. })
    ));
    claimed(c.claim_task("staying", "a").await.unwrap());
}

async fn an_expired_swarm_returns_its_claims_through_the_reaper(store: TestStore) {
    let config = CoreConfig { swarm_ttl_secs: 1, ..CoreConfig::default() };
    let (c, witnessed) = coordinator(&store, config);
    let _reaper = Reaper::spawn(c.clone());
    c.register_swarm("mortal", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("orphan")).await.unwrap();
    claimed(c.claim_task("mortal", "orphan").await.unwrap());
    // No heartbeats: the swarm's lease runs out, the store deletes its record and
    // holdings, and the reaper writes what that means.
    eventually("the reaper to requeue the task", || async {
        let view = c.get_task("orphan").await.unwrap();
        view.record.state == TaskState::Ready && !view.lapsed
    })
    .await;
    eventually("the swarm's expiry to be witnessed", || async {
        witnessed.lock().unwrap().iter().any(|r| r.op == "swarm_expired")
    })
    .await;
    assert!(c.get_swarm("mortal").await.unwrap().is_none());
    let view = c.get_task("orphan").await.unwrap();
    assert_eq!(view.record.attempts, 1);
    assert_eq!(view.record.history[0].swarm_id, "mortal");
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn claim_next_follows_priority_age_and_capabilities(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("py", caps(&["python", "review"]), json!(null), None).await.unwrap();
    let mk = |id: &str, priority: i32, needs: &[&str]| NewTask {
        priority,
        required_capabilities: caps(needs),
        ..task(id)
    };
    c.create_task(mk("old-normal", 0, &["python"])).await.unwrap();
    c.create_task(mk("rust-urgent", 9, &["rust"])).await.unwrap();
    c.create_task(mk("urgent", 5, &["review", "python"])).await.unwrap();
    c.create_task(mk("new-normal", 0, &[])).await.unwrap();
    c.create_task(mk("low", -3, &["python"])).await.unwrap();
    let mut order = Vec::new();
    while let Some(claim) = c.claim_next("py").await.unwrap() {
        order.push(claim.task.task_id);
    }
    // Priority is strict; claim_next spreads callers only among tasks of equal
    // priority, so the two normal ones may come in either order.
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order[0], "urgent", "{order:?}");
    let middle: HashSet<_> = order[1..3].iter().map(String::as_str).collect();
    assert_eq!(middle, HashSet::from(["old-normal", "new-normal"]), "{order:?}");
    assert_eq!(order[3], "low", "never the rust task: {order:?}");
    assert_eq!(c.get_task_owner("rust-urgent").await.unwrap().as_deref(), Some("unclaimed"));
    assert!(matches!(c.claim_task("py", "rust-urgent").await, Err(CoreError::Incapable { .. })));
}

/// The trial: one priority-1000 task among ten priority-0 tasks,
/// uncontended; claim_next hands out the urgent one first every time.
async fn a_higher_priority_is_always_served_first(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("w", Vec::new(), json!(null), None).await.unwrap();
    for trial in 0..20 {
        for n in 0..10 {
            c.create_task(task(&format!("t{trial}-normal-{n}"))).await.unwrap();
        }
        let urgent = format!("t{trial}-urgent");
        c.create_task(NewTask { priority: 1000, ..task(&urgent) }).await.unwrap();
        let first = c.claim_next("w").await.unwrap().expect("a ready task");
        assert_eq!(first.task.task_id, urgent, "trial {trial}");
        // Drain the rest so the next trial starts from an empty queue.
        while let Some(claim) = c.claim_next("w").await.unwrap() {
            assert_ne!(claim.task.task_id, urgent);
        }
    }

    // An urgent task waiting out its retry backoff does not hide the others.
    let config = CoreConfig { retry_backoff_ms: 60_000, ..CoreConfig::default() };
    let (slow, _) = coordinator(&store, config);
    slow.create_task(NewTask { priority: 1000, ..task("urgent-flaky") }).await.unwrap();
    slow.create_task(task("normal")).await.unwrap();
    let claim = slow.claim_next("w").await.unwrap().expect("a ready task");
    assert_eq!(claim.task.task_id, "urgent-flaky");
    slow.fail_task("w", "urgent-flaky", claim.token, "rate limited".into()).await.unwrap();
    let next = slow.claim_next("w").await.unwrap().expect("the normal task");
    assert_eq!(next.task.task_id, "normal");
    assert!(slow.claim_next("w").await.unwrap().is_none(), "the urgent one is backing off");
}

/// claim_next reads a queue within a window of its first keys (see
/// `queue_head.rs`): a task that sorts before the window's end (a higher
/// priority) is still served first, and once another node has taken what the
/// window held, the node reads on past it, down to the lowest priority.
async fn a_nodes_queue_window_never_hides_a_task(store: TestStore) {
    let (a, _) = coordinator(&store, CoreConfig::default());
    let (b, _) = coordinator(&store, CoreConfig::default());
    a.register_swarm("w", Vec::new(), json!(null), None).await.unwrap();
    // More tasks than one window holds (1,024).
    let creators: Vec<_> = (0..16)
        .map(|chunk| {
            let a = a.clone();
            tokio::spawn(async move {
                for i in (chunk..1100).step_by(16) {
                    a.create_task(task(&format!("deep-{i:04}"))).await.unwrap();
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await.unwrap();
    }
    let mut claimed = HashSet::new();
    let first = a.claim_next("w").await.unwrap().expect("a ready task");
    claimed.insert(first.task.task_id);

    a.create_task(NewTask { priority: 5, ..task("urgent") }).await.unwrap();
    a.create_task(NewTask { priority: -1, ..task("low") }).await.unwrap();
    let urgent = a.claim_next("w").await.unwrap().expect("the urgent task");
    assert_eq!(urgent.task.task_id, "urgent");

    // Another node takes most of what a's window holds.
    for _ in 0..1000 {
        let claim = b.claim_next("w").await.unwrap().expect("a ready task");
        assert!(claimed.insert(claim.task.task_id.clone()), "{} twice", claim.task.task_id);
    }
    let mut last = None;
    while let Some(claim) = a.claim_next("w").await.unwrap() {
        assert!(claimed.insert(claim.task.task_id.clone()), "{} twice", claim.task.task_id);
        last = Some(claim.task.task_id);
    }
    assert_eq!(claimed.len(), 1101, "every deep task and the low one, each once");
    assert_eq!(last.as_deref(), Some("low"), "the lowest priority comes last");
}

async fn concurrent_claim_next_callers_get_different_tasks(store: TestStore) {
    // 100 callers over 10,000 ready tasks, as the issue asks.
    let (c, _) = coordinator(&store, CoreConfig { max_swarms: 1000, ..CoreConfig::default() });
    let creators: Vec<_> = (0..16)
        .map(|chunk| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in (chunk..10_000).step_by(16) {
                    let t = NewTask { priority: i % 3, ..task(&format!("job-{i:05}")) };
                    c.create_task(t).await.unwrap();
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await.unwrap();
    }
    for i in 0..100 {
        c.register_swarm(&format!("w{i}"), caps(&[]), json!(null), None).await.unwrap();
    }
    let mut workers = Vec::new();
    for i in 0..100 {
        let c = c.clone();
        workers.push(tokio::spawn(async move { c.claim_next(&format!("w{i}")).await.unwrap() }));
    }
    let mut got = HashSet::new();
    for worker in workers {
        let claim = worker.await.unwrap().expect("a task for every caller");
        assert!(got.insert(claim.task.task_id.clone()), "{} handed out twice", claim.task.task_id);
    }
    assert_eq!(got.len(), 100);
}

async fn create_is_idempotent_for_the_same_content(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let first = c.create_task(task("same")).await.unwrap();
    let again = c.create_task(task("same")).await.unwrap();
    assert_eq!(first, again);
    let other = NewTask { metadata: json!({"language": "rust"}), ..task("same") };
    assert!(matches!(c.create_task(other).await, Err(CoreError::TaskExists(_))));
}

async fn cancel_ends_a_task_and_fences_its_owner(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("idle")).await.unwrap();
    c.create_task(task("busy")).await.unwrap();
    c.create_task(task("done")).await.unwrap();
    assert_eq!(c.cancel_task("idle").await.unwrap().state, TaskState::Cancelled);
    let busy = claimed(c.claim_task("s", "busy").await.unwrap());
    c.cancel_task("busy").await.unwrap();
    assert!(matches!(
        c.complete_task("s", "busy", busy.token, json!(null)).await,
        Err(CoreError::NotClaimed { .. })
    ));
    let done = claimed(c.claim_task("s", "done").await.unwrap());
    c.complete_task("s", "done", done.token, json!(null)).await.unwrap();
    assert!(matches!(c.cancel_task("done").await, Err(CoreError::TaskFinished { .. })));
    assert_eq!(c.cancel_task("idle").await.unwrap().state, TaskState::Cancelled, "idempotent");
    assert!(c.claim_next("s").await.unwrap().is_none(), "nothing left in the pool");
    assert_eq!(c.get_task_owner("busy").await.unwrap().as_deref(), Some("cancelled"));
}

async fn list_tasks_pages_by_state(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    for i in 0..7 {
        c.create_task(task(&format!("t{i}"))).await.unwrap();
    }
    claimed(c.claim_task("s", "t3").await.unwrap());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c.list_tasks(TaskState::Ready, after.as_deref(), 2).await.unwrap();
        seen.extend(page.tasks.iter().map(|t| t.record.task_id.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec!["t0", "t1", "t2", "t4", "t5", "t6"]);
    let claimed_page = c.list_tasks(TaskState::Claimed, None, 10).await.unwrap();
    assert_eq!(claimed_page.tasks.len(), 1);
    assert!(claimed_page.tasks[0].token.is_some());
}

async fn witness_log_is_complete_ordered_and_tamper_evident(store: TestStore) {
    let (c, logged) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    for id in ["w1", "w2"] {
        c.create_task(task(id)).await.unwrap();
        let claim = claimed(c.claim_task("s", id).await.unwrap());
        c.complete_task("s", id, claim.token, json!({"id": id})).await.unwrap();
    }
    let all = c.witness(&WitnessQuery::default()).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].revision < w[1].revision), "commit order");
    let logged = logged.lock().unwrap().clone();
    assert_eq!(logged, all, "the logger saw every record, as stored");
    let w1 = c
        .witness(&WitnessQuery { task_id: Some("w1".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(
        w1.iter().map(|r| r.op.as_str()).collect::<Vec<_>>(),
        ["task_created", "task_claimed", "task_completed"]
    );
    assert_eq!(w1[1].token, Some(w1[1].revision), "a claim's token is its own revision");
    assert_eq!(w1[2].token, Some(w1[1].revision));
    let by_swarm = c
        .witness(&WitnessQuery { swarm_id: Some("s".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_swarm.len(), 5);
    let export = c.export_witness().await.unwrap();
    assert_eq!(export.lines().count(), 7);
    assert!(c.verify_witness().await.unwrap().is_empty());

    // Tamper with the store directly, as an attacker with store access would.
    let kv = store.kv();
    let key = c.keys().witness_record("task/w1", 2);
    let stored = kv.range(RangeRequest::key(key.clone())).await.unwrap().kvs[0].value.clone();
    let edited = String::from_utf8(stored.clone())
        .unwrap()
        .replace("\"actor\":\"s\"", "\"actor\":\"mallory\"");
    kv.put(PutRequest::new(key.clone(), edited)).await.unwrap();
    let problems = c.verify_witness().await.unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].chain.as_str(), problems[0].seq), ("task/w1", 2));
    assert!(problems[0].problem.contains("edited"), "{}", problems[0].problem);
    kv.put(PutRequest::new(key.clone(), stored)).await.unwrap();
    let problems = c.verify_witness().await.unwrap();
    assert!(problems.iter().all(|p| p.problem.contains("reordered")), "{problems:?}");

    let tail = c.keys().witness_record("task/w2", 3);
    kv.delete(DeleteRequest::key(tail)).await.unwrap();
    let problems = c.verify_witness().await.unwrap();
    assert!(
        problems.iter().any(|p| p.chain == "task/w2" && p.problem.contains("tail removed")),
        "{problems:?}"
    );
    let middle = c.keys().witness_record("task/w1", 1);
    kv.delete(DeleteRequest::key(middle)).await.unwrap();
    let problems = c.verify_witness().await.unwrap();
    assert!(problems.iter().any(|p| p.chain == "task/w1" && p.seq == 1), "{problems:?}");
}

async fn bad_input_is_refused_and_changes_nothing(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig { max_json_bytes: 100, ..CoreConfig::default() });
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("real")).await.unwrap();
    let claim = claimed(c.claim_task("s", "real").await.unwrap());
    let kv = store.kv();
    let before = kv.range(RangeRequest::prefix("")).await.unwrap();
    let invalid = |r: Result<(), CoreError>, what: &str| match r {
        Err(CoreError::Invalid { .. }) => {}
        other => panic!("{what}: expected Invalid, got {other:?}"),
    };
    invalid(c.create_task(task("")).await.map(drop), "empty id");
    invalid(c.create_task(task("a/b")).await.map(drop), "slash");
    invalid(c.create_task(task("nul\0")).await.map(drop), "control");
    invalid(c.create_task(task(&"x".repeat(257))).await.map(drop), "long id");
    invalid(
        c.create_task(NewTask { task_type: String::new(), ..task("t") }).await.map(drop),
        "empty type",
    );
    invalid(
        c.create_task(NewTask { metadata: json!("y".repeat(200)), ..task("t") }).await.map(drop),
        "big metadata",
    );
    invalid(
        c.create_task(NewTask { required_capabilities: caps(&[" "]), ..task("t") }).await.map(drop),
        "blank capability",
    );
    invalid(
        c.create_task(NewTask { max_attempts: Some(0), ..task("t") }).await.map(drop),
        "zero attempts",
    );
    invalid(c.claim_task("s", "../etc").await.map(drop), "claim id");
    invalid(c.claim_task("", "real").await.map(drop), "claim swarm");
    invalid(
        c.complete_task("s", "real", claim.token, json!("z".repeat(200))).await.map(drop),
        "big result",
    );
    invalid(c.fail_task("s", "real", claim.token, "e".repeat(200)).await.map(drop), "big error");
    invalid(c.list_tasks(TaskState::Ready, Some("bad/cursor"), 10).await.map(drop), "cursor");
    let after = kv.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(after, before, "bad input wrote nothing");
}
