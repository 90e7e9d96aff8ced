"""Wire models of the HTTP API (``/openapi.json``), as pydantic models.

Every model accepts fields it does not know (``extra="allow"``), so a newer
server that adds a field never breaks an older client.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

TaskState = Literal["ready", "claimed", "completed", "dead", "cancelled"]


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Swarm(Model):
    swarm_id: str
    capabilities: List[str]
    metadata: Any = None
    registered_at_ms: int


class Registration(Model):
    swarm_id: str
    token: str
    ttl_secs: int


class Attempt(Model):
    swarm_id: str
    token: int
    claimed_at_ms: int
    ended_at_ms: int
    outcome: str
    error: Optional[str] = None


class NewTask(Model):
    """What creates (or pushes) a task."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    task_type: str
    metadata: Any = None
    required_capabilities: List[str] = Field(default_factory=list)
    priority: int = 0
    max_attempts: Optional[int] = None
    timeout_ms: Optional[int] = None


class TaskRecord(Model):
    task_id: str
    task_type: str
    metadata: Any = None
    required_capabilities: List[str] = Field(default_factory=list)
    priority: int = 0
    max_attempts: int
    created_at_ms: int
    state: TaskState
    owner: Optional[str] = None
    claimed_at_ms: Optional[int] = None
    attempts: int = 0
    history: List[Attempt] = Field(default_factory=list)
    result: Any = None
    error: Optional[str] = None
    not_before_ms: int = 0
    awaiting_ack: bool = False
    finished_at_ms: Optional[int] = None


class TaskView(Model):
    record: TaskRecord
    state: TaskState
    token: Optional[int] = None
    deadline_ms: Optional[int] = None
    lapsed: bool = False
    revision: int


class Claim(Model):
    task: TaskRecord
    token: int
    deadline_ms: int


class ClaimOutcome(Model):
    """``outcome`` is ``claimed`` (with ``claim``), ``already_claimed`` (with
    ``owner``), ``finished`` (with ``state``) or ``backing_off`` (with
    ``ready_at_ms``)."""

    outcome: str
    claim: Optional[Claim] = None
    owner: Optional[str] = None
    state: Optional[TaskState] = None
    ready_at_ms: Optional[int] = None

    @classmethod
    def from_wire(cls, body: Dict[str, Any]) -> "ClaimOutcome":
        if body.get("outcome") == "claimed":
            return cls(outcome="claimed", claim=Claim.model_validate(body))
        return cls.model_validate(body)


class ErrorBody(Model):
    """The service's error shape, ``{code, message}`` (and ``index`` when a
    batch was refused for one of its items)."""

    code: str
    message: str
    index: Optional[int] = None


class BatchItem(Model):
    """One task's answer in a batch create, at the task's place in the
    request: ``status`` is ``created``, ``exists`` (the same content was there
    already: a retried batch changes nothing) or ``error`` (with ``error``)."""

    status: Literal["created", "exists", "error"]
    task: Optional[TaskRecord] = None
    error: Optional[ErrorBody] = None


class SwarmStats(Model):
    swarm: Swarm
    current_claims: List[str]
    tasks_claimed: int
    task_count: int
    tasks_failed: int
    uptime_seconds: int


class TaskPage(Model):
    tasks: List[TaskView]
    next_after: Optional[str] = None


class WitnessRecord(Model):
    chain: str
    seq: int
    op: str
    actor: str
    task_id: Optional[str] = None
    swarm_id: Optional[str] = None
    token: Optional[int] = None
    outcome: str
    detail: Any = None
    at_ms: int
    prev_hash: str
    hash: str
    revision: int = 0


class Tampering(Model):
    chain: str
    seq: int
    problem: str


class Verification(Model):
    ok: bool
    problems: List[Tampering]


class InboxItem(Model):
    revision: int
    task: TaskRecord
    token: int
    ack_deadline_ms: int
    blocker_id: Optional[str] = None


class BlockerInfo(Model):
    """The seed's ``blocker_info``: ``type`` is sent as ``type``."""

    blocker_type: str = Field(alias="type")
    description: str
    severity: str = ""
    required_capabilities: List[str] = Field(default_factory=list)
    task_id: Optional[str] = None


class Blocker(Model):
    blocker_id: str
    swarm_id: str
    info: BlockerInfo
    state: Literal["open", "assigned", "resolved"]
    helpers: List[str]
    resolution: Optional[str] = None
    raised_at_ms: int


class HelperCandidate(Model):
    swarm_id: str
    capabilities: List[str]
    current_claims: int


class BlockerEvent(Model):
    revision: int
    blocker: Blocker
    candidates: List[HelperCandidate]


class CoordinationEvent(Model):
    revision: int
    op: str
    actor: str
    task_id: Optional[str] = None
    swarm_id: Optional[str] = None
    blocker_id: Optional[str] = None
    token: Optional[int] = None
    outcome: str
    detail: Any = None
    at_ms: int


class StreamEnd(Model):
    """The final ``error`` event of a stream the server ended."""

    code: str
    message: str
    resume_after: int = 0


# --- The KV API this package expects (see docs/python.md); not served yet. ---


class KvEntry(Model):
    key: str
    value: str
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0


class KvRange(Model):
    entries: List[KvEntry]
    more: bool = False
    revision: int = 0


class KvWatchEvent(Model):
    type: Literal["put", "delete"]
    key: str
    value: Optional[str] = None
    mod_revision: int = 0


class KvWatchBatch(Model):
    revision: int
    events: List[KvWatchEvent]


JsonValue = Union[Dict[str, Any], List[Any], str, int, float, bool, None]
