//! Leases that fit the work (a task's own claim lease), refusals that say
//! what happened, lapses that keep their token, idempotent completion and
//! bounded records, on both backends.

mod common;

use common::{caps, coordinator, eventually};
use ifc_core::{
    ClaimOutcome, CoreConfig, CoreError, ERROR_TEXT_LIMIT, HISTORY_LIMIT, MAX_ATTEMPTS_CEILING,
    NewTask, TRUNCATED_MARKER, TaskState,
};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(
    a_task_carries_its_own_claim_lease,
    a_short_task_lease_lapses_under_a_long_default,
    refusals_say_what_happened,
    a_retried_complete_or_fail_answers_the_same,
    a_lapsed_attempt_keeps_its_token,
    records_stay_bounded,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "llm-agent".into(),
        metadata: json!({}),
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

async fn a_task_carries_its_own_claim_lease(store: TestStore) {
    let config = CoreConfig { claim_timeout_ms: 1000, ..CoreConfig::default() };
    let (c, _) = coordinator(&store, config);
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    let long = c.create_task(NewTask { timeout_ms: Some(30_000), ..task("long") }).await.unwrap();
    assert_eq!(long.timeout_ms, 30_000);
    let short = c.create_task(task("short")).await.unwrap();
    assert_eq!(short.timeout_ms, 1000, "the default comes from the config");

    let claim = claimed(c.claim_task("s", "long").await.unwrap());
    let claimed_at = claim.task.claimed_at_ms.unwrap();
    assert!(claim.deadline_ms - claimed_at >= 30_000, "the task's lease, not the default");
    let renewed = c.renew_claim("s", "long", claim.token).await.unwrap();
    assert!(renewed - claimed_at >= 30_000);
    let next = c.claim_next("s").await.unwrap().expect("short is ready");
    assert!(next.deadline_ms - next.task.claimed_at_ms.unwrap() <= 2_000, "the default lease");

    // A push acknowledged takes the task's lease too.
    let pushed = NewTask { timeout_ms: Some(60_000), ..task("pushed") };
    let item = c.push_task_to_swarm("s", pushed).await.unwrap();
    let acked = c.ack_push("s", "pushed", item.token).await.unwrap();
    assert!(acked - item.task.claimed_at_ms.unwrap() >= 60_000);

    for bad in [0, 999, 86_400_001] {
        let refused = c.create_task(NewTask { timeout_ms: Some(bad), ..task("bad") }).await;
        assert!(
            matches!(refused, Err(CoreError::Invalid { field: "timeout_ms", .. })),
            "{bad}: {refused:?}"
        );
    }
    assert!(matches!(c.get_task("bad").await, Err(CoreError::TaskNotFound(_))));
}

async fn a_short_task_lease_lapses_under_a_long_default(store: TestStore) {
    let config = CoreConfig { claim_timeout_ms: 600_000, ..CoreConfig::default() };
    let (c, _) = coordinator(&store, config);
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(NewTask { timeout_ms: Some(1000), ..task("quick") }).await.unwrap();
    claimed(c.claim_task("s", "quick").await.unwrap());
    eventually("the task's own 1 s lease to lapse", || async {
        c.get_task("quick").await.unwrap().lapsed
    })
    .await;
}

async fn refusals_say_what_happened(store: TestStore) {
    let config = CoreConfig { claim_timeout_ms: 1000, ..CoreConfig::default() };
    let (c, _) = coordinator(&store, config);
    c.register_swarm("a", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("b", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(NewTask { max_attempts: Some(2), ..task("t") }).await.unwrap();

    // Never claimed.
    match c.complete_task("a", "t", 1, json!(null)).await {
        Err(CoreError::NotClaimed { detail, .. }) => assert!(detail.contains("ready"), "{detail}"),
        other => panic!("expected not_claimed, got {other:?}"),
    }
    // Lapsed (not yet recorded by anyone): the refusal records and explains it.
    let first = claimed(c.claim_task("a", "t").await.unwrap());
    eventually("the claim to lapse", || async { c.get_task("t").await.unwrap().lapsed }).await;
    match c.renew_claim("a", "t", first.token).await {
        Err(CoreError::ClaimLapsed { token, detail, .. }) => {
            assert_eq!(token, first.token);
            assert!(detail.contains("after a lease of 1000 ms"), "{detail}");
            assert!(detail.contains("requeued at attempt 2/2"), "{detail}");
        }
        other => panic!("expected claim_lapsed, got {other:?}"),
    }
    // Another swarm holds it.
    let second = claimed(c.claim_task("b", "t").await.unwrap());
    match c.complete_task("a", "t", second.token, json!(null)).await {
        Err(CoreError::NotOwner { owner, .. }) => assert_eq!(owner, "b"),
        other => panic!("expected not_owner, got {other:?}"),
    }
    // The last attempt lapses: dead-lettered, and the message says so.
    eventually("the second claim to lapse", || async { c.get_task("t").await.unwrap().lapsed })
        .await;
    match c.fail_task("b", "t", second.token, "late".into()).await {
        Err(CoreError::ClaimLapsed { detail, .. }) => {
            assert!(detail.contains("dead-lettered"), "{detail}")
        }
        other => panic!("expected claim_lapsed, got {other:?}"),
    }
    assert_eq!(c.get_task("t").await.unwrap().state, TaskState::Dead);

    // A newer claim of the same swarm replaced the caller's.
    c.create_task(task("r")).await.unwrap();
    let old = claimed(c.claim_task("a", "r").await.unwrap());
    c.fail_task("a", "r", old.token, "retry me".into()).await.unwrap();
    let new = claimed(c.claim_task("a", "r").await.unwrap());
    match c.renew_claim("a", "r", old.token).await {
        Err(CoreError::ClaimReplaced { current, .. }) => assert_eq!(current, new.token),
        other => panic!("expected claim_replaced, got {other:?}"),
    }
}

async fn a_retried_complete_or_fail_answers_the_same(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("done")).await.unwrap();
    let claim = claimed(c.claim_task("s", "done").await.unwrap());
    let result = json!({"verdict": "approved"});
    let first = c.complete_task("s", "done", claim.token, result.clone()).await.unwrap();
    // The response was lost; the client sends the same request again.
    let again = c.complete_task("s", "done", claim.token, result).await.unwrap();
    assert_eq!(first, again);
    assert!(matches!(
        c.complete_task("s", "done", claim.token, json!("another result")).await,
        Err(CoreError::NotClaimed { .. })
    ));

    c.create_task(task("failed")).await.unwrap();
    let claim = claimed(c.claim_task("s", "failed").await.unwrap());
    let first = c.fail_task("s", "failed", claim.token, "boom".into()).await.unwrap();
    let again = c.fail_task("s", "failed", claim.token, "boom".into()).await.unwrap();
    assert_eq!((first.attempts, again.attempts), (1, 1), "a retried fail uses no attempt");
}

async fn a_lapsed_attempt_keeps_its_token(store: TestStore) {
    // The swarm and the claim both expire: no key of the claim is left.
    let config = CoreConfig { claim_timeout_ms: 1000, swarm_ttl_secs: 1, ..CoreConfig::default() };
    let (c, witnessed) = coordinator(&store, config);
    c.register_swarm("gone", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("claimed")).await.unwrap();
    let claim = claimed(c.claim_task("gone", "claimed").await.unwrap());
    let item = c.push_task_to_swarm("gone", task("acked")).await.unwrap();
    c.ack_push("gone", "acked", item.token).await.unwrap();
    for (id, token) in [("claimed", claim.token), ("acked", item.token)] {
        eventually("the claim to lapse", || async { c.get_task(id).await.unwrap().lapsed }).await;
        eventually("the swarm to expire", || async {
            c.get_swarm("gone").await.unwrap().is_none()
        })
        .await;
        assert!(c.reap_task(id).await.unwrap());
        let history = c.get_task(id).await.unwrap().record.history;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].token, token, "{id}: the lapsed attempt names its claim");
        eventually("the requeue to be witnessed", || async {
            let seen = witnessed.lock().unwrap();
            seen.iter().any(|r| r.op == "task_requeued" && r.task_id.as_deref() == Some(id))
        })
        .await;
        let seen = witnessed.lock().unwrap();
        let requeued = seen
            .iter()
            .find(|r| r.op == "task_requeued" && r.task_id.as_deref() == Some(id))
            .unwrap();
        assert_eq!(requeued.token, Some(token), "{id}: the witness names the claim");
    }
}

