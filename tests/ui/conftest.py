"""Real processes for the browser test: etcd (when asked), `ifc serve`, Chromium."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ADMIN = "ui-test-admin-token"
VIEWER = "ui-test-viewer-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Etcd:
    def __init__(self, workdir: Path) -> None:
        etcd = os.environ.get("ETCD_BIN", "etcd")
        if not shutil.which(etcd):
            raise RuntimeError("etcd is not installed: `apt-get install -y etcd-server` (or set ETCD_BIN)")
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self.log = open(workdir / "etcd.log", "wb")
        self.process = subprocess.Popen(
            [etcd, "--name", "ui", "--data-dir", str(workdir / "etcd"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"ui={peer_url}", "--heartbeat-interval", "10",
             "--election-timeout", "100"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(f"{self.url}/health", timeout=1).status_code == 200, "etcd")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


class Server:
    """A real `ifc serve` on a loopback port with a temporary data directory."""

    def __init__(self, workdir: Path, etcd_url=None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [os.environ["IFC_BIN"], "serve", "--listen", f"127.0.0.1:{self.port}",
                     "--data-dir", str(workdir / "data"), "--claim-timeout-ms", "60000",
                     "--shutdown-grace", "1"]
        if etcd_url:
            self.argv += ["--etcd", etcd_url]
        self.env = dict(os.environ, IFC_ADMIN_TOKEN=ADMIN, IFC_VIEWER_TOKEN=VIEWER)
        self.env.pop("ETCD_HOST", None)
        self.env.pop("ETCD_PORT", None)
        self.log_path = workdir / "ifc.log"
        self.log = open(self.log_path, "wb")
        self.start()
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200, "ifc serve")

    def restart(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.start()

    def stop(self) -> None:
        self.admin.close()
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def backends():
    chosen = os.environ.get("IFC_UI_BACKENDS", "embedded etcd").split()
    return [b for b in ("embedded", "etcd") if b in chosen]


@pytest.fixture(params=backends())
def server(request):
    with tempfile.TemporaryDirectory(prefix="ifc-ui-") as tmp:
        workdir = Path(tmp)
        etcd = Etcd(workdir) if request.param == "etcd" else None
        srv = Server(workdir, etcd.url if etcd else None)
        srv.backend = request.param
        try:
            yield srv
        finally:
            srv.stop()
            if etcd:
                etcd.stop()
            # The token must never reach the log.
            log = srv.log_path.read_text(errors="replace")
            assert ADMIN not in log and VIEWER not in log, "a token was logged"


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["CHROMIUM_BIN"]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(os.environ["CHROMEDRIVER_BIN"]), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
