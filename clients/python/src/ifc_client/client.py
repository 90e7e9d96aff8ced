"""The lower-level async client: one method per HTTP route.

:class:`Client` acts as the orchestrator (admin token); :meth:`Client.as_swarm`
gives a :class:`SwarmClient` acting as one swarm (its own token and the
``X-Ifc-Swarm`` header) over the same connection pool. Answers are the
pydantic models of :mod:`ifc_client.models`; failures raise the exception of
their stable code (:mod:`ifc_client.errors`).
"""

from __future__ import annotations

from urllib.parse import quote
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import httpx

from . import models as m
from .config import Connection, resolve
from .errors import CoordinatorConnectionError, error_from_response
from .ids import check_id
from .sse import Follower

NewTaskLike = Union[m.NewTask, Mapping[str, Any]]


class _Http:
    """The shared connection pool and the request/answer plumbing."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        verify: Union[bool, str] = connection.ca_cert or True
        self.http = httpx.AsyncClient(
            base_url=connection.server,
            timeout=connection.timeout,
            verify=verify,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )

    async def request(
        self,
        method: str,
        path: str,
        headers: Dict[str, str],
        *,
        json: Any = None,
        params: Optional[Dict[str, Any]] = None,
        raw: bool = False,
    ) -> Any:
        try:
            response = await self.http.request(
                method, path, headers=headers, json=json, params=params
            )
        except httpx.TransportError as e:
            raise CoordinatorConnectionError(
                f"cannot reach {self.connection.server}: {e!r}"
            ) from e
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise error_from_response(response.status_code, body)
        if raw:
            return response.text
        if not response.content:
            return None
        return response.json()


def _new_task_body(task: NewTaskLike) -> Dict[str, Any]:
    model = task if isinstance(task, m.NewTask) else m.NewTask.model_validate(dict(task))
    return model.model_dump(exclude_none=True)


def _new_task(task: NewTaskLike) -> Dict[str, Any]:
    body = _new_task_body(task)
    check_id("task_id", body["task_id"])
    return body


class _Common:
    """Routes any authenticated caller may use."""

    _http: _Http

    def _headers(self) -> Dict[str, str]:
        raise NotImplementedError

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        return await self._http.request(method, path, self._headers(), **kw)

    async def get_task(self, task_id: str) -> m.TaskView:
        """The whole task: record, effective state, live token and deadline."""
        return m.TaskView.model_validate(await self._call("GET", f"/v1/tasks/{_seg(task_id)}"))

    async def task_owner(self, task_id: str) -> str:
        """The seed's owner string; raises ``TaskNotFoundError``."""
        body = await self._call("GET", f"/v1/tasks/{_seg(task_id)}/owner")
        return str(body["owner"])


