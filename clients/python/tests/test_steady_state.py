"""What a request costs once the client is warm: no import machinery.

httpcore (under httpx) looks for ``sniffio`` in every lock and event it sets up,
and Python does not cache a failed import: since anyio 4.12 stopped installing
``sniffio``, every request searched ``sys.path`` for it a few times
(encode/httpcore#1103, open). Seen in the benchmark's Python claim row: 3.5 ms
a claim, most of it in ``importlib``. ``ifc-client`` depends on ``sniffio``
until httpcore imports it once.
"""

from __future__ import annotations

import sys
from typing import List

from ifc_client import IFCoordinator

# The audit hook stays for the life of the process (hooks cannot be removed);
# it records only while a test holds the list.
_recording: List[List[str]] = []


def _on_audit(event: str, args: tuple) -> None:
    if event == "import" and _recording:
        _recording[-1].append(str(args[0]))


sys.addaudithook(_on_audit)


async def test_claims_and_reads_in_steady_state_import_nothing(coordinator: IFCoordinator, uid: str) -> None:
    swarm = f"{uid}-steady"
    await coordinator.register_swarm(swarm, [])
    ids = [f"{uid}-steady-{i}" for i in range(12)]
    for task_id in ids:
        await coordinator.create_task({"task_id": task_id, "task_type": "steady"})
    # Warm up: the first claim and read import what they use, once.
    assert await coordinator.claim_task(swarm, ids[0]) is True
    await coordinator.get_task_owner(ids[0])

    imports: List[str] = []
    _recording.append(imports)
    try:
        for task_id in ids[1:]:
            assert await coordinator.claim_task(swarm, task_id) is True
            assert await coordinator.get_task_owner(task_id) == swarm
    finally:
        _recording.pop()
    assert imports == [], f"requests went through the import machinery: {sorted(set(imports))}"
