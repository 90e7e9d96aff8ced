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

impl Counter {
    /// The counter's name in its keys.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Claimed => "claimed",
            Counter::Completed => "completed",
            Counter::Failed => "failed",
        }
    }

    /// Whether `key_name` (the last part of a `stats/` key) is one of this
    /// counter's shards.
    pub fn is_shard(self, key_name: &str) -> bool {
        let name = self.name();
        key_name == name
            || key_name
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|n| n.parse::<usize>().is_ok())
    }
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

    /// Prefix of the finished-time index: retention's work list, oldest first.
    pub fn finished_index(&self) -> String {
        format!("{}finished/", self.root)
    }

    /// A finished task's entry in the finished-time index (value: its final
    /// state), written in the txn that finished it, so its mod revision is the
    /// record's for as long as the record stays as it was finished.
    pub fn finished_entry(&self, finished_at_ms: i64, task_id: &str) -> String {
        format!("{}finished/{finished_at_ms:016}/{task_id}", self.root)
    }

    /// Marks that every finished task has its finished-index entry (records
    /// written before the index existed get one once; see `retention`).
    pub fn finished_index_complete(&self) -> String {
        format!("{}meta/finished-index", self.root)
    }

    /// A swarm counter (its first shard).
    pub fn counter(&self, swarm_id: &str, counter: Counter) -> String {
        self.counter_shard(swarm_id, counter, 0)
    }

    /// One shard of a swarm counter: shard 0 is `stats/{swarm}/{name}`, shard
    /// `n` is `stats/{swarm}/{name}.{n}`. A txn may put a key only once, and a
    /// put adds one to its version, so a txn that counts several claims puts
    /// one shard per claim; the count is the sum of the shards' versions.
    pub fn counter_shard(&self, swarm_id: &str, counter: Counter, shard: usize) -> String {
        let name = counter.name();
        match shard {
            0 => format!("{}stats/{swarm_id}/{name}", self.root),
            n => format!("{}stats/{swarm_id}/{name}.{n}", self.root),
        }
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

    /// Prefix of one chain's keys: checkpoint, head and records, in that order.
    pub fn witness_chain(&self, chain: &str) -> String {
        format!("{}witness/{chain}/", self.root)
    }

    /// One chain's checkpoint: the seq and hash of its last pruned record.
    pub fn witness_checkpoint(&self, chain: &str) -> String {
        format!("{}witness/{chain}/checkpoint", self.root)
    }

    /// Prefix of the user KV space (the `EventBus` API): no builder above
    /// starts with it, and [`Keys::parse`] knows none of its keys, so user
    /// keys and the coordinator's never meet.
    pub fn user_kv(&self) -> String {
        format!("{}kv/", self.root)
    }

    /// What a stored key is, with the ids in it: the inverse of the builders
    /// above. `None` for a key outside this namespace or of no known shape.
    pub fn parse<'a>(&self, key: &'a [u8]) -> Option<Key<'a>> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.root)?;
        let (kind, tail) = rest.split_once('/')?;
        let id = |s: &'a str| (!s.is_empty() && !s.contains('/')).then_some(s);
        let pair = |s: &'a str| {
            let (a, b) = s.split_once('/')?;
            Some((id(a)?, id(b)?))
        };
        Some(match kind {
            "swarms" => Key::Swarm(id(tail)?),
            "tasks" => {
                let (task_id, part) = pair(tail)?;
                match part {
                    "record" => Key::Task(task_id),
                    "claim" => Key::Claim(task_id),
                    "holder" => Key::Holder(task_id),
                    _ => return None,
                }
            }
            "holding" => {
                let (swarm_id, task_id) = pair(tail)?;
                Key::Holding { swarm_id, task_id }
            }
            "inbox" => {
                let (swarm_id, task_id) = pair(tail)?;
                Key::Inbox { swarm_id, task_id }
            }
            "blockers" => Key::Blocker(id(tail)?),
            "ready" => {
                let mut parts = tail.splitn(4, '/');
                let (capset, rank) = (id(parts.next()?)?, id(parts.next()?)?);
                let (created, task_id) = (id(parts.next()?)?, id(parts.next()?)?);
                Key::Ready { capset, rank, created, task_id }
            }
            "capsets" => Key::Capset(id(tail)?),
            "state" => {
                let (state, task_id) = pair(tail)?;
                Key::State { state, task_id }
            }
            "finished" => {
                let (finished_at, task_id) = pair(tail)?;
                Key::Finished { finished_at, task_id }
            }
            "meta" if tail == "finished-index" => Key::FinishedIndexComplete,
            "stats" => {
                let (swarm_id, counter) = pair(tail)?;
                Key::Counter { swarm_id, counter }
            }
            "witness" => match tail.strip_suffix("/head") {
                Some(chain) => Key::WitnessHead { chain },
                None if tail.ends_with("/checkpoint") => {
                    Key::WitnessCheckpoint { chain: tail.strip_suffix("/checkpoint")? }
                }
                None => {
                    let (chain, seq) = tail.rsplit_once("/r/")?;
                    Key::WitnessRecord { chain, seq: seq.parse().ok()? }
                }
            },
            _ => return None,
        })
    }
}

