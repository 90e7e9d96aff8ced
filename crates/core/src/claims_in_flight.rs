//! The ready tasks a claim on this node is taking right now.
//!
//! Concurrent `claim_next` and batch callers on one node read the same queue
//! head. Left alone they pick overlapping tasks and race each other's
//! compare-and-swap: a lost race costs a txn and a re-read, and a batch's txn
//! is all or nothing, so one overlap fails a whole group of claims. Each
//! caller therefore chooses only among tasks no other claim on this node is
//! taking, and marks its choice until its txn has answered. Other nodes still
//! race, and the store's compares still decide every claim; this only keeps a
//! node from fighting itself.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::claim::Candidate;

/// Task ids being claimed on this node.
#[derive(Default)]
pub(crate) struct ClaimsInFlight {
    tasks: Mutex<HashSet<String>>,
}

/// Tasks one caller chose, marked as being taken until this is dropped.
pub(crate) struct Taking<'a> {
    owner: &'a ClaimsInFlight,
    pub tasks: Vec<String>,
}

impl ClaimsInFlight {
    /// How many tasks are being taken: a caller reads that many more keys of
    /// a queue head, so the head still holds tasks it may choose.
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Chooses with `pick` among `candidates` (best first) that no other
    /// claim on this node is taking, and marks the chosen ones until the
    /// returned value is dropped. Choosing and marking are one step, so two
    /// callers never choose the same task.
    pub fn take(
        &self,
        candidates: &[Candidate],
        pick: impl FnOnce(&[Candidate]) -> Vec<String>,
    ) -> Taking<'_> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let free: Vec<Candidate> =
            candidates.iter().filter(|c| !tasks.contains(&c.task_id)).cloned().collect();
        let chosen = if free.is_empty() { Vec::new() } else { pick(&free) };
        tasks.extend(chosen.iter().cloned());
        Taking { owner: self, tasks: chosen }
    }
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        let mut tasks = self.owner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for task_id in &self.tasks {
            tasks.remove(task_id);
        }
    }
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
        let one = in_flight.take(&head, first(2));
        assert_eq!(one.tasks, ["a", "b"]);
        let two = in_flight.take(&head, first(2));
        assert_eq!(two.tasks, ["c"], "only what the first caller did not take");
        let three = in_flight.take(&head, first(2));
        assert!(three.tasks.is_empty(), "nothing free: pick is not asked");
        assert_eq!(in_flight.len(), 3);
        drop(one);
        assert_eq!(in_flight.len(), 1);
        assert_eq!(in_flight.take(&head, first(3)).tasks, ["a", "b"]);
        drop((two, three));
        assert_eq!(in_flight.len(), 0);
    }
}
