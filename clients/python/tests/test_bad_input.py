"""Bad input: a clear exception of the right class, and nothing changed."""

from __future__ import annotations

import httpx
import pytest

import ifc_client
from ifc_client import (
    CoordinatorError,
    ForbiddenError,
    IFCoordinator,
    InvalidArgumentError,
    SwarmNotRegisteredError,
    UnauthorizedError,
)
from ifc_client.errors import ERROR_CLASSES, error_from_response

from conftest import Server


async def witness_count(client: ifc_client.Client) -> int:
    return len((await client.witness_export()).splitlines())


@pytest.mark.parametrize(
    "task, match",
    [
        ({"task_type": "x"}, "task_id"),
        ({"task_id": "a", "task_type": 5}, "task_type"),
        ({"task_id": "a", "task_type": "x", "colour": "red"}, "colour"),
        ("not a dict", "dict"),
    ],
)
async def test_bad_tasks_are_refused_before_sending(coordinator: IFCoordinator, client: ifc_client.Client, task: object, match: str) -> None:
    before = await witness_count(client)
    with pytest.raises(InvalidArgumentError, match=match):
        await coordinator.create_task(task)  # type: ignore[arg-type]
    assert await witness_count(client) == before


async def test_bad_ids_are_refused_before_sending(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    """The server's id grammar, applied by the client: nothing is sent."""
    before = await witness_count(client)
    for bad in (f"{uid}/slash", f"{uid}\x07bell", "x" * 5000, ".", "..", "é", "задача-✓", "a b", "a?b", "x" * 129):
        with pytest.raises(InvalidArgumentError) as caught:
            await coordinator.create_task({"task_id": bad, "task_type": "x"})
        assert caught.value.code == "invalid_argument" and caught.value.status is None
        with pytest.raises(InvalidArgumentError):
            await client.register_swarm(bad)
        with pytest.raises(InvalidArgumentError):
            await client.get_task(bad)
        with pytest.raises(InvalidArgumentError):
            await client.as_swarm(bad, "token").heartbeat()
    with pytest.raises(InvalidArgumentError):
        await coordinator.register_swarm(f"{uid}/bad", [])
    # Not even a connection: a client of no server gives the same answer.
    nowhere = ifc_client.Client("http://127.0.0.1:9", "token")
    with pytest.raises(InvalidArgumentError):
        await nowhere.get_task("..")
    await nowhere.aclose()
    assert await witness_count(client) == before
    # The whole grammar is accepted.
    good = f"{uid}-A-z_0.9:x@y"[:128]
    await client.create_task({"task_id": good, "task_type": "x"})
    assert (await client.get_task(good)).record.task_id == good


async def test_bad_seed_arguments(coordinator: IFCoordinator, client: ifc_client.Client, uid: str) -> None:
    await coordinator.register_swarm(f"{uid}-a", [])
    task_id = await coordinator.create_task({"task_id": f"{uid}-t", "task_type": "x"})
    assert await coordinator.claim_task(f"{uid}-a", task_id)
    before = await witness_count(client)
    with pytest.raises(InvalidArgumentError):
        await coordinator.register_swarm(f"{uid}-b", "python")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await coordinator.claim_task(f"{uid}-a", "")
    with pytest.raises(InvalidArgumentError):
        await coordinator.fail_task(f"{uid}-a", task_id, {"not": "a string"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="result is not JSON"):
        await coordinator.complete_task(f"{uid}-a", task_id, {"x": object()})
    with pytest.raises(InvalidArgumentError, match="unknown blocker_info keys"):
        await coordinator.detect_blocker(f"{uid}-a", {"type": "t", "description": "d", "oops": 1})
    with pytest.raises(InvalidArgumentError, match="description"):
        await coordinator.detect_blocker(f"{uid}-a", {"type": "t"})
    with pytest.raises(SwarmNotRegisteredError, match="this IFCoordinator"):
        await coordinator.claim_task(f"{uid}-stranger", task_id)
    assert await witness_count(client) == before
    assert await coordinator.get_task_owner(task_id) == f"{uid}-a"
    assert await coordinator.complete_task(f"{uid}-a", task_id, {"ok": True})


async def test_auth_failures(server: Server, client: ifc_client.Client, uid: str) -> None:
    with pytest.raises(UnauthorizedError):
        await ifc_client.EventBus(server=server.url, token="wrong").connect()
    registration = await client.register_swarm(f"{uid}-a", [])
    swarm = client.as_swarm(f"{uid}-a", registration.token)
    with pytest.raises(ForbiddenError):
        await client.as_swarm(f"{uid}-a", registration.token)._call("GET", "/v1/swarms")
    wrong = client.as_swarm(f"{uid}-a", "not-the-token")
    with pytest.raises(UnauthorizedError):
        await wrong.heartbeat()
    await swarm.unregister()


async def test_unreachable_server_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError):
        await ifc_client.EventBus(server="http://127.0.0.1:9", token="t").connect()


def test_unknown_codes_map_to_the_base_class() -> None:
    error = error_from_response(409, {"code": "already_registered_elsewhere", "message": "m"})
    assert type(error) is CoordinatorError
    assert (error.code, error.status, error.message) == ("already_registered_elsewhere", 409, "m")
    assert type(error_from_response(502, "<html>")) is CoordinatorError
    for code, cls in ERROR_CLASSES.items():
        made = error_from_response(400, {"code": code, "message": "m"})
        assert type(made) is cls and made.code == code


async def test_every_server_code_has_a_class(client: ifc_client.Client) -> None:
    spec = await client.openapi()
    codes = spec["components"]["schemas"]["ErrorCode"]["enum"]
    missing = sorted(set(codes) - set(ERROR_CLASSES))
    assert not missing, f"codes the server sends without an exception class: {missing}"


async def test_raw_http_errors_keep_their_code(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/tasks", content=b"{", headers={
            "Authorization": f"Bearer {server.token}", "Content-Type": "application/json"})
    assert type(error_from_response(response.status_code, response.json())).__name__ == "MalformedJsonError"
