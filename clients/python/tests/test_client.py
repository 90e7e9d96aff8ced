"""The lower-level client: fencing tokens, claim_next, inbox ack/decline,
blockers with helper candidates, assign/resolve, events, witness."""

from __future__ import annotations

import asyncio

import pytest

import ifc_client
from ifc_client import FencedError, IncapableError, NotOwnerError

from conftest import Server


async def register(client: ifc_client.Client, swarm_id: str, caps: list) -> ifc_client.SwarmClient:
    registration = await client.register_swarm(swarm_id, caps, {"k": 1})
    assert registration.ttl_secs > 0
    return client.as_swarm(swarm_id, registration.token)


async def test_fencing_tokens_and_claim_next(fresh_server: Server, uid: str) -> None:
    """On a server of its own, so claim_next sees only this test's tasks."""
    async with ifc_client.Client(fresh_server.url, fresh_server.token) as client:
        await _fencing_and_claim_next(client, uid)


async def _fencing_and_claim_next(client: ifc_client.Client, uid: str) -> None:
    cap = f"{uid}:only"
    a = await register(client, f"{uid}-a", [cap])
    b = await register(client, f"{uid}-b", [])
    await client.create_task({"task_id": f"{uid}-lo", "task_type": "x", "required_capabilities": [cap], "priority": 1})
    await client.create_task({"task_id": f"{uid}-hi", "task_type": "x", "required_capabilities": [cap], "priority": 9})
    with pytest.raises(IncapableError):
        await b.claim_task(f"{uid}-hi")
    # claim_next spreads callers over the best few ready tasks: either order.
    claims = [await a.claim_next(), await a.claim_next()]
    assert await a.claim_next() is None
    by_id = {c.task.task_id: c for c in claims if c is not None}
    assert sorted(by_id) == [f"{uid}-hi", f"{uid}-lo"]
    assert claims[1].token > claims[0].token  # type: ignore[union-attr]  # tokens only grow
    first, second = by_id[f"{uid}-hi"], by_id[f"{uid}-lo"]
    assert await a.renew(f"{uid}-hi", first.token) >= first.deadline_ms
    with pytest.raises(FencedError):
        await a.complete(f"{uid}-hi", first.token - 1, {})
    with pytest.raises(NotOwnerError):
        await b.complete(f"{uid}-hi", first.token, {})
    done = await a.complete(f"{uid}-hi", first.token, {"r": 1})
    assert (done.state, done.owner, done.result) == ("completed", f"{uid}-a", {"r": 1})
    failed = await a.fail(f"{uid}-lo", second.token, "nope")
    assert (failed.state, failed.attempts) == ("ready", 1)
    view = await client.get_task(f"{uid}-lo")
    assert view.state == "ready" and view.token is None
    # A release gives it back without using an attempt.
    again = await a.claim_task(f"{uid}-lo")
    assert again.claim is not None
    released = await a.release(f"{uid}-lo", again.claim.token)
    assert (released.state, released.attempts) == ("ready", 1)
    assert released.history[-1].outcome == "released"
    page = await client.list_tasks("completed", limit=100)
    assert all(t.state == "completed" for t in page.tasks)
    assert (await a.stats()).tasks_claimed == 3
    assert await a.heartbeat() > 0
    cancelled = await client.cancel_task(f"{uid}-lo")
    assert cancelled.state == "cancelled"
    await a.unregister()
    await b.unregister()


async def test_inbox_ack_and_decline(client: ifc_client.Client, uid: str) -> None:
    a = await register(client, f"{uid}-a", [])
    first = await client.push_task(f"{uid}-a", {"task_id": f"{uid}-1", "task_type": "x"})
    second = await client.push_task(f"{uid}-a", {"task_id": f"{uid}-2", "task_type": "x"})
    assert second.revision > first.revision
    seen = []
    async for item in a.inbox():
        seen.append(item)
        if len(seen) == 2:
            break
    assert [i.task.task_id for i in seen] == [f"{uid}-1", f"{uid}-2"]
    assert await a.ack(f"{uid}-1", first.token) > 0
    declined = await a.decline(f"{uid}-2", second.token)
    assert declined.state == "ready"
    # Resuming after the last revision seen skips both; nothing new arrives.
    resumed = a.inbox(after=second.revision)
    third = await client.push_task(f"{uid}-a", {"task_id": f"{uid}-3", "task_type": "x"})
    async for item in resumed:
        assert item.task.task_id == f"{uid}-3" and item.revision == third.revision
        break
    await a.complete(f"{uid}-1", first.token, {})
    await a.unregister()


async def test_blockers_with_candidates_assign_resolve(client: ifc_client.Client, uid: str) -> None:
    need = f"{uid}:pkg"
    stuck = await register(client, f"{uid}-stuck", [need])
    helper = await register(client, f"{uid}-helper", [need, "other"])
    stream = client.blocker_stream()
    reader = asyncio.ensure_future(_first_blocker(stream, f"{uid}-stuck"))
    await asyncio.wait_for(stream.connected.wait(), 10)
    blocker_id = await stuck.raise_blocker(
        {"type": "missing_tool", "description": "no rustc", "severity": "high", "required_capabilities": [need]}
    )
    event = await asyncio.wait_for(reader, 30)
    assert event.blocker.blocker_id == blocker_id
    assert [c.swarm_id for c in event.candidates] == [f"{uid}-helper"]
    assert blocker_id in [b.blocker_id for b in await client.list_blockers(open_only=True)]
    pushed = await client.assign_helper(blocker_id, f"{uid}-helper")
    assert pushed.blocker_id == blocker_id
    assert (await client.get_blocker(blocker_id)).state == "assigned"
    resolved = await client.resolve_blocker(blocker_id, "installed rustc")
    assert (resolved.state, resolved.resolution) == ("resolved", "installed rustc")
    await helper.unregister()
    await stuck.unregister()


async def _first_blocker(stream, swarm_id):  # type: ignore[no-untyped-def]
    async for event in stream:
        if event.blocker.swarm_id == swarm_id:
            return event


async def test_events_and_witness(client: ifc_client.Client, uid: str) -> None:
    events = client.events()
    collected = []

    async def read() -> None:
        async for event in events:
            if event.task_id == f"{uid}-t":
                collected.append(event)
                if event.op == "task_cancelled":
                    return

    reader = asyncio.ensure_future(read())
    await asyncio.wait_for(events.connected.wait(), 10)
    await client.create_task({"task_id": f"{uid}-t", "task_type": "x"})
    await client.cancel_task(f"{uid}-t")
    await asyncio.wait_for(reader, 30)
    assert [e.op for e in collected] == ["task_created", "task_cancelled"]
    # Resume from the first event: only the second comes again.
    again = client.events(after=collected[0].revision)
    async for event in again:
        if event.task_id == f"{uid}-t":
            assert event.op == "task_cancelled"
            break
    records = await client.witness(task_id=f"{uid}-t")
    assert [r.op for r in records] == ["task_created", "task_cancelled"]
    assert records[1].prev_hash == records[0].hash
    export = await client.witness_export()
    assert records[0].hash in export
    assert (await client.witness_verify()).ok
    assert await client.healthz() and await client.readyz()
    spec = await client.openapi()
    assert "/v1/tasks/{task_id}/claim" in spec["paths"]
