"""The seed's ``IFCoordinator``, over the ``ifc serve`` HTTP API.

Same method names, parameters and return types as the seed. What the seed
never had is kept out of the way: each swarm registered here keeps its token
and heartbeats; each claim made here keeps its fencing token (used by
``complete_task``/``fail_task``) and has its lease renewed until it is
completed or failed; pushed tasks are acknowledged on receipt, handed to the
``task_callback`` as the seed's dicts, and completed from its result (or
failed from its exception).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from pydantic import ValidationError

from . import models as m
from .client import Client
from .errors import (
    CoordinatorError,
    InvalidArgumentError,
    NotOwnerError,
    SwarmNotRegisteredError,
    TaskNotFoundError,
)
from .session import SwarmSession, TaskCallback
from .sse import Follower

log = logging.getLogger("ifc_client")

WitnessLogger = Callable[[Dict[str, Any]], Any]
BLOCKER_KEYS = {"type", "description", "severity", "required_capabilities", "task_id"}


class IFCoordinator:
    """The seed's coordinator API (async).

    ``IFCoordinator(bus)`` uses the connection of a connected
    :class:`~ifc_client.EventBus`; without one, ``server``/``token`` (or
    ``IFC_SERVER``/``IFC_TOKEN``/``./ifc-data/admin.token``) are used.
    ``witness_logger`` is called with each witness record (a dict) as it
    commits, from the service's event stream, resuming after reconnects.
    ``renew_claims=False`` lets claims made by ``claim_task`` lapse at the
    server's claim timeout instead of renewing them until completed.
    """

    def __init__(
        self,
        event_bus: Any = None,
        witness_logger: Optional[WitnessLogger] = None,
        *,
        server: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        renew_claims: bool = True,
    ) -> None:
        if event_bus is not None:
            self._client: Client = event_bus.client
            self._own_client = False
            event_bus._attach(self)
        else:
            self._client = Client(server, token, timeout=timeout)
            self._own_client = True
        self._witness_logger = witness_logger
        self._renew_claims = renew_claims
        self._sessions: Dict[str, SwarmSession] = {}
        self._witness_task: Optional["asyncio.Task[None]"] = None
        self._witness_follower: Optional[Follower[m.CoordinationEvent]] = None
        self.last_blocker_id: Optional[str] = None

    @property
    def client(self) -> Client:
        """The lower-level client (admin) this coordinator uses."""
        return self._client

    @property
    def _swarm_registry(self) -> Dict[str, SwarmSession]:
        """The swarms registered through this coordinator (the seed's name)."""
        return self._sessions

    @property
    def _watch_ids(self) -> Dict[str, str]:
        """Swarms with a live push subscription (the seed's name)."""
        return {s: f"inbox:{s}" for s, ses in self._sessions.items() if ses.callback is not None}

    # --- lifecycle ---

    async def _start(self) -> None:
        """Starts the witness stream once, and waits until it is connected, so
        no record of a later call can be missed."""
        if self._witness_logger is None:
            return
        if self._witness_task is None:
            self._witness_follower = self._client.events()
            self._witness_task = asyncio.ensure_future(self._follow_witness(self._witness_follower))
        assert self._witness_follower is not None
        if not self._witness_follower.connected.is_set():
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(self._witness_follower.connected.wait()), self._witness_task],
                timeout=self._client.connection.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self._witness_task in done:
                self._witness_task.result()  # raises why the stream stopped

    async def _follow_witness(self, follower: Follower[m.CoordinationEvent]) -> None:
        assert self._witness_logger is not None
        async for event in follower:
            record = event.model_dump()
            try:
                outcome = self._witness_logger(record)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # a broken logger must not stop the stream
                log.exception("witness_logger raised")

    async def close(self) -> None:
        """Stops every background loop (swarms stay registered until their TTL)."""
        for session in list(self._sessions.values()):
            await session.stop()
        self._sessions.clear()
        if self._witness_task is not None:
            self._witness_task.cancel()
            await asyncio.gather(self._witness_task, return_exceptions=True)
            self._witness_task = None
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> "IFCoordinator":
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _session(self, swarm_id: str) -> SwarmSession:
        _id(swarm_id, "swarm_id")
        session = self._sessions.get(swarm_id)
        if session is None:
            raise SwarmNotRegisteredError(
                f"swarm {swarm_id} is not registered through this IFCoordinator "
                "(a swarm's token stays with the coordinator that registered it)",
                code="swarm_not_registered",
            )
        return session

    # --- the seed's API ---

    async def register_swarm(
        self,
        swarm_id: str,
        capabilities: List[str],
        metadata: Optional[Dict[str, Any]] = None,
        task_callback: Optional[TaskCallback] = None,
    ) -> bool:
        """Registers the swarm (or refreshes it, if registered here) and, with
        ``task_callback``, subscribes it to pushed tasks."""
        await self._start()
        _id(swarm_id, "swarm_id")
        if isinstance(capabilities, str) or not isinstance(capabilities, Sequence) or not all(
            isinstance(c, str) for c in capabilities
        ):
            raise InvalidArgumentError(f"capabilities must be a list of strings, not {capabilities!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidArgumentError(f"metadata must be a dict, not {type(metadata).__name__}")
        if task_callback is not None and not callable(task_callback):
            raise InvalidArgumentError("task_callback must be callable")
        old = self._sessions.get(swarm_id)
        registration = await self._client.register_swarm(
            swarm_id,
            list(capabilities),
            dict(metadata) if metadata is not None else {},
            token=old.swarm.token if old is not None else None,
        )
        if old is not None:
            await old.stop()
        session = SwarmSession(
            admin=self._client,
            swarm=self._client.as_swarm(swarm_id, registration.token),
            capabilities=list(capabilities),
            metadata=dict(metadata) if metadata is not None else {},
            ttl_secs=registration.ttl_secs,
            callback=task_callback,
            renew_claims=self._renew_claims,
        )
        self._sessions[swarm_id] = session
        session.start()
        if task_callback is not None:
            # Pushes made after this returns must reach the callback.
            await asyncio.wait_for(session.inbox_ready.wait(), self._client.connection.timeout)
        return True

    async def create_task(self, task_data: Dict[str, Any]) -> str:
        """Creates a task; its id."""
        await self._start()
        record = await self._client.create_task(_new_task(task_data))
        return record.task_id

    async def claim_task(self, swarm_id: str, task_id: str) -> bool:
        """Claims the task for the swarm: ``True`` if this call won it, ``False``
        if another swarm holds it, it is finished, or it waits out a retry
        backoff. Raises :class:`TaskNotFoundError` for a missing task."""
        await self._start()
        session = self._session(swarm_id)
        _id(task_id, "task_id")
        started = time.time()
        outcome = await session.swarm.claim_task(task_id)
        if outcome.outcome != "claimed" or outcome.claim is None:
            return False
        claim = outcome.claim
        lease = (claim.deadline_ms - (claim.task.claimed_at_ms or started * 1000)) / 1000
        session.hold(task_id, claim.token, lease)
        return True

    async def push_task_to_swarm(self, swarm_id: str, task: Dict[str, Any]) -> bool:
        """Pushes the task into the swarm's durable inbox (created if new).
        Raises :class:`CoordinatorError` if the swarm is not registered, or is
        registered here without a ``task_callback``."""
        await self._start()
        _id(swarm_id, "swarm_id")
        new = _new_task(task)
        local = self._sessions.get(swarm_id)
        if local is not None and local.callback is None:
            raise CoordinatorError(
                f"swarm {swarm_id} was registered without a task_callback: nothing would receive the push"
            )
        await self._client.push_task(swarm_id, new)
        return True

    async def complete_task(self, swarm_id: str, task_id: str, result: Dict[str, Any]) -> bool:
        """Completes the swarm's claim with ``result``. Raises
        :class:`TaskNotFoundError`, or a :class:`CoordinatorError`
        (``NotOwnerError``, ``FencedError``) if the swarm does not hold it."""
        await self._start()
        session = self._session(swarm_id)
        _id(task_id, "task_id")
        token = await self._token(session, task_id)
        try:
            await session.swarm.complete(task_id, token, result)
        except (CoordinatorError, TypeError) as e:
            if isinstance(e, TypeError):
                raise InvalidArgumentError(f"result is not JSON: {e}") from e
            if e.status is not None and e.status in (404, 409):
                session.release(task_id)
            raise
        session.release(task_id)
        return True

    async def fail_task(self, swarm_id: str, task_id: str, error: str) -> bool:
        """Fails the swarm's claim: the task returns to the pool for a retry,
        or goes to dead-letter after its last attempt."""
        await self._start()
        session = self._session(swarm_id)
        _id(task_id, "task_id")
        if not isinstance(error, str):
            raise InvalidArgumentError(f"error must be a string, not {type(error).__name__}")
        token = await self._token(session, task_id)
        try:
            await session.swarm.fail(task_id, token, error)
        except CoordinatorError as e:
            if e.status is not None and e.status in (404, 409):
                session.release(task_id)
            raise
        session.release(task_id)
        return True

    async def detect_blocker(self, swarm_id: str, blocker_info: Dict[str, Any]) -> bool:
        """Raises a blocker; it reaches the orchestrator's blocker stream with
        helper candidates. Its id is kept in ``last_blocker_id``."""
        await self._start()
        session = self._session(swarm_id)
        if not isinstance(blocker_info, Mapping):
            raise InvalidArgumentError("blocker_info must be a dict")
        unknown = set(blocker_info) - BLOCKER_KEYS
        if unknown:
            raise InvalidArgumentError(
                f"unknown blocker_info keys {sorted(unknown)} (known: {sorted(BLOCKER_KEYS)})"
            )
        info = _validate(m.BlockerInfo, blocker_info, "blocker_info")
        self.last_blocker_id = await session.swarm.raise_blocker(info)
        return True

    async def get_task_owner(self, task_id: str) -> Optional[str]:
        """``'unclaimed'``, the owner's id, ``'completed:<swarm>'``, ``'dead'``,
        ``'cancelled'``, or ``None`` if there is no such task."""
        await self._start()
        _id(task_id, "task_id")
        try:
            return await self._client.task_owner(task_id)
        except TaskNotFoundError:
            return None

    async def get_swarm_stats(self, swarm_id: str) -> Optional[Dict[str, Any]]:
        """The swarm's statistics (``task_count``, ``uptime_seconds``, …), or
        ``None`` if it is not registered."""
        await self._start()
        _id(swarm_id, "swarm_id")
        try:
            stats = await self._client.swarm_stats(swarm_id)
        except SwarmNotRegisteredError:
            return None
        return {
            "swarm_id": stats.swarm.swarm_id,
            "capabilities": stats.swarm.capabilities,
            "metadata": stats.swarm.metadata,
            "registered_at_ms": stats.swarm.registered_at_ms,
            "current_claims": stats.current_claims,
            "tasks_claimed": stats.tasks_claimed,
            "task_count": stats.task_count,
            "tasks_failed": stats.tasks_failed,
            "uptime_seconds": stats.uptime_seconds,
        }

    async def unregister_swarm(self, swarm_id: str) -> bool:
        """Stops the swarm's loops and unregisters it; its claims return to the
        pool at once. ``False`` if it was not registered here."""
        await self._start()
        _id(swarm_id, "swarm_id")
        session = self._sessions.pop(swarm_id, None)
        if session is None:
            return False
        await session.stop()
        try:
            await session.swarm.unregister()
        except SwarmNotRegisteredError:
            pass  # already gone (its registration ran out)
        return True

    async def _token(self, session: SwarmSession, task_id: str) -> int:
        """The fencing token of the swarm's claim on the task: remembered from
        the claim, else read from the task (a claim made elsewhere)."""
        held = session.claims.get(task_id)
        if held is not None:
            return held.token
        view = await session.swarm.get_task(task_id)
        if view.token is None or view.record.owner != session.swarm_id or view.state != "claimed":
            owner = view.record.owner or "nobody"
            raise NotOwnerError(
                f"swarm {session.swarm_id} does not hold task {task_id} "
                f"(state {view.state}, owner {owner})",
                code="not_owner",
            )
        return view.token


def _id(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, not {value!r}")


def _validate(model: Any, data: Any, what: str) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{what} must be a dict, not {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}" for err in e.errors()
        )
        raise InvalidArgumentError(f"bad {what}: {problems}") from None


def _new_task(task: Any) -> m.NewTask:
    return _validate(m.NewTask, task, "task")
