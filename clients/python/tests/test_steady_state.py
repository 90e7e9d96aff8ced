"""What a request costs once the client is warm: no import machinery.

httpcore (under httpx) looks for ``sniffio`` in every lock and event it sets up,
and Python does not cache a failed import: since anyio 4.12 stopped installing
``sniffio``, every request searched ``sys.path`` for it a few times
(encode/httpcore#1103, open). Seen in the benchmark's Python claim row: 3.36 ms
a claim at p50, most of it in ``importlib``. ``ifc-client`` depends on
``sniffio`` until httpcore imports it once.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional

from ifc_client import IFCoordinator

from conftest import Server


class RecordingFinder:
    """First on ``sys.meta_path``: sees every import that is not already in
    ``sys.modules`` (an ``import`` statement or ``importlib.import_module``),
    found or not, and finds nothing itself."""

    def __init__(self) -> None:
        self.looked_up: List[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Optional[Any]:
        self.looked_up.append(name)
        return None


async def test_claims_and_reads_in_steady_state_import_nothing(server: Server, uid: str) -> None:
    # No claim renewals: only the calls below run in the window.
    async with IFCoordinator(server=server.url, token=server.token, renew_claims=False) as coordinator:
        swarm = f"{uid}-steady"
        await coordinator.register_swarm(swarm, [])
        ids = [f"{uid}-steady-{i}" for i in range(12)]
        for task_id in ids:
            await coordinator.create_task({"task_id": task_id, "task_type": "steady"})
        # Warm up: the first claim and read import what they use, once.
        assert await coordinator.claim_task(swarm, ids[0]) is True
        await coordinator.get_task_owner(ids[0])

        finder = RecordingFinder()
        sys.meta_path.insert(0, finder)
        try:
            for task_id in ids[1:]:
                assert await coordinator.claim_task(swarm, task_id) is True
                assert await coordinator.get_task_owner(task_id) == swarm
        finally:
            sys.meta_path.remove(finder)
    looked_up = sorted(set(finder.looked_up))
    assert looked_up == [], f"requests went through the import machinery: {looked_up}"
