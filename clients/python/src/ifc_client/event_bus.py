"""The seed's ``EventBus``, over the network.

``EventBus(host, port, timeout)`` names the ``ifc serve`` it talks to (not an
etcd): ``host``/``port`` default to ``IFC_SERVER`` (else 127.0.0.1:7400) and
the token to ``IFC_TOKEN`` (else ``./ifc-data/admin.token``). ``connect`` only
checks the server and the token, so ``IFCoordinator(bus)`` works on any
server. ``put``/``get``/``delete``/``transaction``/``watch`` use the
admin-only KV API ``/v1/kv`` (keys confined to a user prefix of the
namespace, so they can never touch the coordinator's own keys): its shape is
in ``docs/python.md``. On a server without it they raise ``NotFoundError``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import models as m
from .client import Client
from .config import resolve
from .errors import (
    CoordinatorConnectionError,
    CoordinatorError,
    InvalidArgumentError,
)
from .sse import Follower

log = logging.getLogger("ifc_client")

COMPARE_TARGETS = {"value": "value", "version": "version", "create": "create_revision",
                   "create_revision": "create_revision", "mod": "mod_revision",
                   "mod_revision": "mod_revision"}
COMPARE_OPS = {"==", "!=", "<", ">"}


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by ``watch``: ``key``, ``value`` (``None`` for a delete),
    ``type`` (``put`` or ``delete``) and the store ``revision``."""

    key: str
    value: Optional[str]
    type: str
    revision: int


