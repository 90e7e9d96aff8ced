//! Push, blockers and the event stream, on both backends; two coordinator
//! nodes over one etcd.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{caps, coordinator, eventually};
use futures::StreamExt;
use ifc_core::{
    BlockerInfo, BlockerState, ClaimOutcome, Coordinator, CoreConfig, CoreError, CoreStream,
    NewTask, Reaper, TaskState,
};
use ifc_testkit::{Backend, TestStore};
use serde_json::json;

ifc_testkit::on_each_backend!(
    pushes_arrive_in_order_once_across_resubscription,
    a_push_to_an_absent_swarm_waits_in_its_inbox,
    an_unacknowledged_push_returns_to_the_pool,
    decline_and_ack,
    push_takes_ready_tasks_and_refuses_held_ones,
    blockers_reach_the_orchestrator_with_helpers_by_load,
    event_stream_resumes_exactly_and_reports_compaction,
    a_subscriber_that_does_not_read_stalls_no_writer,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "work".into(),
        metadata: json!({"n": id}),
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

async fn next<T>(stream: &mut CoreStream<T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), stream.next())
        .await
        .expect("an item within the wait")
        .expect("the stream is open")
        .expect("no stream error")
}

async fn nothing_more<T: std::fmt::Debug>(stream: &mut CoreStream<T>) {
    let more = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(more.is_err(), "unexpected item {more:?}");
}

async fn pushes_arrive_in_order_once_across_resubscription(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    let mut inbox = c.inbox("s", 0).await.unwrap();
    let mut pushed = Vec::new();
    for i in 0..3 {
        pushed.push(c.push_task_to_swarm("s", task(&format!("p{i}"))).await.unwrap());
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut inbox).await);
    }
    assert_eq!(
        seen.iter().map(|i| i.task.task_id.as_str()).collect::<Vec<_>>(),
        ["p0", "p1", "p2"]
    );
    assert_eq!(
        seen.iter().map(|i| i.token).collect::<Vec<_>>(),
        pushed.iter().map(|p| p.token).collect::<Vec<_>>()
    );
    nothing_more(&mut inbox).await;
    drop(inbox);

    // Away: two more pushes. Back, resuming after the last item it saw.
    for i in 3..5 {
        c.push_task_to_swarm("s", task(&format!("p{i}"))).await.unwrap();
    }
    let mut resumed = c.inbox("s", seen[2].revision).await.unwrap();
    assert_eq!(next(&mut resumed).await.task.task_id, "p3");
    assert_eq!(next(&mut resumed).await.task.task_id, "p4");
    nothing_more(&mut resumed).await;
    // A subscriber with no resume point gets every unacknowledged push.
    let mut fresh = c.inbox("s", 0).await.unwrap();
    let mut all = Vec::new();
    for _ in 0..5 {
        all.push(next(&mut fresh).await.task.task_id);
    }
    assert_eq!(all, ["p0", "p1", "p2", "p3", "p4"]);
    // Acknowledged pushes leave the inbox.
    c.ack_push("s", "p0", seen[0].token).await.unwrap();
    let mut after_ack = c.inbox("s", 0).await.unwrap();
    assert_eq!(next(&mut after_ack).await.task.task_id, "p1");
}

async fn a_push_to_an_absent_swarm_waits_in_its_inbox(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    assert!(matches!(
        c.push_task_to_swarm("ghost", task("t")).await,
        Err(CoreError::NotRegistered(_))
    ));
    assert!(
        matches!(c.get_task("t").await, Err(CoreError::TaskNotFound(_))),
        "a refused push writes nothing"
    );
    c.register_swarm("away", caps(&[]), json!(null), None).await.unwrap();
    let item = c.push_task_to_swarm("away", task("t")).await.unwrap();
    assert_eq!(c.get_task_owner("t").await.unwrap().as_deref(), Some("away"));
    let mut inbox = c.inbox("away", 0).await.unwrap();
    let got = next(&mut inbox).await;
    assert_eq!((got.task.task_id.as_str(), got.token), ("t", item.token));
}

