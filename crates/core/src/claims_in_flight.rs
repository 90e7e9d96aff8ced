//! The ready tasks a claim on this node is taking right now.
//!
//! Concurrent `claim_next` and batch callers on one node read the same queue
//! head. Left alone they pick overlapping tasks and race each other's
//! compare-and-swap: a lost race costs a txn and a re-read, and a batch's txn
//! is all or nothing, so one overlap fails a whole group of claims. Each
//! caller therefore chooses only among tasks no other claim on this node is
//! taking, and marks its choice until its txn has answered.
//!
//! A caller's queue read may be older than another caller's claim: the task
//! was still ready when read, was claimed, and its mark is gone. So a task
//! whose mark was dropped after a caller's read began is not chosen by that
//! caller either ([`ClaimsInFlight::epoch`]); the last [`RECENT`] drops are
//! remembered for that.
//!
//! Other nodes still race, and the store's compares still decide every claim;
//! this only keeps a node from fighting itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::claim_next::Candidate;

/// Marks dropped that are remembered for reads older than them.
const RECENT: usize = 4096;

/// Waits for other callers' claims to answer, before a call gives up.
const MAX_WAITS: u32 = 16;

/// Task ids being claimed on this node.
#[derive(Default)]
pub(crate) struct ClaimsInFlight {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    taking: HashSet<String>,
    /// Drops so far; a caller's epoch is this count when its read began.
    dropped: u64,
    /// The last [`RECENT`] dropped marks: task id → when (in `dropped`).
    recent: HashMap<String, u64>,
    recent_order: VecDeque<(u64, String)>,
}

impl State {
    /// Whether a caller whose read began at `epoch` may choose `task_id`.
    fn free(&self, task_id: &str, epoch: u64) -> bool {
        !self.taking.contains(task_id) && self.recent.get(task_id).is_none_or(|&at| at <= epoch)
    }

    fn drop_mark(&mut self, task_id: &str) {
        if let Some(task_id) = self.taking.take(task_id) {
            self.dropped += 1;
            self.recent.insert(task_id.clone(), self.dropped);
            self.recent_order.push_back((self.dropped, task_id));
            while self.recent_order.len() > RECENT {
                if let Some((at, old)) = self.recent_order.pop_front()
                    && self.recent.get(&old) == Some(&at)
                {
                    self.recent.remove(&old);
                }
            }
        }
    }
}

/// Tasks one caller chose, marked as being taken until this is dropped.
#[must_use = "the tasks are marked only while this lives"]
pub(crate) struct Taking<'a> {
    owner: &'a ClaimsInFlight,
    tasks: Vec<String>,
}

impl Taking<'_> {
    /// The tasks chosen, in the order `pick` gave them.
    pub fn tasks(&self) -> &[String] {
        &self.tasks
    }
}

impl ClaimsInFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken before a caller reads the queues, and given back to [`Self::take`].
    pub fn epoch(&self) -> u64 {
        self.lock().dropped
    }

    /// How many tasks are being taken: a caller reads that many more keys of
    /// a queue head, so the head is likely to still hold tasks it may choose.
    pub fn len(&self) -> i64 {
        i64::try_from(self.lock().taking.len()).unwrap_or(i64::MAX)
    }

    /// Chooses with `pick` among `candidates` (best first) that no other claim
    /// on this node is taking or took since `epoch`, and marks the chosen ones
    /// until the returned value is dropped. Choosing and marking are one step,
    /// so two callers never choose the same task. `pick` is not called when
    /// nothing is free.
    pub fn take(
        &self,
        epoch: u64,
        candidates: &[Candidate],
        pick: impl FnOnce(&[Candidate]) -> Vec<String>,
    ) -> Taking<'_> {
        let mut state = self.lock();
        let free: Vec<Candidate> =
            candidates.iter().filter(|c| state.free(&c.task_id, epoch)).cloned().collect();
        let chosen = if free.is_empty() { Vec::new() } else { pick(&free) };
        state.taking.extend(chosen.iter().cloned());
        Taking { owner: self, tasks: chosen }
    }
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        let mut state = self.owner.lock();
        for task_id in &self.tasks {
            state.drop_mark(task_id);
        }
    }
}

/// Waits for other callers' claims to answer when every task a caller read
/// is being taken on this node: 1 ms, doubling up to 64 ms, about 0.7 s in
/// all; `false` once that is spent (the caller then answers with what it has).
pub(crate) async fn wait_for_others(waits: &mut u32) -> bool {
    if *waits >= MAX_WAITS {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(1 << (*waits).min(6))).await;
    *waits += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(ids: &[&str]) -> Vec<Candidate> {
        let candidate =
            |id: &&str| Candidate { rank: "0".into(), created: "0".into(), task_id: (*id).into() };
        ids.iter().map(candidate).collect()
    }

    fn first(n: usize) -> impl FnOnce(&[Candidate]) -> Vec<String> {
        move |free| free.iter().take(n).map(|c| c.task_id.clone()).collect()
    }

    #[test]
    fn a_task_being_taken_is_not_chosen_again_until_released() {
        let in_flight = ClaimsInFlight::default();
        let head = candidates(&["a", "b", "c"]);
        let one = in_flight.take(0, &head, first(2));
        assert_eq!(one.tasks(), ["a", "b"]);
        let two = in_flight.take(0, &head, first(2));
        assert_eq!(two.tasks(), ["c"], "only what the first caller did not take");
        let three = in_flight.take(0, &head, |_| panic!("pick is not asked when nothing is free"));
        assert!(three.tasks().is_empty());
        assert_eq!(in_flight.len(), 3);
        let epoch = in_flight.epoch();
        drop(one);
        assert_eq!(in_flight.len(), 1);
        assert_eq!(in_flight.take(epoch + 2, &head, first(3)).tasks(), ["a", "b"]);
        drop((two, three));
        assert_eq!(in_flight.len(), 0);
    }

    #[test]
    fn a_read_older_than_a_claim_does_not_choose_its_task() {
        let in_flight = ClaimsInFlight::default();
        let head = candidates(&["a", "b"]);
        // A second caller reads the queue while "a" is being claimed...
        let claim = in_flight.take(in_flight.epoch(), &head, first(1));
        let read_began = in_flight.epoch();
        // ... the claim answers and its mark is dropped ...
        drop(claim);
        // ... and the second caller, choosing from its older read, passes "a".
        assert_eq!(in_flight.take(read_began, &head, first(2)).tasks(), ["b"]);
        // A read that began after the drop may choose it (it is still ready
        // if it is still in the queue).
        assert_eq!(in_flight.take(in_flight.epoch(), &head, first(1)).tasks(), ["a"]);
    }

    #[test]
    fn only_the_last_drops_are_remembered() {
        let in_flight = ClaimsInFlight::default();
        let ids: Vec<String> = (0..RECENT + 10).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let head = candidates(&refs);
        for chunk in head.chunks(100) {
            drop(in_flight.take(in_flight.epoch(), chunk, first(100)));
        }
        let state = in_flight.lock();
        assert_eq!(state.recent.len(), RECENT);
        assert_eq!(state.recent_order.len(), RECENT);
        assert!(state.free("t0", 0), "the oldest drop is forgotten");
        assert!(!state.free(&format!("t{}", RECENT + 9), 0));
    }
}
