//! The cluster's members as this store sees them: one gRPC channel per endpoint
//! (etcd-client's balanced channel keeps sending to a dead endpoint, its issue
//! 39), which members answer, which one leads, and a background prober that
//! marks members down and up again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Channel, Client, ConnectOptions};
use ifc_kv::KvError;
use tokio::sync::{OnceCell, watch};

use crate::EtcdOptions;
use crate::retry::{Failure, classify};

/// How often the prober asks each member for its status.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long a member may take to answer a probe before it counts as down.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait between probes of a member that keeps failing.
const MAX_PROBE_BACKOFF: Duration = Duration::from_secs(5);

/// One etcd member, reached through its own channel.
pub(crate) struct Member {
    pub(crate) endpoint: String,
    channel: Channel,
    connect: ConnectOptions,
    /// Built on first use: with auth, building it asks the member for a token.
    client: OnceCell<Client>,
    state: Mutex<MemberState>,
    /// Bumped every time the member is marked down, so a watch on it moves away.
    down: watch::Sender<u64>,
}

#[derive(Clone, Copy)]
struct MemberState {
    up: bool,
    /// etcd's member id, once a status answer told it (0 until then).
    id: u64,
    /// Failed probes in a row, for the probe backoff.
    failures: u32,
    next_probe: Instant,
}

impl Member {
    fn new(endpoint: &str, options: &EtcdOptions) -> Result<Member, KvError> {
        let mut connect = ConnectOptions::new().with_require_leader(true);
        if let Some((user, password)) = &options.user {
            connect = connect.with_user(user.clone(), password.clone());
        }
        Ok(Member {
            endpoint: endpoint.to_string(),
            channel: Channel::Tonic(channel(endpoint, options)?),
            connect,
            client: OnceCell::new(),
            state: Mutex::new(MemberState {
                up: true,
                id: 0,
                failures: 0,
                next_probe: Instant::now(),
            }),
            down: watch::Sender::new(0),
        })
    }

    /// The member's client; fails (as a transport failure) only when auth is on
    /// and the member cannot hand out a token.
    pub(crate) async fn client(&self) -> Result<Client, etcd_client::Error> {
        self.client
            .get_or_try_init(|| {
                Client::from_channel(self.channel.clone(), Some(self.connect.clone()))
            })
            .await
            .cloned()
    }

    fn state(&self) -> MemberState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut MemberState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn mark_up(&self) {
        self.update(|s| {
            s.up = true;
            s.failures = 0;
        });
    }

    pub(crate) fn mark_down(&self, reason: &str) {
        let was_up = self.state().up;
        self.update(|s| s.up = false);
        if was_up {
            tracing::warn!(endpoint = %self.endpoint, reason, "etcd member marked down");
        }
        self.down.send_modify(|n| *n += 1);
    }

    /// Resolves when this member is next marked down.
    pub(crate) fn down_signal(&self) -> watch::Receiver<u64> {
        self.down.subscribe()
    }
}

/// Builds a lazy channel to one endpoint: nothing is dialled until a request.
fn channel(endpoint: &str, options: &EtcdOptions) -> Result<tonic::transport::Channel, KvError> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else if options.tls.is_some() {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    };
    let invalid = |e: &dyn std::fmt::Display| {
        KvError::InvalidArgument(format!("bad etcd endpoint {endpoint:?}: {e}"))
    };
    let built = tonic::transport::Endpoint::from_shared(url).map_err(|e| invalid(&e))?;
    // HTTP/2 pings find a vanished member even on an idle channel. Kept slow
    // (as before failover): a loaded member must not lose its connection and
    // every request in flight on it; the prober finds a frozen one sooner.
    let built = built
        .connect_timeout(options.connect_timeout.min(options.attempt_timeout))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let built = crate::tls::apply(built, options.tls.as_ref())?;
    Ok(built.connect_lazy())
}

/// The leader as last reported, with the raft term it leads in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Leadership {
    /// etcd member id of the leader (0: unknown).
    pub(crate) id: u64,
    pub(crate) term: u64,
}

/// Every member, the leader as last seen, and where requests went last.
pub(crate) struct Members {
    pub(crate) list: Vec<Member>,
    /// The leader as last reported; receivers learn of a new one (an election
    /// happened: anything still waiting on the old leader may never answer).
    leader: watch::Sender<Leadership>,
    /// The member that answered last, tried first when the leader is unknown.
    preferred: AtomicUsize,
}

