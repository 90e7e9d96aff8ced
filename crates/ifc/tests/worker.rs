//! `ifc worker` end to end: the real binary against a real `ifc serve` on each
//! backend, running shell commands as tasks.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Served, serve, wait_for_state};
use ifc_client::{NewTask, TaskState};
use ifc_testkit::Backend;
use serde_json::json;

/// A running `ifc worker`, killed on drop if the test did not stop it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Worker {
    fn start(served: &Served, swarm: &str, extra: &[&str], script: &str) -> Worker {
        let child = served
            .ifc()
            .args(["worker", swarm, "--poll-ms", "100"])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .stdout(Stdio::null())
            .spawn()
            .expect("start ifc worker");
        Worker(child)
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill").args([name, &self.0.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill {name} failed");
    }

    /// Waits for the worker to exit by itself; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the worker did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A task from JSON, so fields added to `NewTask` later keep their defaults.
fn task(id: &str, max_attempts: u32) -> NewTask {
    serde_json::from_value(
        json!({"task_id": id, "task_type": "shell", "max_attempts": max_attempts}),
    )
    .unwrap()
}

async fn a_command_that_sleeps_past_the_lease_completes(backend: Backend) {
    let served = serve(backend, &["--claim-timeout-ms", "1000"]).await;
    served.admin().create_task(task("slow", 1)).await.unwrap();
    // Three leases long; the task's JSON comes back from stdin, the rest from the environment.
    let script = r#"input=$(cat); sleep 3
        printf '{"id":"%s","type":"%s","attempt":%s,"token":%s,"stdin":%s}' \
          "$IFC_TASK_ID" "$IFC_TASK_TYPE" "$IFC_ATTEMPT" "$IFC_CLAIM_TOKEN" "$input""#;
    let _worker = Worker::start(&served, "sleeper", &[], script);
    let view = wait_for_state(&served, "slow", TaskState::Completed).await;
    let result = view.record.result.expect("a result");
    assert_eq!(result["id"], "slow");
    assert_eq!(result["type"], "shell");
    assert_eq!(result["attempt"], 1);
    assert!(result["token"].as_i64().is_some(), "{result}");
    assert_eq!(result["stdin"]["task_id"], "slow");
    assert_eq!(view.record.attempts, 0, "no lapse used an attempt");
}

async fn a_failing_command_fails_with_its_stderr_and_pushes_run_too(backend: Backend) {
    let served = serve(backend, &[]).await;
    let script = r#"if [ "$IFC_TASK_ID" = bad ]; then echo "ImportError: numpy" >&2; exit 3; fi
        echo plain text"#;
    let _worker = Worker::start(&served, "shell", &["--concurrency", "2"], script);
    let admin = served.admin();
    admin.create_task(task("bad", 1)).await.unwrap();
    let dead = wait_for_state(&served, "bad", TaskState::Dead).await;
    assert_eq!(dead.record.error.as_deref(), Some("exit status 3: ImportError: numpy"));
    // A push to the worker's swarm runs too; stdout that is not JSON becomes a string.
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.push_task_to_swarm("shell", task("pushed", 1)).await.is_err() {
        assert!(Instant::now() < deadline, "the worker never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = wait_for_state(&served, "pushed", TaskState::Completed).await;
    assert_eq!(done.record.result, Some(json!("plain text")));
}

async fn sigterm_finishes_running_work_then_unregisters(backend: Backend) {
    let served = serve(backend, &[]).await;
    let admin = served.admin();
    let mut worker = Worker::start(&served, "graceful", &[], r#"sleep 2; echo '{"ok":true}'"#);
    admin.create_task(task("finishing", 1)).await.unwrap();
    wait_for_state(&served, "finishing", TaskState::Claimed).await;
    worker.signal("-TERM");
    assert_eq!(worker.exit_code(), Some(0));
    let done = admin.get_task("finishing").await.unwrap();
    assert_eq!(done.state, TaskState::Completed, "the running task finished within the grace");
    assert!(admin.list_swarms().await.unwrap().iter().all(|s| s.swarm_id != "graceful"));

    // Past the grace, the command is killed and the claim released: back to
    // ready at once, without using an attempt.
    let mut worker = Worker::start(&served, "impatient", &["--grace-ms", "200"], "exec sleep 600");
    admin.create_task(task("released", 2)).await.unwrap();
    wait_for_state(&served, "released", TaskState::Claimed).await;
    worker.signal("-INT");
    assert_eq!(worker.exit_code(), Some(0));
    let released = wait_for_state(&served, "released", TaskState::Ready).await;
    assert_eq!(released.record.attempts, 0, "a release uses no attempt");
    let last = released.record.history.last().expect("the released attempt");
    assert_eq!(last.outcome, ifc_client::AttemptOutcome::Released);
    assert!(admin.list_swarms().await.unwrap().iter().all(|s| s.swarm_id != "impatient"));
}

macro_rules! on_each_backend {
    ($($case:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(ifc_testkit::Backend::Embedded).await;
                }
            )+
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(ifc_testkit::Backend::Etcd).await;
                }
            )+
        }
    };
}

on_each_backend!(
    a_command_that_sleeps_past_the_lease_completes,
    a_failing_command_fails_with_its_stderr_and_pushes_run_too,
    sigterm_finishes_running_work_then_unregisters,
);
