//! The witness log past etcd's 4 MiB answer limit: list, export and verify
//! read it page by page, on both backends.

mod common;

use common::coordinator;
use futures::{StreamExt, TryStreamExt};
use ifc_core::{CoreConfig, NewTask, WitnessQuery};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(list_export_and_verify_page_past_the_answer_limit);

/// More records than one etcd answer can carry (~4 MiB is ~16,000 records).
const TASKS: usize = 21_000;

async fn list_export_and_verify_page_past_the_answer_limit(store: TestStore) {
    let (c, _) = coordinator(&store, CoreConfig::default());
    futures::stream::iter(0..TASKS)
        .map(|i| {
            let c = c.clone();
            async move {
                let task = NewTask {
                    task_id: format!("bulk-{i:06}"),
                    task_type: "code-review".into(),
                    metadata: json!(null),
                    required_capabilities: Vec::new(),
                    priority: 0,
                    max_attempts: None,
                    timeout_ms: None,
                };
                c.create_task(task).await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();

    let listed = c.witness(&WitnessQuery::default()).await.unwrap();
    assert_eq!(listed.len(), TASKS);
    assert!(listed.windows(2).all(|w| w[0].revision < w[1].revision), "commit order");

    let export = c.export_witness().await.unwrap();
    assert_eq!(export.lines().count(), TASKS);
    assert!(export.len() > 4 << 20, "the log is past one etcd answer: {} bytes", export.len());

    assert!(c.verify_witness().await.unwrap().is_empty());

    // Walked in batches, resuming where each one stopped, every chain is seen once.
    let (mut from, mut chains, mut records, mut batches) = (None, 0, 0, 0);
    loop {
        let page = c.verify_witness_from(from.as_deref(), 5_000).await.unwrap();
        assert!(page.problems.is_empty(), "{:?}", page.problems);
        (chains, records, batches) = (chains + page.chains, records + page.records, batches + 1);
        match page.next_chain {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert_eq!((chains, records), (TASKS as u64, TASKS as u64));
    assert_eq!(batches, TASKS.div_ceil(5_000));
}
