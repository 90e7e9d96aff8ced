"""Batches: ``create_tasks`` (up to 1,000 in one request, answered per task,
refused whole for one bad item) and ``claim_batch`` (several claims in one
request, each its own token), on both backends."""

from __future__ import annotations

import pytest

import ifc_client
from ifc_client import InvalidArgumentError, PayloadTooLargeError, TaskNotFoundError

from conftest import Server, witness_ops


async def test_create_tasks_answers_each_task_and_refuses_bad_input_whole(
    client: ifc_client.Client, uid: str
) -> None:
    items = [{"task_id": f"{uid}-{i}", "task_type": "x", "metadata": {"i": i}} for i in range(30)]
    results = await client.create_tasks(items)
    assert [r.status for r in results] == ["created"] * 30
    assert results[5].task is not None and results[5].task.metadata == {"i": 5}
    # A retried batch with one more task: nothing changes for the others.
    again = await client.create_tasks(items + [{"task_id": f"{uid}-new", "task_type": "x"}])
    assert [r.status for r in again] == ["exists"] * 30 + ["created"]
    assert await witness_ops(client, f"{uid}-0") == ["task_created"]
    changed = await client.create_tasks([ifc_client.models.NewTask(task_id=f"{uid}-0", task_type="other")])
    assert changed[0].status == "error" and changed[0].error is not None
    assert changed[0].error.code == "task_exists"

    bad = [{"task_id": f"{uid}-b{i}", "task_type": "x"} for i in range(5)]
    bad[3]["max_attempts"] = 0
    with pytest.raises(InvalidArgumentError) as refused:
        await client.create_tasks(bad)
    assert refused.value.index == 3
    with pytest.raises(TaskNotFoundError):
        await client.get_task(f"{uid}-b0")
    too_many = [{"task_id": f"{uid}-m{i}", "task_type": "x"} for i in range(1001)]
    with pytest.raises(PayloadTooLargeError):
        await client.create_tasks(too_many)


async def test_claim_batch_gives_each_task_its_own_claim(fresh_server: Server, uid: str) -> None:
    """On a server of its own, so the batch sees only this test's tasks."""
    async with ifc_client.Client(fresh_server.url, fresh_server.token) as client:
        registration = await client.register_swarm(f"{uid}-w", [])
        swarm = client.as_swarm(f"{uid}-w", registration.token)
        items = [
            {"task_id": f"{uid}-{i:02}", "task_type": "x", "priority": 5 if i == 17 else 0}
            for i in range(20)
        ]
        await client.create_tasks(items)
        claims = await swarm.claim_batch(8)
        assert len(claims) == 8
        assert claims[0].task.task_id == f"{uid}-17", "the higher priority first"
        assert len({c.task.task_id for c in claims}) == 8
        for claim in claims:
            view = await client.get_task(claim.task.task_id)
            assert (view.state, view.token) == ("claimed", claim.token)
            assert await witness_ops(client, claim.task.task_id) == ["task_created", "task_claimed"]
            await swarm.complete(claim.task.task_id, claim.token, {"ok": True})
        rest = await swarm.claim_batch()
        assert len(rest) == 12
        assert await swarm.claim_batch() == []
        with pytest.raises(InvalidArgumentError):
            await swarm.claim_batch(0)
        assert (await swarm.stats()).tasks_claimed == 20
