"""Every method of the seed's IFCoordinator, against a real server."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import pytest

import ifc_client
from ifc_client import (
    CoordinatorError,
    IFCoordinator,
    NotOwnerError,
    SwarmNotRegisteredError,
    TaskNotFoundError,
)

from conftest import witness_ops


async def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_register_create_claim_complete(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    assert await coordinator.register_swarm(f"{uid}-a", ["code-analysis:python"], metadata={"model": "sonnet"}) is True
    assert await coordinator.register_swarm(f"{uid}-b", ["code-analysis:rust"]) is True
    task_id = await coordinator.create_task(
        {"task_id": f"{uid}-task", "task_type": "code-review", "metadata": {"language": "python"}}
    )
    assert task_id == f"{uid}-task"
    assert await coordinator.get_task_owner(task_id) == "unclaimed"
    assert await coordinator.claim_task(f"{uid}-a", task_id) is True
    assert await coordinator.get_task_owner(task_id) == f"{uid}-a"
    assert await coordinator.claim_task(f"{uid}-b", task_id) is False
    assert await coordinator.complete_task(f"{uid}-a", task_id, {"status": "approved", "issues": 0}) is True
    assert await coordinator.get_task_owner(task_id) == f"completed:{uid}-a"
    view = await client.get_task(task_id)
    assert view.record.result == {"status": "approved", "issues": 0}
    assert await witness_ops(client, task_id) == ["task_created", "task_claimed", "task_completed"]


async def test_claim_missing_task_raises(coordinator: IFCoordinator, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", [])
    with pytest.raises(TaskNotFoundError):
        await coordinator.claim_task(f"{uid}-a", f"{uid}-nothing")
    assert await coordinator.get_task_owner(f"{uid}-nothing") is None


async def test_fail_returns_task_for_retry(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", [])
    await coordinator.register_swarm(f"{uid}-b", [])
    task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "build"})
    assert await coordinator.claim_task(f"{uid}-a", task_id)
    assert await coordinator.fail_task(f"{uid}-a", task_id, "ImportError: missing dependency numpy") is True
    assert await coordinator.get_task_owner(task_id) == "unclaimed"
    record = (await client.get_task(task_id)).record
    assert (record.attempts, record.error) == (1, "ImportError: missing dependency numpy")
    assert await coordinator.claim_task(f"{uid}-b", task_id) is True


async def test_complete_by_non_owner_raises_and_changes_nothing(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", [])
    await coordinator.register_swarm(f"{uid}-b", [])
    task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
    assert await coordinator.claim_task(f"{uid}-a", task_id)
    before = await client.get_task(task_id)
    with pytest.raises(NotOwnerError) as caught:
        await coordinator.complete_task(f"{uid}-b", task_id, {"stolen": True})
    assert isinstance(caught.value, CoordinatorError)
    with pytest.raises(TaskNotFoundError):
        await coordinator.complete_task(f"{uid}-b", f"{uid}-missing", {})
    after = await client.get_task(task_id)
    assert (after.record, after.token) == (before.record, before.token)


async def test_complete_with_claim_made_elsewhere(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    """A claim made outside claim_task (on the low-level client) is still
    completed through the seed's call: its token is read from the task."""
    await coordinator.register_swarm(f"{uid}-a", [f"{uid}:cap"])
    task_id = await coordinator.create_task(
        {"task_id": f"{uid}-t", "task_type": "x", "required_capabilities": [f"{uid}:cap"]}
    )
    outcome = await coordinator._sessions[f"{uid}-a"].swarm.claim_task(task_id)
    assert outcome.outcome == "claimed" and outcome.claim is not None
    assert await coordinator.complete_task(f"{uid}-a", task_id, {"ok": True})
    assert await coordinator.get_task_owner(task_id) == f"completed:{uid}-a"


