//! Retention on both backends: finished tasks, their index keys and their
//! witness chains go; live tasks stay; the log still verifies from its
//! checkpoints; the archive of pruned records verifies and shows tampering.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{caps, coordinator};
use futures::TryStreamExt;
use ifc_core::witness_archive;
use ifc_core::{ClaimOutcome, CoreConfig, CoreError, NewTask, Retention};
use ifc_kv::{DeleteRequest, PutRequest, RangeRequest};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(
    retention_prunes_finished_tasks_and_keeps_the_audit_verifiable,
    finished_tasks_are_indexed_by_when_they_finished,
    a_pass_prunes_only_what_is_due_in_batches,
    tasks_finished_before_the_index_are_indexed_then_pruned,
    a_task_rewritten_after_it_finished_is_pruned_on_the_next_pass,
);

fn task(id: &str) -> NewTask {
    NewTask {
        task_id: id.into(),
        task_type: "code-review".into(),
        metadata: json!(null),
        required_capabilities: Vec::new(),
        priority: 0,
        max_attempts: None,
        timeout_ms: None,
    }
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    std::env::temp_dir().join(format!("ifc-archive-{}-{}", std::process::id(), nanos.as_nanos()))
}

async fn retention_prunes_finished_tasks_and_keeps_the_audit_verifiable(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let kv = store.kv();
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    for id in ["done", "cancelled", "waiting", "working"] {
        c.create_task(task(id)).await.unwrap();
    }
    let ClaimOutcome::Claimed(claim) = c.claim_task("s", "done").await.unwrap() else {
        panic!("no claim")
    };
    c.complete_task("s", "done", claim.token, json!({"ok": true})).await.unwrap();
    c.cancel_task("cancelled").await.unwrap();
    let ClaimOutcome::Claimed(_) = c.claim_task("s", "working").await.unwrap() else {
        panic!("no claim")
    };

    let archive = scratch_dir();
    let retention = Retention {
        keep: Duration::from_millis(1),
        every: Duration::from_secs(1),
        archive: Some(archive.clone()),
    };
    // Off: nothing goes.
    let off = Retention { keep: Duration::ZERO, ..retention.clone() };
    assert_eq!(c.prune_finished(&off).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await; // older than `keep`
    assert_eq!(c.prune_finished(&retention).await.unwrap(), 2);
    assert_eq!(c.prune_finished(&retention).await.unwrap(), 0, "a second pass finds nothing");

    for gone in ["done", "cancelled"] {
        assert!(matches!(c.get_task(gone).await, Err(CoreError::TaskNotFound(_))), "{gone}");
        let task_keys = kv.range(RangeRequest::prefix(c.keys().task_dir(gone))).await.unwrap();
        assert!(task_keys.kvs.is_empty(), "{gone}'s keys are removed");
        let chain = format!("task/{gone}");
        let records =
            kv.range(RangeRequest::prefix(c.keys().witness_records(&chain))).await.unwrap();
        assert!(records.kvs.is_empty(), "{gone}'s witness records are removed");
    }
    for state in ["completed", "cancelled"] {
        let index = kv.range(RangeRequest::prefix(c.keys().state_index(state))).await.unwrap();
        assert!(index.kvs.is_empty(), "the {state} index is empty");
    }
    assert!(c.get_task("waiting").await.is_ok(), "a ready task stays");
    assert!(c.get_task("working").await.is_ok(), "a claimed task stays");
    assert!(c.verify_witness().await.unwrap().is_empty(), "what remains verifies");

    // A pruned id used again starts a chain that verifies too.
    c.create_task(task("done")).await.unwrap();
    assert!(c.verify_witness().await.unwrap().is_empty());

    let checkpoints: HashMap<_, _> =
        c.witness_checkpoints().map_ok(|cp| (cp.chain.clone(), cp)).try_collect().await.unwrap();
    assert_eq!(checkpoints.len(), 2);
    let report = witness_archive::verify(&archive, &checkpoints).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (report.chains, report.records),
        (2, 5),
        "created+claimed+completed, created+cancelled"
    );

    // Tamper with the archive: the check finds it.
    let file = std::fs::read_dir(&archive).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"actor\":\"s\"", "\"actor\":\"mallory\"", 1)).unwrap();
    let report = witness_archive::verify(&archive, &checkpoints).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].problem.contains("edited"), "{:?}", report.problems);
    std::fs::remove_dir_all(&archive).unwrap();
}

