//! Helper candidates on real stores, both backends: the right swarms, least
//! loaded first, read without a consensus round.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ifc_api::BlockerInfo;
use ifc_testkit::TestStore;
use serde_json::json;

use crate::test_support::{COUNTED, Counting, task};
use crate::{ClaimOutcome, Coordinator, CoreConfig};

ifc_testkit::on_each_backend!(helper_candidates_take_no_linearizable_read,);

/// Candidates are advice delivered with every blocker; on etcd a
/// linearizable read would cost each delivery a consensus round.
async fn helper_candidates_take_no_linearizable_read(store: TestStore) {
    let counting = Arc::new(Counting::new(store.kv()));
    let c = Arc::new(Coordinator::new(counting.clone(), CoreConfig::default()));
    let caps = || vec!["x".to_string()];
    for (swarm, capabilities) in
        [("reporter", caps()), ("busy", caps()), ("idle", caps()), ("unable", Vec::new())]
    {
        c.register_swarm(swarm, capabilities, json!(null), None).await.unwrap();
    }
    c.create_task(task("t")).await.unwrap();
    assert!(matches!(c.claim_task("busy", "t").await.unwrap(), ClaimOutcome::Claimed(_)));
    let info = BlockerInfo {
        blocker_type: "stuck".into(),
        description: "needs x".into(),
        severity: "high".into(),
        required_capabilities: caps(),
        task_id: None,
    };
    let blocker = c.get_blocker(&c.detect_blocker("reporter", info).await.unwrap()).await.unwrap();

    counting.linearizable.store(0, Ordering::SeqCst);
    let candidates = COUNTED.scope((), c.helper_candidates(&blocker)).await.unwrap();
    let found: Vec<(&str, usize)> =
        candidates.iter().map(|h| (h.swarm_id.as_str(), h.current_claims)).collect();
    assert_eq!(found, [("idle", 0), ("busy", 1)], "capable swarms, least loaded first");
    assert_eq!(counting.linearizable.load(Ordering::SeqCst), 0, "linearizable reads");
}