async def test_push_reaches_callback_and_completes_from_result(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    received: List[Dict[str, Any]] = []

    async def on_task(task: Dict[str, Any]) -> Dict[str, Any]:
        received.append(task)
        return {"handled": task["task_id"]}

    await coordinator.register_swarm(f"{uid}-a", ["code-analysis:python"], task_callback=on_task)
    task = {"task_id": f"{uid}-urgent", "task_type": "code-review", "metadata": {"urgent": True}}
    assert await coordinator.push_task_to_swarm(f"{uid}-a", task) is True
    await eventually(lambda: _owner_is(coordinator, task["task_id"], f"completed:{uid}-a"))
    assert len(received) == 1
    assert {k: received[0][k] for k in ("task_id", "task_type", "metadata")} == task
    assert (await client.get_task(task["task_id"])).record.result == {"handled": task["task_id"]}
    assert await witness_ops(client, task["task_id"]) == [
        "task_pushed", "push_acked", "task_completed"
    ]


async def test_callback_exception_fails_the_task(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    def on_task(task: Dict[str, Any]) -> None:  # a plain function runs in a thread
        raise RuntimeError("Rust compiler not found")

    await coordinator.register_swarm(f"{uid}-a", [], task_callback=on_task)
    await coordinator.push_task_to_swarm(f"{uid}-a", {"task_id": f"{uid}-t", "task_type": "build"})

    async def failed() -> bool:
        return (await client.get_task(f"{uid}-t")).record.error is not None

    await eventually(failed)
    record = (await client.get_task(f"{uid}-t")).record
    assert record.error == "RuntimeError: Rust compiler not found"
    assert record.attempts == 1 and record.state == "ready"


async def test_push_errors(coordinator: IFCoordinator, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-nocb", [])
    with pytest.raises(CoordinatorError, match="task_callback"):
        await coordinator.push_task_to_swarm(f"{uid}-nocb", {"task_id": f"{uid}-t", "task_type": "x"})
    with pytest.raises(SwarmNotRegisteredError):
        await coordinator.push_task_to_swarm(f"{uid}-ghost", {"task_id": f"{uid}-t", "task_type": "x"})
    assert await coordinator.get_task_owner(f"{uid}-t") is None


async def test_detect_blocker_reaches_orchestrator(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-ndi", ["integration:ndi"])
    await coordinator.register_swarm(f"{uid}-infra", [f"{uid}:pkg", "integration:ndi"])
    info = {
        "type": "missing_dependency",
        "description": "Cannot find NDI SDK headers",
        "severity": "high",
        "required_capabilities": [f"{uid}:pkg"],
    }
    assert await coordinator.detect_blocker(f"{uid}-ndi", info) is True
    blocker = await client.get_blocker(coordinator.last_blocker_id or "")
    assert (blocker.swarm_id, blocker.info.blocker_type, blocker.state) == (f"{uid}-ndi", "missing_dependency", "open")
    assert blocker.info.required_capabilities == [f"{uid}:pkg"]


async def test_stats_and_unregister(coordinator: IFCoordinator, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", ["python"], metadata={"cost_per_hour": 15.0})
    task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
    assert await coordinator.claim_task(f"{uid}-a", task_id)
    stats = await coordinator.get_swarm_stats(f"{uid}-a")
    assert stats is not None
    assert (stats["current_claims"], stats["task_count"], stats["metadata"]) == ([task_id], 0, {"cost_per_hour": 15.0})
    assert stats["uptime_seconds"] >= 0
    await coordinator.complete_task(f"{uid}-a", task_id, {})
    assert (await coordinator.get_swarm_stats(f"{uid}-a") or {})["task_count"] == 1
    assert await coordinator.unregister_swarm(f"{uid}-a") is True
    assert await coordinator.get_swarm_stats(f"{uid}-a") is None
    assert await coordinator.unregister_swarm(f"{uid}-a") is False
    with pytest.raises(SwarmNotRegisteredError):
        await coordinator.claim_task(f"{uid}-a", task_id)


async def test_unregister_returns_claims_to_pool(coordinator: IFCoordinator, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", [])
    task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
    assert await coordinator.claim_task(f"{uid}-a", task_id)
    await coordinator.unregister_swarm(f"{uid}-a")
    await eventually(lambda: _owner_is(coordinator, task_id, "unclaimed"))


async def test_witness_logger_gets_each_record(bus: ifc_client.EventBus, uid: str) -> None:
    records: List[Dict[str, Any]] = []
    coordinator = IFCoordinator(bus, witness_logger=records.append)
    try:
        await coordinator.register_swarm(f"{uid}-a", [])
        task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
        await coordinator.claim_task(f"{uid}-a", task_id)
        await coordinator.complete_task(f"{uid}-a", task_id, {})

        async def seen() -> bool:
            return "task_completed" in [r["op"] for r in records if r["task_id"] == task_id]

        await eventually(seen)
        mine = [r for r in records if r["task_id"] == task_id]
        assert [r["op"] for r in mine] == ["task_created", "task_claimed", "task_completed"]
        assert mine[1]["swarm_id"] == f"{uid}-a" and mine[1]["token"] is not None
        assert any(r["op"] == "swarm_registered" and r["swarm_id"] == f"{uid}-a" for r in records)
        revisions = [r["revision"] for r in records]
        assert revisions == sorted(revisions)
    finally:
        await coordinator.close()


async def test_sync_facade(server: Any, uid: str) -> None:
    """The blocking facade, run from a thread without an event loop."""

    def run() -> List[Any]:
        from ifc_client import sync

        got: List[Any] = []
        pushed: List[str] = []
        bus = sync.EventBus(server=server.url, token=server.token).connect()
        coordinator = sync.IFCoordinator(bus)
        coordinator.register_swarm(f"{uid}-s", ["python"], task_callback=lambda t: pushed.append(t["task_id"]))
        coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
        got.append(coordinator.claim_task(f"{uid}-s", f"{uid}-t"))
        got.append(coordinator.complete_task(f"{uid}-s", f"{uid}-t", {"ok": 1}))
        got.append(coordinator.get_task_owner(f"{uid}-t"))
        coordinator.push_task_to_swarm(f"{uid}-s", {"task_id": f"{uid}-p", "task_type": "x"})
        for _ in range(500):
            if coordinator.get_task_owner(f"{uid}-p") == f"completed:{uid}-s":
                break
            import time

            time.sleep(0.02)
        got.append(coordinator.get_task_owner(f"{uid}-p"))
        got.append(coordinator.unregister_swarm(f"{uid}-s"))
        bus.disconnect()
        return got + [pushed]

    got = await asyncio.to_thread(run)
    assert got == [True, True, f"completed:{uid}-s", f"completed:{uid}-s", True, [f"{uid}-p"]]


async def _owner_is(coordinator: IFCoordinator, task_id: str, owner: str) -> bool:
    return await coordinator.get_task_owner(task_id) == owner
