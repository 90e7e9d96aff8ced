//! Listings past one store page (1,000 keys): swarms, blockers and helper
//! candidates are read page by page and still see every record, on both
//! backends.

mod common;

use common::{caps, coordinator};
use futures::{StreamExt, TryStreamExt};
use ifc_core::{BlockerInfo, CoreConfig};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(swarms_and_blockers_list_past_one_page);

/// More than one page of the store's paged reads.
const RECORDS: usize = 1_050;

async fn swarms_and_blockers_list_past_one_page(store: TestStore) {
    let config = CoreConfig { max_swarms: 2 * RECORDS, ..CoreConfig::default() };
    let (c, _) = coordinator(&store, config);
    futures::stream::iter(0..RECORDS)
        .map(|i| {
            let c = c.clone();
            async move { c.register_swarm(&format!("s-{i:05}"), caps(&["x"]), json!(null), None).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let swarms = c.list_swarms().await.unwrap();
    assert_eq!(swarms.len(), RECORDS, "every swarm listed");
    assert!(swarms.windows(2).all(|w| w[0].swarm_id < w[1].swarm_id), "in id order, once each");

    let info = BlockerInfo {
        blocker_type: "stuck".into(),
        description: "help".into(),
        severity: "high".into(),
        required_capabilities: caps(&["x"]),
        task_id: None,
    };
    let ids = futures::stream::iter(0..RECORDS)
        .map(|_| {
            let (c, info) = (c.clone(), info.clone());
            async move { c.detect_blocker("s-00000", info).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let mut listed: Vec<String> =
        c.list_blockers(false).await.unwrap().into_iter().map(|b| b.blocker_id).collect();
    let mut ids = ids;
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "every blocker listed once");

    let blocker = c.get_blocker(&ids[0]).await.unwrap();
    let helpers = c.helper_candidates(&blocker).await.unwrap();
    assert_eq!(helpers.len(), RECORDS - 1, "every capable swarm but the reporter");
}
