"""Claims outlive their lease while work runs: the package renews them."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, List

import pytest

import ifc_client
from ifc_client import FencedError, IFCoordinator, NotOwnerError

from conftest import CLAIM_TIMEOUT_MS, Server

WORK_SECONDS = 3 * CLAIM_TIMEOUT_MS / 1000


@pytest.fixture
async def bus(short_lease_server: Server) -> AsyncIterator[ifc_client.EventBus]:
    b = await ifc_client.EventBus(server=short_lease_server.url, token=short_lease_server.token).connect()
    yield b
    await b.disconnect()


@pytest.fixture
async def client(short_lease_server: Server) -> AsyncIterator[ifc_client.Client]:
    async with ifc_client.Client(short_lease_server.url, short_lease_server.token) as c:
        yield c


async def test_callback_longer_than_claim_timeout_still_completes(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    done: List[str] = []

    async def slow(task: Dict[str, Any]) -> Dict[str, Any]:
        await asyncio.sleep(WORK_SECONDS)
        done.append(task["task_id"])
        return {"worked_s": WORK_SECONDS}

    await coordinator.register_swarm(f"{uid}-slow", [], task_callback=slow)
    await coordinator.push_task_to_swarm(f"{uid}-slow", {"task_id": f"{uid}-t", "task_type": "long"})
    for _ in range(1000):
        if await coordinator.get_task_owner(f"{uid}-t") == f"completed:{uid}-slow":
            break
        await asyncio.sleep(0.05)
    assert done == [f"{uid}-t"]
    record = (await client.get_task(f"{uid}-t")).record
    assert (record.state, record.attempts, record.result) == ("completed", 0, {"worked_s": WORK_SECONDS})
    ops = [r.op for r in await client.witness(task_id=f"{uid}-t")]
    assert ops == ["task_pushed", "push_acked", "task_completed"]


async def test_claim_task_held_past_timeout_until_completed(coordinator: IFCoordinator, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", [])
    await coordinator.register_swarm(f"{uid}-b", [])
    task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
    assert await coordinator.claim_task(f"{uid}-a", task_id)
    await asyncio.sleep(WORK_SECONDS)
    assert await coordinator.claim_task(f"{uid}-b", task_id) is False
    assert await coordinator.complete_task(f"{uid}-a", task_id, {"late": False})


async def test_without_renewal_the_claim_lapses_and_is_refused(bus: ifc_client.EventBus, uid: str) -> None:
    coordinator = IFCoordinator(bus, renew_claims=False)
    try:
        await coordinator.register_swarm(f"{uid}-a", [])
        await coordinator.register_swarm(f"{uid}-b", [])
        task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
        assert await coordinator.claim_task(f"{uid}-a", task_id)
        won = False
        for _ in range(200):  # the lease runs out between 1 and 2 timeouts
            await asyncio.sleep(0.05)
            if await coordinator.claim_task(f"{uid}-b", task_id):
                won = True
                break
        assert won
        # The stale token is refused (another swarm holds the task now).
        with pytest.raises((FencedError, NotOwnerError)):
            await coordinator.complete_task(f"{uid}-a", task_id, {})
        assert await coordinator.get_task_owner(task_id) == f"{uid}-b"
    finally:
        await coordinator.close()