impl Members {
    pub(crate) fn new(options: &EtcdOptions) -> Result<Members, KvError> {
        let list = options
            .endpoints
            .iter()
            .map(|e| Member::new(e, options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Members {
            list,
            leader: watch::Sender::new(Leadership::default()),
            preferred: AtomicUsize::new(0),
        })
    }

    /// The order to try members in: the leader (writes need no forwarding
    /// there, and a follower's failure then costs nothing), then other members
    /// that are up, then those marked down (our view may be stale).
    pub(crate) fn order(&self) -> Vec<usize> {
        let leader = self.leader.borrow().id;
        let preferred = self.preferred.load(Ordering::Relaxed);
        let n = self.list.len();
        let mut up: Vec<usize> = Vec::with_capacity(n);
        let mut down: Vec<usize> = Vec::new();
        for i in (0..n).map(|k| (preferred + k) % n) {
            let state = self.list[i].state();
            if !state.up {
                down.push(i);
            } else if leader != 0 && state.id == leader {
                up.insert(0, i);
            } else {
                up.push(i);
            }
        }
        up.extend(down);
        up
    }

    /// Records a member's report of the leader. Only a newer term replaces
    /// the leader known (a member that has not heard of an election yet
    /// still names the old one); a change wakes [`Members::leader_changes`].
    fn saw_leader(&self, reported: Leadership) {
        if reported.id == 0 {
            return;
        }
        self.leader.send_if_modified(|known| {
            let newer = reported.term > known.term || known.id == 0;
            // The first leader learned is no change: nothing waited on another.
            let changed = newer && known.id != 0 && reported.id != known.id;
            if newer {
                *known = reported;
            }
            changed
        });
    }

    /// Resolves when a different leader is next reported.
    pub(crate) fn leader_changes(&self) -> watch::Receiver<Leadership> {
        self.leader.subscribe()
    }

    pub(crate) fn answered(&self, i: usize) {
        self.list[i].mark_up();
        self.preferred.store(i, Ordering::Relaxed);
    }

    /// Asks one member for its status. `Ok(true)`: it answers and has a
    /// leader; `Ok(false)`: it answers but has none (an election, or it is cut
    /// off from the quorum).
    async fn probe(&self, i: usize) -> Result<bool, String> {
        let member = &self.list[i];
        let status = async {
            let client = member.client().await?;
            client.maintenance_client().status().await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, status).await {
            Err(_) => Err(format!("no status answer within {PROBE_TIMEOUT:?}")),
            Ok(Ok(status)) => {
                let id = status.header().map_or(0, |h| h.member_id());
                member.update(|s| s.id = id);
                self.saw_leader(Leadership { id: status.leader(), term: status.raft_term() });
                Ok(status.leader() != 0)
            }
            Ok(Err(e)) => match classify(e) {
                Failure::NoLeader(_) => Ok(false),
                Failure::Final(e) => Err(e.to_string()),
                Failure::NotApplied(reason)
                | Failure::Unknown(reason)
                | Failure::Interrupted(reason) => Err(reason),
            },
        }
    }

    /// Probes the members that are due, marking each up or down.
    pub(crate) async fn probe_due(&self) {
        let now = Instant::now();
        let due: Vec<usize> =
            (0..self.list.len()).filter(|&i| self.list[i].state().next_probe <= now).collect();
        let results = futures::future::join_all(due.iter().map(|&i| self.probe(i))).await;
        for (i, result) in due.into_iter().zip(results) {
            let member = &self.list[i];
            match result {
                Ok(_) => {
                    member.mark_up();
                    member.update(|s| s.next_probe = Instant::now() + PROBE_INTERVAL);
                }
                Err(reason) => {
                    member.mark_down(&reason);
                    member.update(|s| {
                        s.failures = s.failures.saturating_add(1);
                        let backoff = PROBE_INTERVAL
                            .saturating_mul(1 << s.failures.min(4))
                            .min(MAX_PROBE_BACKOFF);
                        s.next_probe = Instant::now() + backoff;
                    });
                }
            }
        }
    }

    /// Probes every member now: how many answer.
    pub(crate) async fn answering(&self) -> usize {
        let results = futures::future::join_all((0..self.list.len()).map(|i| self.probe(i))).await;
        let mut answering = 0;
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(_) => {
                    self.list[i].mark_up();
                    answering += 1;
                }
                Err(reason) => self.list[i].mark_down(&reason),
            }
        }
        answering
    }
}

/// Probes the members until the store is dropped.
pub(crate) async fn probe_forever(shared: std::sync::Weak<crate::Shared>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL / 2).await;
        let Some(shared) = shared.upgrade() else { return };
        shared.members.probe_due().await;
    }
}
