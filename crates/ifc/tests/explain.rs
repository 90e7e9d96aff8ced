//! The CLI explains itself: each row of the exit-code table in `ifc --help`
//! is what the matching failure exits with, and the message names the cause
//! and the next step; streams say when they cannot connect and print JSON
//! lines; times read as times. Against a real `ifc serve` on each backend.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Served, serve};
use ifc_testkit::Backend;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `ifc args` and checks its exit code, returning its stderr.
fn exits(served: &Served, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
    let output = served.ifc().args(args).envs(env.iter().copied()).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "ifc {args:?}: stdout {} stderr {}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

/// A registered swarm's environment (`IFC_SWARM`, `IFC_SWARM_TOKEN`).
fn register(served: &Served, swarm: &str) -> Vec<(String, String)> {
    let output = served.run(&["swarm", "register", swarm, "-o", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reg: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    vec![
        ("IFC_SWARM".into(), swarm.into()),
        ("IFC_SWARM_TOKEN".into(), reg["token"].as_str().unwrap().into()),
    ]
}

fn env(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The lines a child writes to one of its pipes, as they come.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line that contains `needle` (a generous deadline guards against
/// a hang; it is not a timing check).
fn next_containing(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {needle:?}; saw {seen:?}"),
        }
    }
}

/// The first line `child` writes to stdout or stderr that contains `needle`.
fn line_containing(child: &mut Child, from_stderr: bool, needle: &str) -> String {
    let lines = if from_stderr {
        lines(child.stderr.take().unwrap())
    } else {
        lines(child.stdout.take().unwrap())
    };
    next_containing(&lines, needle)
}

/// A loopback address where nothing listens.
fn dead_server() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn help_prints_the_exit_code_table() {
    let output = Command::new(env!("CARGO_BIN_EXE_ifc")).arg("--help").output().unwrap();
    let help = stdout(&output);
    for row in [
        "Exit codes:",
        "0  done",
        "1  unexpected",
        "2  usage",
        "3  not found",
        "4  refused",
        "5  not allowed",
        "6  unavailable",
    ] {
        assert!(help.contains(row), "no {row:?} in ifc --help:\n{help}");
    }
}

async fn exit_codes_follow_the_table(backend: Backend) {
    let served = serve(backend, &[]).await;
    let one = register(&served, "swarm-1");
    let one = env(&one);

    // 0: done.
    exits(&served, &["task", "create", "t1", "--type", "x"], &[], 0);

    // 1: an answer the CLI cannot read (a server that is not a coordinator).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let not_ifc = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut socket, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request);
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nnot json");
        }
    });
    let text = exits(&served, &["task", "get", "t1", "--server", &not_ifc], &[], 1);
    assert!(text.contains("unexpected answer") && text.contains("hint:"), "{text}");

    // 2: usage — a swarm command without a swarm; JSON that is not JSON.
    let text = exits(&served, &["task", "claim", "t1"], &[], 2);
    assert!(text.contains("--swarm") && text.contains("ifc swarm register"), "{text}");
    let text = exits(&served, &["task", "create", "t2", "--type", "x", "--meta", "{"], &[], 2);
    assert!(text.contains("--meta is not JSON"), "{text}");
    let text = exits(&served, &["queues", "--ca-cert", "/nonexistent/ca.pem"], &[], 2);
    assert!(text.contains("cannot read --ca-cert"), "{text}");

    // 3: not found — a blocker (documented 3, once exited 1).
    let text = exits(&served, &["blocker", "resolve", "nope", "--resolution", "x"], &[], 3);
    assert!(text.contains("[blocker_not_found, HTTP 404]"), "{text}");
    assert!(text.contains("hint: `ifc blocker list`"), "{text}");

    // 4: refused — renewing an unclaimed task; completing twice; re-creating a
    // dead task with other content.
    let text = exits(&served, &["task", "renew", "t1", "--claim-token", "3"], &one, 4);
    assert!(text.contains("not_claimed") && text.contains("hint:"), "{text}");
    let claim = served.ifc().args(["task", "claim", "t1", "-o", "json"]).envs(one.clone()).output();
    let claim: serde_json::Value = serde_json::from_slice(&claim.unwrap().stdout).unwrap();
    let token = claim["token"].to_string();
    exits(&served, &["task", "complete", "t1", "--claim-token", &token, "--result", "1"], &one, 0);
    let text = exits(
        &served,
        &["task", "complete", "t1", "--claim-token", &token, "--result", "2"],
        &one,
        4,
    );
    assert!(!text.contains("fenced"), "{text}");
    exits(&served, &["task", "create", "d1", "--type", "x", "--max-attempts", "1"], &[], 0);
    let claim = served.ifc().args(["task", "claim", "d1", "-o", "json"]).envs(one.clone()).output();
    let claim: serde_json::Value = serde_json::from_slice(&claim.unwrap().stdout).unwrap();
    let token = claim["token"].to_string();
    exits(&served, &["task", "fail", "d1", "--claim-token", &token, "--error", "e"], &one, 0);
    let text = exits(&served, &["task", "create", "d1", "--type", "y"], &[], 4);
    assert!(text.contains("task_exists"), "{text}");

    // 5: not allowed — a wrong admin token is called that, not a swarm problem;
    // a swarm token that is not the swarm's; no token file at all.
    let text = exits(&served, &["task", "list", "--token", "wrong"], &[], 5);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.contains("refused the admin token") && !first.contains("X-Ifc-Swarm"), "{text}");
    let hint = text.lines().find(|l| l.starts_with("hint:")).unwrap_or_default();
    assert!(hint.contains("admin token") && hint.contains("admin.token"), "{text}");
    let forged = [("IFC_SWARM", "swarm-1"), ("IFC_SWARM_TOKEN", "forged")];
    let text = exits(&served, &["swarm", "heartbeat"], &forged, 5);
    assert!(text.contains("refused swarm swarm-1's token"), "{text}");
    assert!(text.contains("ifc swarm register swarm-1"), "{text}");
    let text = exits(&served, &["task", "list", "--data-dir", "/nonexistent-ifc-data"], &[], 5);
    assert!(text.contains("no admin token") && text.contains("--token"), "{text}");

    // 6: unavailable — nothing listens there.
    let dead = dead_server();
    let text = exits(&served, &["task", "list", "--server", &dead], &[], 6);
    assert!(
        text.contains(&format!("connection refused to {dead}: is `ifc serve` running?")),
        "{text}"
    );
    assert!(text.contains("hint: start it with `ifc serve`"), "{text}");
}