class EventBus:
    """The seed's key-value bus, as a client of the service's KV API."""

    def __init__(
        self,
        host: Optional[str] = None,
        port: Optional[int] = None,
        timeout: Optional[float] = None,
        *,
        server: Optional[str] = None,
        token: Optional[str] = None,
        ca_cert: Optional[str] = None,
    ) -> None:
        self._args = dict(server=server, token=token, host=host, port=port,
                          timeout=timeout, ca_cert=ca_cert)
        self._client: Optional[Client] = None
        self._watches: Dict[str, "asyncio.Task[None]"] = {}
        self._ids = itertools.count(1)
        self._attached: "weakref.WeakSet[Any]" = weakref.WeakSet()

    @property
    def client(self) -> Client:
        """The lower-level client (admin) of a connected bus."""
        if self._client is None:
            raise CoordinatorError("the EventBus is not connected: await bus.connect() first")
        return self._client

    def _attach(self, coordinator: Any) -> None:
        self._attached.add(coordinator)

    async def connect(self) -> "EventBus":
        """Connects and checks the admin token. Raises a ``ConnectionError``
        (:class:`CoordinatorConnectionError`) if the server cannot be reached,
        :class:`UnauthorizedError` for a wrong token."""
        if self._client is None:
            self._client = Client(connection=resolve(**self._args))  # type: ignore[arg-type]
        try:
            # An admin-only read that costs nothing: proves address and token.
            await self._client.list_tasks("cancelled", limit=1)
        except CoordinatorConnectionError:
            await self.disconnect()
            raise
        except CoordinatorError:
            await self.disconnect()
            raise
        return self

    async def disconnect(self) -> None:
        """Stops every watch and every coordinator using this bus, and closes
        the connection."""
        for watch_id in list(self._watches):
            await self.cancel_watch(watch_id)
        for coordinator in list(self._attached):
            await coordinator.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> "EventBus":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def health_check(self) -> bool:
        """Whether the server and its store answer."""
        try:
            return await self.client.readyz()
        except CoordinatorError:
            return False

    async def put(self, key: str, value: Union[str, bytes]) -> bool:
        """Stores ``value`` under ``key``."""
        body = {"value": _value(value)}
        await self.client._call("PUT", "/v1/kv", params={"key": _key(key)}, json=body)
        return True

    async def get(self, key: str) -> Optional[str]:
        """The value under ``key``, or ``None``."""
        found = m.KvRange.model_validate(
            await self.client._call("GET", "/v1/kv", params={"key": _key(key)})
        )
        return found.entries[0].value if found.entries else None

    async def get_prefix(self, prefix: str, limit: int = 0) -> Dict[str, str]:
        """Every key under ``prefix`` and its value (not in the seed)."""
        params: Dict[str, Any] = {"prefix": _key(prefix, allow_empty=True)}
        if limit:
            params["limit"] = limit
        found = m.KvRange.model_validate(await self.client._call("GET", "/v1/kv", params=params))
        return {e.key: e.value for e in found.entries}

    async def delete(self, key: str) -> bool:
        """Deletes ``key``; ``True`` if it existed."""
        body = await self.client._call("DELETE", "/v1/kv", params={"key": _key(key)})
        return int(body.get("deleted", 0)) > 0

    async def transaction(
        self,
        compare: Sequence[Tuple[Any, ...]],
        success: Sequence[Tuple[Any, ...]],
        failure: Sequence[Tuple[Any, ...]] = (),
    ) -> bool:
        """Atomic compare-and-swap: ``True`` if every comparison held (and the
        ``success`` ops ran), ``False`` if not (and the ``failure`` ops ran).

        ``compare``: ``(target, key, op, value)`` with target ``value``,
        ``version``, ``create`` or ``mod`` and op ``==``, ``!=``, ``<``, ``>``.
        Ops: ``('put', key, value)``, ``('delete', key)``, ``('get', key)``.
        """
        body = {
            "compare": [_compare(c) for c in compare],
            "success": [_op(o) for o in success],
            "failure": [_op(o) for o in failure],
        }
        answer = await self.client._call("POST", "/v1/kv/txn", json=body)
        return bool(answer["succeeded"])

    async def watch(self, prefix: str, callback: Callable[[WatchEvent], Any]) -> str:
        """Calls ``callback`` with each change under ``prefix`` from now on (in
        order, resuming after reconnects); a watch id for ``cancel_watch``."""
        if not callable(callback):
            raise InvalidArgumentError("callback must be callable")
        client = self.client
        follower: Follower[m.KvWatchBatch] = Follower(
            client._http.http,
            "/v1/kv/watch?" + _query({"prefix": _key(prefix, allow_empty=True)}),
            client._headers,
            "kv",
            m.KvWatchBatch.model_validate,
            lambda batch: batch.revision,
        )
        task = asyncio.ensure_future(_deliver(follower, callback))
        connected = asyncio.ensure_future(follower.connected.wait())
        done, _ = await asyncio.wait(
            [connected, task], timeout=client.connection.timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            connected.cancel()
            task.result()  # raises why it could not start
        if connected not in done:
            connected.cancel()
            task.cancel()
            raise CoordinatorConnectionError("the watch did not connect in time")
        watch_id = f"watch-{next(self._ids)}"
        self._watches[watch_id] = task
        return watch_id

    async def cancel_watch(self, watch_id: str) -> bool:
        """Stops a watch; ``False`` if there is no such watch."""
        task = self._watches.pop(watch_id, None)
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True


async def _deliver(follower: Follower[m.KvWatchBatch], callback: Callable[[WatchEvent], Any]) -> None:
    async for batch in follower:
        for e in batch.events:
            event = WatchEvent(e.key, e.value if e.type == "put" else None, e.type,
                               e.mod_revision or batch.revision)
            try:
                outcome = callback(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # a broken callback must not stop the watch
                log.exception("watch callback raised")


def _query(params: Dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _key(key: Any, allow_empty: bool = False) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8")
    if not isinstance(key, str) or (not key and not allow_empty):
        raise InvalidArgumentError(f"a key must be a non-empty string, not {key!r}")
    return key


def _value(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidArgumentError(f"a value must be UTF-8 text: {e}") from None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"a value must be a string, not {type(value).__name__}")
    return value


def _compare(c: Any) -> Dict[str, Any]:
    if not isinstance(c, (tuple, list)) or len(c) != 4:
        raise InvalidArgumentError(f"a comparison is (target, key, op, value), not {c!r}")
    target, key, op, value = c
    if target not in COMPARE_TARGETS:
        raise InvalidArgumentError(f"compare target must be one of {sorted(COMPARE_TARGETS)}, not {target!r}")
    if op not in COMPARE_OPS:
        raise InvalidArgumentError(f"compare op must be one of {sorted(COMPARE_OPS)}, not {op!r}")
    target = COMPARE_TARGETS[target]
    if target == "value":
        value = _value(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(f"a {target} comparison needs an integer, not {value!r}")
    return {"target": target, "key": _key(key), "op": op, "value": value}


def _op(o: Any) -> Dict[str, Any]:
    if not isinstance(o, (tuple, list)) or not o:
        raise InvalidArgumentError(f"an op is ('put', key, value), ('delete', key) or ('get', key), not {o!r}")
    kind = o[0]
    if kind == "put" and len(o) == 3:
        return {"op": "put", "key": _key(o[1]), "value": _value(o[2])}
    if kind in ("delete", "get") and len(o) == 2:
        return {"op": kind, "key": _key(o[1])}
    raise InvalidArgumentError(f"an op is ('put', key, value), ('delete', key) or ('get', key), not {o!r}")


__all__: List[str] = ["EventBus", "WatchEvent"]
