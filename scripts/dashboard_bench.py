"""Dashboard bench: first load (GET / + every asset + the overview's first API
calls, as a browser with an empty cache makes them) and the extra RSS of
`ifc serve` with 20 dashboards' event streams open.

    tests/ui/.venv/bin/python scripts/dashboard_bench.py target/release/ifc
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import httpx

ADMIN, VIEWER = "bench-admin", "bench-viewer"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main() -> None:
    ifc = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/ifc")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, IFC_ADMIN_TOKEN=ADMIN, IFC_VIEWER_TOKEN=VIEWER)
        server = subprocess.Popen([ifc, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            auth = {"Authorization": f"Bearer {VIEWER}"}
            html = httpx.get(url + "/").text
            assets = ["/ui/app.css", "/ui/favicon.svg"] + [f"/ui/{m}" for m in re.findall(
                r'"\./([a-z]+\.js)"', "".join(httpx.get(f"{url}/ui/{f}").text for f in (
                    "app.js", "overview.js", "live.js", "tasks.js", "task.js", "blockers.js", "dead.js")))] + ["/ui/app.js"]
            assets = sorted(set(assets))
            api = ["/v1/queues", "/v1/swarms", "/v1/queues", "/v1/stats/throughput",
                   "/v1/blockers?open=true", "/v1/witness/verify?max_chains=1000"]
            loads = []
            for _ in range(20):
                with httpx.Client(base_url=url) as fresh:  # a new connection, an empty cache
                    started = time.perf_counter()
                    assert fresh.get("/").status_code == 200
                    for a in assets:
                        assert fresh.get(a).status_code == 200, a
                    for p in api:
                        assert fresh.get(p, headers=auth).status_code == 200, p
                    loads.append((time.perf_counter() - started) * 1e3)
            loads.sort()
            size = len(html.encode()) + sum(len(httpx.get(url + a).content) for a in assets)
            print(f"first load: {len(assets) + 1} files, {size / 1024:.1f} KiB; "
                  f"{len(api)} API calls; median {loads[len(loads) // 2]:.1f} ms, max {loads[-1]:.1f} ms (20 loads)")
            time.sleep(0.5)
            before = rss_kib(server.pid)
            streams = []
            for _ in range(20):
                client = httpx.Client(base_url=url, timeout=None)
                response = client.send(client.build_request("GET", "/v1/events", headers=auth), stream=True)
                assert response.status_code == 200
                streams.append((client, response))
            time.sleep(1.0)
            after = rss_kib(server.pid)
            print(f"RSS: {before / 1024:.1f} MiB idle, {after / 1024:.1f} MiB with 20 dashboards' "
                  f"event streams open: +{(after - before) / 1024:.2f} MiB "
                  f"({(after - before) / 20:.0f} KiB per dashboard)")
            for client, response in streams:
                response.close()
                client.close()
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
