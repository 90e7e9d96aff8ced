"""The processes a fault run drives: etcd members and `ifc serve` nodes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """One child process that can be killed, paused, resumed and restarted."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.paused = False

    def argv(self) -> List[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return dict(os.environ)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=self.env())
        self.paused = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.paused:
            self.resume()
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EtcdMember(Process):
    def __init__(self, index: int, workdir: Path, cluster: "EtcdCluster") -> None:
        super().__init__(f"etcd{index}", workdir)
        self.index = index
        self.client_port = free_port()
        self.peer_port = free_port()
        self.cluster = cluster
        self.started_once = False

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def argv(self) -> List[str]:
        state = "existing" if self.started_once else "new"
        return [
            os.environ.get("ETCD_BIN", "etcd"), "--name", self.name,
            "--data-dir", str(self.workdir / self.name),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.cluster.initial_cluster(),
            "--initial-cluster-state", state, "--initial-cluster-token", "ifc-faults",
            # etcd's own defaults (100 ms heartbeat, 1 s election): the election gap
            # measured is the one a deployment sees.
            # A million witness records (witness_scale.py) outgrow the default 2 GiB
            # backend quota; 8 GiB is etcd's largest recommended.
            "--quota-backend-bytes", str(8 << 30),
        ]

    def start(self) -> None:
        super().start()
        self.started_once = True

    def status(self) -> Optional[dict]:
        """The member's own view (member id, leader id), or None if it does not answer."""
        try:
            r = httpx.post(f"{self.client_url}/v3/maintenance/status", json={}, timeout=0.5)
            body = r.json()
            return {"member": int(body["header"]["member_id"]), "leader": int(body["leader"])}
        except Exception:
            return None


class EtcdCluster:
    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.members = [EtcdMember(i + 1, workdir, self) for i in range(size)]

    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def start(self) -> None:
        for m in self.members:
            m.start()
        self.wait_leader()

    def wait_leader(self, timeout: float = 30.0, poll: float = 0.05) -> "EtcdMember":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(poll)
        raise RuntimeError("etcd elected no leader")

    def leader(self) -> Optional[EtcdMember]:
        ids = {}
        leader_id = None
        for m in self.members:
            if not m.alive() or m.paused:
                continue
            s = m.status()
            if s is None:
                continue
            ids[s["member"]] = m
            if s["leader"]:
                leader_id = s["leader"]
        return ids.get(leader_id) if leader_id else None

    def follower(self) -> EtcdMember:
        leader = self.wait_leader()
        return next(m for m in self.members if m is not leader and m.alive())

    def stop(self) -> None:
        for m in self.members:
            m.stop()


class IfcNode(Process):
    def __init__(self, name: str, workdir: Path, ifc_bin: str, token: str, etcd: Optional[str],
                 claim_timeout_ms: int, namespace: str = "ifc") -> None:
        super().__init__(name, workdir)
        self.ifc_bin = ifc_bin
        self.token = token
        self.etcd = etcd
        self.port = free_port()
        self.claim_timeout_ms = claim_timeout_ms
        self.namespace = namespace

    @property
    def data_dir(self) -> Path:
        return self.workdir / f"{self.name}-data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> List[str]:
        argv = [self.ifc_bin, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir), "--namespace", self.namespace,
                "--claim-timeout-ms", str(self.claim_timeout_ms)]
        if self.etcd:
            argv += ["--etcd", self.etcd]
        return argv

    def env(self) -> dict:
        env = dict(os.environ)
        env["IFC_ADMIN_TOKEN"] = self.token
        env.pop("ETCD_HOST", None)
        env.pop("ETCD_PORT", None)
        return env

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; see {self.workdir / (self.name + '.log')}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} never became ready")
