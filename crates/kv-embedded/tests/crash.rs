//! Crash consistency: a child process commits transactions in a loop and prints
//! each acknowledged one; we SIGKILL it at random moments, reopen, and check that
//! every acknowledged transaction is there whole, that no transaction is there in
//! part, and that the revision is at least the last acknowledged one. Once with
//! the default overlay (kills mostly between flushes) and once flushing every
//! millisecond (kills during redb commits and log segment switches); and once
//! with a single writing task, whose txns are committed on the caller's thread
//! whenever the writer has no freeze or lease due (checked from the counts the
//! writer prints).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ifc_kv::{KvError, KvStore, RangeRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};
use rand::{Rng, SeedableRng};

const ROUNDS: u32 = 24;

#[derive(Debug)]
struct Ack {
    task: u32,
    seq: u64,
    revision: i64,
}

fn parse(line: &str, round: u32) -> Option<Ack> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "ACK" || parts.next()?.parse::<u32>().ok()? != round {
        return None;
    }
    Some(Ack {
        task: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        revision: parts.next()?.parse().ok()?,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    kill_and_check(None, 0x1fc0_c0de).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_flushes_loses_no_acknowledged_write() {
    kill_and_check(Some("flushing"), 0xf1a5_c0de).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_lone_writes_loses_no_acknowledged_write() {
    kill_and_check(Some("lone"), 0x10e5_c0de).await;
}

async fn kill_and_check(mode: Option<&str>, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut last_revision = 0;
    let (mut on_caller, mut through_writer) = (0u64, 0u64);
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ifc-kv-crash-writer"))
            .arg(dir.path())
            .arg(round.to_string())
            .args(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the crash writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).expect("child opened"), "OPEN");
        if round == 0 {
            // While the child holds the directory, a second opener is refused.
            match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
                Err(KvError::Locked(message)) => assert!(message.contains("in use")),
                other => {
                    panic!("expected Locked while another process has the store, got {other:?}")
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        child.kill().expect("SIGKILL the writer");
        child.wait().unwrap();
        reader.join().unwrap();
        let lines: Vec<String> = rx.try_iter().collect();
        let acks: Vec<Ack> = lines.iter().filter_map(|l| parse(l, round)).collect();
        if let Some(paths) = lines.iter().rev().find_map(|l| parse_paths(l)) {
            on_caller += paths.0;
            through_writer += paths.1;
        }

        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .expect("reopen after SIGKILL");
        // Quick repair: reopening after a crash reads no more than the log.
        assert!(!store.repaired_on_open(), "round {round}: redb ran a full repair");
        let stored = store.range(RangeRequest::prefix(format!("crash/{round}/"))).await.unwrap();
        let mut parts: BTreeMap<(u32, u64), BTreeSet<String>> = BTreeMap::new();
        for kv in &stored.kvs {
            let key = String::from_utf8(kv.key.clone()).unwrap();
            let fields: Vec<&str> = key.split('/').collect();
            let (task, seq): (u32, u64) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
            assert_eq!(kv.value, seq.to_string().as_bytes(), "{key}");
            parts.entry((task, seq)).or_default().insert(fields[4].to_string());
        }
        for ((task, seq), present) in &parts {
            assert_eq!(present.len(), 3, "round {round}: task {task} seq {seq} is partial");
        }
        for ack in &acks {
            assert!(
                parts.contains_key(&(ack.task, ack.seq)),
                "round {round}: acknowledged task {} seq {} is missing",
                ack.task,
                ack.seq
            );
            last_revision = last_revision.max(ack.revision);
        }
        assert!(
            stored.revision >= last_revision,
            "round {round}: revision {} is below the acknowledged {last_revision}",
            stored.revision
        );
        // Every revision in between is a whole transaction of three keys.
        assert!(stored.revision >= stored.count / 3);
        drop(store);
        eprintln!("round {round}: {} acknowledged, {} stored", acks.len(), parts.len());
    }
    if mode == Some("lone") {
        // Writes meeting a due freeze (every 20 ms or 16 txns) go through the
        // writer; on a slow disk that can be half of them.
        eprintln!("lone writer: {on_caller} on the caller's thread, {through_writer} queued");
        assert!(on_caller > 0, "no write was committed on the caller's thread");
    }
}

/// `PATHS <on caller> <through the writer>`, printed by a lone writer.
fn parse_paths(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "PATHS" {
        return None;
    }
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
