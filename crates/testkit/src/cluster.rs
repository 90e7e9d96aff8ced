//! A real etcd cluster for fault tests: three (or more) members on loopback,
//! each of which a test can kill, restart, freeze and thaw.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ifc_kv_etcd::{EtcdOptions, EtcdStore};

use crate::etcd::{INSTALL_HINT, free_ports};

/// One member's process and addresses.
struct ClusterMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ClusterMember {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// An etcd cluster on loopback ports, stopped (killed and reaped) on drop.
/// A leader's death costs a real election (500 ms election timeout).
pub struct EtcdCluster {
    members: Vec<ClusterMember>,
    initial_cluster: String,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster serves a quorum read.
    /// Panics with an install hint if `etcd` is not on `PATH`.
    pub async fn start(size: usize) -> EtcdCluster {
        // Ports are picked free, then released for etcd to bind: another
        // process may take one meanwhile (seen in CI). Such a start is tried
        // again on fresh ports.
        for _ in 0..4 {
            let mut cluster = EtcdCluster::spawn_all(size);
            match cluster.wait_serving_or_exit(cluster.endpoints()).await {
                Ok(()) => return cluster,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("etcd members kept finding their ports taken (4 tries)");
    }

    /// Spawns `size` members on free ports, without waiting.
    fn spawn_all(size: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports = free_ports(2 * size);
        let members: Vec<ClusterMember> = (0..size)
            .map(|i| ClusterMember {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster { members, initial_cluster, _dir: dir };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(ClusterMember::endpoint).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    /// A store given every member's endpoint.
    pub async fn connect(&self) -> EtcdStore {
        EtcdStore::connect(EtcdOptions::new(self.endpoints()))
            .await
            .unwrap_or_else(|e| panic!("connect to the etcd cluster: {e}"))
    }

    /// Kills member `i` with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its ports and data, and waits until it
    /// serves a read (it has rejoined and found the leader).
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_serving(vec![self.endpoint(i)]).await;
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open and it answers
    /// nothing, as a stalled or partitioned machine.
    pub fn freeze(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Thaws member `i` (SIGCONT).
    pub fn thaw(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    /// The index of the member that leads now, asking the live members;
    /// waits (up to 30 s) while an election runs.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(leader) = self.find_leader().await {
                return leader;
            }
            assert!(Instant::now() < deadline, "the etcd cluster elected no leader in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A member other than the leader.
    pub async fn follower(&self) -> usize {
        let leader = self.leader().await;
        (0..self.members.len())
            .find(|&i| i != leader && self.members[i].child.is_some())
            .expect("a live follower")
    }

    async fn find_leader(&self) -> Option<usize> {
        let mut ids = vec![0u64; self.members.len()];
        let mut leader = 0;
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let mut options = EtcdOptions::new(vec![member.endpoint()]);
            options.connect_timeout = Duration::from_millis(500);
            options.request_timeout = Duration::from_millis(500);
            options.attempt_timeout = Duration::from_millis(500);
            let Ok(store) = EtcdStore::connect(options).await else { continue };
            let status = tokio::time::timeout(Duration::from_millis(500), async {
                store.client().status().await.ok()
            })
            .await
            .ok()
            .flatten();
            if let Some(status) = status {
                ids[i] = status.header().map_or(0, |h| h.member_id());
                if status.leader() != 0 {
                    leader = status.leader();
                }
            }
        }
        ids.iter().position(|&id| id != 0 && id == leader)
    }

    fn signal(&self, i: usize, signal: &str) {
        assert!(self.try_signal(i, signal), "kill {signal} etcd member {i} failed");
    }

    /// Sends `signal` to member `i`; false if it failed (the member exited
    /// and was reaped, as after a failed start).
    fn try_signal(&self, i: usize, signal: &str) -> bool {
        let Some(child) = &self.members[i].child else { return true };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status()
            .expect("run kill(1)");
        status.success()
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster.clone();
        let member = &mut self.members[i];
        let log = std::fs::File::create(&member.log).expect("etcd log file");
        let child = Command::new("etcd")
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", member.data.display()))
            .arg(format!("--listen-client-urls={}", member.endpoint()))
            .arg(format!("--advertise-client-urls={}", member.endpoint()))
            .arg(format!("--listen-peer-urls={}", member.peer()))
            .arg(format!("--initial-advertise-peer-urls={}", member.peer()))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=ifc-test")
            // 50 ms heartbeats and a 500 ms election timeout: a real election
            // on a loaded test machine, and a 1 s minimum lease TTL.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--max-request-bytes=2097152")
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(child) => member.child = Some(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot start etcd: {e}"),
        }
    }

    /// Waits until a linearizable read through these endpoints succeeds.
    async fn wait_serving(&mut self, endpoints: Vec<String>) {
        if let Err(log) = self.wait_serving_or_exit(endpoints).await {
            panic!("{log}");
        }
    }

    /// Waits until a linearizable read through these endpoints succeeds, or
    /// a member exits (its log is the error).
    async fn wait_serving_or_exit(&mut self, endpoints: Vec<String>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut options = EtcdOptions::new(endpoints.clone());
            options.connect_timeout = Duration::from_secs(1);
            options.request_timeout = Duration::from_secs(2);
            options.attempt_timeout = Duration::from_secs(1);
            if EtcdStore::connect(options).await.is_ok() {
                return Ok(());
            }
            for (i, member) in self.members.iter_mut().enumerate() {
                if let Some(child) = member.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    let log = std::fs::read_to_string(&member.log).unwrap_or_default();
                    return Err(format!("etcd member {i} exited with {status}:\n{log}"));
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default())
                    .collect();
                panic!("etcd cluster did not serve in 60 s:\n{}", logs.join("\n---\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // SIGKILL ends a frozen process too; thawing first is only tidy.
            self.try_signal(i, "-CONT");
            self.kill(i);
        }
    }
}