class SwarmClient(_Common):
    """Acting as one swarm."""

    def __init__(self, http: _Http, swarm_id: str, token: str) -> None:
        self._http = http
        self.swarm_id = swarm_id
        self.token = token

    def _headers(self) -> Dict[str, str]:
        # A header cannot carry every string; the id grammar says which.
        check_id("swarm_id", self.swarm_id)
        return {"Authorization": f"Bearer {self.token}", "X-Ifc-Swarm": self.swarm_id}

    def _me(self) -> str:
        return f"/v1/swarms/{_seg(self.swarm_id)}"

    async def heartbeat(self) -> int:
        """Keeps the swarm alive; the seconds it now stays registered."""
        return int((await self._call("POST", f"{self._me()}/heartbeat"))["ttl_secs"])

    async def unregister(self) -> None:
        """Unregisters the swarm; its claims return to the pool at once."""
        await self._call("DELETE", self._me())

    async def stats(self) -> m.SwarmStats:
        return m.SwarmStats.model_validate(await self._call("GET", self._me()))

    async def claim_task(self, task_id: str) -> m.ClaimOutcome:
        """Claims a task; a lost race is an outcome, not an error."""
        body = await self._call(
            "POST", f"/v1/tasks/{_seg(task_id)}/claim", json={"swarm_id": self.swarm_id}
        )
        return m.ClaimOutcome.from_wire(body)

    async def claim_next(self) -> Optional[m.Claim]:
        """Claims the best ready task this swarm can do, or ``None``."""
        body = await self._call("POST", f"{self._me()}/claim-next")
        return None if body.get("claim") is None else m.Claim.model_validate(body["claim"])

    async def claim_batch(self, max: int = 32) -> List[m.Claim]:
        """Claims up to ``max`` (1..100) of the best ready tasks this swarm can
        do in one request, best first, each its own claim with its own token
        and deadline; fewer, or none, when fewer are ready."""
        body = await self._call("POST", f"{self._me()}/claim-batch", json={"max": max})
        return [m.Claim.model_validate(c) for c in body["claims"]]

    async def renew(self, task_id: str, token: int) -> int:
        """Extends a claim; its new deadline (ms since the epoch)."""
        body = await self._call(
            "POST",
            f"/v1/tasks/{_seg(task_id)}/renew",
            json={"swarm_id": self.swarm_id, "token": token},
        )
        return int(body["deadline_ms"])

    async def complete(self, task_id: str, token: int, result: Any = None) -> m.TaskRecord:
        body = await self._call(
            "POST",
            f"/v1/tasks/{_seg(task_id)}/complete",
            json={"swarm_id": self.swarm_id, "token": token, "result": result},
        )
        return m.TaskRecord.model_validate(body)

    async def fail(self, task_id: str, token: int, error: str) -> m.TaskRecord:
        body = await self._call(
            "POST",
            f"/v1/tasks/{_seg(task_id)}/fail",
            json={"swarm_id": self.swarm_id, "token": token, "error": error},
        )
        return m.TaskRecord.model_validate(body)

    async def release(self, task_id: str, token: int) -> m.TaskRecord:
        """Gives a claimed task back to the pool unfinished, without using an
        attempt (a worker that stops before it could finish)."""
        body = await self._call(
            "POST",
            f"/v1/tasks/{_seg(task_id)}/release",
            json={"swarm_id": self.swarm_id, "token": token},
        )
        return m.TaskRecord.model_validate(body)

    def inbox(self, after: Optional[int] = None) -> Follower[m.InboxItem]:
        """Pushed tasks as they arrive, reconnecting with resume. Without
        ``after``, starts with every push not yet acknowledged."""
        return Follower(
            self._http.http,
            f"{self._me()}/inbox",
            self._headers,
            "task",
            m.InboxItem.model_validate,
            lambda item: item.revision,
            after,
        )

    async def ack(self, task_id: str, token: int) -> int:
        """Acknowledges a push: it becomes a normal claim; its deadline."""
        body = await self._call(
            "POST", f"{self._me()}/inbox/{_seg(task_id)}/ack", json={"token": token}
        )
        return int(body["deadline_ms"])

    async def decline(self, task_id: str, token: int) -> m.TaskRecord:
        """Declines a push: the task returns to the pool at once."""
        body = await self._call(
            "POST", f"{self._me()}/inbox/{_seg(task_id)}/decline", json={"token": token}
        )
        return m.TaskRecord.model_validate(body)

    async def raise_blocker(self, info: Union[m.BlockerInfo, Mapping[str, Any]]) -> str:
        """Raises a blocker; its id."""
        model = info if isinstance(info, m.BlockerInfo) else m.BlockerInfo.model_validate(info)
        if model.task_id is not None:
            check_id("task_id", model.task_id)
        body = await self._call(
            "POST",
            f"{self._me()}/blockers",
            json=model.model_dump(by_alias=True, exclude_none=True),
        )
        return str(body["blocker_id"])