async fn records_stay_bounded(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    let over = NewTask { max_attempts: Some(MAX_ATTEMPTS_CEILING + 1), ..task("over") };
    assert!(matches!(
        c.create_task(over).await,
        Err(CoreError::Invalid { field: "max_attempts", .. })
    ));
    let many = NewTask { max_attempts: Some(MAX_ATTEMPTS_CEILING), ..task("many") };
    c.create_task(many).await.unwrap();
    let mut tokens = Vec::new();
    let mut record = None;
    for i in 0..HISTORY_LIMIT + 5 {
        let claim = claimed(c.claim_task("s", "many").await.unwrap());
        tokens.push(claim.token);
        let error = format!("failure {i}: {}", "x".repeat(2 * ERROR_TEXT_LIMIT));
        record = Some(c.fail_task("s", "many", claim.token, error).await.unwrap());
    }
    let record = record.unwrap();
    assert_eq!(record.attempts as usize, HISTORY_LIMIT + 5, "attempts still count them all");
    assert_eq!(record.history.len(), HISTORY_LIMIT, "only the last attempts are kept");
    let kept: Vec<i64> = record.history.iter().map(|a| a.token).collect();
    assert_eq!(kept, tokens[5..], "the last ones, oldest first");

    let error = record.error.as_deref().unwrap();
    assert!(error.len() <= ERROR_TEXT_LIMIT, "{}", error.len());
    assert!(error.starts_with(&format!("failure {}:", HISTORY_LIMIT + 4)));
    assert!(error.ends_with(TRUNCATED_MARKER));
    let last = record.history.last().unwrap();
    assert_eq!(last.error, None, "the last failure's text lives in `error` only");
    let before = &record.history[HISTORY_LIMIT - 2];
    assert!(
        before.error.as_deref().unwrap().starts_with(&format!("failure {}:", HISTORY_LIMIT + 3))
    );
    let stored = serde_json::to_string(&record).unwrap();
    assert_eq!(stored.matches(&format!("failure {}:", HISTORY_LIMIT + 4)).count(), 1);
}