/// Runs `id` through claim → complete as swarm `s`.
async fn complete(c: &ifc_core::Coordinator, id: &str) {
    c.create_task(task(id)).await.unwrap();
    let ClaimOutcome::Claimed(claim) = c.claim_task("s", id).await.unwrap() else {
        panic!("no claim of {id}")
    };
    c.complete_task("s", id, claim.token, json!(null)).await.unwrap();
}

/// The finished-time index as (task, state) pairs, oldest first.
async fn finished_index(store: &TestStore, c: &ifc_core::Coordinator) -> Vec<(String, String)> {
    let index = store.kv().range(RangeRequest::prefix(c.keys().finished_index())).await.unwrap();
    index
        .kvs
        .iter()
        .map(|kv| {
            let key = String::from_utf8(kv.key.clone()).unwrap();
            let task_id = key.rsplit('/').next().unwrap().to_string();
            (task_id, String::from_utf8(kv.value.clone()).unwrap())
        })
        .collect()
}

fn pair(task_id: &str, state: &str) -> (String, String) {
    (task_id.into(), state.into())
}

async fn finished_tasks_are_indexed_by_when_they_finished(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    // A few ms apart, so the index orders them by time, not by id.
    let tick = || tokio::time::sleep(Duration::from_millis(3));
    complete(&c, "done").await;
    tick().await;
    c.create_task(task("cancelled")).await.unwrap();
    c.cancel_task("cancelled").await.unwrap();
    tick().await;
    c.create_task(NewTask { max_attempts: Some(1), ..task("dead") }).await.unwrap();
    let ClaimOutcome::Claimed(claim) = c.claim_task("s", "dead").await.unwrap() else {
        panic!("no claim")
    };
    let dead = c.fail_task("s", "dead", claim.token, "boom".into()).await.unwrap();
    assert_eq!(dead.state.as_str(), "dead");
    assert!(dead.finished_at_ms.is_some(), "a dead letter says when it died");
    c.create_task(task("waiting")).await.unwrap();
    assert_eq!(
        finished_index(&store, &c).await,
        [pair("done", "completed"), pair("cancelled", "cancelled"), pair("dead", "dead")],
        "each finished task once, in the order they finished; the ready one not at all"
    );

    // A retried dead letter is live again: out of the index, not pruned.
    let retried = c.retry_task("dead").await.unwrap();
    assert_eq!(retried.finished_at_ms, None);
    assert_eq!(
        finished_index(&store, &c).await,
        [pair("done", "completed"), pair("cancelled", "cancelled")]
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let retention =
        Retention { keep: Duration::from_millis(1), every: Duration::from_secs(1), archive: None };
    assert_eq!(c.prune_finished(&retention).await.unwrap(), 2);
    assert!(c.get_task("dead").await.is_ok(), "the retried task stays");
    assert!(finished_index(&store, &c).await.is_empty(), "pruning empties the index");
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn a_pass_prunes_only_what_is_due_in_batches(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    // More than two removal txns' worth, so whole batches and a partial one go.
    let old: Vec<String> = (0..40).map(|i| format!("old-{i:02}")).collect();
    for id in &old {
        complete(&c, id).await;
    }
    // Wide margins: on a loaded machine completing "young" and starting the
    // pass took over 300 ms once, and "young" was due too (41 pruned).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    complete(&c, "young").await;
    let retention = Retention {
        keep: Duration::from_millis(1500),
        every: Duration::from_secs(1),
        archive: None,
    };
    assert_eq!(c.prune_finished(&retention).await.unwrap(), 40, "all the old ones, in one pass");
    let kv = store.kv();
    for id in &old {
        assert!(matches!(c.get_task(id).await, Err(CoreError::TaskNotFound(_))), "{id}");
        // No archive: no checkpoint either, so storage is bounded by what is kept.
        let chain = kv.range(RangeRequest::prefix(c.keys().witness_chain(&format!("task/{id}"))));
        assert!(chain.await.unwrap().kvs.is_empty(), "nothing of {id}'s chain stays");
    }
    assert!(c.get_task("young").await.is_ok(), "a task finished within `keep` stays");
    assert_eq!(finished_index(&store, &c).await, [pair("young", "completed")]);
    let long = Retention { keep: Duration::from_secs(3600), ..retention };
    assert_eq!(c.prune_finished(&long).await.unwrap(), 0);
    assert!(c.verify_witness().await.unwrap().is_empty());
}

async fn tasks_finished_before_the_index_are_indexed_then_pruned(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let kv = store.kv();
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    complete(&c, "older").await;
    // Make it look as a version without the index left it: no entry, no
    // `finished_at_ms`, no marker.
    let record_key = c.keys().task("older");
    let stored = kv.range(RangeRequest::key(record_key.clone())).await.unwrap().kvs.remove(0);
    let mut record: serde_json::Value = serde_json::from_slice(&stored.value).unwrap();
    record.as_object_mut().unwrap().remove("finished_at_ms").expect("the field is stored");
    kv.put(PutRequest::new(record_key, serde_json::to_vec(&record).unwrap())).await.unwrap();
    kv.delete(DeleteRequest::prefix(c.keys().finished_index())).await.unwrap();
    kv.delete(DeleteRequest::key(c.keys().finished_index_complete())).await.unwrap();
    assert!(finished_index(&store, &c).await.is_empty());

    tokio::time::sleep(Duration::from_millis(20)).await;
    let retention =
        Retention { keep: Duration::from_millis(1), every: Duration::from_secs(1), archive: None };
    assert_eq!(c.prune_finished(&retention).await.unwrap(), 1, "indexed, then pruned");
    assert!(matches!(c.get_task("older").await, Err(CoreError::TaskNotFound(_))));
    let marker = kv.range(RangeRequest::key(c.keys().finished_index_complete())).await.unwrap();
    assert_eq!(marker.kvs.len(), 1, "done once: later passes read only the marker");
}

async fn a_task_rewritten_after_it_finished_is_pruned_on_the_next_pass(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    let kv = store.kv();
    c.register_swarm("s", caps(&[]), json!(null), None).await.unwrap();
    complete(&c, "plain").await;
    complete(&c, "rewritten").await;
    // Its record written again after it finished: a revision its index entry
    // does not have, so the removal's guard refuses it.
    let key = c.keys().task("rewritten");
    let stored = kv.range(RangeRequest::key(key.clone())).await.unwrap().kvs.remove(0);
    kv.put(PutRequest::new(key, stored.value)).await.unwrap();

    tokio::time::sleep(Duration::from_millis(20)).await;
    let retention =
        Retention { keep: Duration::from_millis(1), every: Duration::from_secs(1), archive: None };
    assert_eq!(c.prune_finished(&retention).await.unwrap(), 1, "the plain one; the other refused");
    assert!(c.get_task("rewritten").await.is_ok());
    assert_eq!(
        c.prune_finished(&retention).await.unwrap(),
        1,
        "the refusal mended the entry with its record, so the next pass may remove it"
    );
    assert!(matches!(c.get_task("rewritten").await, Err(CoreError::TaskNotFound(_))));
    assert!(finished_index(&store, &c).await.is_empty());
    assert!(c.verify_witness().await.unwrap().is_empty());
}