async fn an_unacknowledged_push_returns_to_the_pool(store: TestStore) {
    let config = CoreConfig { push_timeout_ms: 1000, ..CoreConfig::default() };
    let (c, witnessed) = coordinator(&store, config);
    let _reaper = Reaper::spawn(c.clone());
    c.register_swarm("slow", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("other", caps(&[]), json!(null), None).await.unwrap();
    let item = c.push_task_to_swarm("slow", task("t")).await.unwrap();
    eventually("the push to expire", || async {
        let view = c.get_task("t").await.unwrap();
        view.record.state == TaskState::Ready && !view.lapsed
    })
    .await;
    assert_eq!(
        c.get_task("t").await.unwrap().record.attempts,
        0,
        "an expired push uses no attempt"
    );
    // The logger hears of a commit just after it lands: wait for it too.
    eventually("the expiry to reach the witness logger", || async {
        witnessed.lock().unwrap().iter().any(|r| r.op == "push_expired")
    })
    .await;
    assert!(matches!(
        c.ack_push("slow", "t", item.token).await,
        Err(CoreError::ClaimLapsed { .. })
    ));
    let mut inbox = c.inbox("slow", 0).await.unwrap();
    nothing_more(&mut inbox).await;
    assert!(matches!(c.claim_task("other", "t").await.unwrap(), ClaimOutcome::Claimed(_)));
}

async fn decline_and_ack(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("other", caps(&[]), json!(null), None).await.unwrap();
    let declined = c.push_task_to_swarm("s", task("no")).await.unwrap();
    let record = c.decline_push("s", "no", declined.token).await.unwrap();
    assert_eq!((record.state, record.attempts), (TaskState::Ready, 0));
    assert!(matches!(c.claim_task("other", "no").await.unwrap(), ClaimOutcome::Claimed(_)));

    let taken = c.push_task_to_swarm("s", task("yes")).await.unwrap();
    assert!(matches!(
        c.ack_push("other", "yes", taken.token).await,
        Err(CoreError::NotOwner { .. })
    ));
    let deadline = c.ack_push("s", "yes", taken.token).await.unwrap();
    assert!(deadline > 0);
    assert!(matches!(
        c.ack_push("s", "yes", taken.token).await,
        Err(CoreError::AlreadyAcknowledged(_))
    ));
    c.renew_claim("s", "yes", taken.token).await.unwrap();
    let done = c.complete_task("s", "yes", taken.token, json!("ok")).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn push_takes_ready_tasks_and_refuses_held_ones(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("a", caps(&[]), json!(null), None).await.unwrap();
    c.register_swarm("b", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("ready")).await.unwrap();
    let item = c.push_task_to_swarm("b", task("ready")).await.unwrap();
    assert_eq!(item.task.owner.as_deref(), Some("b"));
    assert!(c.claim_next("a").await.unwrap().is_none(), "a pushed task leaves the pool");
    assert!(matches!(
        c.push_task_to_swarm("a", task("ready")).await,
        Err(CoreError::TaskClaimed { .. })
    ));
    let stats = c.get_swarm_stats("b").await.unwrap().unwrap();
    assert_eq!(stats.current_claims, vec!["ready"]);
}

async fn blockers_reach_the_orchestrator_with_helpers_by_load(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    for (id, capabilities) in [
        ("busy", &["x", "y"][..]),
        ("idle", &["x", "y", "z"]),
        ("narrow", &["x"]),
        ("reporter", &["x", "y"]),
    ] {
        c.register_swarm(id, caps(capabilities), json!(null), None).await.unwrap();
    }
    for t in ["b1", "b2"] {
        c.create_task(task(t)).await.unwrap();
        assert!(matches!(c.claim_task("busy", t).await.unwrap(), ClaimOutcome::Claimed(_)));
    }
    c.create_task(task("stuck")).await.unwrap();
    let claim = match c.claim_task("reporter", "stuck").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    let mut stream = c.blockers(None).await.unwrap();
    let info = BlockerInfo {
        blocker_type: "missing_dependency".into(),
        description: "Cannot find NDI SDK headers".into(),
        severity: "high".into(),
        required_capabilities: caps(&["x", "y"]),
        task_id: Some("stuck".into()),
    };
    let blocker_id = c.detect_blocker("reporter", info.clone()).await.unwrap();
    let event = next(&mut stream).await;
    assert_eq!(event.blocker.blocker_id, blocker_id);
    let candidates: Vec<_> =
        event.candidates.iter().map(|h| (h.swarm_id.as_str(), h.current_claims)).collect();
    assert_eq!(
        candidates,
        [("idle", 0), ("busy", 2)],
        "capable, live, least loaded first, reporter excluded"
    );
    // The blocked task keeps its owner and its attempts.
    let stuck = c.get_task("stuck").await.unwrap();
    assert_eq!(
        (stuck.state, stuck.record.attempts, stuck.token),
        (TaskState::Claimed, 0, Some(claim.token))
    );

    let mut helper_inbox = c.inbox("idle", 0).await.unwrap();
    c.assign_helper(&blocker_id, "idle").await.unwrap();
    let help = next(&mut helper_inbox).await;
    assert_eq!(help.blocker_id.as_deref(), Some(blocker_id.as_str()));
    assert_eq!(help.task.metadata["blocked_task_id"], "stuck");
    assert_eq!(c.list_blockers(true).await.unwrap()[0].state, BlockerState::Assigned);
    let resolved = c.resolve_blocker(&blocker_id, "installed the SDK").await.unwrap();
    assert_eq!(resolved.state, BlockerState::Resolved);
    assert!(c.list_blockers(true).await.unwrap().is_empty());
    assert_eq!(c.list_blockers(false).await.unwrap().len(), 1);
    assert!(matches!(
        c.resolve_blocker(&blocker_id, "again").await,
        Err(CoreError::BlockerResolved(_))
    ));
    assert!(matches!(c.detect_blocker("nobody", info).await, Err(CoreError::NotRegistered(_))));
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn event_stream_resumes_exactly_and_reports_compaction(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let mut live = c.events(None).await.unwrap();
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    c.create_task(task("e")).await.unwrap();
    let claim = match c.claim_task("s", "e").await.unwrap() {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    c.renew_claim("s", "e", claim.token).await.unwrap();
    c.complete_task("s", "e", claim.token, json!(null)).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(next(&mut live).await);
    }
    let ops: Vec<_> = events.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(
        ops,
        ["swarm_registered", "task_created", "task_claimed", "task_renewed", "task_completed"]
    );
    assert_eq!(events[2].token, Some(claim.token));
    assert_eq!(events[3].token, Some(claim.token));
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));

    // Resume after the claim: exactly the events that followed.
    let mut resumed = c.events(Some(events[2].revision)).await.unwrap();
    let again: Vec<_> = [next(&mut resumed).await, next(&mut resumed).await].to_vec();
    assert_eq!(again, events[3..].to_vec());
    nothing_more(&mut resumed).await;

    // A revision the store no longer keeps is a typed error, not silence.
    let current = c.store().range(ifc_kv::RangeRequest::key("\0")).await.unwrap().revision;
    c.store().compact(current).await.unwrap();
    let mut old = c.events(Some(0)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(15), old.next()).await.unwrap().unwrap();
    assert!(matches!(first, Err(CoreError::Compacted { .. })), "{first:?}");
}

async fn a_subscriber_that_does_not_read_stalls_no_writer(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let mut idle = c.events(None).await.unwrap();
    // Far more events than any buffer on the way holds, with nobody reading.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    c.create_task(task(&format!("w{w}-{i}"))).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(120), writer)
            .await
            .expect("writers finish")
            .unwrap();
    }
    // The idle subscriber still gets everything, in order, from the history.
    let mut last = 0;
    for _ in 0..1200 {
        let event = next(&mut idle).await;
        assert!(event.revision > last);
        last = event.revision;
    }
}

