//! The swarm registry, on both backends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::caps;
use futures::StreamExt;
use ifc_core::{CoreConfig, CoreError, SwarmRegistry};
use ifc_kv::{EventKind, KvStore, RangeRequest, WatchRequest};
use ifc_testkit::TestStore;
use serde_json::json;

ifc_testkit::on_each_backend!(
    register_get_list_unregister,
    reregistering_needs_the_owner_token,
    heartbeat_checks_the_token,
    a_swarm_without_heartbeats_lapses,
    the_swarm_limit_is_enforced,
    bad_input_is_refused_and_changes_nothing,
);

fn registry(store: &TestStore, config: CoreConfig) -> SwarmRegistry {
    SwarmRegistry::new(store.kv(), config)
}

async fn register_get_list_unregister(store: TestStore) {
    let swarms = registry(&store, CoreConfig::default());
    let meta = json!({"model": "sonnet", "cost_per_hour": 15.0});
    let finance = swarms
        .register(
            "swarm-finance",
            caps(&["code-analysis:python", "integration:sip"]),
            meta.clone(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(finance.ttl_secs, 30, "the default swarm TTL");
    swarms.register("swarm-2", caps(&["code-analysis:rust"]), json!(null), None).await.unwrap();

    let record = swarms.get("swarm-finance").await.unwrap().expect("registered");
    assert_eq!(record.capabilities, caps(&["code-analysis:python", "integration:sip"]));
    assert_eq!(record.metadata, meta);
    assert_ne!(record.token_sha256, finance.token, "only the hash is stored");
    let ids: Vec<_> = swarms.list().await.unwrap().into_iter().map(|s| s.swarm_id).collect();
    assert_eq!(ids, vec!["swarm-2", "swarm-finance"]);

    swarms.unregister("swarm-finance", &finance.token).await.unwrap();
    assert!(swarms.get("swarm-finance").await.unwrap().is_none());
    assert!(matches!(
        swarms.unregister("swarm-finance", &finance.token).await,
        Err(CoreError::NotRegistered(_))
    ));
}

async fn reregistering_needs_the_owner_token(store: TestStore) {
    let swarms = registry(&store, CoreConfig::default());
    let first = swarms.register("s", caps(&["a"]), json!(1), None).await.unwrap();
    let registered_at = swarms.get("s").await.unwrap().unwrap().registered_at_ms;
    assert!(matches!(
        swarms.register("s", caps(&["b"]), json!(2), None).await,
        Err(CoreError::SwarmTaken(_))
    ));
    assert!(matches!(
        swarms.register("s", caps(&["b"]), json!(2), Some("not-the-token")).await,
        Err(CoreError::SwarmTaken(_))
    ));
    let again = swarms.register("s", caps(&["b"]), json!(2), Some(&first.token)).await.unwrap();
    assert_eq!(again.token, first.token);
    let record = swarms.get("s").await.unwrap().unwrap();
    assert_eq!((record.capabilities, record.metadata), (caps(&["b"]), json!(2)));
    assert_eq!(record.registered_at_ms, registered_at, "a refresh keeps the registration time");
}

async fn heartbeat_checks_the_token(store: TestStore) {
    let swarms = registry(&store, CoreConfig::default());
    let session = swarms.register("s", caps(&["a"]), json!(null), None).await.unwrap();
    assert_eq!(swarms.heartbeat("s", &session.token).await.unwrap(), session.ttl_secs);
    assert!(matches!(swarms.heartbeat("s", "forged").await, Err(CoreError::WrongToken(_))));
    assert!(matches!(swarms.unregister("s", "forged").await, Err(CoreError::WrongToken(_))));
    assert!(matches!(swarms.heartbeat("ghost", "x").await, Err(CoreError::NotRegistered(_))));
    assert!(swarms.get("s").await.unwrap().is_some());
}

async fn a_swarm_without_heartbeats_lapses(store: TestStore) {
    let config = CoreConfig { swarm_ttl_secs: 1, ..CoreConfig::default() };
    let swarms = registry(&store, config.clone());
    let kv: Arc<dyn KvStore> = store.kv();
    let mut gone =
        kv.watch(WatchRequest::prefix(format!("{}/swarms/", config.namespace))).await.unwrap();
    let session = swarms.register("sleepy", caps(&["a"]), json!(null), None).await.unwrap();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(15), gone.next())
            .await
            .expect("the lapse within the wait")
            .unwrap()
            .unwrap();
        if batch.events.iter().any(|e| e.kind == EventKind::Delete) {
            break;
        }
    }
    assert!(swarms.get("sleepy").await.unwrap().is_none());
    assert!(matches!(
        swarms.heartbeat("sleepy", &session.token).await,
        Err(CoreError::NotRegistered(_))
    ));
    // The id is free again, for anyone.
    swarms.register("sleepy", caps(&["a"]), json!(null), None).await.unwrap();
}

async fn the_swarm_limit_is_enforced(store: TestStore) {
    let swarms = registry(&store, CoreConfig { max_swarms: 2, ..CoreConfig::default() });
    let a = swarms.register("a", caps(&["x"]), json!(null), None).await.unwrap();
    swarms.register("b", caps(&["x"]), json!(null), None).await.unwrap();
    match swarms.register("c", caps(&["x"]), json!(null), None).await {
        Err(CoreError::TooManySwarms { max }) => assert_eq!(max, 2),
        other => panic!("expected TooManySwarms, got {other:?}"),
    }
    // A refresh of a registered swarm is not a new swarm.
    swarms.register("a", caps(&["y"]), json!(null), Some(&a.token)).await.unwrap();
    swarms.unregister("a", &a.token).await.unwrap();
    swarms.register("c", caps(&["x"]), json!(null), None).await.unwrap();
}

async fn bad_input_is_refused_and_changes_nothing(store: TestStore) {
    let swarms = registry(&store, CoreConfig { max_json_bytes: 64, ..CoreConfig::default() });
    let kv = store.kv();
    let before = kv.range(RangeRequest::prefix("")).await.unwrap();
    let long = "x".repeat(300);
    let cases: Vec<(&str, Vec<String>, serde_json::Value)> = vec![
        ("", caps(&["a"]), json!(null)),
        ("a/b", caps(&["a"]), json!(null)),
        ("tab\there", caps(&["a"]), json!(null)),
        (&long, caps(&["a"]), json!(null)),
        ("ok", caps(&[""]), json!(null)),
        ("ok", caps(&["bell\u{7}"]), json!(null)),
        ("ok", caps(&["a"]), json!({"blob": "y".repeat(100)})),
    ];
    for (id, capabilities, metadata) in cases {
        match swarms.register(id, capabilities.clone(), metadata, None).await {
            Err(CoreError::Invalid { .. }) => {}
            other => panic!("{id:?} {capabilities:?}: expected Invalid, got {other:?}"),
        }
    }
    assert!(matches!(swarms.get("a/b").await, Err(CoreError::Invalid { .. })));
    let after = kv.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(after, before, "bad input wrote nothing");
}