/// A parsed key (see [`Keys::parse`]); each variant names its builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// [`Keys::swarm`].
    Swarm(&'a str),
    /// [`Keys::task`].
    Task(&'a str),
    /// [`Keys::claim`].
    Claim(&'a str),
    /// [`Keys::holder`].
    Holder(&'a str),
    /// [`Keys::holding_entry`].
    Holding {
        /// The holding swarm.
        swarm_id: &'a str,
        /// The held task.
        task_id: &'a str,
    },
    /// [`Keys::inbox_entry`].
    Inbox {
        /// The swarm pushed to.
        swarm_id: &'a str,
        /// The pushed task.
        task_id: &'a str,
    },
    /// [`Keys::blocker`].
    Blocker(&'a str),
    /// [`Keys::ready`]: `rank` and `created` are fixed-width, so they sort as
    /// the queue does.
    Ready {
        /// The capability set's queue.
        capset: &'a str,
        /// Priority rank (lower first).
        rank: &'a str,
        /// Creation time, zero-padded.
        created: &'a str,
        /// The task.
        task_id: &'a str,
    },
    /// [`Keys::capset`].
    Capset(&'a str),
    /// [`Keys::state_entry`].
    State {
        /// The state's name.
        state: &'a str,
        /// The task.
        task_id: &'a str,
    },
    /// [`Keys::finished_entry`].
    Finished {
        /// When it finished, zero-padded (sorts by time).
        finished_at: &'a str,
        /// The task.
        task_id: &'a str,
    },
    /// [`Keys::finished_index_complete`].
    FinishedIndexComplete,
    /// [`Keys::counter`].
    Counter {
        /// The swarm.
        swarm_id: &'a str,
        /// The counter's name.
        counter: &'a str,
    },
    /// [`Keys::witness_record`].
    WitnessRecord {
        /// The chain.
        chain: &'a str,
        /// The record's sequence number.
        seq: u64,
    },
    /// [`Keys::witness_head`].
    WitnessHead {
        /// The chain.
        chain: &'a str,
    },
    /// [`Keys::witness_checkpoint`].
    WitnessCheckpoint {
        /// The chain.
        chain: &'a str,
    },
}

/// A capability set's queue name: a short hash of the sorted set.
pub fn capset_id(capabilities: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(capabilities.join("\n").as_bytes());
    crate::hex(&digest[..8])
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

    #[test]
    fn parse_inverts_every_builder() {
        let keys = Keys::new("prod");
        let cases = [
            (keys.swarm("s"), Key::Swarm("s")),
            (keys.task("t"), Key::Task("t")),
            (keys.claim("t"), Key::Claim("t")),
            (keys.holder("t"), Key::Holder("t")),
            (keys.holding_entry("s", "t"), Key::Holding { swarm_id: "s", task_id: "t" }),
            (keys.inbox_entry("s", "t"), Key::Inbox { swarm_id: "s", task_id: "t" }),
            (keys.blocker("b"), Key::Blocker("b")),
            (keys.capset("c"), Key::Capset("c")),
            (keys.state_entry("ready", "t"), Key::State { state: "ready", task_id: "t" }),
            (
                keys.finished_entry(7, "t"),
                Key::Finished { finished_at: "0000000000000007", task_id: "t" },
            ),
            (keys.finished_index_complete(), Key::FinishedIndexComplete),
            (keys.counter("s", Counter::Failed), Key::Counter { swarm_id: "s", counter: "failed" }),
            (
                keys.counter_shard("s", Counter::Claimed, 3),
                Key::Counter { swarm_id: "s", counter: "claimed.3" },
            ),
            (keys.witness_record("task/t", 7), Key::WitnessRecord { chain: "task/t", seq: 7 }),
            (keys.witness_head("task/t"), Key::WitnessHead { chain: "task/t" }),
            (keys.witness_checkpoint("task/t"), Key::WitnessCheckpoint { chain: "task/t" }),
        ];
        for (key, expected) in cases {
            assert_eq!(keys.parse(key.as_bytes()), Some(expected), "{key}");
        }
        let ready = keys.ready("c", 3, 42, "t");
        let Some(Key::Ready { capset, task_id, .. }) = keys.parse(ready.as_bytes()) else {
            panic!("{ready} does not parse as a ready key");
        };
        assert_eq!((capset, task_id), ("c", "t"));
        assert_eq!(keys.parse(b"other/swarms/s"), None);
        assert_eq!(keys.parse(b"prod/tasks/t/unknown"), None);
        assert_eq!(keys.parse(b"prod/swarms/a/b"), None);
        assert!(Counter::Claimed.is_shard("claimed") && Counter::Claimed.is_shard("claimed.11"));
        assert!(!Counter::Claimed.is_shard("claimed.x") && !Counter::Failed.is_shard("claimed"));
        let user = format!("{}../tasks/t/record", keys.user_kv());
        assert_eq!(keys.parse(user.as_bytes()), None, "a user key is never a coordinator key");
    }
}
