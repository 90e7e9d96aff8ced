//! The `ifc` binary end to end: `ifc serve` in a child process on each backend,
//! driven by the CLI commands a person or a script would type; exit codes and
//! JSON output checked.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Served, serve};
use ifc_testkit::Backend;

fn ifc(served: &Served, args: &[&str], swarm: Option<(&str, &str)>) -> Output {
    let mut command = served.ifc();
    command.args(args);
    if let Some((id, token)) = swarm {
        command.env("IFC_SWARM", id).env("IFC_SWARM_TOKEN", token);
    }
    command.output().expect("run ifc")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "ifc failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

async fn workflow(backend: Backend) {
    let served = serve(backend, &[]).await;
    assert!(
        Path::new(&served.dir.path().join("admin.token")).exists(),
        "the admin token was generated"
    );
    let one = json(&ifc(
        &served,
        &["swarm", "register", "swarm-1", "--cap", "python", "-o", "json"],
        None,
    ));
    let token = one["token"].as_str().unwrap().to_string();
    let two = json(&ifc(&served, &["swarm", "register", "swarm-2", "-o", "json"], None));
    let token2 = two["token"].as_str().unwrap().to_string();
    json(&ifc(
        &served,
        &["task", "create", "t1", "--type", "review", "--meta", r#"{"pr":1}"#, "-o", "json"],
        None,
    ));

    let claim =
        json(&ifc(&served, &["task", "claim", "t1", "-o", "json"], Some(("swarm-1", &token))));
    let claim_token = claim["token"].as_i64().unwrap().to_string();
    // A lost race exits 4; a missing task exits 3; a forged token exits 5.
    assert_eq!(
        ifc(&served, &["task", "claim", "t1"], Some(("swarm-2", &token2))).status.code(),
        Some(4)
    );
    assert_eq!(
        ifc(&served, &["task", "claim", "nope"], Some(("swarm-2", &token2))).status.code(),
        Some(3)
    );
    assert_eq!(
        ifc(&served, &["task", "claim", "t1"], Some(("swarm-2", "forged"))).status.code(),
        Some(5)
    );
    let done = ifc(
        &served,
        &["task", "complete", "t1", "--claim-token", &claim_token, "--result", r#"{"ok":true}"#],
        Some(("swarm-1", &token)),
    );
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let owner = ifc(&served, &["task", "owner", "t1"], None);
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "completed:swarm-1");

    let pushed =
        json(&ifc(&served, &["push", "swarm-2", "urgent", "--type", "review", "-o", "json"], None));
    let push_token = pushed["token"].as_i64().unwrap().to_string();
    let acked = ifc(
        &served,
        &["inbox", "ack", "urgent", "--claim-token", &push_token],
        Some(("swarm-2", &token2)),
    );
    assert!(acked.status.success(), "{}", String::from_utf8_lossy(&acked.stderr));

    let raised = json(&ifc(
        &served,
        &[
            "blocker",
            "raise",
            "--type",
            "missing_tool",
            "--description",
            "no rustc",
            "--needs",
            "python",
            "-o",
            "json",
        ],
        Some(("swarm-2", &token2)),
    ));
    let blocker = raised["blocker_id"].as_str().unwrap().to_string();
    let open = json(&ifc(&served, &["blocker", "list", "--open", "-o", "json"], None));
    assert_eq!(open.as_array().unwrap().len(), 1);
    json(&ifc(&served, &["blocker", "assign", &blocker, "swarm-1", "-o", "json"], None));
    json(&ifc(
        &served,
        &["blocker", "resolve", &blocker, "--resolution", "installed", "-o", "json"],
        None,
    ));

    let verify = ifc(&served, &["witness", "verify"], None);
    assert!(verify.status.success());
    assert_eq!(String::from_utf8_lossy(&verify.stdout).trim(), "every chain verifies");
    let export = ifc(&served, &["witness", "export"], None);
    assert!(String::from_utf8_lossy(&export.stdout).lines().count() >= 10);
    let events = ifc(&served, &["events", "--after", "0", "-o", "json"], None);
    assert!(String::from_utf8_lossy(&events.stdout).contains("blocker_resolved"));
    let stats = json(&ifc(&served, &["swarm", "stats", "swarm-1", "-o", "json"], None));
    assert_eq!(stats["task_count"], 1);
    let queues = json(&ifc(&served, &["queues", "-o", "json"], None));
    assert_eq!(queues["states"]["completed"], 1, "{queues}");
    let table = ifc(&served, &["queues"], None);
    assert!(String::from_utf8_lossy(&table.stdout).contains("completed  1"));
    // Bad input: exit 2 with the server's message; a bad flag value: clap's exit 2.
    let bad = ifc(&served, &["task", "create", "a/b", "--type", "x"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("task_id"));
    assert_eq!(ifc(&served, &["task", "list", "--state", "bogus"], None).status.code(), Some(2));

    // Many tasks from a file of JSON lines, in batches; a rerun is safe.
    let file = served.dir.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"task_id": "many-{i}", "task_type": "review", "priority": {i}}}"#))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let file = file.to_str().unwrap();
    let created = json(&ifc(
        &served,
        &["task", "create-many", file, "--batch-size", "2", "-o", "json"],
        None,
    ));
    let statuses: Vec<&str> =
        created.as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["created"; 5]);
    assert_eq!(created[4]["task_id"], "many-4");
    let again = ifc(&served, &["task", "create-many", file], None);
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "created 0, existed 5, failed 0");
    // A task whose id is taken by other content fails alone: exit 4, named.
    std::fs::write(
        served.dir.path().join("changed.jsonl"),
        r#"{"task_id": "many-0", "task_type": "other"}"#,
    )
    .unwrap();
    let changed_file = served.dir.path().join("changed.jsonl");
    let changed = ifc(&served, &["task", "create-many", changed_file.to_str().unwrap()], None);
    assert_eq!(changed.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&changed.stdout).contains("many-0 (item 0)"));
    // A bad task refuses its batch whole, named by its place in the input: exit 2.
    let bad_file = served.dir.path().join("bad.jsonl");
    std::fs::write(&bad_file, "{\"task_id\": \"ok-1\", \"task_type\": \"t\"}\n{\"task_id\": \"a/b\", \"task_type\": \"t\"}")
        .unwrap();
    let bad = ifc(&served, &["task", "create-many", bad_file.to_str().unwrap()], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("(item 1 of the input)"));
    assert_eq!(
        ifc(&served, &["task", "owner", "ok-1"], None).status.code(),
        Some(3),
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_workflow_on_embedded() {
    workflow(Backend::Embedded).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_workflow_on_etcd() {
    workflow(Backend::Etcd).await;
}

#[cfg(not(feature = "etcd"))]
#[test]
fn cli_workflow_on_etcd() {
    panic!(
        "this test needs the etcd backend: run it with `--features etcd` (scripts/test.sh does)"
    );
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let commands: &[&[&str]] = &[
        &["serve"],
        &["task", "create"],
        &["task", "create-many"],
        &["task", "claim"],
        &["task", "next"],
        &["task", "complete"],
        &["task", "fail"],
        &["task", "get"],
        &["task", "owner"],
        &["task", "list"],
        &["task", "cancel"],
        &["swarm", "register"],
        &["swarm", "list"],
        &["swarm", "stats"],
        &["swarm", "unregister"],
        &["push"],
        &["inbox", "follow"],
        &["inbox", "ack"],
        &["blocker", "raise"],
        &["blocker", "list"],
        &["blocker", "assign"],
        &["blocker", "resolve"],
        &["events"],
        &["witness", "export"],
        &["witness", "verify"],
        &["kv", "get"],
        &["kv", "watch"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = Command::new(env!("CARGO_BIN_EXE_ifc")).args(&args).output().unwrap();
        assert!(output.status.success(), "{command:?} --help failed");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Example: `ifc "), "{command:?} --help has no example:\n{help}");
    }
    let serve = Command::new(env!("CARGO_BIN_EXE_ifc")).args(["serve", "--help"]).output().unwrap();
    let serve = String::from_utf8_lossy(&serve.stdout);
    for setting in [
        "IFC_DATA_DIR",
        "IFC_LISTEN",
        "IF_COORDINATOR_MAX_SWARMS",
        "IF_COORDINATOR_CLAIM_TIMEOUT",
        "IF_COORDINATOR_PUSH_TIMEOUT",
        "ETCD_TIMEOUT",
    ] {
        assert!(serve.contains(setting), "serve --help does not document {setting}");
    }
    // A bad setting is refused at start, naming it.
    let bad = Command::new(env!("CARGO_BIN_EXE_ifc"))
        .args(["serve", "--data-dir", "/nonexistent-never-created"])
        .env("IF_COORDINATOR_MAX_SWARMS", "0")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("max-swarms"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
