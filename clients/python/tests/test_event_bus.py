"""The seed's EventBus over the network: connect, health_check and disconnect,
and the KV calls on the server's admin-only /v1/kv API."""

from __future__ import annotations

import asyncio
from typing import List

import pytest

import ifc_client
from ifc_client import EventBus, InvalidArgumentError, WatchEvent

from conftest import Server


async def test_connect_health_disconnect(server: Server) -> None:
    bus = EventBus(server=server.url, token=server.token)
    with pytest.raises(ifc_client.CoordinatorError, match="not connected"):
        bus.client
    assert await bus.connect() is bus
    assert await bus.health_check() is True
    await bus.disconnect()


async def test_host_port_arguments(server: Server) -> None:
    host, port = server.url.rsplit("//", 1)[1].split(":")
    bus = await EventBus(host, int(port), 5, token=server.token).connect()
    assert bus.client.connection.timeout == 5
    await bus.disconnect()


async def test_bad_kv_arguments_are_refused_before_sending(bus: EventBus) -> None:
    with pytest.raises(InvalidArgumentError):
        await bus.put("", "v")
    with pytest.raises(InvalidArgumentError):
        await bus.put("/k", 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await bus.transaction([("value", "/k", "=~", "x")], [])
    with pytest.raises(InvalidArgumentError):
        await bus.transaction([], [("upsert", "/k", "v")])


async def test_put_get_delete(bus: EventBus, uid: str) -> None:
    key = f"/{uid}/tasks/task-1/status"
    assert await bus.get(key) is None
    assert await bus.put(key, "claimed") is True
    assert await bus.get(key) == "claimed"
    assert await bus.get_prefix(f"/{uid}/tasks/") == {key: "claimed"}
    assert await bus.delete(key) is True
    assert await bus.delete(key) is False
    assert await bus.get(key) is None


async def test_transaction_is_compare_and_swap(bus: EventBus, uid: str) -> None:
    key = f"/{uid}/tasks/task-1/owner"
    await bus.transaction([], [("put", key, "unclaimed")], [])
    claim = dict(compare=[("value", key, "==", "unclaimed")], success=[("put", key, "swarm-a")], failure=[])
    results = await asyncio.gather(*(bus.transaction(**claim) for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    assert await bus.get(key) == "swarm-a"


async def test_watch_and_cancel(bus: EventBus, uid: str) -> None:
    seen: List[WatchEvent] = []
    watch_id = await bus.watch(f"/{uid}/", seen.append)
    await bus.put(f"/{uid}/a", "1")
    await bus.delete(f"/{uid}/a")
    for _ in range(200):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.02)
    assert [(e.type, e.key, e.value) for e in seen] == [("put", f"/{uid}/a", "1"), ("delete", f"/{uid}/a", None)]
    assert await bus.cancel_watch(watch_id) is True
    assert await bus.cancel_watch(watch_id) is False


async def test_kv_is_confined_to_the_user_prefix(bus: EventBus, client: ifc_client.Client, uid: str) -> None:
    """A key that looks like a coordinator key never touches the coordinator."""
    await bus.put(f"ifc/tasks/{uid}/record", "{}")
    assert await bus.get(f"ifc/tasks/{uid}/record") == "{}"
    assert await ifc_client.IFCoordinator(bus).get_task_owner(uid) is None
