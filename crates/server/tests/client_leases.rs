//! The Rust client keeps claims alive while work runs: a claim guard and an
//! `on_task` callback that each outlast the claim timeout three times over
//! still complete, on each backend, against the real server.

use std::sync::Arc;
use std::time::Duration;

use ifc_client::{Client, NewTask, TaskState};
use ifc_core::{Coordinator, CoreConfig, Reaper};
use ifc_server::{AppState, Metrics};
use ifc_testkit::TestStore;
use serde_json::json;
use tokio::task::JoinHandle;

const ADMIN: &str = "test-admin-token";
/// The shortest claim lease the server accepts.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(1000);

struct Server {
    url: String,
    serving: JoinHandle<std::io::Result<()>>,
    _reaper: Reaper,
    _store: TestStore,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl Server {
    async fn start(store: TestStore) -> Server {
        ifc_client::install_crypto_provider();
        let config = CoreConfig {
            claim_timeout_ms: CLAIM_TIMEOUT.as_millis() as u64,
            ..CoreConfig::default()
        };
        let core = Arc::new(Coordinator::new(store.kv(), config));
        // The reaper makes lapses happen on time, so an unrenewed claim would be lost.
        let reaper = Reaper::spawn(core.clone());
        let state = AppState::new(core, ADMIN, Arc::new(Metrics::default()));
        let router = ifc_server::router(state, 64 * 1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving =
            tokio::spawn(ifc_server::serve(listener, router, std::future::pending::<()>()));
        Server { url, serving, _reaper: reaper, _store: store }
    }

    fn admin(&self) -> Client {
        Client::new(&self.url, ADMIN)
    }
}

ifc_testkit::on_each_backend!(
    Server::start =>
    a_guarded_claim_outlives_its_lease,
    a_callback_three_times_the_claim_timeout_completes,
    a_failing_callback_fails_the_task,
);

/// A task, built from JSON so fields added to `NewTask` later keep their defaults.
fn task(id: &str) -> NewTask {
    serde_json::from_value(json!({"task_id": id, "task_type": "long", "max_attempts": 1})).unwrap()
}

async fn wait_for_state(admin: &Client, task_id: &str, state: TaskState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = admin.get_task(task_id).await.unwrap();
        if view.state == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task_id} is {:?}, never {state:?}: {view:?}",
            view.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_guarded_claim_outlives_its_lease(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("worker", &[], json!({})).await.unwrap();
    admin.create_task(task("slow")).await.unwrap();
    let claim = swarm.claim_next().await.unwrap().expect("a ready task");
    let guard = swarm.hold(&claim);
    tokio::time::sleep(CLAIM_TIMEOUT * 3).await;
    assert_eq!(guard.lost(), None, "the claim was renewed");
    let done = guard.complete(json!({"took": "3 leases"})).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.attempts, 0, "no attempt was used by a lapse");
}

async fn a_callback_three_times_the_claim_timeout_completes(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("agent", &[], json!({})).await.unwrap();
    let _callback = swarm.on_task(|item| async move {
        tokio::time::sleep(CLAIM_TIMEOUT * 3).await;
        Ok::<_, String>(json!({"reviewed": item.task.task_id}))
    });
    admin.push_task_to_swarm("agent", task("review")).await.unwrap();
    wait_for_state(&admin, "review", TaskState::Completed).await;
    let record = admin.get_task("review").await.unwrap().record;
    assert_eq!(record.result, Some(json!({"reviewed": "review"})));
    assert_eq!(record.owner.as_deref(), Some("agent"));
    assert!(record.history.iter().all(|a| a.outcome != ifc_client::AttemptOutcome::Lapsed));
}

async fn a_failing_callback_fails_the_task(server: Server) {
    let admin = server.admin();
    let swarm = admin.register_swarm("agent", &[], json!({})).await.unwrap();
    let _callback =
        swarm.on_task(|_item| async move { Err::<serde_json::Value, _>("no numpy here") });
    admin.push_task_to_swarm("agent", task("broken")).await.unwrap();
    wait_for_state(&admin, "broken", TaskState::Dead).await;
    let record = admin.get_task("broken").await.unwrap().record;
    assert_eq!(record.error.as_deref(), Some("no numpy here"));
}
