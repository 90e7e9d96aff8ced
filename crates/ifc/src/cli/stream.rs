//! Following a stream (`events`, `inbox follow`, `blocker follow`): items as
//! lines (JSON lines with `-o json`), and on stderr when the stream cannot
//! connect, when it retries and from which revision it resumes.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use ifc_client::{ItemStream, StreamNotice};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::Connection;
use super::failure::cannot_connect;
use super::time::span;

/// How long a stream without `--follow` waits for items before it stops.
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// Prints `stream`'s items until it ends; with `quiet_after`, also stops once
/// nothing arrived for that long, and fails at once if it cannot connect
/// (rather than waiting in silence and exiting 0).
pub(super) async fn follow<T: Serialize>(
    c: &Connection,
    mut stream: ItemStream<T>,
    mut notices: UnboundedReceiver<StreamNotice>,
    quiet_after: Option<Duration>,
    line: fn(&T) -> String,
) -> Result<i32> {
    let mut retrying = false;
    loop {
        let quiet = async {
            match quiet_after {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = stream.next() => match item {
                Some(item) => c.print_item(&item?, line),
                None => return Ok(0),
            },
            Some(notice) = notices.recv() => {
                if let (Some(_), StreamNotice::Retrying { cause, .. }) = (quiet_after, &notice) {
                    return Err(cannot_connect(&c.server, cause).into());
                }
                let connected = matches!(notice, StreamNotice::Connected { .. });
                // Quiet on the first connection; say so when a retry succeeds.
                if !connected || retrying {
                    eprintln!("ifc: {}", describe(&notice, &c.server));
                }
                retrying = !connected;
            }
            () = quiet => return Ok(0),
        }
    }
}

/// A notice as one line for stderr.
pub(super) fn describe(notice: &StreamNotice, server: &str) -> String {
    let from = |after: &Option<i64>| match after {
        Some(revision) => format!("after revision {revision}"),
        None => "from now".to_string(),
    };
    match notice {
        StreamNotice::Retrying { cause, retry_in, after } => {
            let failure = cannot_connect(server, cause);
            format!(
                "{}; retrying in {}, resuming {}",
                failure.message,
                span(retry_in.as_millis() as i64),
                from(after)
            )
        }
        StreamNotice::Connected { after } => {
            format!("connected to {server}; streaming {}", from(after))
        }
        _ => format!("{notice:?}"),
    }
}
