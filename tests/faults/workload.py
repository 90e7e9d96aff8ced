"""A steady workload that records every request and its answer.

Each worker is one swarm. It creates a task, claims it, and completes it with the
claim's token, over and over, sending each request to the next `ifc` node in turn
and heartbeating on the side. It never retries a write blindly: a write whose
answer was lost is recorded as unknown (the checker resolves it by reading), and
only a refused connection (nothing was sent) moves the request to another node.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import httpx

REQUEST_TIMEOUT = 8.0


@dataclass
class Call:
    op: str  # create, claim, complete, heartbeat
    task: Optional[str]
    swarm: str
    node: str
    start: float
    end: float = 0.0
    status: int = 0  # 0: no HTTP answer
    code: str = ""  # the error code, or the transport failure
    token: Optional[int] = None
    # The phase in force when the answer came (or the wait ended): a request in
    # flight when the next fault is injected suffered that fault, not the last one.
    phase: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def unknown(self) -> bool:
        """No answer, or the server says it cannot know: the write may have happened."""
        return self.status == 0 or self.code == "outcome_unknown"

    @property
    def failed(self) -> bool:
        return not self.ok


@dataclass
class History:
    calls: List[Call] = field(default_factory=list)
    phase: str = "setup"


class Worker:
    def __init__(self, index: int, nodes: Sequence[str], admin_token: str,
                 history: History) -> None:
        self.index = index
        self.swarm = f"w{index}"
        self.nodes = list(nodes)
        self.admin_token = admin_token
        self.history = history
        self.swarm_token = ""
        self.turn = itertools.cycle(range(len(self.nodes)))
        self.seq = 0

    async def request(self, http: httpx.AsyncClient, op: str, task: Optional[str], method: str,
                      path: str, body: Optional[dict], admin: bool) -> Tuple[Call, Dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.admin_token if admin else self.swarm_token}"}
        if not admin:
            headers["X-Ifc-Swarm"] = self.swarm
        first = next(self.turn)
        call, payload = None, {}
        for attempt in range(len(self.nodes)):
            node = self.nodes[(first + attempt) % len(self.nodes)]
            call = Call(op, task, self.swarm, node, time.monotonic(), phase=self.history.phase)
            try:
                r = await http.request(method, node + path, json=body, headers=headers,
                                       timeout=REQUEST_TIMEOUT)
                call.status = r.status_code
                payload = r.json() if r.content else {}
                if not isinstance(payload, dict):
                    payload = {}
                if not call.ok:
                    call.code = str(payload.get("code", ""))
                elif op == "claim" and payload.get("outcome") == "claimed":
                    call.token = int(payload["token"])
                elif op == "claim":
                    call.status, call.code = 409, str(payload.get("outcome"))
            except httpx.ConnectError:
                call.code = "connect_refused"  # nothing was sent: another node may take it
                self.finish(call)
                continue
            except httpx.HTTPError as e:
                call.code = type(e).__name__
            self.finish(call)
            return call, payload
        return call, payload

    def finish(self, call: Call) -> None:
        call.end = time.monotonic()
        call.phase = self.history.phase
        self.history.calls.append(call)

    async def register(self, http: httpx.AsyncClient) -> None:
        for _ in range(100):
            call, payload = await self.request(
                http, "register", None, "POST", "/v1/swarms",
                {"swarm_id": self.swarm, "capabilities": ["fault:work"]}, admin=True)
            if call.ok:
                self.swarm_token = payload["token"]
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"swarm {self.swarm} could not register")

    async def heartbeat(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            call, _ = await self.request(http, "heartbeat", None, "POST",
                                      f"/v1/swarms/{self.swarm}/heartbeat", {}, admin=False)
            if call.code == "swarm_not_registered":
                await self.register(http)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def run(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.seq += 1
            task = f"t-{self.swarm}-{self.seq}"
            created, _ = await self.request(http, "create", task, "POST", "/v1/tasks",
                                         {"task_id": task, "task_type": "fault",
                                          "required_capabilities": ["fault:work"]}, admin=True)
            if not created.ok:
                await asyncio.sleep(0.05)
                continue
            claim, _ = await self.request(http, "claim", task, "POST", f"/v1/tasks/{task}/claim",
                                       {"swarm_id": self.swarm}, admin=False)
            if claim.code == "swarm_not_registered":
                await self.register(http)
            if claim.token is None:
                continue
            done, _ = await self.request(http, "complete", task, "POST",
                                         f"/v1/tasks/{task}/complete",
                                         {"swarm_id": self.swarm, "token": claim.token,
                                          "result": {"by": self.swarm}}, admin=False)
            done.token = claim.token


async def start_workers(nodes: Sequence[str], admin_token: str, history: History, count: int,
                        http: httpx.AsyncClient, stop: asyncio.Event) -> List[asyncio.Task]:
    workers = [Worker(i, nodes, admin_token, history) for i in range(count)]
    for w in workers:
        await w.register(http)
    tasks = []
    for w in workers:
        tasks.append(asyncio.create_task(w.run(http, stop)))
        tasks.append(asyncio.create_task(w.heartbeat(http, stop)))
    return tasks
