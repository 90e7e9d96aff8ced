"""A swarm's push stream survives a server restart: a push made while the
stream is down reaches the callback once, after it reconnects and resumes."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import ifc_client
from ifc_client import IFCoordinator

from conftest import Server


async def test_push_after_restart_is_not_lost(fresh_server: Server, uid: str) -> None:
    received: List[str] = []

    async def on_task(task: Dict[str, Any]) -> Dict[str, Any]:
        received.append(task["task_id"])
        return {"ok": True}

    bus = await ifc_client.EventBus(server=fresh_server.url, token=fresh_server.token).connect()
    coordinator = IFCoordinator(bus)
    try:
        await coordinator.register_swarm(f"{uid}-a", [], task_callback=on_task)
        await coordinator.push_task_to_swarm(f"{uid}-a", {"task_id": f"{uid}-before", "task_type": "x"})
        for _ in range(200):
            if await coordinator.get_task_owner(f"{uid}-before") == f"completed:{uid}-a":
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(fresh_server.restart)
        # Pushed at once, before the stream's reconnect backoff lets it back in.
        await coordinator.push_task_to_swarm(f"{uid}-a", {"task_id": f"{uid}-after", "task_type": "x"})
        for _ in range(400):
            if await coordinator.get_task_owner(f"{uid}-after") == f"completed:{uid}-a":
                break
            await asyncio.sleep(0.05)
        assert received == [f"{uid}-before", f"{uid}-after"]
        assert await coordinator.get_task_owner(f"{uid}-after") == f"completed:{uid}-a"
        assert (await coordinator.client.witness_verify()).ok
    finally:
        await bus.disconnect()


async def test_witness_logger_resumes_after_restart(fresh_server: Server, uid: str) -> None:
    records: List[Dict[str, Any]] = []
    bus = await ifc_client.EventBus(server=fresh_server.url, token=fresh_server.token).connect()
    coordinator = IFCoordinator(bus, witness_logger=records.append)
    try:
        await coordinator.create_task({"task_id": f"{uid}-1", "task_type": "x"})
        await asyncio.to_thread(fresh_server.restart)
        await coordinator.create_task({"task_id": f"{uid}-2", "task_type": "x"})
        for _ in range(400):
            if any(r["task_id"] == f"{uid}-2" for r in records):
                break
            await asyncio.sleep(0.05)
        created = [r["task_id"] for r in records if r["op"] == "task_created"]
        assert created == [f"{uid}-1", f"{uid}-2"]
    finally:
        await bus.disconnect()
