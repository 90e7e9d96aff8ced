//! Every key the core writes (see `docs/design.md`, "Key layout"). Ids are
//! validated to contain no `/`, so a prefix never reaches into a neighbour.

/// Key builder for one deployment's namespace.
#[derive(Clone, Debug)]
pub struct Keys {
    root: String,
}

/// The three per-swarm counters; each counts by its key's version.
#[derive(Clone, Copy, Debug)]
pub enum Counter {
    /// Claims won.
    Claimed,
    /// Tasks completed.
    Completed,
    /// Tasks failed.
    Failed,
}

impl Keys {
    /// Keys under `{namespace}/`.
    pub fn new(namespace: &str) -> Self {
        Keys { root: format!("{}/", namespace.trim_end_matches('/')) }
    }

    /// The namespace root, `{namespace}/`: every key of this deployment.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Prefix of every swarm record.
    pub fn swarms(&self) -> String {
        format!("{}swarms/", self.root)
    }

    /// One swarm's record (on its liveness lease).
    pub fn swarm(&self, swarm_id: &str) -> String {
        format!("{}swarms/{swarm_id}", self.root)
    }

    /// Prefix of every task's keys.
    pub fn tasks(&self) -> String {
        format!("{}tasks/", self.root)
    }

    /// Prefix of one task's keys: its record, claim and holder.
    pub fn task_dir(&self, task_id: &str) -> String {
        format!("{}tasks/{task_id}/", self.root)
    }

    /// A task's record.
    pub fn task(&self, task_id: &str) -> String {
        format!("{}tasks/{task_id}/record", self.root)
    }

    /// A task's live claim (on a claim lease). Its create revision is the token.
    pub fn claim(&self, task_id: &str) -> String {
        format!("{}tasks/{task_id}/claim", self.root)
    }

    /// A task's holder: the claiming swarm's id, on that swarm's liveness lease,
    /// created with the claim. A claim is live while both exist.
    pub fn holder(&self, task_id: &str) -> String {
        format!("{}tasks/{task_id}/holder", self.root)
    }

    /// Prefix of the tasks a swarm holds.
    pub fn holding(&self, swarm_id: &str) -> String {
        format!("{}holding/{swarm_id}/", self.root)
    }

    /// Prefix of every swarm's holdings.
    pub fn holdings(&self) -> String {
        format!("{}holding/", self.root)
    }

    /// That `swarm_id` holds `task_id` (on the swarm's liveness lease, so the
    /// swarm's end ends the holding in the same revision).
    pub fn holding_entry(&self, swarm_id: &str, task_id: &str) -> String {
        format!("{}holding/{swarm_id}/{task_id}", self.root)
    }

    /// Prefix of a swarm's inbox (pushed, not yet acknowledged tasks).
    pub fn inbox(&self, swarm_id: &str) -> String {
        format!("{}inbox/{swarm_id}/", self.root)
    }

    /// A pushed task in a swarm's inbox; its create revision is the push's token.
    pub fn inbox_entry(&self, swarm_id: &str, task_id: &str) -> String {
        format!("{}inbox/{swarm_id}/{task_id}", self.root)
    }

    /// Prefix of every blocker.
    pub fn blockers(&self) -> String {
        format!("{}blockers/", self.root)
    }

    /// One blocker.
    pub fn blocker(&self, blocker_id: &str) -> String {
        format!("{}blockers/{blocker_id}", self.root)
    }

    /// Prefix of the ready queue of one capability set.
    pub fn ready_queue(&self, capset: &str) -> String {
        format!("{}ready/{capset}/", self.root)
    }

    /// A task's place in its ready queue: higher priority first, then older.
    pub fn ready(&self, capset: &str, priority: i32, created_at_ms: i64, task_id: &str) -> String {
        let rank = i64::from(i32::MAX) - i64::from(priority);
        format!("{}ready/{capset}/{rank:010}/{created_at_ms:016}/{task_id}", self.root)
    }

    /// Prefix of the known capability sets.
    pub fn capsets(&self) -> String {
        format!("{}capsets/", self.root)
    }

    /// One capability set's definition.
    pub fn capset(&self, capset: &str) -> String {
        format!("{}capsets/{capset}", self.root)
    }

    /// Prefix of the tasks in one state (the `list_tasks` index).
    pub fn state_index(&self, state: &str) -> String {
        format!("{}state/{state}/", self.root)
    }

    /// A task's entry in the state index.
    pub fn state_entry(&self, state: &str, task_id: &str) -> String {
        format!("{}state/{state}/{task_id}", self.root)
    }

    /// A swarm counter.
    pub fn counter(&self, swarm_id: &str, counter: Counter) -> String {
        let name = match counter {
            Counter::Claimed => "claimed",
            Counter::Completed => "completed",
            Counter::Failed => "failed",
        };
        format!("{}stats/{swarm_id}/{name}", self.root)
    }

    /// Prefix of a swarm's counters.
    pub fn counters(&self, swarm_id: &str) -> String {
        format!("{}stats/{swarm_id}/", self.root)
    }

    /// Prefix of every witness chain.
    pub fn witness_all(&self) -> String {
        format!("{}witness/", self.root)
    }

    /// Prefix of one chain's records.
    pub fn witness_records(&self, chain: &str) -> String {
        format!("{}witness/{chain}/r/", self.root)
    }

    /// One witness record.
    pub fn witness_record(&self, chain: &str, seq: u64) -> String {
        format!("{}witness/{chain}/r/{seq:012}", self.root)
    }

    /// One chain's head.
    pub fn witness_head(&self, chain: &str) -> String {
        format!("{}witness/{chain}/head", self.root)
    }

    /// The part of a key after the namespace root, if it is one of ours.
    pub fn strip<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.root)
    }
}

/// The chain of a task.
pub fn task_chain(task_id: &str) -> String {
    format!("task/{task_id}")
}

/// The chain of a blocker.
pub fn blocker_chain(blocker_id: &str) -> String {
    format!("blocker/{blocker_id}")
}

/// The chain of a swarm.
pub fn swarm_chain(swarm_id: &str) -> String {
    format!("swarm/{swarm_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_namespace_and_rank_by_priority() {
        let keys = Keys::new("prod/");
        assert_eq!(keys.swarm("a"), "prod/swarms/a");
        assert!(keys.swarm("a").starts_with(&keys.swarms()));
        assert!(keys.claim("t").starts_with(&keys.task_dir("t")));
        let urgent = keys.ready("c", 10, 5, "t1");
        let normal = keys.ready("c", 0, 1, "t2");
        let normal_later = keys.ready("c", 0, 2, "t3");
        let low = keys.ready("c", -10, 0, "t4");
        assert!(urgent < normal && normal < normal_later && normal_later < low);
        assert!(keys.ready("c", i32::MIN, 0, "x") > keys.ready("c", i32::MAX, 0, "x"));
    }
}
