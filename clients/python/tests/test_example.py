"""The seed's Complete Workflow Example runs with only its imports changed, and
prints what the seed says it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ifc_client

from conftest import Server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed_workflow.py"
EXPECTED = [
    "Swarm 1 claimed task!",
    "Task completed!",
    "Swarm 2: Task already claimed",
    "Swarm 1 received task: urgent-review",
    "Swarm 1 received 1 pushed tasks",
    "Blocker reported to orchestrator",
]


async def test_seed_workflow_example(server: Server, client: ifc_client.Client, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFC_")}
    env.update(IFC_SERVER=server.url, IFC_TOKEN=server.token)
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == EXPECTED
    assert await client.task_owner("review-pr-123") == "completed:swarm-1"
    blockers = [b for b in await client.list_blockers() if b.swarm_id == "swarm-1"]
    assert [b.info.description for b in blockers] == ["Rust compiler not found"]
    assert [s.swarm_id for s in await client.list_swarms() if s.swarm_id in ("swarm-1", "swarm-2")] == []


def test_admin_token_file_fallback(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    for name in ("IFC_SERVER", "IFC_TOKEN", "IFC_DATA_DIR"):
        mp.delenv(name, raising=False)
    mp.chdir(tmp_path)
    with pytest.raises(ifc_client.UnauthorizedError, match="admin.token"):
        ifc_client.resolve()
    (tmp_path / "ifc-data").mkdir()
    (tmp_path / "ifc-data" / "admin.token").write_text("from-file\n")
    assert ifc_client.resolve() == ifc_client.Connection("http://127.0.0.1:7400", "from-file")
    mp.setenv("IFC_SERVER", "http://10.1.2.3:9000")
    mp.setenv("IFC_TOKEN", "from-env")
    assert ifc_client.resolve().token == "from-env"
    assert ifc_client.resolve(host="h", port=1).server == "http://h:1"
    assert ifc_client.resolve("https://x:2", "arg").server == "https://x:2"
