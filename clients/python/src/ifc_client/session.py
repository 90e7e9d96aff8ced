"""What :class:`~ifc_client.IFCoordinator` keeps per registered swarm: its
token, a heartbeat loop, the claims it holds (token and lease renewal), and,
with a ``task_callback``, the inbox follower that acknowledges each pushed
task on receipt and completes or fails it from the callback.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Optional, Set, TypeVar

from . import models as m
from .client import Client, SwarmClient
from .errors import (
    CoordinatorConnectionError,
    CoordinatorError,
    FencedError,
    NotOwnerError,
    SwarmNotRegisteredError,
    TaskNotFoundError,
    UnauthorizedError,
    UnavailableError,
)

log = logging.getLogger("ifc_client")

T = TypeVar("T")
TaskCallback = Callable[[Dict[str, Any]], Any]

# Renew a claim after this share of its lease has passed.
RENEW_SHARE = 1 / 3
# The claim is gone for good: nothing to renew or complete any more.
LOST = (FencedError, NotOwnerError, TaskNotFoundError, SwarmNotRegisteredError, UnauthorizedError)


def seed_task(task: m.TaskRecord, blocker_id: Optional[str] = None) -> Dict[str, Any]:
    """A task as the seed's callbacks saw it: ``task_id``, ``task_type``, ``metadata``
    (plus what the service adds)."""
    out: Dict[str, Any] = {
        "task_id": task.task_id,
        "task_type": task.task_type,
        "metadata": task.metadata if task.metadata is not None else {},
        "required_capabilities": list(task.required_capabilities),
        "priority": task.priority,
        "attempts": task.attempts,
    }
    if blocker_id is not None:
        out["blocker_id"] = blocker_id
    return out


async def retry_transient(call: Callable[[], Awaitable[T]], stop: "asyncio.Event") -> T:
    """Retries ``call`` while the server is unreachable or unavailable."""
    delay = 0.05
    while True:
        try:
            return await call()
        except (CoordinatorConnectionError, UnavailableError):
            if stop.is_set():
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


@dataclass
class HeldClaim:
    """A claim this process holds: its fencing token, and the renewal loop."""

    task_id: str
    token: int
    lease_secs: float
    renewer: Optional["asyncio.Task[None]"] = None
    lost: bool = False


@dataclass
class SwarmSession:
    admin: Client
    swarm: SwarmClient
    capabilities: list
    metadata: Any
    ttl_secs: int
    callback: Optional[TaskCallback] = None
    renew_claims: bool = True
    claims: Dict[str, HeldClaim] = field(default_factory=dict)
    tasks: Set["asyncio.Task[Any]"] = field(default_factory=set)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    inbox_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def swarm_id(self) -> str:
        return self.swarm.swarm_id

    def spawn(self, coro: Awaitable[Any], name: str) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(coro)
        task.set_name(f"ifc:{self.swarm_id}:{name}")
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: "asyncio.Task[Any]") -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s stopped: %r", task.get_name(), task.exception())

    def start(self) -> None:
        self.spawn(self._heartbeats(), "heartbeat")
        if self.callback is not None:
            self.spawn(self._inbox(), "inbox")

    async def stop(self) -> None:
        self.stopped.set()
        current = asyncio.current_task()
        pending = [t for t in self.tasks if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.claims.clear()

    # --- claims ---

    def hold(self, task_id: str, token: int, lease_secs: float) -> HeldClaim:
        self.release(task_id)
        held = HeldClaim(task_id, token, max(lease_secs, 0.3))
        self.claims[task_id] = held
        if self.renew_claims:
            held.renewer = self.spawn(self._renew(held), f"renew:{task_id}")
        return held

    def release(self, task_id: str) -> Optional[HeldClaim]:
        held = self.claims.pop(task_id, None)
        if held is not None and held.renewer is not None and held.renewer is not asyncio.current_task():
            held.renewer.cancel()
        return held

    async def _renew(self, held: HeldClaim) -> None:
        period = held.lease_secs * RENEW_SHARE
        conflicts = 0
        while not held.lost:
            await asyncio.sleep(period)
            try:
                await self.swarm.renew(held.task_id, held.token)
                period, conflicts = held.lease_secs * RENEW_SHARE, 0
            except (CoordinatorConnectionError, UnavailableError):
                period = 0.1
            except LOST as e:
                held.lost = True
                log.info("claim on %s (token %s) lost: %s", held.task_id, held.token, e)
            except CoordinatorError as e:
                # Another 409 (lease churn on the server) is worth a quick retry.
                conflicts += 1
                if e.status != 409 or conflicts > 20:
                    held.lost = True
                    log.info("claim on %s (token %s) lost: %s", held.task_id, held.token, e)
                period = 0.05

    # --- heartbeats ---

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # Fixed rate from each send, so a slow answer does not stretch the gap.
            next_at += max(self.ttl_secs / 3, 0.2)
            await asyncio.sleep(max(next_at - loop.time(), 0))
            next_at = max(next_at, loop.time())
            try:
                self.ttl_secs = await self.swarm.heartbeat()
            except (SwarmNotRegisteredError, UnauthorizedError):
                # The registration ran out (a long outage): register again.
                # Claims held under the old registration are gone.
                registration = await retry_transient(
                    lambda: self.admin.register_swarm(
                        self.swarm_id, self.capabilities, self.metadata
                    ),
                    self.stopped,
                )
                self.swarm.token = registration.token
                self.ttl_secs = registration.ttl_secs
                for task_id in list(self.claims):
                    self.release(task_id)
            except (CoordinatorConnectionError, UnavailableError):
                await asyncio.sleep(0.2)

    # --- pushed tasks ---

    async def _inbox(self) -> None:
        follower = self.swarm.inbox()
        waiter = self.spawn(self._mark_ready(follower), "inbox-ready")
        try:
            async for item in follower:
                task_id = item.task.task_id
                try:
                    started = time.time()
                    deadline_ms = await retry_transient(
                        lambda: self.swarm.ack(task_id, item.token), self.stopped
                    )
                except CoordinatorError as e:
                    # The push lapsed or was taken back before we acknowledged it.
                    log.info("push of %s (token %s) not acknowledged: %s", task_id, item.token, e)
                    continue
                lease = max(deadline_ms / 1000 - started, 0.3)
                self.hold(task_id, item.token, lease)
                self.spawn(self._run_callback(item), f"callback:{task_id}")
        finally:
            waiter.cancel()

    async def _mark_ready(self, follower: Any) -> None:
        await follower.connected.wait()
        self.inbox_ready.set()

    async def _run_callback(self, item: m.InboxItem) -> None:
        task_id, token = item.task.task_id, item.token
        assert self.callback is not None
        try:
            if inspect.iscoroutinefunction(self.callback):
                result = await self.callback(seed_task(item.task, item.blocker_id))
            else:
                result = await asyncio.to_thread(
                    self.callback, seed_task(item.task, item.blocker_id)
                )
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the callback's failure is the task's failure
            await self._finish(task_id, token, lambda: self.swarm.fail(task_id, token, _error_text(e)))
            return
        try:
            json.dumps(result)
        except (TypeError, ValueError) as e:
            error = f"the callback's result is not JSON: {e}"
            await self._finish(task_id, token, lambda: self.swarm.fail(task_id, token, error))
            return
        await self._finish(task_id, token, lambda: self.swarm.complete(task_id, token, result))

    async def _finish(
        self, task_id: str, token: int, call: Callable[[], Awaitable[Any]]
    ) -> None:
        held = self.claims.get(task_id)
        if held is None or held.token != token:
            return  # the callback completed or failed it itself
        try:
            await retry_transient(call, self.stopped)
        except CoordinatorError as e:
            log.warning("finishing pushed task %s (token %s) failed: %s", task_id, token, e)
        finally:
            if self.claims.get(task_id) is held:
                self.release(task_id)


def _error_text(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