async fn streams_explain_themselves(backend: Backend) {
    let served = serve(backend, &[]).await;
    // The versioned API document is served under /v1 too.
    let fetch = |path: &str| reqwest::get(format!("{}{path}", served.url));
    let root: serde_json::Value = fetch("/openapi.json").await.unwrap().json().await.unwrap();
    let v1: serde_json::Value = fetch("/v1/openapi.json").await.unwrap().json().await.unwrap();
    assert_eq!(root, v1);
    assert_eq!(v1["info"]["version"], env!("CARGO_PKG_VERSION"));
    let dead = dead_server();

    // `ifc events` (no --after, no --follow) against a down server: exit 6, said.
    let text = exits(&served, &["events", "--server", &dead], &[], 6);
    assert!(text.contains("connection refused"), "{text}");

    // A follower against a down server says so and keeps retrying.
    let one = register(&served, "swarm-1");
    let mut follower = served
        .ifc()
        .args(["inbox", "follow", "--server", &dead])
        .envs(env(&one))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = line_containing(&mut follower, true, "retrying in");
    assert!(line.contains("connection refused") && line.contains("resuming after revision 0"));
    let _ = follower.kill();
    let _ = follower.wait();

    // `blocker follow` in README order: raised first, then followed — seen.
    let raised = served
        .ifc()
        .args(["blocker", "raise", "--type", "missing_tool", "--description", "no rustc"])
        .envs(env(&one))
        .output()
        .unwrap();
    assert!(raised.status.success(), "{}", stderr(&raised));
    let mut follower = served
        .ifc()
        .args(["blocker", "follow", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = line_containing(&mut follower, false, "no rustc");
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(event["blocker"]["info"]["description"], "no rustc");
    let _ = follower.kill();
    let _ = follower.wait();

    // `-o json` on a stream: one JSON object per line.
    let events = served.run(&["events", "--after", "0", "-o", "json"]);
    assert!(events.status.success(), "{}", stderr(&events));
    let lines: Vec<String> = stdout(&events).lines().map(String::from).collect();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert!(event["revision"].is_i64(), "{line}");
    }

    // Times as people read them; the raw milliseconds in JSON.
    exits(&served, &["task", "create", "t1", "--type", "x"], &[], 0);
    let claim = served.ifc().args(["task", "claim", "t1"]).envs(env(&one)).output().unwrap();
    let text = stdout(&claim);
    assert!(text.contains("lease until 20") && text.contains("Z (in "), "{text}");
    let token = text.lines().find_map(|l| l.strip_prefix("export IFC_CLAIM_TOKEN=")).unwrap();
    let renew = ["task", "renew", "t1", "--claim-token", token, "-o", "json"];
    let renewed = served.ifc().args(renew).envs(env(&one)).output().unwrap();
    let renewed: serde_json::Value = serde_json::from_slice(&renewed.stdout).unwrap();
    assert!(renewed["deadline_ms"].as_i64().unwrap() > 1_700_000_000_000, "{renewed}");
    let shown = stdout(&served.run(&["task", "get", "t1"]));
    assert!(shown.contains("lease     until 20") && shown.contains("Z (in "), "{shown}");
    let events = stdout(&served.run(&["events", "--after", "0"]));
    let first = events.lines().next().unwrap_or_default();
    assert!(first.starts_with("20") && first.as_bytes().get(19) == Some(&b'Z'), "{events}");
}

/// A follower outlives a server restart: it says it lost the server, retries,
/// says when it is back, and resumes after the last revision it printed.
async fn a_follower_resumes_after_a_restart(backend: Backend) {
    let mut served = serve(backend, &[]).await;
    let one = register(&served, "swarm-1");
    let mut follower = served
        .ifc()
        .args(["inbox", "follow", "-o", "json"])
        .envs(env(&one))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(follower.stdout.take().unwrap());
    let err = lines(follower.stderr.take().unwrap());
    exits(&served, &["push", "swarm-1", "before"], &[], 0);
    let before: serde_json::Value =
        serde_json::from_str(&next_containing(&out, "\"before\"")).unwrap();
    let revision = before["revision"].as_i64().unwrap();

    served.stop();
    let line = next_containing(&err, "retrying in");
    assert!(line.contains(&format!("resuming after revision {revision}")), "{line}");
    served.restart().await;
    let line = next_containing(&err, "connected to");
    assert!(line.contains(&format!("streaming after revision {revision}")), "{line}");
    exits(&served, &["push", "swarm-1", "after"], &[], 0);
    let after: serde_json::Value =
        serde_json::from_str(&next_containing(&out, "\"after\"")).unwrap();
    assert!(after["revision"].as_i64().unwrap() > revision);
    let _ = follower.kill();
    let _ = follower.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_after_a_restart_on_embedded() {
    a_follower_resumes_after_a_restart(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_after_a_restart_on_etcd() {
    a_follower_resumes_after_a_restart(Backend::Etcd).await;
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let output =
            Command::new(env!("CARGO_BIN_EXE_ifc")).args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).contains("claim"), "{shell} completions name no subcommand");
    }
    let dir = tempfile::tempdir().unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_ifc")).arg("man").arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    for page in ["ifc.1", "ifc-task.1", "ifc-task-claim.1", "ifc-serve.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let top = std::fs::read_to_string(dir.path().join("ifc.1")).unwrap();
    assert!(top.contains("Exit codes"), "ifc.1 has no exit-code table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_the_table_on_embedded() {
    exit_codes_follow_the_table(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_the_table_on_etcd() {
    exit_codes_follow_the_table(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_explain_themselves_on_embedded() {
    streams_explain_themselves(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_explain_themselves_on_etcd() {
    streams_explain_themselves(Backend::Etcd).await;
}