/// Two coordinator nodes, each with its own etcd connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_one_etcd_see_each_others_pushes_and_blockers() {
    let store = TestStore::start(Backend::Etcd).await;
    let etcd = store.etcd.as_ref().unwrap();
    let node_a = Arc::new(Coordinator::new(Arc::new(etcd.connect().await), CoreConfig::default()));
    let node_b = Arc::new(Coordinator::new(Arc::new(etcd.connect().await), CoreConfig::default()));
    node_a.register_swarm("worker", caps(&["x"]), json!(null), None).await.unwrap();
    node_b.register_swarm("reporter", caps(&["x"]), json!(null), None).await.unwrap();

    let mut inbox_on_b = node_b.inbox("worker", 0).await.unwrap();
    let mut blockers_on_a = node_a.blockers(None).await.unwrap();
    let pushed = node_a.push_task_to_swarm("worker", task("cross")).await.unwrap();
    assert_eq!(next(&mut inbox_on_b).await.token, pushed.token);
    let blocker_id = node_b
        .detect_blocker(
            "reporter",
            BlockerInfo {
                blocker_type: "stuck".into(),
                description: "help".into(),
                severity: "high".into(),
                required_capabilities: caps(&["x"]),
                task_id: None,
            },
        )
        .await
        .unwrap();
    let event = next(&mut blockers_on_a).await;
    assert_eq!(event.blocker.blocker_id, blocker_id);
    assert_eq!(event.candidates.len(), 1);
    assert_eq!(event.candidates[0].swarm_id, "worker");

    // Node A goes away: everything it acknowledged is still there for node B.
    let more = node_a.push_task_to_swarm("worker", task("after")).await.unwrap();
    drop(blockers_on_a);
    drop(node_a);
    assert_eq!(next(&mut inbox_on_b).await.token, more.token);
    assert_eq!(node_b.get_task_owner("after").await.unwrap().as_deref(), Some("worker"));
    node_b.ack_push("worker", "after", more.token).await.unwrap();
    assert!(node_b.verify_witness().await.unwrap().is_empty());
}
