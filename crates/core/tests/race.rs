//! The race test: 100 swarms work through 1,000 tasks with random completions,
//! failures and pauses (claims left to lapse), on both backends. Afterwards every
//! task is completed exactly once or dead-lettered, the witness log shows no two
//! live owners of a task at any revision, replays to the final state, and
//! verifies.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::coordinator;
use ifc_core::{CoreConfig, CoreError, NewTask, Reaper, TaskState, WitnessQuery};
use ifc_kv::RangeRequest;
use ifc_testkit::TestStore;
use rand::{Rng, SeedableRng};
use serde_json::json;

ifc_testkit::on_each_backend!(hundred_swarms_thousand_tasks);

const SWARMS: usize = 100;
const TASKS: usize = 1000;

async fn finished(store: &TestStore, namespace: &str) -> i64 {
    let mut total = 0;
    for state in ["completed", "dead"] {
        let prefix = format!("{namespace}/state/{state}/");
        total += store.kv().range(RangeRequest::prefix(prefix).count_only()).await.unwrap().count;
    }
    total
}

async fn hundred_swarms_thousand_tasks(store: TestStore) {
    let config = CoreConfig { claim_timeout_ms: 1000, max_swarms: SWARMS, ..CoreConfig::default() };
    let namespace = config.namespace.clone();
    let (c, _) = coordinator(&store, config);
    let _reaper = Reaper::spawn(c.clone());
    for i in 0..TASKS {
        let task = NewTask {
            task_id: format!("task-{i:04}"),
            task_type: "work".into(),
            metadata: json!(null),
            required_capabilities: Vec::new(),
            priority: (i % 5) as i32,
            max_attempts: Some(3),
            timeout_ms: None,
        };
        c.create_task(task).await.unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..SWARMS {
        let c = c.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let swarm = format!("swarm-{w:03}");
            let session = c.register_swarm(&swarm, Vec::new(), json!(null), None).await.unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let mut beat = tokio::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                if beat.elapsed() > Duration::from_secs(2) {
                    c.heartbeat(&swarm, &session.token).await.unwrap();
                    beat = tokio::time::Instant::now();
                }
                let claim = match c.claim_next(&swarm).await {
                    Ok(Some(claim)) => claim,
                    Ok(None) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(CoreError::Contended(_)) => continue,
                    Err(e) => panic!("{swarm}: claim_next: {e}"),
                };
                let roll: u32 = rng.random_range(0..100);
                let id = claim.task.task_id.clone();
                let outcome = if roll < 70 {
                    c.complete_task(&swarm, &id, claim.token, json!({"by": swarm})).await.map(drop)
                } else if roll < 90 {
                    c.fail_task(&swarm, &id, claim.token, "random failure".into()).await.map(drop)
                } else {
                    // A pause: leave the claim to lapse.
                    Ok(())
                };
                match outcome {
                    // A slow call can outlive the claim; the fence refuses it.
                    Ok(())
                    | Err(CoreError::ClaimLapsed { .. })
                    | Err(CoreError::ClaimReplaced { .. })
                    | Err(CoreError::NotClaimed { .. })
                    | Err(CoreError::NotOwner { .. }) => {}
                    Err(e) => panic!("{swarm}: ending {id}: {e}"),
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while finished(&store, &namespace).await < TASKS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "the swarms did not finish in 240 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // Replay every task's chain: one live owner at a time, and the final state.
    let records = c.witness(&WitnessQuery::default()).await.unwrap();
    let mut owner: HashMap<String, Option<String>> = HashMap::new();
    let mut state: HashMap<String, TaskState> = HashMap::new();
    let mut attempts: HashMap<String, u32> = HashMap::new();
    let mut completions: HashMap<String, u32> = HashMap::new();
    let mut dead = 0;
    for r in records.iter().filter(|r| r.chain.starts_with("task/")) {
        let task = r.task_id.clone().unwrap();
        let held = owner.entry(task.clone()).or_default();
        match r.op.as_str() {
            "task_created" => {}
            "task_claimed" => {
                assert!(
                    held.is_none(),
                    "{task}: claimed by {} at revision {} while {held:?} held it",
                    r.actor,
                    r.revision
                );
                *held = Some(r.actor.clone());
            }
            "task_completed" => {
                assert_eq!(
                    held.as_deref(),
                    Some(r.actor.as_str()),
                    "{task}: completed by a non-owner"
                );
                *held = None;
                *completions.entry(task.clone()).or_default() += 1;
            }
            "task_failed" | "task_requeued" | "task_dead_lettered" => {
                assert!(
                    held.is_some(),
                    "{task}: {} with no owner at revision {}",
                    r.op,
                    r.revision
                );
                *held = None;
                *attempts.entry(task.clone()).or_default() += 1;
            }
            other => panic!("{task}: unexpected op {other}"),
        }
        state.insert(task, r.outcome.parse().unwrap());
    }
    for i in 0..TASKS {
        let id = format!("task-{i:04}");
        let view = c.get_task(&id).await.unwrap();
        assert_eq!(view.record.state, state[&id], "{id}: the log replays to the stored state");
        assert_eq!(view.record.attempts, attempts.get(&id).copied().unwrap_or(0), "{id}: attempts");
        match view.record.state {
            TaskState::Completed => {
                assert_eq!(completions.get(&id), Some(&1), "{id}: completed once")
            }
            TaskState::Dead => {
                assert_eq!(completions.get(&id), None, "{id}: dead yet completed");
                assert_eq!(view.record.attempts, 3);
                dead += 1;
            }
            other => panic!("{id}: ended {other:?}"),
        }
    }
    assert!(dead < TASKS, "some tasks must complete");
    assert!(c.verify_witness().await.unwrap().is_empty(), "the witness log verifies");
    eprintln!(
        "{} completed, {dead} dead-lettered, {} witness records",
        TASKS - dead,
        records.len()
    );
}