class Client(_Common):
    """The orchestrator's client (admin token).

    Connection from the arguments, else ``IFC_SERVER`` / ``IFC_TOKEN``, else
    ``./ifc-data/admin.token`` of a local server.
    """

    def __init__(
        self,
        server: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
        ca_cert: Optional[str] = None,
        connection: Optional[Connection] = None,
    ) -> None:
        self.connection = connection or resolve(server, token, timeout=timeout, ca_cert=ca_cert)
        self._http = _Http(self.connection)

    def _headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.connection.token}"}

    async def aclose(self) -> None:
        await self._http.http.aclose()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def as_swarm(self, swarm_id: str, token: str) -> SwarmClient:
        """Acts as ``swarm_id`` with its token, over this client's pool."""
        return SwarmClient(self._http, swarm_id, token)

    # --- ops ---

    async def healthz(self) -> bool:
        return (await self._call("GET", "/healthz", raw=True)).strip() == "ok"

    async def readyz(self) -> bool:
        return (await self._call("GET", "/readyz", raw=True)).strip().startswith("ready")

    async def openapi(self) -> Dict[str, Any]:
        return dict(await self._call("GET", "/openapi.json"))

    # --- swarms ---

    async def register_swarm(
        self,
        swarm_id: str,
        capabilities: Sequence[str] = (),
        metadata: Any = None,
        token: Optional[str] = None,
    ) -> m.Registration:
        """Registers a swarm, or refreshes it when ``token`` is its owner token."""
        body: Dict[str, Any] = {
            "swarm_id": check_id("swarm_id", swarm_id),
            "capabilities": list(capabilities),
            "metadata": metadata,
        }
        if token is not None:
            body["token"] = token
        return m.Registration.model_validate(await self._call("POST", "/v1/swarms", json=body))

    async def list_swarms(self) -> List[m.Swarm]:
        return [m.Swarm.model_validate(s) for s in await self._call("GET", "/v1/swarms")]

    async def swarm_stats(self, swarm_id: str) -> m.SwarmStats:
        body = await self._call("GET", f"/v1/swarms/{_seg(swarm_id)}")
        return m.SwarmStats.model_validate(body)

    # --- tasks ---

    async def create_task(self, task: NewTaskLike) -> m.TaskRecord:
        """Creates a task (idempotent for the same id and content)."""
        body = await self._call("POST", "/v1/tasks", json=_new_task(task))
        return m.TaskRecord.model_validate(body)

    async def create_tasks(self, tasks: Sequence[NewTaskLike]) -> List[m.BatchItem]:
        """Creates up to 1,000 tasks in one request: one :class:`BatchItem` per
        task, in order. A bad item refuses the whole batch with
        ``InvalidArgumentError`` whose ``index`` names it, and nothing is
        created; more than 1,000 is ``PayloadTooLargeError``."""
        body = await self._call(
            "POST", "/v1/tasks/batch", json={"tasks": [_new_task_body(t) for t in tasks]}
        )
        return [m.BatchItem.model_validate(r) for r in body["results"]]

    async def list_tasks(
        self, state: m.TaskState, after: Optional[str] = None, limit: Optional[int] = None
    ) -> m.TaskPage:
        params: Dict[str, Any] = {"state": state}
        if after is not None:
            params["after"] = check_id("after", after)
        if limit is not None:
            params["limit"] = limit
        return m.TaskPage.model_validate(await self._call("GET", "/v1/tasks", params=params))

    async def cancel_task(self, task_id: str) -> m.TaskRecord:
        body = await self._call("POST", f"/v1/tasks/{_seg(task_id)}/cancel")
        return m.TaskRecord.model_validate(body)

    # --- push ---

    async def push_task(self, swarm_id: str, task: NewTaskLike) -> m.InboxItem:
        """Pushes a task into a swarm's durable inbox (created if new)."""
        body = await self._call("POST", f"/v1/swarms/{_seg(swarm_id)}/push", json=_new_task(task))
        return m.InboxItem.model_validate(body)

    # --- blockers ---

    async def list_blockers(self, open_only: bool = False) -> List[m.Blocker]:
        params = {"open": "true"} if open_only else None
        return [m.Blocker.model_validate(b) for b in await self._call("GET", "/v1/blockers", params=params)]

    async def get_blocker(self, blocker_id: str) -> m.Blocker:
        return m.Blocker.model_validate(await self._call("GET", f"/v1/blockers/{_seg(blocker_id)}"))

    def blocker_stream(self, after: Optional[int] = None) -> Follower[m.BlockerEvent]:
        """Blockers as they are raised, with helper candidates (least loaded first)."""
        return Follower(
            self._http.http,
            "/v1/blockers/stream",
            self._headers,
            "blocker",
            m.BlockerEvent.model_validate,
            lambda item: item.revision,
            after,
        )

    async def assign_helper(self, blocker_id: str, helper_swarm_id: str) -> m.InboxItem:
        """Pushes a help task for the blocker to ``helper_swarm_id``."""
        body = await self._call(
            "POST",
            f"/v1/blockers/{_seg(blocker_id)}/assign",
            json={"helper_swarm_id": check_id("helper_swarm_id", helper_swarm_id)},
        )
        return m.InboxItem.model_validate(body)

    async def resolve_blocker(self, blocker_id: str, resolution: str) -> m.Blocker:
        body = await self._call(
            "POST", f"/v1/blockers/{_seg(blocker_id)}/resolve", json={"resolution": resolution}
        )
        return m.Blocker.model_validate(body)

    # --- events and witness ---

    def events(self, after: Optional[int] = None) -> Follower[m.CoordinationEvent]:
        """Every coordination event as it commits (from now, or after ``after``)."""
        return Follower(
            self._http.http,
            "/v1/events",
            self._headers,
            "event",
            m.CoordinationEvent.model_validate,
            lambda item: item.revision,
            after,
        )

    async def witness(
        self,
        *,
        task_id: Optional[str] = None,
        swarm_id: Optional[str] = None,
        from_ms: Optional[int] = None,
        to_ms: Optional[int] = None,
    ) -> List[m.WitnessRecord]:
        if task_id is not None:
            check_id("task_id", task_id)
        if swarm_id is not None:
            check_id("swarm_id", swarm_id)
        params = {
            k: v
            for k, v in (("task_id", task_id), ("swarm_id", swarm_id), ("from_ms", from_ms), ("to_ms", to_ms))
            if v is not None
        }
        return [m.WitnessRecord.model_validate(r) for r in await self._call("GET", "/v1/witness", params=params)]

    async def witness_export(self) -> str:
        """The whole witness log as JSON Lines."""
        return str(await self._call("GET", "/v1/witness/export", raw=True))

    async def witness_verify(self) -> m.Verification:
        return m.Verification.model_validate(await self._call("GET", "/v1/witness/verify"))


def _seg(part: str, field: str = "id") -> str:
    """One id as a path segment; an id outside the grammar is refused before
    sending. (An id needs no escaping; quoting stays as a second guard.)"""
    return quote(check_id(field, part), safe="")
