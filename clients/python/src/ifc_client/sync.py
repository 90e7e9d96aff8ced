"""Blocking facades over the async API, for code without an event loop.

``from ifc_client.sync import EventBus, IFCoordinator, Client`` gives the same
classes and methods as the package root, with plain (non-async) methods. Each
facade runs the async object on an event loop in a daemon thread of its own
(shared with the bus it was built on), so heartbeats, lease renewal, pushed
tasks and streams keep running between calls. Plain (non-async)
``task_callback`` and ``witness_logger`` functions run in worker threads.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, List, Optional, TypeVar

from . import client as _client
from . import coordinator as _coordinator
from . import event_bus as _event_bus

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ifc-client", daemon=True)
        self._thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def make(self, factory: Callable[[], T]) -> T:
        async def build() -> T:
            return factory()

        return self.run(build())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class _Facade:
    _inner: Any
    _runner: _LoopThread
    _blocking: List[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in self._blocking:
            method = getattr(self._inner, name)
            return lambda *a, **kw: self._runner.run(method(*a, **kw))
        return getattr(self._inner, name)


class EventBus(_Facade):
    """The seed's EventBus with blocking methods."""

    _blocking = ["health_check", "put", "get", "get_prefix", "delete", "transaction",
                 "watch", "cancel_watch"]

    def __init__(self, host: Optional[str] = None, port: Optional[int] = None,
                 timeout: Optional[float] = None, **kw: Any) -> None:
        self._runner = _LoopThread()
        self._inner = self._runner.make(lambda: _event_bus.EventBus(host, port, timeout, **kw))

    def connect(self) -> "EventBus":
        self._runner.run(self._inner.connect())
        return self

    def disconnect(self) -> None:
        self._runner.run(self._inner.disconnect())
        self._runner.stop()

    def __enter__(self) -> "EventBus":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class IFCoordinator(_Facade):
    """The seed's IFCoordinator with blocking methods."""

    _blocking = ["register_swarm", "create_task", "claim_task", "push_task_to_swarm",
                 "complete_task", "fail_task", "detect_blocker", "get_task_owner",
                 "get_swarm_stats", "unregister_swarm"]

    def __init__(self, event_bus: Optional[EventBus] = None,
                 witness_logger: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 **kw: Any) -> None:
        self._own_runner = event_bus is None
        self._runner = _LoopThread() if event_bus is None else event_bus._runner
        inner_bus = None if event_bus is None else event_bus._inner
        self._inner = self._runner.make(
            lambda: _coordinator.IFCoordinator(inner_bus, witness_logger, **kw))

    def close(self) -> None:
        self._runner.run(self._inner.close())
        if self._own_runner:
            self._runner.stop()

    def __enter__(self) -> "IFCoordinator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client(_Facade):
    """The lower-level client with blocking methods (streams stay async: use
    the async client for them)."""

    _blocking = [name for name in dir(_client.Client)
                 if not name.startswith("_") and name not in ("as_swarm", "events", "blocker_stream")
                 and asyncio.iscoroutinefunction(getattr(_client.Client, name))]

    def __init__(self, server: Optional[str] = None, token: Optional[str] = None, **kw: Any) -> None:
        self._runner = _LoopThread()
        self._inner = self._runner.make(lambda: _client.Client(server, token, **kw))

    def close(self) -> None:
        self._runner.run(self._inner.aclose())
        self._runner.stop()


__all__ = ["EventBus", "IFCoordinator", "Client"]
