"""20 asyncio swarms race for 500 tasks through the seed's claim_task: every
task has exactly one winner, and the witness log agrees."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Dict, List

import pytest

import ifc_client
from ifc_client import IFCoordinator

SWARMS = 20
TASKS = 500


# 10,000 claim attempts: seconds on an idle machine, many minutes on a debug
# build sharing 2 cores with parallel cargo builds.
@pytest.mark.timeout(1800)
async def test_exactly_one_winner_per_task(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    swarms = [f"{uid}-s{i:02}" for i in range(SWARMS)]
    tasks = [f"{uid}-t{i:03}" for i in range(TASKS)]
    for swarm in swarms:
        await coordinator.register_swarm(swarm, ["race"])
    sem = asyncio.Semaphore(32)

    async def create(task_id: str) -> None:
        async with sem:
            await coordinator.create_task({"task_id": task_id, "task_type": "race"})

    await asyncio.gather(*(create(t) for t in tasks))
    wins: Dict[str, List[str]] = {t: [] for t in tasks}

    async def run(swarm: str) -> None:
        order = tasks[:]
        random.Random(swarm).shuffle(order)
        for task_id in order:
            if await coordinator.claim_task(swarm, task_id):
                wins[task_id].append(swarm)
                await coordinator.complete_task(swarm, task_id, {"by": swarm})

    await asyncio.gather(*(run(s) for s in swarms))
    assert {t: len(w) for t, w in wins.items()} == {t: 1 for t in tasks}
    for task_id in random.Random(0).sample(tasks, 50):
        assert await coordinator.get_task_owner(task_id) == f"completed:{wins[task_id][0]}"
    # The witness log saw one claim per task, by the swarm that won it.
    claims = Counter()
    for record in await client.witness(from_ms=0):
        if record.op == "task_claimed" and record.task_id in wins:
            assert record.swarm_id == wins[record.task_id][0]
            claims[record.task_id] += 1
    assert claims == Counter({t: 1 for t in tasks})
    assert (await client.witness_verify()).ok
    for swarm in swarms:
        await coordinator.unregister_swarm(swarm)
