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
use ifc_kv::RangeRequest;
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(retention_prunes_finished_tasks_and_keeps_the_audit_verifiable);

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
