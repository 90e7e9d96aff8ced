//! Claims and completions per minute over the last hour, for the dashboard's
//! chart.
//!
//! Each node counts in memory from its own watch of the coordination events
//! (the whole namespace), so on etcd every node counts every node's work and
//! they agree; minutes are those of each witness record's `at_ms`, not of the
//! node's clock when it saw the event. The count starts when the node does
//! (`since_ms`): scanning the witness log for the last hour on every start or
//! request would cost a read of every chain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use ifc_core::{Coordinator, CoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// Minutes kept.
const MINUTES: i64 = 60;
const MINUTE_MS: i64 = 60_000;

/// One minute's counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct MinuteCounts {
    /// Start of the minute (ms since the epoch).
    pub start_ms: i64,
    /// Claims made (`task_claimed` and `task_pushed`).
    pub claims: u64,
    /// Tasks completed (`task_completed`).
    pub completions: u64,
}

/// The last hour, a minute at a time, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ThroughputReport {
    /// When this node started counting (ms since the epoch): minutes before it
    /// show zero because they were not seen, not because nothing happened.
    pub since_ms: i64,
    /// Sixty minutes ending with the current one.
    pub minutes: Vec<MinuteCounts>,
}

/// The per-minute counts this node has seen.
#[derive(Debug)]
pub(crate) struct Throughput {
    since_ms: i64,
    minutes: Mutex<BTreeMap<i64, MinuteCounts>>,
    /// Whether the watch feeding it runs (one per state, however many routers).
    started: AtomicBool,
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput {
            since_ms: now_ms(),
            minutes: Mutex::default(),
            started: AtomicBool::new(false),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Throughput {
    /// Counts one witnessed operation at `at_ms`.
    pub(crate) fn record(&self, op: &str, at_ms: i64) {
        let (claims, completions) = match op {
            "task_claimed" | "task_pushed" => (1, 0),
            "task_completed" => (0, 1),
            _ => return,
        };
        let start_ms = at_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let minute =
            minutes.entry(start_ms).or_insert(MinuteCounts { start_ms, ..Default::default() });
        minute.claims += claims;
        minute.completions += completions;
        // Keep a little more than the hour: records can arrive late.
        let oldest = start_ms - 2 * MINUTES * MINUTE_MS;
        while minutes.first_key_value().is_some_and(|(k, _)| *k < oldest) {
            minutes.pop_first();
        }
    }

    /// The last hour as of `now_ms`.
    pub(crate) fn report(&self, now_ms: i64) -> ThroughputReport {
        let current = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let minutes = (0..MINUTES)
            .rev()
            .map(|back| current - back * MINUTE_MS)
            .map(|start_ms| {
                minutes
                    .get(&start_ms)
                    .cloned()
                    .unwrap_or(MinuteCounts { start_ms, ..Default::default() })
            })
            .collect();
        ThroughputReport { since_ms: self.since_ms, minutes }
    }

    /// The report as of now.
    pub(crate) fn now(&self) -> ThroughputReport {
        self.report(now_ms())
    }
}

/// Feeds `throughput` from the coordination events until it is dropped. A
/// broken stream is reopened after the last event seen (or from now, if that
/// point was compacted away).
pub(crate) fn spawn(core: &Arc<Coordinator>, throughput: &Arc<Throughput>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if throughput.started.swap(true, Ordering::SeqCst) {
        return;
    }
    let core: Weak<Coordinator> = Arc::downgrade(core);
    let throughput = Arc::downgrade(throughput);
    runtime.spawn(async move {
        let mut after = None;
        loop {
            let Some(coordinator) = core.upgrade() else { return };
            let opened = coordinator.events(after).await;
            drop(coordinator);
            if let Ok(mut events) = opened {
                while let Some(item) = events.next().await {
                    let Some(counts) = throughput.upgrade() else { return };
                    match item {
                        Ok(event) => {
                            counts.record(&event.op, event.at_ms);
                            after = Some(event.revision);
                        }
                        Err(CoreError::Compacted { .. }) => {
                            after = None;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            if throughput.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_the_minute_of_their_record_and_the_hour_is_sixty_minutes() {
        let counts = Throughput::default();
        let now = 10 * 60 * MINUTE_MS + 30_000;
        counts.record("task_claimed", now);
        counts.record("task_pushed", now - 1_000);
        counts.record("task_completed", now - MINUTE_MS);
        counts.record("task_created", now);
        counts.record("task_completed", now - 2 * 60 * MINUTE_MS); // outside the hour
        let report = counts.report(now);
        assert_eq!(report.minutes.len(), 60);
        let last = report.minutes.last().unwrap();
        assert_eq!((last.start_ms, last.claims, last.completions), (now - 30_000, 2, 0));
        let before = &report.minutes[58];
        assert_eq!((before.claims, before.completions), (0, 1));
        let total: u64 = report.minutes.iter().map(|m| m.claims + m.completions).sum();
        assert_eq!(total, 3);
    }
}
