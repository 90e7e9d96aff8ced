//! Helper for the crash test (`tests/crash.rs`): opens the store in the given
//! directory and commits transactions from several tasks until killed, printing
//! `ACK <round> <task> <seq> <revision>` after each acknowledged one.
//!
//! Each txn writes three keys `crash/<round>/<task>/<seq>/{a,b,c}`, so a partial
//! transaction after a crash would show as a sequence with fewer than three keys.
//! With a third argument `flushing`, the overlay is frozen and committed to redb
//! every millisecond, so kills land in and around flushes. With `lone`, one task
//! writes and the overlay is frozen every 20 ms or 64 changes: txns are then
//! committed on the caller's thread unless a freeze is due, and after each
//! acknowledgement it prints `PATHS <on caller> <through the writer>`.

use std::io::Write;

use ifc_kv::{KvStore, PutRequest, TxnOp, TxnRequest};
use ifc_kv_embedded::{EmbeddedOptions, EmbeddedStore};

const TASKS: u32 = 4;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(round)) = (args.next(), args.next()) else {
        eprintln!("usage: ifc-kv-crash-writer <data-dir> <round> [flushing|lone]");
        std::process::exit(2);
    };
    let mode = args.next();
    let writers = if mode.as_deref() == Some("lone") { 1 } else { TASKS };
    let options = match mode.as_deref() {
        Some("lone") => EmbeddedOptions {
            freeze_interval: std::time::Duration::from_millis(20),
            freeze_changes: 64,
            ..EmbeddedOptions::default()
        },
        Some("flushing") => EmbeddedOptions {
            freeze_interval: std::time::Duration::from_millis(1),
            freeze_changes: 64,
            ..EmbeddedOptions::default()
        },
        _ => EmbeddedOptions::default(),
    };
    let store = match EmbeddedStore::open(&dir, options) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    println!("OPEN");
    let lone = writers == 1;
    let mut tasks = Vec::new();
    for task in 0..writers {
        let store = store.clone();
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0u64.. {
                let mut txn = TxnRequest::new();
                for part in ["a", "b", "c"] {
                    let key = format!("crash/{round}/{task}/{seq:08}/{part}");
                    txn = txn.and_then(TxnOp::Put(PutRequest::new(key, seq.to_string())));
                }
                let revision = store.txn(txn).await.expect("txn").revision;
                // One write per line: the parent must never see half a line it
                // could mistake for an acknowledgement.
                let mut line = format!("ACK {round} {task} {seq} {revision}\n");
                if lone {
                    let paths = store.write_paths();
                    line += &format!("PATHS {} {}\n", paths.on_caller, paths.through_writer);
                }
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).expect("stdout");
                out.flush().expect("stdout");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
}
