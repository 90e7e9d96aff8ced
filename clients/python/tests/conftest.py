"""A real ``ifc serve`` per backend (embedded and etcd) on free loopback ports.

The ``ifc`` binary comes from ``IFC_BIN`` or the repository's
``target/debug/ifc``; etcd from ``ETCD_BIN`` or ``etcd`` on the PATH. A missing
one fails the run with the command that provides it, never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

import httpx
import pytest

import ifc_client

REPO = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex
# The lease tests' claim timeout: a 3 s callback outlives several leases.
CLAIM_TIMEOUT_MS = 1000
BACKENDS = ["embedded", "etcd"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ifc_binary() -> str:
    path = os.environ.get("IFC_BIN") or str(REPO / "target" / "debug" / "ifc")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no ifc binary at {path}: build it with "
            "`cargo build --workspace --all-targets --all-features` (or set IFC_BIN)",
            pytrace=False,
        )
    return path


def etcd_binary() -> str:
    path = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(path, os.X_OK):
        pytest.fail(
            "etcd is not installed: `apt-get install -y etcd-server` (or set ETCD_BIN)",
            pytrace=False,
        )
    return path


def wait_until(check: Any, what: str, timeout: float = 30.0, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout} s")


class Etcd:
    """A one-member etcd on free loopback ports."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ifc-py-etcd-")
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self.log = open(os.path.join(self.dir, "etcd.log"), "wb")
        self.proc = subprocess.Popen(
            [etcd_binary(), "--name=test", f"--data-dir={self.dir}/member",
             f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
             f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
             f"--initial-cluster=test={peer_url}", "--heartbeat-interval=10",
             "--election-timeout=50", "--log-level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: httpx.get(self.url + "/health", timeout=1).json().get("health") == "true",
                   "etcd", proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """``ifc serve`` on a free loopback port; ``restart`` keeps port and data."""

    def __init__(self, backend: str, env: Optional[Dict[str, str]] = None) -> None:
        self.backend = backend
        self.etcd = Etcd() if backend == "etcd" else None
        self.dir = tempfile.mkdtemp(prefix=f"ifc-py-{backend}-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ADMIN_TOKEN
        self.extra_env = env or {}
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("IFC_", "ETCD_", "IF_COORDINATOR_"))}
        env.update({
            "IFC_LISTEN": f"127.0.0.1:{self.port}",
            "IFC_DATA_DIR": os.path.join(self.dir, "data"),
            "IFC_ADMIN_TOKEN": self.token,
            "IF_COORDINATOR_MAX_SWARMS": "1000",
            # Generous leases on the shared servers: on a loaded 2-core machine a
            # debug build can take seconds per request, and the race test is
            # about winners, not lapses (the lease tests set their own).
            "IFC_SWARM_TTL": "60",
            "IF_COORDINATOR_CLAIM_TIMEOUT": "30000",
            "RUST_LOG": "warn",
        })
        env.update(self.extra_env)
        args = [ifc_binary(), "serve"]
        if self.etcd is not None:
            args += ["--etcd", self.etcd.url]
        self.log = open(os.path.join(self.dir, "serve.log"), "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(self.url + "/readyz", timeout=1).status_code == 200,
                   f"ifc serve ({self.backend})", proc=self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            # Open SSE streams can hold a graceful shutdown; every
            # acknowledged write is durable, so a kill loses nothing.
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.etcd is not None:
            self.etcd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        with open(os.path.join(self.dir, "serve.log"), "rb") as f:
            return f.read()[-4000:].decode(errors="replace")


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One server per backend for the whole session (tests use unique ids)."""
    srv = Server(request.param)
    yield srv
    srv.close()


@pytest.fixture(params=BACKENDS)
def fresh_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of its own, for tests that restart it."""
    srv = Server(request.param)
    yield srv
    srv.close()


@pytest.fixture(scope="module", params=BACKENDS)
def short_lease_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server whose claims lapse after CLAIM_TIMEOUT_MS unless renewed."""
    srv = Server(request.param, {"IF_COORDINATOR_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT_MS)})
    yield srv
    srv.close()


@pytest.fixture
def connection_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """``IFC_SERVER``/``IFC_TOKEN`` name the session server, as a user would set them."""
    monkeypatch.setenv("IFC_SERVER", server.url)
    monkeypatch.setenv("IFC_TOKEN", server.token)


@pytest.fixture
def uid() -> str:
    """A prefix that keeps one test's ids apart from every other's."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def client(server: Server) -> AsyncIterator[ifc_client.Client]:
    async with ifc_client.Client(server.url, server.token) as c:
        yield c


@pytest.fixture
async def bus(server: Server) -> AsyncIterator[ifc_client.EventBus]:
    b = await ifc_client.EventBus(server=server.url, token=server.token).connect()
    yield b
    await b.disconnect()


@pytest.fixture
async def coordinator(bus: ifc_client.EventBus) -> AsyncIterator[ifc_client.IFCoordinator]:
    c = ifc_client.IFCoordinator(bus)
    yield c
    await c.close()


async def witness_ops(client: ifc_client.Client, task_id: str) -> List[str]:
    return [r.op for r in await client.witness(task_id=task_id)]
